//! Grad-CAM ("where the model looked"): which regions of a photo raised the score of a class.
//!
//! Selvaraju et al.'s recipe on the last feature map `A` `[N, C, h, w]` of a classifier:
//! the score `y` of the class is its pre-softmax logit (for a one-unit sigmoid model, the
//! logit for the second class and its negation for the first); `α_k` is the spatial mean of
//! `∂y / ∂A_k`; the map is `ReLU(Σ_k α_k A_k)`, `[h, w]`. The gradient is taken by candle's
//! autograd with the map as a detached [`Var`], through the rest of the network in evaluation
//! mode (dropout off): the global pool where the backbone has one, then the top model.
//!
//! - [`Classifier::grad_cam`] explains a top model or a fine-tuned model on VGG16 (the map is
//!   block 5's output, [`Backbone::features`]) or EfficientNet-Lite0 (the head convolution's
//!   output before the pool, [`crate::EfficientNetLite0::head_map`]); the hub backbones give
//!   pooled features only and answer [`ModelError::GradCam`], as does [`Model::grad_cam`] for
//!   the small convnet, which has no backbone.
//! - [`grad_cam_tensors`] is the computation on any map and any differentiable rest.
//! - [`GradCam`] is one image's map: [`GradCam::upsampled`] (bilinear) and [`overlay`] (a
//!   jet colour map blended over the photo) draw it.

use candle_core::{D, Tensor, Var};
use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::backbone::{Backbone, BackboneKind, Classifier, Head};
use crate::error::{ModelError, Result};
use crate::network::Network;
use crate::spec::Model;

/// One image's Grad-CAM: `height × width` non-negative values, row-major (row `y` is
/// `values[y * width..(y + 1) * width]`), in the units of the class score per unit of
/// activation (only their ratios mean anything; [`GradCam::normalized`] scales them to 0..=1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GradCam {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height · width` values, row-major.
    pub values: Vec<f32>,
}

impl GradCam {
    /// A map from its values; an error when their number is not `height · width` or the map is
    /// empty.
    pub fn new(height: usize, width: usize, values: Vec<f32>) -> Result<Self> {
        if height == 0 || width == 0 || values.len() != height * width {
            return Err(ModelError::GradCam(format!(
                "a {height}×{width} map needs {} values, got {}",
                height * width,
                values.len()
            )));
        }
        Ok(Self {
            height,
            width,
            values,
        })
    }

    /// Whether `values` has `height · width` entries and the map is not empty (a map read from
    /// a file may not).
    pub fn is_valid(&self) -> bool {
        self.height > 0 && self.width > 0 && self.values.len() == self.height * self.width
    }

    /// The value at row `y`, column `x`.
    ///
    /// # Panics
    /// When `(y, x)` is outside the map.
    pub fn get(&self, y: usize, x: usize) -> f32 {
        assert!(
            y < self.height && x < self.width,
            "({y}, {x}) outside the map"
        );
        self.values[y * self.width + x]
    }

    /// The largest value (0 for an all-zero map; non-finite values are ignored).
    pub fn max(&self) -> f32 {
        self.values
            .iter()
            .copied()
            .filter(|v| v.is_finite())
            .fold(0.0, f32::max)
    }

    /// Where the largest value is, `(row, column)` (the first one in row-major order).
    pub fn peak(&self) -> (usize, usize) {
        let mut best: Option<(usize, f32)> = None;
        for (i, &v) in self.values.iter().enumerate() {
            if v.is_finite() && best.is_none_or(|(_, b)| v > b) {
                best = Some((i, v));
            }
        }
        let i = best.map_or(0, |(i, _)| i);
        (i / self.width.max(1), i % self.width.max(1))
    }

    /// Whether no value is positive: the class's score rises nowhere with the activations.
    pub fn is_zero(&self) -> bool {
        self.max() <= 0.0
    }

    /// The map divided by its largest value (0..=1); an all-zero map stays all zero.
    /// Non-finite values become 0.
    pub fn normalized(&self) -> GradCam {
        let max = self.max();
        let scale = if max > 0.0 { 1.0 / max } else { 0.0 };
        GradCam {
            height: self.height,
            width: self.width,
            values: self
                .values
                .iter()
                .map(|v| {
                    if v.is_finite() {
                        (v * scale).max(0.0)
                    } else {
                        0.0
                    }
                })
                .collect(),
        }
    }

