//! The frozen (inference-only) channels-last path for MobileNet/EfficientNet-style networks.
//!
//! A [`FrozenSequence`] holds layers whose weights are constants, packed once: a strided
//! convolution ([`FrozenConv`], e.g. a stem), inverted-residual blocks ([`FrozenMbConv`]:
//! 1 × 1 expansion, depthwise `k × k`, 1 × 1 projection, optional residual) and 1 × 1
//! convolutions ([`FrozenPointwise`], e.g. a head). Between layers the activations stay
//! channels-last (NHWC): the input is read (or transposed) once, and the output transposed
//! back to NCHW, or global-average-pooled, once.
//!
//! Each image runs through the whole sequence on one thread (images in parallel), with all
//! working memory in the thread's scratch buffer. An inverted-residual block never
//! materialises its expanded map: the expansion of a few input rows at a time goes into a ring
//! of padded rows, the depthwise convolution reads the ring and writes a band of output rows,
//! and the projection (with bias and residual fused) writes the block's output from that band,
//! so the wide intermediate stays in L2.

use std::ops::Range;

use candle_core::{DType, Device, Result, Storage, Tensor, bail};
use rayon::prelude::*;

use crate::depthwise::row_nhwc;
use crate::isa::Isa;
use crate::padding::{PadRule, Padding};
use crate::rowgemm::{Panels, gemm_rows};
use crate::scratch::with_scratch;

/// The largest depthwise kernel side the frozen path accepts.
pub const MAX_KERNEL: usize = 15;
/// Target rows of the projection GEMM per band of output rows.
const BAND_PIXELS: usize = 32;
/// An expanded map at most this large (bytes) is kept whole instead of in a ring of rows.
const WHOLE_BYTES: usize = 256 << 10;

/// The values of `t` as a CPU `f32` vector.
fn host(t: &Tensor) -> Result<Vec<f32>> {
    t.to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()
}

/// Checks `bias` is `[n]` and returns its values.
fn bias_values(what: &str, bias: &Tensor, n: usize) -> Result<Vec<f32>> {
    if bias.dims() != [n] {
        bail!("{what}: bias has shape {:?}, expected [{n}]", bias.dims());
    }
    host(bias)
}

/// A frozen `k × k` convolution with stride, padding, bias and optional ReLU6 (im2col rows
/// times packed weights).
#[derive(Clone, Debug)]
pub struct FrozenConv {
    panels: Panels,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    pad: PadRule,
    relu6: bool,
}

impl FrozenConv {
    /// From an OIHW `weight` `[o, c, k, k]` and `bias` `[o]`.
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        pad: PadRule,
        relu6: bool,
    ) -> Result<Self> {
        let (o, c, kh, kw) = weight.dims4()?;
        if kh != kw || kh == 0 || stride == 0 {
            bail!(
                "frozen conv: weight {:?} must be [o, c, k, k] with k > 0, stride {stride} > 0",
                weight.dims()
            );
        }
        let w = host(weight)?;
        let b = bias_values("frozen conv", bias, o)?;
        let kk = c * kh * kw;
        Ok(Self {
            panels: Panels::new(kk, o, &b, |r, col| w[col * kk + r]),
            cin: c,
            cout: o,
            k: kh,
            stride,
            pad,
            relu6,
        })
    }

    fn out_size(&self, h: usize, w: usize) -> Option<(Padding, usize, usize)> {
        let p = self.pad.resolve(h, w, self.k, self.stride);
        let (ho, wo) = p.output_size(h, w, self.k, self.stride)?;
        Some((p, ho, wo))
    }

    /// Output rows per im2col band, and the band's floats.
    fn band(&self, ho: usize, wo: usize) -> (usize, usize) {
        let rows = BAND_PIXELS.div_ceil(wo).clamp(1, ho.max(1));
        (rows, rows * wo * self.cin * self.k * self.k)
    }
}

/// A frozen 1 × 1 convolution with bias and optional ReLU6.
#[derive(Clone, Debug)]
pub struct FrozenPointwise {
    panels: Panels,
    relu6: bool,
}

