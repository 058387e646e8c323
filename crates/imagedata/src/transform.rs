//! Keras' `apply_affine_transform`: one composed affine map about the image centre, bilinear
//! sampling (scipy `ndimage` order 1) and scipy's fill modes, plus flips.
//!
//! Coordinates are `(row, column)` as in Keras. For output pixel `o`, the input is sampled at
//! `A · o + b`, where `A` and `b` come from `C · R · S · H · Z · C⁻¹` (rotation, shift, shear,
//! zoom, and `C` the translation to Keras' centre `(h/2 + 0.5, w/2 + 0.5)`, which is Keras'
//! exact convention, half a pixel past the geometric centre `(h-1)/2`). Flips are applied to the
//! warped image afterwards and are folded into the same map, so every output pixel is sampled
//! exactly once.
//!
//! The kernels read packed u8 RGB and write either packed u8 RGB (rounded) or preprocessed f32
//! planes (CHW) straight into a batch buffer, without rounding in between (Keras transforms
//! float arrays).

use crate::config::FillMode;

/// One draw of the random transform, with Keras' parameter names and units.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Transform {
    /// Rotation in degrees (counter-clockwise in the image as displayed).
    pub theta: f64,
    /// Shift along rows, in pixels (the sampling grid moves by `tx`, the content by `-tx`).
    pub tx: f64,
    /// Shift along columns, in pixels.
    pub ty: f64,
    /// Shear angle in degrees.
    pub shear: f64,
    /// Zoom factor along rows (the sampling grid is scaled by it; above 1 zooms out).
    pub zx: f64,
    /// Zoom factor along columns.
    pub zy: f64,
    /// Mirror left-right after the affine warp.
    pub flip_horizontal: bool,
    /// Mirror top-bottom after the affine warp.
    pub flip_vertical: bool,
}

impl Transform {
    /// The transform that changes nothing.
    pub fn identity() -> Self {
        Transform {
            zx: 1.0,
            zy: 1.0,
            ..Transform::default()
        }
    }

    /// Whether the affine part (everything but the flips) is the identity, in which case Keras
    /// does not resample at all.
    pub fn affine_is_identity(&self) -> bool {
        self.theta == 0.0
            && self.tx == 0.0
            && self.ty == 0.0
            && self.shear == 0.0
            && self.zx == 1.0
            && self.zy == 1.0
    }

    /// Whether the whole transform (flips included) is the identity.
    pub fn is_identity(&self) -> bool {
        self.affine_is_identity() && !self.flip_horizontal && !self.flip_vertical
    }

    /// The map from output to input coordinates for an image of `height` × `width`, flips
    /// included.
    pub fn sampling_map(&self, height: u32, width: u32) -> AffineMap {
        let mut m = Mat3::IDENTITY;
        if self.theta != 0.0 {
            let t = self.theta.to_radians();
            m = m.mul(&Mat3([
                [t.cos(), -t.sin(), 0.0],
                [t.sin(), t.cos(), 0.0],
                [0.0, 0.0, 1.0],
            ]));
        }
        if self.tx != 0.0 || self.ty != 0.0 {
            m = m.mul(&Mat3([
                [1.0, 0.0, self.tx],
                [0.0, 1.0, self.ty],
                [0.0, 0.0, 1.0],
            ]));
        }
        if self.shear != 0.0 {
            let s = self.shear.to_radians();
            m = m.mul(&Mat3([
                [1.0, -s.sin(), 0.0],
                [0.0, s.cos(), 0.0],
                [0.0, 0.0, 1.0],
            ]));
        }
        if self.zx != 1.0 || self.zy != 1.0 {
            m = m.mul(&Mat3([
                [self.zx, 0.0, 0.0],
                [0.0, self.zy, 0.0],
                [0.0, 0.0, 1.0],
            ]));
        }
        let (h, w) = (f64::from(height), f64::from(width));
        let mut map = if self.affine_is_identity() {
            AffineMap::IDENTITY
        } else {
            // Keras' transform_matrix_offset_center.
            let (ox, oy) = (h / 2.0 + 0.5, w / 2.0 + 0.5);
            let offset = Mat3([[1.0, 0.0, ox], [0.0, 1.0, oy], [0.0, 0.0, 1.0]]);
            let reset = Mat3([[1.0, 0.0, -ox], [0.0, 1.0, -oy], [0.0, 0.0, 1.0]]);
            let t = offset.mul(&m).mul(&reset).0;
            AffineMap {
                matrix: [[t[0][0], t[0][1]], [t[1][0], t[1][1]]],
                offset: [t[0][2], t[1][2]],
            }
        };
        // A flip after the warp reads the warped image at the mirrored output coordinate:
        // o' = (h - 1 - r, c) or (r, w - 1 - c); fold that into the map.
        if self.flip_vertical {
            map = map.after_output_map([[-1.0, 0.0], [0.0, 1.0]], [h - 1.0, 0.0]);
        }
        if self.flip_horizontal {
            map = map.after_output_map([[1.0, 0.0], [0.0, -1.0]], [0.0, w - 1.0]);
        }
        map
    }
}

