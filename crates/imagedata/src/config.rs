//! Serde configuration types: augmentation, preprocessing, resizing and labelling.
//!
//! Field names follow Keras' `ImageDataGenerator` and `flow_from_directory`, so a pipeline file
//! reads like the Keras code it replaces. Every type refuses unknown keys when deserialised, and
//! `validate()` returns a [`ConfigError`] naming the offending key.

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// How points that fall outside the input image are filled, exactly as `scipy.ndimage` (which
/// Keras calls) defines the modes. For an input row `a b c d`:
///
/// - `nearest`: `a a a a | a b c d | d d d d` (Keras' default).
/// - `constant`: `k k k k | a b c d | k k k k` with `k = cval`; no interpolation across the edge.
/// - `reflect`: `d c b a | a b c d | d c b a` (half-sample symmetric; Keras' documentation draws
///   it as `abcddcba`).
/// - `wrap`: scipy's `wrap`, in which the last and first samples coincide, so the period is
///   `n - 1` samples: `… b c d | a b c d | b c d …` as scipy ≥ 1.6 computes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FillMode {
    /// Repeat the edge sample.
    #[default]
    Nearest,
    /// Fill with `cval`.
    Constant,
    /// Mirror about the edge, repeating the edge sample.
    Reflect,
    /// Wrap around to the opposite edge (scipy's `wrap`).
    Wrap,
}

/// Keras' `zoom_range`: a number `z` meaning `[1 - z, 1 + z]`, or an explicit `[lo, hi]` pair.
///
/// The zoom factors are Keras' (they scale the sampling grid): a factor above 1 shows more of the
/// image (zooms out), below 1 magnifies it. Height and width factors are drawn independently.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ZoomRange {
    /// `z`: factors drawn uniformly from `[1 - z, 1 + z]`.
    Symmetric(f32),
    /// `[lo, hi]`: factors drawn uniformly from `[lo, hi]`.
    Range([f32; 2]),
}

impl Default for ZoomRange {
    fn default() -> Self {
        ZoomRange::Symmetric(0.0)
    }
}

impl ZoomRange {
    /// The interval `[lo, hi]` the factors are drawn from.
    pub fn bounds(&self) -> (f32, f32) {
        match *self {
            ZoomRange::Symmetric(z) => (1.0 - z, 1.0 + z),
            ZoomRange::Range([lo, hi]) => (lo, hi),
        }
    }