impl FrozenPointwise {
    /// From a weight `[o, c, 1, 1]` (or `[o, c]`) and `bias` `[o]`.
    pub fn new(weight: &Tensor, bias: &Tensor, relu6: bool) -> Result<Self> {
        let (o, c) = match *weight.dims() {
            [o, c, 1, 1] | [o, c] => (o, c),
            _ => bail!(
                "frozen pointwise: weight has shape {:?}, expected [o, c, 1, 1]",
                weight.dims()
            ),
        };
        let w = host(weight)?;
        let b = bias_values("frozen pointwise", bias, o)?;
        Ok(Self {
            panels: Panels::new(c, o, &b, |r, col| w[col * c + r]),
            relu6,
        })
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.panels.k()
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.panels.n()
    }
}

/// A frozen depthwise `k × k` convolution with stride, padding, bias and optional ReLU6.
#[derive(Clone, Debug)]
pub struct FrozenDepthwise {
    /// `[k·k][c]`: one weight vector across channels per tap.
    weight: Vec<f32>,
    bias: Vec<f32>,
    c: usize,
    k: usize,
    stride: usize,
    pad: PadRule,
    relu6: bool,
}

impl FrozenDepthwise {
    /// From a weight `[c, 1, k, k]` and `bias` `[c]`; `k` at most [`MAX_KERNEL`].
    pub fn new(
        weight: &Tensor,
        bias: &Tensor,
        stride: usize,
        pad: PadRule,
        relu6: bool,
    ) -> Result<Self> {
        let (c, one, kh, kw) = weight.dims4()?;
        if one != 1 || kh != kw || kh == 0 || kh > MAX_KERNEL || stride == 0 {
            bail!(
                "frozen depthwise: weight has shape {:?}, expected [c, 1, k, k] with 0 < k ≤ {MAX_KERNEL} (stride {stride} > 0)",
                weight.dims()
            );
        }
        let w = host(weight)?;
        let kk = kh * kw;
        let mut weight = vec![0.0f32; kk * c];
        for ch in 0..c {
            for t in 0..kk {
                weight[t * c + ch] = w[ch * kk + t];
            }
        }
        Ok(Self {
            weight,
            bias: bias_values("frozen depthwise", bias, c)?,
            c,
            k: kh,
            stride,
            pad,
            relu6,
        })
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.c
    }
}

/// A frozen inverted-residual block: optional 1 × 1 expansion, depthwise convolution, 1 × 1
/// projection, and the input added to the output when `residual`.
#[derive(Clone, Debug)]
pub struct FrozenMbConv {
    expand: Option<FrozenPointwise>,
    depthwise: FrozenDepthwise,
    project: FrozenPointwise,
    residual: bool,
}

/// How an inverted-residual block runs on one input size.
struct MbPlan {
    pad: Padding,
    ho: usize,
    wo: usize,
    wp: usize,
    band: usize,
    ring: usize,
}

impl MbPlan {
    fn work(&self, e: usize) -> usize {
        (1 + self.ring) * self.wp * e + self.band * self.wo * e
    }
}

impl FrozenMbConv {
    /// Checks that the channels chain (`expand` to the depthwise channels, those to
    /// `project`'s input) and that a residual block keeps its shape (stride 1, in = out).
    pub fn new(
        expand: Option<FrozenPointwise>,
        depthwise: FrozenDepthwise,
        project: FrozenPointwise,
        residual: bool,
    ) -> Result<Self> {
        let e = depthwise.c;
        if let Some(x) = expand.as_ref().filter(|x| x.out_channels() != e) {
            bail!(
                "frozen block: expansion to {} channels, depthwise over {e}",
                x.out_channels()
            );
        }
        if project.in_channels() != e {
            bail!(
                "frozen block: projection from {} channels, depthwise gives {e}",
                project.in_channels()
            );
        }
        let blk = Self {
            expand,
            depthwise,
            project,
            residual,
        };
        if residual && (blk.depthwise.stride != 1 || blk.in_channels() != blk.out_channels()) {
            bail!(
                "frozen block: a residual needs stride 1 and as many output channels as input channels"
            );
        }
        Ok(blk)
    }

    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.expand
            .as_ref()
            .map_or(self.depthwise.c, |x| x.in_channels())
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.project.out_channels()
    }

    fn plan(&self, h: usize, w: usize) -> Option<MbPlan> {
        let d = &self.depthwise;
        let pad = d.pad.resolve(h, w, d.k, d.stride);
        let (ho, wo) = pad.output_size(h, w, d.k, d.stride)?;
        let wp = w + pad.left + pad.right;
        let band = BAND_PIXELS.div_ceil(wo).clamp(1, ho);
        let rows = (band - 1) * d.stride + d.k;
        let whole = h * wp * d.c * 4 <= WHOLE_BYTES || rows >= h;
        Some(MbPlan {
            pad,
            ho,
            wo,
            wp,
            band,
            ring: if whole { h.max(rows) } else { rows },
        })
    }
}