/// A 3×3 homogeneous matrix (rows of `[row, column, 1]` transforms).
#[derive(Debug, Clone, Copy)]
struct Mat3([[f64; 3]; 3]);

impl Mat3 {
    const IDENTITY: Mat3 = Mat3([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]);

    fn mul(&self, o: &Mat3) -> Mat3 {
        let (a, b) = (&self.0, &o.0);
        Mat3(std::array::from_fn(|i| {
            std::array::from_fn(|j| (0..3).map(|k| a[i][k] * b[k][j]).sum())
        }))
    }
}

/// `input = matrix · output + offset`, with `(row, column)` coordinates: where each output pixel
/// is sampled from (what scipy's `affine_transform` takes).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AffineMap {
    /// The linear part.
    pub matrix: [[f64; 2]; 2],
    /// The translation.
    pub offset: [f64; 2],
}

impl AffineMap {
    /// Every output pixel reads the input pixel at the same place.
    pub const IDENTITY: AffineMap = AffineMap {
        matrix: [[1.0, 0.0], [0.0, 1.0]],
        offset: [0.0, 0.0],
    };

    /// The map `o ↦ self(F · o + g)`: the output coordinate is first transformed by `(F, g)`.
    pub fn after_output_map(&self, f: [[f64; 2]; 2], g: [f64; 2]) -> AffineMap {
        let a = &self.matrix;
        AffineMap {
            matrix: std::array::from_fn(|i| {
                std::array::from_fn(|j| a[i][0] * f[0][j] + a[i][1] * f[1][j])
            }),
            offset: std::array::from_fn(|i| a[i][0] * g[0] + a[i][1] * g[1] + self.offset[i]),
        }
    }

    /// The input coordinate output pixel `(row, column)` is sampled from.
    pub fn apply(&self, row: f64, col: f64) -> (f64, f64) {
        let m = &self.matrix;
        (
            m[0][0] * row + m[0][1] * col + self.offset[0],
            m[1][0] * row + m[1][1] * col + self.offset[1],
        )
    }

    /// Whether the map is a permutation of pixels (identity or flips), so no interpolation is
    /// needed: integer entries that are each 0 or ±1 and an integer offset.
    fn is_pixel_permutation(&self) -> bool {
        let unit = |v: f64| v == 0.0 || v == 1.0 || v == -1.0;
        self.matrix.iter().flatten().all(|&v| unit(v))
            && self.offset.iter().all(|&v| v.fract() == 0.0)
            && self.matrix[0][1] == 0.0
            && self.matrix[1][0] == 0.0
    }
}