    /// The map resized to `height × width` by bilinear interpolation with pixel centres
    /// aligned (as PyTorch's `interpolate(mode="bilinear", align_corners=False)` and
    /// OpenCV's `resize` do: a value sits at the centre of its cell, and the border cells'
    /// values extend to the edges). A `0 × 0` target gives an empty map.
    pub fn upsampled(&self, height: usize, width: usize) -> GradCam {
        let (h, w) = (self.height, self.width);
        let mut values = Vec::with_capacity(height * width);
        if h == 0 || w == 0 || self.values.len() != h * w {
            values.resize(height * width, 0.0);
            return GradCam {
                height,
                width,
                values,
            };
        }
        // For each target coordinate: the two source cells and the weight of the second.
        let taps = |out: usize, inp: usize| -> Vec<(usize, usize, f32)> {
            let scale = inp as f32 / out as f32;
            (0..out)
                .map(|i| {
                    let src = ((i as f32 + 0.5) * scale - 0.5).clamp(0.0, (inp - 1) as f32);
                    let lo = src.floor() as usize;
                    let hi = (lo + 1).min(inp - 1);
                    (lo, hi, src - lo as f32)
                })
                .collect()
        };
        let rows = taps(height, h);
        let cols = taps(width, w);
        let v = |y: usize, x: usize| self.values[y * w + x];
        for &(y0, y1, fy) in &rows {
            for &(x0, x1, fx) in &cols {
                let top = v(y0, x0) * (1.0 - fx) + v(y0, x1) * fx;
                let bottom = v(y1, x0) * (1.0 - fx) + v(y1, x1) * fx;
                values.push(top * (1.0 - fy) + bottom * fy);
            }
        }
        GradCam {
            height,
            width,
            values,
        }
    }
}

/// How much of the colour map [`overlay`] blends over the photo when not told otherwise.
pub const OVERLAY_ALPHA: f32 = 0.45;

/// The jet-like colour of `t` in 0..=1 (clamped): dark blue, blue, cyan, yellow, red, dark red.
pub fn jet(t: f32) -> Rgb<u8> {
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let channel = |centre: f32| {
        let v = (1.5 - (4.0 * t - centre).abs()).clamp(0.0, 1.0);
        (v * 255.0).round() as u8
    };
    Rgb([channel(3.0), channel(2.0), channel(1.0)])
}

/// `photo` with `cam` drawn over it: the map upsampled (bilinear) to the photo's size,
/// normalised to its largest value, coloured by [`jet`] and blended in with weight `alpha`
/// (0: the photo, 1: the colours only; [`OVERLAY_ALPHA`] is a good default). An all-zero map
/// (the class's score rises nowhere) leaves the photo as it is.
pub fn overlay(photo: &RgbImage, cam: &GradCam, alpha: f32) -> RgbImage {
    let (w, h) = photo.dimensions();
    if cam.is_zero() || w == 0 || h == 0 || !cam.is_valid() {
        return photo.clone();
    }
    let alpha = if alpha.is_finite() {
        alpha.clamp(0.0, 1.0)
    } else {
        OVERLAY_ALPHA
    };
    let heat = cam.normalized().upsampled(h as usize, w as usize);
    let mut out = photo.clone();
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let colour = jet(heat.values[y as usize * w as usize + x as usize]);
        for (p, c) in pixel.0.iter_mut().zip(colour.0) {
            *p = (f32::from(*p) * (1.0 - alpha) + f32::from(c) * alpha).round() as u8;
        }
    }
    out
}

/// The tensors of a Grad-CAM computation on a batch.
#[derive(Debug, Clone)]
pub struct CamTensors {
    /// The channel weights `α` `[N, C]`: the spatial mean of the score's gradient.
    pub weights: Tensor,
    /// The maps `ReLU(Σ_k α_k A_k)` `[N, h, w]`.
    pub cams: Tensor,
}

impl CamTensors {
    /// One [`GradCam`] per image.
    pub fn maps(&self) -> Result<Vec<GradCam>> {
        let (_, h, w) = self.cams.dims3()?;
        self.cams
            .flatten_from(1)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec2::<f32>()?
            .into_iter()
            .map(|values| GradCam::new(h, w, values))
            .collect()
    }
}

/// The score Grad-CAM differentiates, per image `[N]`, from logits `[N, units]`: the logit of
/// `class` for a softmax model; for a one-unit (sigmoid) model the logit for class 1 and its
/// negation for class 0.
pub fn class_score(logits: &Tensor, class: usize) -> Result<Tensor> {
    let (_, units) = logits.dims2()?;
    match units {
        1 if class == 0 => Ok(logits.squeeze(1)?.neg()?),
        1 if class == 1 => Ok(logits.squeeze(1)?),
        1 => Err(ModelError::GradCam(format!(
            "class {class} out of range: the model has 2 classes (one sigmoid output)"
        ))),
        u if class < u => Ok(logits.narrow(1, class, 1)?.squeeze(1)?),
        u => Err(ModelError::GradCam(format!(
            "class {class} out of range: the model has {u} classes"
        ))),
    }
}