/// One layer of a [`FrozenSequence`].
#[derive(Clone, Debug)]
pub enum FrozenLayer {
    /// A strided `k × k` convolution.
    Conv(FrozenConv),
    /// An inverted-residual block.
    MbConv(FrozenMbConv),
    /// A 1 × 1 convolution.
    Pointwise(FrozenPointwise),
}

impl FrozenLayer {
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        match self {
            FrozenLayer::Conv(c) => c.cin,
            FrozenLayer::MbConv(b) => b.in_channels(),
            FrozenLayer::Pointwise(p) => p.in_channels(),
        }
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        match self {
            FrozenLayer::Conv(c) => c.cout,
            FrozenLayer::MbConv(b) => b.out_channels(),
            FrozenLayer::Pointwise(p) => p.out_channels(),
        }
    }

    /// The output `(h, w)` for an `h × w` input, `None` when the input is too small.
    pub fn output_size(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        match self {
            FrozenLayer::Conv(c) => c.out_size(h, w).map(|(_, ho, wo)| (ho, wo)),
            FrozenLayer::MbConv(b) => b.plan(h, w).map(|p| (p.ho, p.wo)),
            FrozenLayer::Pointwise(_) => (h > 0 && w > 0).then_some((h, w)),
        }
    }

    /// Floats of working memory (besides input and output) for an `h × w` input.
    fn work(&self, h: usize, w: usize) -> usize {
        match self {
            FrozenLayer::Conv(c) => c.out_size(h, w).map_or(0, |(_, ho, wo)| c.band(ho, wo).1),
            FrozenLayer::MbConv(b) => b.plan(h, w).map_or(0, |p| p.work(b.depthwise.c)),
            FrozenLayer::Pointwise(_) => 0,
        }
    }
}

/// A chain of frozen layers run channels-last; see the module documentation.
#[derive(Clone, Debug)]
pub struct FrozenSequence {
    layers: Vec<FrozenLayer>,
}

/// The form of a sequence's output.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Output {
    Nchw,
    Pooled,
}

impl FrozenSequence {
    /// The layers, checking that each one's input channels are the previous one's output.
    pub fn new(layers: Vec<FrozenLayer>) -> Result<Self> {
        for (i, pair) in layers.windows(2).enumerate() {
            if pair[0].out_channels() != pair[1].in_channels() {
                bail!(
                    "frozen sequence: layer {i} gives {} channels, layer {} takes {}",
                    pair[0].out_channels(),
                    i + 1,
                    pair[1].in_channels()
                );
            }
        }
        Ok(Self { layers })
    }

    /// The layers.
    pub fn layers(&self) -> &[FrozenLayer] {
        &self.layers
    }

    /// The output `(c, h, w)` of layers `range` on an `h × w` input, `None` when the range is
    /// empty or out of bounds, or the input too small.
    pub fn output_shape(
        &self,
        range: Range<usize>,
        h: usize,
        w: usize,
    ) -> Option<(usize, usize, usize)> {
        let layers = self.layers.get(range)?;
        let last = layers.last()?;
        let (mut h, mut w) = (h, w);
        for l in layers {
            (h, w) = l.output_size(h, w)?;
        }
        Some((last.out_channels(), h, w))
    }

    /// Runs layers `range` on `x` `[n, c, h, w]` (CPU, `f32`); returns `[n, c', h', w']`.
    pub fn forward(&self, x: &Tensor, range: Range<usize>) -> Result<Tensor> {
        self.run(x, range, Output::Nchw)
    }