/// Where the bilinear samples along one axis come from: two indices and the weight of the
/// second, or `None` for "use the constant fill".
#[inline(always)]
fn axis_taps(coord: f32, n: usize, mode: FillMode) -> Option<(usize, usize, f32)> {
    let last = n as f32 - 1.0;
    if !coord.is_finite() {
        return None;
    }
    match mode {
        FillMode::Constant => {
            if coord < 0.0 || coord > last {
                return None;
            }
            let f = coord.floor();
            let i0 = f as usize;
            Some((i0, (i0 + 1).min(n - 1), coord - f))
        }
        FillMode::Nearest => {
            let c = coord.clamp(0.0, last);
            let f = c.floor();
            let i0 = f as usize;
            Some((i0, (i0 + 1).min(n - 1), c - f))
        }
        FillMode::Reflect => {
            // Half-sample symmetric extension with period 2n, then linear interpolation.
            let f = coord.floor();
            let i = f as i64;
            let reflect = |i: i64| -> usize {
                let p = 2 * n as i64;
                let m = i.rem_euclid(p);
                (if m >= n as i64 { p - 1 - m } else { m }) as usize
            };
            Some((reflect(i), reflect(i + 1), coord - f))
        }
        FillMode::Wrap => {
            // scipy's `wrap`: the coordinate is wrapped with period n - 1 (first and last
            // samples coincide), then interpolated inside the image.
            if n <= 1 {
                return Some((0, 0, 0.0));
            }
            let sz = last;
            let mut c = coord;
            if c < 0.0 {
                c += sz * (((-c / sz) as i64) as f32 + 1.0);
            } else if c > last {
                c -= sz * (((c / sz) as i64) as f32);
            }
            let c = c.clamp(0.0, last);
            let f = c.floor();
            let i0 = f as usize;
            Some((i0, (i0 + 1).min(n - 1), c - f))
        }
    }
}

/// Receives warped pixels.
trait PixelSink {
    /// Stores the RGB value of output pixel number `index` (row-major).
    fn put(&mut self, index: usize, rgb: [f32; 3]);
}

/// Writes rounded u8 RGB into a packed buffer.
struct U8Sink<'a> {
    dst: &'a mut [u8],
}

impl PixelSink for U8Sink<'_> {
    #[inline(always)]
    fn put(&mut self, index: usize, rgb: [f32; 3]) {
        let o = &mut self.dst[index * 3..index * 3 + 3];
        // Round half up and saturate, as scipy writes float results into uint8.
        o[0] = (rgb[0] + 0.5) as u8;
        o[1] = (rgb[1] + 0.5) as u8;
        o[2] = (rgb[2] + 0.5) as u8;
    }
}

/// Writes `value * a[c] + b[c]` into three f32 planes (CHW).
struct PlaneSink<'a> {
    r: &'a mut [f32],
    g: &'a mut [f32],
    b: &'a mut [f32],
    coeffs: [(f32, f32); 3],
}

impl PixelSink for PlaneSink<'_> {
    #[inline(always)]
    fn put(&mut self, index: usize, rgb: [f32; 3]) {
        let c = &self.coeffs;
        self.r[index] = rgb[0] * c[0].0 + c[0].1;
        self.g[index] = rgb[1] * c[1].0 + c[1].1;
        self.b[index] = rgb[2] * c[2].0 + c[2].1;
    }
}

/// How points outside the input are filled: scipy's mode and, for `constant`, the value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fill {
    /// The fill mode.
    pub mode: FillMode,
    /// The value for [`FillMode::Constant`], in pixel units.
    pub cval: f32,
}

impl Fill {
    /// `mode` with fill value `cval`.
    pub fn new(mode: FillMode, cval: f32) -> Self {
        Fill { mode, cval }
    }
}

#[inline(always)]
fn load(src: &[u8], i: usize) -> [f32; 3] {
    let p = &src[i * 3..i * 3 + 3];
    [f32::from(p[0]), f32::from(p[1]), f32::from(p[2])]
}

/// The columns `[lo, hi)` of an output row where `p + q * c` stays in `[0, limit)`, for
/// `c` in `[0, width)`, found exactly with the same arithmetic the kernel uses.
fn interior_span(p: f32, q: f32, limit: f32, width: usize) -> (usize, usize) {
    let inside = |c: usize| {
        let v = q * c as f32 + p;
        v >= 0.0 && v < limit
    };
    let (lo, hi) = if q == 0.0 {
        if inside(0) { (0, width) } else { (0, 0) }
    } else {
        // Real-valued solution, widened by a column on each side and clamped; the exact
        // endpoints are then found by testing (v is monotonic in c, so the set is an interval).
        let a = -p / q;
        let b = (limit - p) / q;
        let (x0, x1) = if q > 0.0 { (a, b) } else { (b, a) };
        let lo = if x0.is_finite() {
            (x0.floor() - 1.0).max(0.0)
        } else {
            0.0
        };
        let hi = if x1.is_finite() {
            (x1.ceil() + 2.0).max(0.0)
        } else {
            width as f32
        };
        (
            (lo as usize).min(width),
            (hi.min(width as f32) as usize).min(width),
        )
    };
    let (mut lo, mut hi) = (lo, hi.max(lo));
    while lo < hi && !inside(lo) {
        lo += 1;
    }
    while hi > lo && !inside(hi - 1) {
        hi -= 1;
    }
    // Extend outwards in case the estimate was too narrow.
    if lo < hi {
        while lo > 0 && inside(lo - 1) {
            lo -= 1;
        }
        while hi < width && inside(hi) {
            hi += 1;
        }
    }
    (lo, hi)
}