/// Grad-CAM of `class` on the feature maps `map` `[N, C, h, w]`, where `rest` maps the feature
/// maps to logits `[N, units]` image by image (the network after the map, in evaluation
/// mode). `map` is detached: nothing before it is differentiated.
pub fn grad_cam_tensors(
    map: &Tensor,
    class: usize,
    rest: impl FnOnce(&Tensor) -> candle_core::Result<Tensor>,
) -> Result<CamTensors> {
    let (n, c, _, _) = map.dims4().map_err(|_| {
        ModelError::GradCam(format!(
            "expected feature maps [N, C, h, w], got {:?}",
            map.dims()
        ))
    })?;
    let var = Var::from_tensor(&map.detach())?;
    let a = var.as_tensor();
    let logits = rest(a)?;
    if logits.dim(0)? != n {
        return Err(ModelError::GradCam(format!(
            "the network gave logits {:?} for {n} feature maps",
            logits.dims()
        )));
    }
    let score = class_score(&logits, class)?;
    // Each image's score depends on its own map only, so one backward pass of the sum gives
    // every image's gradient.
    let grads = score.sum_all()?.backward()?;
    let weights = match grads.get(a) {
        Some(g) => g.mean((2, 3))?,
        // The score does not depend on the map at all.
        None => Tensor::zeros((n, c), a.dtype(), a.device())?,
    };
    let a = a.detach();
    let cams = a
        .broadcast_mul(&weights.unsqueeze(D::Minus1)?.unsqueeze(D::Minus1)?)?
        .sum(1)?
        .relu()?;
    Ok(CamTensors { weights, cams })
}

/// Whether a backbone's features are the global mean of its last feature map (the top model
/// then sees the pooled map).
fn pools_feature_map(kind: BackboneKind) -> bool {
    match kind {
        BackboneKind::Vgg16 => false,
        BackboneKind::EfficientNetLite0 | BackboneKind::ConvNextTiny | BackboneKind::ResNet50 => {
            true
        }
    }
}

impl Classifier {
    /// `Ok` when [`Classifier::grad_cam`] can explain this model; for the hub backbones, whose
    /// networks give pooled features only, the error it would give.
    pub fn check_grad_cam(&self) -> Result<()> {
        match self.backbone() {
            Backbone::Hub(h) => Err(crate::backbone::grad_cam_unsupported(h.model().kind())),
            Backbone::Vgg16(_) | Backbone::EfficientNetLite0(_) => Ok(()),
        }
    }

    /// Whether [`Classifier::grad_cam`] can explain this model (see
    /// [`Classifier::check_grad_cam`]).
    pub fn supports_grad_cam(&self) -> bool {
        self.check_grad_cam().is_ok()
    }

    /// Grad-CAM of `class` (an index into the model's classes) for preprocessed images `x`
    /// `[N, 3, H, W]`, as tensors (see [`grad_cam_tensors`]). The map is the last feature map
    /// before the top model: with [`Head::Top`] the backbone's ([`Backbone::feature_map`]),
    /// with [`Head::Finetune`] the fine-tuned tail's on the frozen part's output.
    pub fn grad_cam_tensors(&self, x: &Tensor, class: usize) -> Result<CamTensors> {
        self.check_grad_cam()?;
        let backbone = self.backbone();
        let (map, top) = match self.head() {
            Head::Top(top) => (backbone.feature_map(x)?, top),
            Head::Finetune(net) => (net.tail().feature_map(&backbone.frozen(x)?)?, net.top()),
        };
        let pool = pools_feature_map(backbone.kind());
        grad_cam_tensors(&map, class, |a| {
            if pool {
                top.forward_eval(&a.mean((2, 3))?)
            } else {
                top.forward_eval(a)
            }
        })
    }

    /// Grad-CAM of `class` for each of the preprocessed images `x` `[N, 3, H, W]`: one map
    /// per image, of the last feature map's size (VGG16: H/32 × W/32; EfficientNet-Lite0:
    /// H/32 × W/32 rounded up). An error for the hub backbones ([`ModelError::GradCam`]).
    pub fn grad_cam(&self, x: &Tensor, class: usize) -> Result<Vec<GradCam>> {
        self.grad_cam_tensors(x, class)?.maps()
    }
}

impl Model {
    /// `Ok` when [`Model::grad_cam`] can explain this model (a top or fine-tuned model on
    /// VGG16 or EfficientNet-Lite0); otherwise the error it would give.
    pub fn check_grad_cam(&self) -> Result<()> {
        match self {
            Model::SmallCnn(_) => Err(ModelError::GradCam(
                "not available for the small convnet (small_cnn): Grad-CAM here explains the \
                 last feature map of a pretrained backbone (a top or fine-tuned model on vgg16 \
                 or efficientnet_lite0), and this model has no backbone"
                    .into(),
            )),
            Model::Pretrained(c) => c.check_grad_cam(),
        }
    }