    /// Runs layers `range` on `x` `[n, c, h, w]` (CPU, `f32`) and global-average-pools the
    /// result: `[n, c']`.
    pub fn forward_pooled(&self, x: &Tensor, range: Range<usize>) -> Result<Tensor> {
        self.run(x, range, Output::Pooled)
    }

    fn run(&self, x: &Tensor, range: Range<usize>, output: Output) -> Result<Tensor> {
        let (n, c, h, w) = x.dims4()?;
        if !x.device().is_cpu() || x.dtype() != DType::F32 {
            bail!("frozen sequence: the input must be an f32 tensor on the CPU");
        }
        let Some(layers) = self.layers.get(range.clone()).filter(|l| !l.is_empty()) else {
            bail!(
                "frozen sequence: layers {range:?} out of 0..{}",
                self.layers.len()
            );
        };
        if layers[0].in_channels() != c {
            bail!(
                "frozen sequence: input has {c} channels, layer {} takes {}",
                range.start,
                layers[0].in_channels()
            );
        }
        // Shapes at every boundary, and the largest activation and working memory.
        let mut shapes = vec![(c, h, w)];
        let (mut max_act, mut max_work) = (c * h * w, 0);
        for (i, l) in layers.iter().enumerate() {
            let (_, hh, ww) = shapes[i];
            let Some((ho, wo)) = l.output_size(hh, ww) else {
                bail!(
                    "frozen sequence: a {h}×{w} input is too small for layer {}",
                    range.start + i
                );
            };
            max_work = max_work.max(l.work(hh, ww));
            shapes.push((l.out_channels(), ho, wo));
            max_act = max_act.max(l.out_channels() * ho * wo);
        }
        let (co, ho, wo) = shapes[layers.len()];
        let per_image = match output {
            Output::Nchw => co * ho * wo,
            Output::Pooled => co,
        };
        let isa = Isa::detect();
        let x = x.contiguous()?;
        let (storage, layout) = x.storage_and_layout();
        let data = match &*storage {
            Storage::Cpu(candle_core::CpuStorage::F32(v)) => {
                &v[layout.start_offset()..][..n * c * h * w]
            }
            _ => bail!("frozen sequence: the input must be an f32 tensor on the CPU"),
        };
        let mut out = vec![0.0f32; n * per_image];
        if per_image > 0 {
            out.par_chunks_mut(per_image)
                .enumerate()
                .for_each(|(img, dst)| {
                    let src = &data[img * c * h * w..(img + 1) * c * h * w];
                    with_scratch(2 * max_act + max_work, |buf| {
                        let (a, rest) = buf.split_at_mut(max_act);
                        let (b, work) = rest.split_at_mut(max_act);
                        run_image(isa, layers, &shapes, src, a, b, work, dst, output);
                    });
                });
        }
        drop(storage);
        match output {
            Output::Nchw => Tensor::from_vec(out, (n, co, ho, wo), &Device::Cpu),
            Output::Pooled => Tensor::from_vec(out, (n, co), &Device::Cpu),
        }
    }
}