/// Samples the whole output through `map`, pushing every pixel to `sink`.
fn warp<S: PixelSink>(
    src: &[u8],
    height: usize,
    width: usize,
    map: &AffineMap,
    fill: Fill,
    sink: &mut S,
) {
    assert_eq!(src.len(), height * width * 3, "source buffer size");
    if height == 0 || width == 0 {
        return;
    }
    if map.is_pixel_permutation() {
        // Identity or flips: exact pixel moves, when the map keeps every pixel inside.
        let inside = |r: f64, c: f64| {
            r >= 0.0 && c >= 0.0 && r <= (height - 1) as f64 && c <= (width - 1) as f64
        };
        let corners = [
            map.apply(0.0, 0.0),
            map.apply((height - 1) as f64, (width - 1) as f64),
            map.apply(0.0, (width - 1) as f64),
            map.apply((height - 1) as f64, 0.0),
        ];
        if corners.iter().all(|&(r, c)| inside(r, c)) {
            for r in 0..height {
                for c in 0..width {
                    let (ri, ci) = map.apply(r as f64, c as f64);
                    let s = ri as usize * width + ci as usize;
                    sink.put(r * width + c, load(src, s));
                }
            }
            return;
        }
    }
    let m = map.matrix;
    let (a00, a01, a10, a11) = (
        m[0][0] as f32,
        m[0][1] as f32,
        m[1][0] as f32,
        m[1][1] as f32,
    );
    let (b0, b1) = (map.offset[0] as f32, map.offset[1] as f32);
    let hmax = (height - 1) as f32;
    let wmax = (width - 1) as f32;
    let border = |ri: f32, ci: f32| -> [f32; 3] {
        match (
            axis_taps(ri, height, fill.mode),
            axis_taps(ci, width, fill.mode),
        ) {
            (Some((r0, r1, tr)), Some((c0, c1, tc))) => bilinear(
                src,
                [
                    r0 * width + c0,
                    r0 * width + c1,
                    r1 * width + c0,
                    r1 * width + c1,
                ],
                tr,
                tc,
            ),
            _ => [fill.cval; 3],
        }
    };
    for r in 0..height {
        let rf = r as f32;
        let row_r = a00 * rf + b0;
        let row_c = a10 * rf + b1;
        let out_row = r * width;
        // Columns whose sample lies strictly inside (both bilinear taps in the image) along
        // each axis; their intersection needs no border handling.
        let (lr, hr) = interior_span(row_r, a01, hmax, width);
        let (lc, hc) = interior_span(row_c, a11, wmax, width);
        let (lo, hi) = (lr.max(lc), hr.min(hc).max(lr.max(lc)));
        for c in (0..lo).chain(hi..width) {
            let cf = c as f32;
            let ri = a01 * cf + row_r;
            let ci = a11 * cf + row_c;
            sink.put(out_row + c, border(ri, ci));
        }
        for c in lo..hi {
            let cf = c as f32;
            let ri = a01 * cf + row_r;
            let ci = a11 * cf + row_c;
            // In the span, 0 <= ri < h - 1 and 0 <= ci < w - 1, so truncation is floor and
            // all four taps are inside the image.
            let (r0, c0) = (ri as usize, ci as usize);
            let (tr, tc) = (ri - r0 as f32, ci - c0 as f32);
            let i00 = r0 * width + c0;
            let value = bilinear_interior(src, i00, width, tr, tc);
            sink.put(out_row + c, value);
        }
    }
}