    /// Whether every draw is exactly 1 (no zoom).
    pub fn is_identity(&self) -> bool {
        self.bounds() == (1.0, 1.0)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            ZoomRange::Symmetric(z) => {
                if !z.is_finite() || !(0.0..1.0).contains(&z) {
                    return Err(ConfigError::new(
                        "zoom_range",
                        format!("must be a number in [0, 1) or a [lo, hi] pair, got {z}"),
                    ));
                }
            }
            ZoomRange::Range([lo, hi]) => {
                if !lo.is_finite() || !hi.is_finite() || lo <= 0.0 || lo > hi {
                    return Err(ConfigError::new(
                        "zoom_range",
                        format!("[lo, hi] needs 0 < lo <= hi, got [{lo}, {hi}]"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Random geometric augmentation with Keras `ImageDataGenerator` names, meanings and defaults
/// (every transform off).
///
/// All transforms are composed into one affine map about the image centre and applied with
/// bilinear sampling, as Keras' `apply_affine_transform` does; flips follow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AugmentConfig {
    /// Rotation angle drawn uniformly from `[-rotation_range, rotation_range]` degrees.
    pub rotation_range: f32,
    /// Horizontal shift drawn uniformly from `[-r, r]`: a fraction of the width when `r < 1`,
    /// pixels when `r >= 1` (as Keras).
    pub width_shift_range: f32,
    /// Vertical shift drawn uniformly from `[-r, r]`: a fraction of the height when `r < 1`,
    /// pixels when `r >= 1` (as Keras).
    pub height_shift_range: f32,
    /// Shear angle drawn uniformly from `[-shear_range, shear_range]` **degrees**, as current
    /// Keras reads it. (The 2016 post ran Keras 1, which read `shear_range = 0.2` in radians,
    /// about 11.5°; write `11.46` here to reproduce it.)
    pub shear_range: f32,
    /// Zoom factors, see [`ZoomRange`].
    pub zoom_range: ZoomRange,
    /// Mirror left-right with probability 1/2.
    pub horizontal_flip: bool,
    /// Mirror top-bottom with probability 1/2.
    pub vertical_flip: bool,
    /// How points outside the input are filled.
    pub fill_mode: FillMode,
    /// The fill value for `fill_mode = "constant"`, in pixel units (0–255).
    pub cval: f32,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        AugmentConfig {
            rotation_range: 0.0,
            width_shift_range: 0.0,
            height_shift_range: 0.0,
            shear_range: 0.0,
            zoom_range: ZoomRange::default(),
            horizontal_flip: false,
            vertical_flip: false,
            fill_mode: FillMode::Nearest,
            cval: 0.0,
        }
    }
}

impl AugmentConfig {
    /// The augmentation of the post's small convnet: shear 0.2, zoom 0.2, horizontal flips.
    ///
    /// The shear is 0.2 radians expressed in degrees, which is what the post's Keras 1 did.
    pub fn blog() -> Self {
        AugmentConfig {
            shear_range: 0.2f32.to_degrees(),
            zoom_range: ZoomRange::Symmetric(0.2),
            horizontal_flip: true,
            ..AugmentConfig::default()
        }
    }

    /// Whether this configuration never changes an image.
    pub fn is_identity(&self) -> bool {
        self.rotation_range == 0.0
            && self.width_shift_range == 0.0
            && self.height_shift_range == 0.0
            && self.shear_range == 0.0
            && self.zoom_range.is_identity()
            && !self.horizontal_flip
            && !self.vertical_flip
    }

    /// Whether any affine (non-flip) transform is enabled.
    pub fn has_affine(&self) -> bool {
        self.rotation_range != 0.0
            || self.width_shift_range != 0.0
            || self.height_shift_range != 0.0
            || self.shear_range != 0.0
            || !self.zoom_range.is_identity()
    }

    /// Checks every value; the error names the first offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn non_negative(key: &str, v: f32, max: f32) -> Result<(), ConfigError> {
            if !v.is_finite() || v < 0.0 || v > max {
                return Err(ConfigError::new(
                    key,
                    format!("must be a number in [0, {max}], got {v}"),
                ));
            }
            Ok(())
        }
        non_negative("rotation_range", self.rotation_range, 360.0)?;
        non_negative("width_shift_range", self.width_shift_range, 16384.0)?;
        non_negative("height_shift_range", self.height_shift_range, 16384.0)?;
        if !self.shear_range.is_finite() || !(0.0..90.0).contains(&self.shear_range) {
            return Err(ConfigError::new(
                "shear_range",
                format!(
                    "must be a number of degrees in [0, 90), got {}",
                    self.shear_range
                ),
            ));
        }
        self.zoom_range.validate()?;
        non_negative("cval", self.cval, 255.0)?;
        Ok(())
    }
}

/// What turns u8 RGB pixels into network input: `x * rescale` or `(x * rescale - mean) / std`
/// per channel (R, G, B).
///
/// In TOML: `{ kind = "rescale", scale = 0.00392156862745098 }` or
/// `{ kind = "normalize", rescale = 0.00392156862745098, mean = [0.485, 0.456, 0.406],
/// std = [0.229, 0.224, 0.225] }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Preprocessing {
    /// Keras' `rescale`: `x * scale`.
    Rescale {
        /// The factor (1/255 maps pixels to [0, 1]).
        scale: f32,
    },
    /// `(x * rescale - mean[c]) / std[c]`, for example ImageNet normalisation.
    Normalize {
        /// The factor applied first.
        rescale: f32,
        /// Per-channel mean, R, G, B (after rescaling).
        mean: [f32; 3],
        /// Per-channel standard deviation, R, G, B (after rescaling).
        std: [f32; 3],
    },
}

impl Default for Preprocessing {
    fn default() -> Self {
        Preprocessing::rescale(1.0 / 255.0)
    }
}

impl Preprocessing {
    /// `x * scale`.
    pub fn rescale(scale: f32) -> Self {
        Preprocessing::Rescale { scale }
    }

    /// torchvision's ImageNet preprocessing: `/255`, mean `[0.485, 0.456, 0.406]`, std
    /// `[0.229, 0.224, 0.225]` (what the VGG16 weights expect).
    pub fn imagenet() -> Self {
        Preprocessing::Normalize {
            rescale: 1.0 / 255.0,
            mean: [0.485, 0.456, 0.406],
            std: [0.229, 0.224, 0.225],
        }
    }

    /// Per-channel `(a, b)` such that the output is `x * a + b`.
    pub fn affine_coefficients(&self) -> [(f32, f32); 3] {
        match *self {
            Preprocessing::Rescale { scale } => [(scale, 0.0); 3],
            Preprocessing::Normalize { rescale, mean, std } => {
                std::array::from_fn(|c| (rescale / std[c], -mean[c] / std[c]))
            }
        }
    }

    /// The value one u8 sample of channel `channel` (0 = R) becomes.
    pub fn apply(&self, value: u8, channel: usize) -> f32 {
        let (a, b) = self.affine_coefficients()[channel.min(2)];
        f32::from(value) * a + b
    }

    /// The inverse map: the u8 pixel value an output value came from (rounded and clamped), for
    /// turning batches back into images.
    pub fn invert(&self, value: f32, channel: usize) -> u8 {
        let (a, b) = self.affine_coefficients()[channel.min(2)];
        let x = if a == 0.0 { 0.0 } else { (value - b) / a };
        x.round().clamp(0.0, 255.0) as u8
    }

    /// Checks every value; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match *self {
            Preprocessing::Rescale { scale } => {
                if !scale.is_finite() || scale <= 0.0 {
                    return Err(ConfigError::new(
                        "scale",
                        format!("must be a positive number, got {scale}"),
                    ));
                }
            }
            Preprocessing::Normalize { rescale, mean, std } => {
                if !rescale.is_finite() || rescale <= 0.0 {
                    return Err(ConfigError::new(
                        "rescale",
                        format!("must be a positive number, got {rescale}"),
                    ));
                }
                if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                    return Err(ConfigError::new(
                        "mean",
                        format!("must be finite numbers, got {m}"),
                    ));
                }
                if let Some(s) = std.iter().find(|s| !s.is_finite() || **s <= 0.0) {
                    return Err(ConfigError::new(
                        "std",
                        format!("must be positive numbers, got {s}"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Resampling filter used when resizing to `target_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Interpolation {
    /// Nearest neighbour (Keras' default for `load_img`).
    #[default]
    Nearest,
    /// Bilinear (a triangle filter, antialiased when shrinking, like PIL's `BILINEAR`).
    Bilinear,
}

/// How labels are produced, as Keras' `class_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassMode {
    /// Two classes, labels 0/1 (one sigmoid unit).
    Binary,
    /// Any number of classes, labels `0..n` (one softmax unit per class).
    #[default]
    Categorical,
    /// No labels (for prediction or feature extraction).
    None,
}

/// The size images are resized to, as Keras' `target_size = (height, width)`; written
/// `[height, width]` in TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "[u32; 2]", into = "[u32; 2]")]
pub struct TargetSize {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
}

impl TargetSize {
    /// `height` × `width`.
    pub const fn new(height: u32, width: u32) -> Self {
        TargetSize { height, width }
    }

    /// Pixels per image.
    pub fn pixels(&self) -> usize {
        self.height as usize * self.width as usize
    }

    /// Checks that both sides are in `1..=16384`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, v) in [("height", self.height), ("width", self.width)] {
            if v == 0 || v > 16384 {
                return Err(ConfigError::new(
                    "target_size",
                    format!("{name} must be in 1..=16384, got {v}"),
                ));
            }
        }
        Ok(())
    }
}

impl Default for TargetSize {
    /// Keras' default, 256 × 256.
    fn default() -> Self {
        TargetSize::new(256, 256)
    }
}

impl From<[u32; 2]> for TargetSize {
    fn from([height, width]: [u32; 2]) -> Self {
        TargetSize { height, width }
    }
}

impl From<TargetSize> for [u32; 2] {
    fn from(t: TargetSize) -> Self {
        [t.height, t.width]
    }
}

impl std::fmt::Display for TargetSize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        augment: AugmentConfig,
        preprocessing: Preprocessing,
        target_size: TargetSize,
        interpolation: Interpolation,
        class_mode: ClassMode,
    }

    #[test]
    fn parses_keras_names_from_toml() {
        let doc: Doc = toml::from_str(
            r#"
            target_size = [150, 120]
            interpolation = "bilinear"
            class_mode = "binary"
            preprocessing = { kind = "normalize", rescale = 0.00392156862745098, mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] }
            [augment]
            shear_range = 11
            zoom_range = [0.8, 1.25]
            horizontal_flip = true
            fill_mode = "reflect"
            "#,
        )
        .unwrap();
        assert_eq!(doc.target_size, TargetSize::new(150, 120));
        assert_eq!(doc.interpolation, Interpolation::Bilinear);
        assert_eq!(doc.class_mode, ClassMode::Binary);
        assert_eq!(doc.preprocessing, Preprocessing::imagenet());
        assert_eq!(doc.augment.shear_range, 11.0);
        assert_eq!(doc.augment.zoom_range.bounds(), (0.8, 1.25));
        assert!(doc.augment.horizontal_flip);
        assert_eq!(doc.augment.fill_mode, FillMode::Reflect);
        assert_eq!(doc.augment.rotation_range, 0.0);
        doc.augment.validate().unwrap();
        doc.preprocessing.validate().unwrap();
    }

    #[test]
    fn zoom_number_means_symmetric_range() {
        let a: AugmentConfig = toml::from_str("zoom_range = 0.2").unwrap();
        let (lo, hi) = a.zoom_range.bounds();
        assert!((lo - 0.8).abs() < 1e-6 && (hi - 1.2).abs() < 1e-6);
        assert!(!a.is_identity());
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = toml::from_str::<AugmentConfig>("rotation = 10")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rotation"), "{err}");
        let err = toml::from_str::<Preprocessing>("kind = \"rescale\"\nscale = 1.0\nmean = 1.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("mean"), "{err}");
        let err = toml::from_str::<Preprocessing>("kind = \"standardize\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("standardize"), "{err}");
    }

    #[test]
    fn validate_names_the_offending_key() {
        let cases = [
            (
                AugmentConfig {
                    rotation_range: -1.0,
                    ..Default::default()
                },
                "rotation_range",
            ),
            (
                AugmentConfig {
                    width_shift_range: f32::NAN,
                    ..Default::default()
                },
                "width_shift_range",
            ),
            (
                AugmentConfig {
                    height_shift_range: -0.1,
                    ..Default::default()
                },
                "height_shift_range",
            ),
            (
                AugmentConfig {
                    shear_range: 90.0,
                    ..Default::default()
                },
                "shear_range",
            ),
            (
                AugmentConfig {
                    zoom_range: ZoomRange::Symmetric(1.0),
                    ..Default::default()
                },
                "zoom_range",
            ),
            (
                AugmentConfig {
                    zoom_range: ZoomRange::Range([1.2, 0.8]),
                    ..Default::default()
                },
                "zoom_range",
            ),
            (
                AugmentConfig {
                    cval: 300.0,
                    ..Default::default()
                },
                "cval",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.to_string().starts_with(key));
        }
        assert_eq!(
            Preprocessing::rescale(0.0).validate().unwrap_err().key,
            "scale"
        );
        let bad_std = Preprocessing::Normalize {
            rescale: 1.0,
            mean: [0.0; 3],
            std: [1.0, 0.0, 1.0],
        };
        assert_eq!(bad_std.validate().unwrap_err().key, "std");
        assert_eq!(
            TargetSize::new(0, 10).validate().unwrap_err().key,
            "target_size"
        );
        assert_eq!(
            ConfigError::new("zoom_range", "x")
                .within("augment")
                .to_string(),
            "augment.zoom_range: x"
        );
    }

    #[test]
    fn identity_and_defaults() {
        let d = AugmentConfig::default();
        assert!(d.is_identity());
        assert!(!d.has_affine());
        assert_eq!(d.fill_mode, FillMode::Nearest);
        let flip_only = AugmentConfig {
            horizontal_flip: true,
            ..Default::default()
        };
        assert!(!flip_only.is_identity());
        assert!(!flip_only.has_affine());
        let blog = AugmentConfig::blog();
        blog.validate().unwrap();
        assert!((blog.shear_range - 11.459_156).abs() < 1e-3);
    }

    #[test]
    fn preprocessing_round_trips() {
        let p = Preprocessing::imagenet();
        for c in 0..3 {
            for v in [0u8, 1, 127, 200, 255] {
                assert_eq!(p.invert(p.apply(v, c), c), v);
            }
        }
        let r = Preprocessing::rescale(1.0 / 255.0);
        assert_eq!(r.apply(255, 0), 1.0);
        assert_eq!(r.apply(0, 2), 0.0);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"kind\":\"normalize\""), "{json}");
        assert_eq!(serde_json::from_str::<Preprocessing>(&json).unwrap(), p);
    }
}