/// Runs `layers` on one NCHW image `src` (shapes at each boundary in `shapes`) with the
/// ping-pong buffers `a`, `b` and working memory `work`, writing NCHW or pooled into `dst`.
#[allow(clippy::too_many_arguments)]
fn run_image(
    isa: Isa,
    layers: &[FrozenLayer],
    shapes: &[(usize, usize, usize)],
    src: &[f32],
    a: &mut [f32],
    b: &mut [f32],
    work: &mut [f32],
    dst: &mut [f32],
    output: Output,
) {
    let (mut cur, mut nxt) = (a, b);
    let mut first = 0;
    // A leading convolution reads the NCHW image directly; anything else wants it channels-last.
    if let FrozenLayer::Conv(cv) = &layers[0] {
        let (c, h, w) = shapes[0];
        conv_image(isa, cv, src, true, c, h, w, cur, work);
        first = 1;
    } else {
        let (c, h, w) = shapes[0];
        transpose(src, c, h * w, &mut cur[..c * h * w]);
    }
    for (i, l) in layers.iter().enumerate().skip(first) {
        let (c, h, w) = shapes[i];
        let x = &cur[..c * h * w];
        match l {
            FrozenLayer::Conv(cv) => conv_image(isa, cv, x, false, c, h, w, nxt, work),
            FrozenLayer::MbConv(blk) => mbconv_image(isa, blk, x, h, w, nxt, work),
            FrozenLayer::Pointwise(pw) => {
                let co = pw.out_channels();
                let y = nxt.as_mut_ptr();
                // SAFETY: `x` holds h·w rows of c floats, `nxt` h·w rows of co floats.
                unsafe {
                    gemm_rows(
                        isa,
                        h * w,
                        &pw.panels,
                        pw.relu6,
                        |p| x[p * c..].as_ptr(),
                        |p| y.add(p * co),
                        None,
                    )
                };
            }
        }
        (cur, nxt) = (nxt, cur);
    }
    let (c, h, w) = shapes[layers.len()];
    let hw = h * w;
    match output {
        Output::Nchw => {
            for ch in 0..c {
                for p in 0..hw {
                    dst[ch * hw + p] = cur[p * c + ch];
                }
            }
        }
        Output::Pooled => {
            dst.fill(0.0);
            for p in 0..hw {
                for (d, &v) in dst.iter_mut().zip(&cur[p * c..(p + 1) * c]) {
                    *d += v;
                }
            }
            let scale = 1.0 / hw as f32;
            for d in dst.iter_mut() {
                *d *= scale;
            }
        }
    }
}

/// `dst[p·c + ch] = src[ch·hw + p]` (planes to channels-last).
fn transpose(src: &[f32], c: usize, hw: usize, dst: &mut [f32]) {
    const B: usize = 16;
    for c0 in (0..c).step_by(B) {
        for p0 in (0..hw).step_by(B) {
            for ch in c0..(c0 + B).min(c) {
                for p in p0..(p0 + B).min(hw) {
                    dst[p * c + ch] = src[ch * hw + p];
                }
            }
        }
    }
}

/// A strided convolution of one image `x` (NCHW planes when `nchw`, else channels-last) into
/// channels-last `y`, by bands of im2col rows.
#[allow(clippy::too_many_arguments)]
fn conv_image(
    isa: Isa,
    cv: &FrozenConv,
    x: &[f32],
    nchw: bool,
    c: usize,
    h: usize,
    w: usize,
    y: &mut [f32],
    work: &mut [f32],
) {
    let Some((pad, ho, wo)) = cv.out_size(h, w) else {
        return;
    };
    let (k, s) = (cv.k, cv.stride);
    let kk = c * k * k;
    let (band, len) = cv.band(ho, wo);
    let cols = &mut work[..len];
    let at = |ci: usize, ih: usize, iw: usize| {
        if nchw {
            x[(ci * h + ih) * w + iw]
        } else {
            x[(ih * w + iw) * c + ci]
        }
    };
    let yp = y.as_mut_ptr();
    for oh0 in (0..ho).step_by(band) {
        let rows = band.min(ho - oh0);
        for q in 0..rows {
            let oh = oh0 + q;
            for ow in 0..wo {
                let row = &mut cols[(q * wo + ow) * kk..(q * wo + ow + 1) * kk];
                for ci in 0..c {
                    for i in 0..k {
                        let ih = (oh * s + i).wrapping_sub(pad.top);
                        for j in 0..k {
                            let iw = (ow * s + j).wrapping_sub(pad.left);
                            row[(ci * k + i) * k + j] = if ih < h && iw < w {
                                at(ci, ih, iw)
                            } else {
                                0.0
                            };
                        }
                    }
                }
            }
        }
        let cp = cols.as_ptr();
        // SAFETY: `cols` holds rows·wo rows of kk floats; `y` holds ho·wo rows of cout floats.
        unsafe {
            gemm_rows(
                isa,
                rows * wo,
                &cv.panels,
                cv.relu6,
                |p| cp.add(p * kk),
                |p| yp.add((oh0 * wo + p) * cv.cout),
                None,
            )
        };
    }
}