/// Bilinear blend of the four pixels at `idx` (`p00`, `p01` on the first row, `p10`, `p11` on
/// the next); `tr` and `tc` are the weights of the second row and column.
#[inline(always)]
fn bilinear(src: &[u8], idx: [usize; 4], tr: f32, tc: f32) -> [f32; 3] {
    let [p00, p01, p10, p11] = idx.map(|i| load(src, i));
    blend(p00, p01, p10, p11, tr, tc)
}

#[inline(always)]
fn blend(p00: [f32; 3], p01: [f32; 3], p10: [f32; 3], p11: [f32; 3], tr: f32, tc: f32) -> [f32; 3] {
    std::array::from_fn(|k| {
        let top = (p01[k] - p00[k]) * tc + p00[k];
        let bottom = (p11[k] - p10[k]) * tc + p10[k];
        (bottom - top) * tr + top
    })
}

/// [`bilinear`] for a 2×2 neighbourhood known to lie inside the image: pixel `i00`, its right
/// neighbour and the two pixels below them.
#[inline(always)]
fn bilinear_interior(src: &[u8], i00: usize, width: usize, tr: f32, tc: f32) -> [f32; 3] {
    let top = i00 * 3;
    let bottom = (i00 + width) * 3;
    // One bounds check covers all twelve samples: the bottom-right pixel is the last one read.
    let row0 = &src[top..top + 6];
    let row1 = &src[bottom..bottom + 6];
    let f = |s: &[u8], o: usize| [f32::from(s[o]), f32::from(s[o + 1]), f32::from(s[o + 2])];
    blend(f(row0, 0), f(row0, 3), f(row1, 0), f(row1, 3), tr, tc)
}

/// Warps packed u8 RGB `src` (`height` × `width`) through `map` into packed u8 RGB `dst` of the
/// same size, rounding to the nearest integer.
///
/// # Panics
/// If either buffer is not `height * width * 3` bytes long (a programming error).
pub fn warp_rgb_u8(
    src: &[u8],
    height: usize,
    width: usize,
    map: &AffineMap,
    fill: Fill,
    dst: &mut [u8],
) {
    assert_eq!(dst.len(), height * width * 3, "destination buffer size");
    warp(src, height, width, map, fill, &mut U8Sink { dst });
}

/// Warps packed u8 RGB `src` through `map` and writes `value * a[c] + b[c]` as three f32
/// planes (CHW, `3 * height * width` values) into `dst`, without intermediate rounding.
///
/// # Panics
/// If a buffer has the wrong length (a programming error).
pub fn warp_rgb_planes(
    src: &[u8],
    height: usize,
    width: usize,
    map: &AffineMap,
    fill: Fill,
    coeffs: [(f32, f32); 3],
    dst: &mut [f32],
) {
    let hw = height * width;
    assert_eq!(dst.len(), 3 * hw, "destination buffer size");
    let (r, rest) = dst.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    warp(
        src,
        height,
        width,
        map,
        fill,
        &mut PlaneSink { r, g, b, coeffs },
    );
}