    /// Whether [`Model::grad_cam`] can explain this model (see [`Model::check_grad_cam`]).
    pub fn supports_grad_cam(&self) -> bool {
        self.check_grad_cam().is_ok()
    }

    /// Grad-CAM of `class` for each of the preprocessed images `x` (see
    /// [`Classifier::grad_cam`]). An error ([`ModelError::GradCam`]) for the small convnet,
    /// which has no pretrained backbone, and for the hub backbones.
    pub fn grad_cam(&self, x: &Tensor, class: usize) -> Result<Vec<GradCam>> {
        self.check_grad_cam()?;
        match self {
            Model::SmallCnn(_) => unreachable!("refused by check_grad_cam"),
            Model::Pretrained(c) => c.grad_cam(x, class),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsampling_keeps_a_constant_map_and_interpolates_between_centres() {
        let flat = GradCam::new(2, 2, vec![3.0; 4]).unwrap();
        assert!(
            flat.upsampled(5, 7)
                .values
                .iter()
                .all(|v| (v - 3.0).abs() < 1e-6)
        );
        // 1×2 → 1×4: centres of the source cells at 0.5 and 1.5 in source units; the target
        // centres at 0.25, 0.75, 1.25, 1.75 → clamped at the borders, halfway inside.
        let ramp = GradCam::new(1, 2, vec![0.0, 1.0]).unwrap();
        let up = ramp.upsampled(1, 4);
        let want = [0.0, 0.25, 0.75, 1.0];
        for (g, w) in up.values.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{:?}", up.values);
        }
        // Same size: unchanged.
        let m = GradCam::new(2, 3, vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        assert_eq!(m.upsampled(2, 3), m);
    }

    #[test]
    fn a_map_checks_its_length_and_finds_its_peak() {
        assert!(GradCam::new(2, 2, vec![0.0; 3]).is_err());
        assert!(GradCam::new(0, 2, vec![]).is_err());
        let m = GradCam::new(2, 3, vec![0.0, 1.0, 0.5, 2.0, f32::NAN, 0.0]).unwrap();
        assert_eq!(m.peak(), (1, 0));
        assert_eq!(m.max(), 2.0);
        assert_eq!(m.get(0, 2), 0.5);
        assert_eq!(m.normalized().values, [0.0, 0.5, 0.25, 1.0, 0.0, 0.0]);
        let zero = GradCam::new(1, 2, vec![0.0, 0.0]).unwrap();
        assert!(zero.is_zero());
        assert_eq!(zero.normalized().values, [0.0, 0.0]);
    }

    #[test]
    fn jet_runs_from_blue_to_red() {
        assert_eq!(jet(0.0).0, [0, 0, 128]);
        assert_eq!(jet(0.5).0, [128, 255, 128]);
        assert_eq!(jet(1.0).0, [128, 0, 0]);
        assert_eq!(jet(f32::NAN), jet(0.0));
    }

    #[test]
    fn the_overlay_is_hot_where_the_map_peaks_and_an_empty_map_changes_nothing() {
        let photo = RgbImage::from_pixel(40, 20, Rgb([100, 100, 100]));
        let zero = GradCam::new(2, 2, vec![0.0; 4]).unwrap();
        assert_eq!(overlay(&photo, &zero, OVERLAY_ALPHA), photo);
        // Hot in the top-right cell.
        let cam = GradCam::new(2, 2, vec![0.0, 1.0, 0.0, 0.0]).unwrap();
        let out = overlay(&photo, &cam, 0.5);
        assert_eq!(out.dimensions(), (40, 20));
        let hot = out.get_pixel(38, 1).0;
        let cold = out.get_pixel(1, 18).0;
        assert!(hot[0] > hot[2] + 40, "{hot:?}");
        assert!(cold[2] > cold[0], "{cold:?}");
        // Alpha 0 is the photo.
        assert_eq!(overlay(&photo, &cam, 0.0), photo);
    }

    #[test]
    fn scores_follow_the_output_convention() {
        let dev = candle_core::Device::Cpu;
        let binary = Tensor::new(&[[2.0f32], [-1.0]], &dev).unwrap();
        let s1 = class_score(&binary, 1).unwrap().to_vec1::<f32>().unwrap();
        let s0 = class_score(&binary, 0).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!((s1, s0), (vec![2.0, -1.0], vec![-2.0, 1.0]));
        assert!(class_score(&binary, 2).is_err());
        let softmax = Tensor::new(&[[1.0f32, 2.0, 3.0]], &dev).unwrap();
        let s = class_score(&softmax, 2).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(s, [3.0]);
        let err = class_score(&softmax, 3).unwrap_err().to_string();
        assert!(err.contains("3 classes"), "{err}");
    }
}