/// One inverted-residual block on one channels-last image `x` (`h × w`) into `y`.
fn mbconv_image(
    isa: Isa,
    blk: &FrozenMbConv,
    x: &[f32],
    h: usize,
    w: usize,
    y: &mut [f32],
    work: &mut [f32],
) {
    let Some(plan) = blk.plan(h, w) else {
        return;
    };
    let d = &blk.depthwise;
    let (cin, e, cout) = (blk.in_channels(), d.c, blk.out_channels());
    let (k, s) = (d.k, d.stride);
    let (wp, ring_rows) = (plan.wp, plan.ring);
    let row_len = wp * e;
    let (zero, rest) = work.split_at_mut(row_len);
    zero.fill(0.0);
    let (ring, rest) = rest.split_at_mut(ring_rows * row_len);
    let dbuf = &mut rest[..plan.band * plan.wo * e];
    let (pl, pt) = (plan.pad.left, plan.pad.top);
    for slot in ring.chunks_exact_mut(row_len) {
        slot[..pl * e].fill(0.0);
        slot[(pl + w) * e..].fill(0.0);
    }
    let ringp = ring.as_mut_ptr();
    let zp = zero.as_ptr();
    let dp = dbuf.as_mut_ptr();
    let yp = y.as_mut_ptr();
    let xp = x.as_ptr();
    let mut next = 0usize;
    for oh0 in (0..plan.ho).step_by(plan.band) {
        let rows = plan.band.min(plan.ho - oh0);
        // The last input row this band reads, if any.
        let last = ((oh0 + rows - 1) * s + k - 1)
            .checked_sub(pt)
            .map(|r| r.min(h - 1));
        if let Some(last) = last.filter(|&l| l >= next) {
            let (r0, m) = (next, (last + 1 - next) * w);
            let slot = |p: usize| {
                let r = r0 + p / w;
                // SAFETY: slot `r % ring_rows` has row_len floats; column pl + p % w < wp.
                unsafe { ringp.add((r % ring_rows) * row_len + (pl + p % w) * e) }
            };
            match &blk.expand {
                // SAFETY: x holds h·w rows of cin floats; each ring pixel e floats.
                Some(pw) => unsafe {
                    gemm_rows(
                        isa,
                        m,
                        &pw.panels,
                        pw.relu6,
                        |p| xp.add((r0 * w + p) * cin),
                        slot,
                        None,
                    )
                },
                None => {
                    for r in r0..=last {
                        // SAFETY: a row of w·cin floats into a ring row's interior (cin = e).
                        unsafe {
                            std::ptr::copy_nonoverlapping(
                                xp.add(r * w * cin),
                                slot((r - r0) * w),
                                w * cin,
                            )
                        };
                    }
                }
            }
            next = last + 1;
        }
        let mut taps = [zp; MAX_KERNEL];
        for q in 0..rows {
            let oh = oh0 + q;
            for (i, t) in taps.iter_mut().enumerate().take(k) {
                *t = match (oh * s + i).checked_sub(pt) {
                    // SAFETY: the ring holds this row (the band's rows fit in the ring).
                    Some(ih) if ih < h => unsafe {
                        ringp.add((ih % ring_rows) * row_len) as *const f32
                    },
                    _ => zp,
                };
            }
            // SAFETY: each tap row is a padded row of wp ≥ (wo - 1)·s + k pixels of e floats;
            // the band buffer holds `rows` output rows.
            unsafe {
                row_nhwc(
                    isa,
                    &taps[..k],
                    k,
                    s,
                    e,
                    plan.wo,
                    d.weight.as_ptr(),
                    d.bias.as_ptr(),
                    dp.add(q * plan.wo * e),
                    d.relu6,
                )
            };
        }
        let base = oh0 * plan.wo;
        let res = |p: usize| xp.wrapping_add((base + p) * cin);
        let pw = &blk.project;
        // SAFETY: the band holds rows·wo rows of e floats; y holds ho·wo rows of cout floats;
        // a residual block has the same shape in and out.
        unsafe {
            gemm_rows(
                isa,
                rows * plan.wo,
                &pw.panels,
                pw.relu6,
                |p| dp.add(p * e),
                |p| yp.add((base + p) * cout),
                if blk.residual { Some(&res) } else { None },
            )
        };
    }
}