/// Converts packed u8 RGB into preprocessed f32 planes (CHW) without any geometric change.
///
/// # Panics
/// If a buffer has the wrong length (a programming error).
pub fn rgb_to_planes(src: &[u8], coeffs: [(f32, f32); 3], dst: &mut [f32]) {
    let hw = src.len() / 3;
    assert_eq!(dst.len(), 3 * hw, "destination buffer size");
    let (r, rest) = dst.split_at_mut(hw);
    let (g, b) = rest.split_at_mut(hw);
    for (i, p) in src.chunks_exact(3).enumerate() {
        r[i] = f32::from(p[0]) * coeffs[0].0 + coeffs[0].1;
        g[i] = f32::from(p[1]) * coeffs[1].0 + coeffs[1].1;
        b[i] = f32::from(p[2]) * coeffs[2].0 + coeffs[2].1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-row, n-column image whose R channel is `values`.
    fn row_image(values: &[u8]) -> Vec<u8> {
        values.iter().flat_map(|&v| [v, v / 2, 255 - v]).collect()
    }

    /// Samples a 1-row image at column offsets via a pure column shift map.
    fn sample_row(values: &[u8], shift: f64, mode: FillMode, cval: f32) -> Vec<f32> {
        let src = row_image(values);
        let map = AffineMap {
            matrix: [[1.0, 0.0], [0.0, 1.0]],
            offset: [0.0, shift],
        };
        let n = values.len();
        let mut dst = vec![0f32; 3 * n];
        warp_rgb_planes(
            &src,
            1,
            n,
            &map,
            Fill::new(mode, cval),
            [(1.0, 0.0); 3],
            &mut dst,
        );
        dst[..n].to_vec()
    }

    #[test]
    fn axis_taps_follow_scipy() {
        // Values checked against scipy.ndimage.affine_transform(order=1) for x = [10,20,30,40].
        let x = [10u8, 20, 30, 40];
        let at = |c: f32, mode| -> f32 {
            match axis_taps(c, 4, mode) {
                None => -1.0,
                Some((i0, i1, t)) => f32::from(x[i0]) * (1.0 - t) + f32::from(x[i1]) * t,
            }
        };
        let cases: &[(FillMode, &[(f32, f32)])] = &[
            (
                FillMode::Nearest,
                &[
                    (-5.5, 10.0),
                    (-0.3, 10.0),
                    (0.5, 15.0),
                    (3.3, 40.0),
                    (7.2, 40.0),
                ],
            ),
            (
                FillMode::Constant,
                &[
                    (-0.3, -1.0),
                    (0.0, 10.0),
                    (2.6, 36.0),
                    (3.0, 40.0),
                    (3.3, -1.0),
                ],
            ),
            (
                FillMode::Reflect,
                &[
                    (-5.5, 35.0),
                    (-4.0, 40.0),
                    (-3.0, 30.0),
                    (-1.5, 15.0),
                    (-0.3, 10.0),
                    (3.7, 40.0),
                    (4.5, 35.0),
                    (6.0, 20.0),
                    (7.2, 10.0),
                ],
            ),
            (
                FillMode::Wrap,
                &[
                    (-5.5, 15.0),
                    (-4.0, 30.0),
                    (-3.0, 40.0),
                    (-1.5, 25.0),
                    (-1.0, 30.0),
                    (-0.7, 33.0),
                    (-0.3, 37.0),
                    (3.3, 13.0),
                    (4.0, 20.0),
                    (4.5, 25.0),
                    (6.0, 10.0),
                    (7.2, 22.0),
                ],
            ),
        ];
        for (mode, points) in cases {
            for &(c, want) in *points {
                let got = at(c, *mode);
                assert!(
                    (got - want).abs() < 1e-3,
                    "{mode:?} at {c}: {got} != {want}"
                );
            }
        }
    }

    #[test]
    fn whole_pixel_shifts_fill_borders_per_mode() {
        // Output column j samples input column j + 2 (content moves two pixels left).
        let v = [10u8, 20, 30, 40, 50];
        assert_eq!(
            sample_row(&v, 2.0, FillMode::Nearest, 0.0),
            vec![30.0, 40.0, 50.0, 50.0, 50.0]
        );
        assert_eq!(
            sample_row(&v, 2.0, FillMode::Constant, 7.0),
            vec![30.0, 40.0, 50.0, 7.0, 7.0]
        );
        assert_eq!(
            sample_row(&v, 2.0, FillMode::Reflect, 0.0),
            vec![30.0, 40.0, 50.0, 50.0, 40.0]
        );
        // scipy wrap, period n - 1 = 4: coordinate 5 -> 1, 6 -> 2.
        assert_eq!(
            sample_row(&v, 2.0, FillMode::Wrap, 0.0),
            vec![30.0, 40.0, 50.0, 20.0, 30.0]
        );
        // And to the right (content moves right): coordinates -2, -1, 0, 1, 2.
        assert_eq!(
            sample_row(&v, -2.0, FillMode::Nearest, 0.0),
            vec![10.0, 10.0, 10.0, 20.0, 30.0]
        );
        assert_eq!(
            sample_row(&v, -2.0, FillMode::Constant, 7.0),
            vec![7.0, 7.0, 10.0, 20.0, 30.0]
        );
        assert_eq!(
            sample_row(&v, -2.0, FillMode::Reflect, 0.0),
            vec![20.0, 10.0, 10.0, 20.0, 30.0]
        );
        // Wrap: -2 -> 2, -1 -> 3.
        assert_eq!(
            sample_row(&v, -2.0, FillMode::Wrap, 0.0),
            vec![30.0, 40.0, 10.0, 20.0, 30.0]
        );
    }

    #[test]
    fn half_pixel_shift_interpolates() {
        let v = [10u8, 20, 30, 40];
        assert_eq!(
            sample_row(&v, 0.5, FillMode::Nearest, 0.0),
            vec![15.0, 25.0, 35.0, 40.0]
        );
        assert_eq!(
            sample_row(&v, 0.5, FillMode::Constant, 0.0),
            vec![15.0, 25.0, 35.0, 0.0]
        );
        assert_eq!(
            sample_row(&v, 0.5, FillMode::Reflect, 0.0),
            vec![15.0, 25.0, 35.0, 40.0]
        );
        assert_eq!(
            sample_row(&v, -0.5, FillMode::Reflect, 0.0),
            vec![10.0, 15.0, 25.0, 35.0]
        );
    }

    #[test]
    fn identity_map_is_bit_exact() {
        let (h, w) = (5, 7);
        let src: Vec<u8> = (0..h * w * 3).map(|i| (i * 37 % 256) as u8).collect();
        let map = Transform::identity().sampling_map(h as u32, w as u32);
        assert_eq!(map, AffineMap::IDENTITY);
        for mode in [
            FillMode::Nearest,
            FillMode::Constant,
            FillMode::Reflect,
            FillMode::Wrap,
        ] {
            let mut dst = vec![0u8; src.len()];
            warp_rgb_u8(&src, h, w, &map, Fill::new(mode, 0.0), &mut dst);
            assert_eq!(dst, src);
        }
    }

    #[test]
    fn flips_mirror_exactly() {
        let (h, w) = (4, 6);
        let src: Vec<u8> = (0..h * w * 3).map(|i| (i * 11 % 256) as u8).collect();
        let px =
            |buf: &[u8], r: usize, c: usize| buf[(r * w + c) * 3..(r * w + c) * 3 + 3].to_vec();
        let t = Transform {
            flip_horizontal: true,
            ..Transform::identity()
        };
        let mut dst = vec![0u8; src.len()];
        warp_rgb_u8(
            &src,
            h,
            w,
            &t.sampling_map(h as u32, w as u32),
            Fill::new(FillMode::Constant, 0.0),
            &mut dst,
        );
        for r in 0..h {
            for c in 0..w {
                assert_eq!(px(&dst, r, c), px(&src, r, w - 1 - c));
            }
        }
        let t = Transform {
            flip_vertical: true,
            flip_horizontal: true,
            ..Transform::identity()
        };
        warp_rgb_u8(
            &src,
            h,
            w,
            &t.sampling_map(h as u32, w as u32),
            Fill::new(FillMode::Constant, 0.0),
            &mut dst,
        );
        for r in 0..h {
            for c in 0..w {
                assert_eq!(px(&dst, r, c), px(&src, h - 1 - r, w - 1 - c));
            }
        }
    }

    #[test]
    fn keras_matrix_composition() {
        // A pure shift: input = output + (tx, ty), whatever the centre.
        let m = Transform {
            tx: 3.0,
            ty: -2.0,
            ..Transform::identity()
        }
        .sampling_map(10, 20);
        let (r, c) = m.apply(4.0, 5.0);
        assert!((r - 7.0).abs() < 1e-12 && (c - 3.0).abs() < 1e-12);
        // Zoom about Keras' centre (h/2 + 0.5, w/2 + 0.5) = (5.5, 10.5).
        let m = Transform {
            zx: 2.0,
            zy: 0.5,
            ..Transform::identity()
        }
        .sampling_map(10, 20);
        let (r, c) = m.apply(5.5, 10.5);
        assert!((r - 5.5).abs() < 1e-12 && (c - 10.5).abs() < 1e-12);
        let (r, c) = m.apply(6.5, 12.5);
        assert!((r - 7.5).abs() < 1e-12 && (c - 11.5).abs() < 1e-12);
        // A 90° rotation about the centre: output (o + (0, 1)) samples input o + (-1, 0).
        let m = Transform {
            theta: 90.0,
            ..Transform::identity()
        }
        .sampling_map(10, 20);
        let (r, c) = m.apply(5.5, 11.5);
        assert!((r - 4.5).abs() < 1e-12 && (c - 10.5).abs() < 1e-12);
        // Shear: input = (r - sin(s) * c', cos(s) * c') about the centre.
        let s = 30f64;
        let m = Transform {
            shear: s,
            ..Transform::identity()
        }
        .sampling_map(10, 20);
        let (r, c) = m.apply(5.5, 12.5);
        let (sn, cs) = s.to_radians().sin_cos();
        assert!((r - (5.5 - 2.0 * sn)).abs() < 1e-12);
        assert!((c - (10.5 + 2.0 * cs)).abs() < 1e-12);
    }

    /// The kernel without the interior fast path: every pixel through `axis_taps`.
    fn naive(src: &[u8], h: usize, w: usize, map: &AffineMap, fill: Fill) -> Vec<f32> {
        let mut out = Vec::with_capacity(h * w * 3);
        let m = map.matrix;
        let (a00, a01, a10, a11) = (
            m[0][0] as f32,
            m[0][1] as f32,
            m[1][0] as f32,
            m[1][1] as f32,
        );
        let (b0, b1) = (map.offset[0] as f32, map.offset[1] as f32);
        for r in 0..h {
            for c in 0..w {
                let ri = a01 * c as f32 + (a00 * r as f32 + b0);
                let ci = a11 * c as f32 + (a10 * r as f32 + b1);
                let v = match (axis_taps(ri, h, fill.mode), axis_taps(ci, w, fill.mode)) {
                    (Some((r0, r1, tr)), Some((c0, c1, tc))) => bilinear(
                        src,
                        [r0 * w + c0, r0 * w + c1, r1 * w + c0, r1 * w + c1],
                        tr,
                        tc,
                    ),
                    _ => [fill.cval; 3],
                };
                out.extend_from_slice(&v);
            }
        }
        out
    }

    #[test]
    fn interior_fast_path_matches_the_border_path() {
        use rand::Rng;
        let mut rng = crate::rng::stream(5, "test");
        for case in 0..300 {
            let h = rng.random_range(1..24usize);
            let w = rng.random_range(1..24usize);
            let src: Vec<u8> = (0..h * w * 3).map(|_| rng.random()).collect();
            let t = Transform {
                theta: if case % 3 == 0 {
                    0.0
                } else {
                    rng.random_range(-180.0..180.0)
                },
                tx: rng.random_range(-5.0..5.0),
                ty: if case % 5 == 0 {
                    0.0
                } else {
                    rng.random_range(-5.0..5.0)
                },
                shear: rng.random_range(-40.0..40.0),
                zx: rng.random_range(0.3..2.5),
                zy: rng.random_range(0.3..2.5),
                flip_horizontal: rng.random_bool(0.5),
                flip_vertical: rng.random_bool(0.5),
            };
            let map = t.sampling_map(h as u32, w as u32);
            let mode = [
                FillMode::Nearest,
                FillMode::Constant,
                FillMode::Reflect,
                FillMode::Wrap,
            ][case % 4];
            let fill = Fill::new(mode, 17.0);
            let mut planes = vec![0f32; 3 * h * w];
            warp_rgb_planes(&src, h, w, &map, fill, [(1.0, 0.0); 3], &mut planes);
            let want = naive(&src, h, w, &map, fill);
            for k in 0..h * w {
                for ch in 0..3 {
                    assert_eq!(
                        planes[ch * h * w + k],
                        want[k * 3 + ch],
                        "case {case}: {t:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn interior_span_is_exact() {
        for &(p, q, limit, width) in &[
            (-3.5f32, 0.7f32, 9.0f32, 20usize),
            (12.0, -0.9, 9.0, 20),
            (2.0, 0.0, 9.0, 5),
            (-2.0, 0.0, 9.0, 5),
            (0.0, 1.0, 4.0, 10),
            (4.0, -1.0, 4.0, 10),
            (1e-7, 1e-9, 1.0, 7),
        ] {
            let (lo, hi) = interior_span(p, q, limit, width);
            for c in 0..width {
                let v = q * c as f32 + p;
                let inside = v >= 0.0 && v < limit;
                assert_eq!(inside, (lo..hi).contains(&c), "p={p} q={q} c={c}");
            }
        }
    }
}
