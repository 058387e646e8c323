//! `ImageDataGenerator`: random augmentation followed by preprocessing, as Keras' class of the
//! same name (`get_random_transform`, `apply_transform`, `standardize`).

use image::RgbImage;
use rand::Rng;

use crate::config::{AugmentConfig, Preprocessing};
use crate::error::ConfigError;
use crate::transform::{Fill, Transform, rgb_to_planes, warp_rgb_planes, warp_rgb_u8};

/// Augmentation plus preprocessing: what Keras' `ImageDataGenerator(...)` holds.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageDataGenerator {
    /// The random geometric transforms.
    pub augment: AugmentConfig,
    /// What turns pixels into network input (Keras' `rescale`, or mean/std normalisation).
    pub preprocessing: Preprocessing,
}

impl ImageDataGenerator {
    /// A generator with `augment` and `preprocessing`, validated.
    pub fn new(augment: AugmentConfig, preprocessing: Preprocessing) -> Result<Self, ConfigError> {
        augment.validate()?;
        preprocessing.validate()?;
        Ok(ImageDataGenerator {
            augment,
            preprocessing,
        })
    }

    /// A generator that only preprocesses (for validation and test data).
    pub fn preprocessing_only(preprocessing: Preprocessing) -> Self {
        ImageDataGenerator {
            augment: AugmentConfig::default(),
            preprocessing,
        }
    }

    /// Draws the parameters of one random transform for an image of `height` × `width`, as
    /// Keras' `get_random_transform`: each enabled transform draws uniformly from its range
    /// (disabled ones draw nothing), flips with probability 1/2.
    pub fn random_transform<R: Rng + ?Sized>(
        &self,
        height: u32,
        width: u32,
        rng: &mut R,
    ) -> Transform {
        let a = &self.augment;
        let mut uniform = |r: f32| -> f64 {
            let r = f64::from(r);
            if r > 0.0 {
                rng.random_range(-r..=r)
            } else {
                0.0
            }
        };
        let theta = uniform(a.rotation_range);
        let mut tx = uniform(a.height_shift_range);
        if a.height_shift_range < 1.0 {
            tx *= f64::from(height);
        }
        let mut ty = uniform(a.width_shift_range);
        if a.width_shift_range < 1.0 {
            ty *= f64::from(width);
        }
        let shear = uniform(a.shear_range);
        let (zx, zy) = if a.zoom_range.is_identity() {
            (1.0, 1.0)
        } else {
            let (lo, hi) = a.zoom_range.bounds();
            let (lo, hi) = (f64::from(lo), f64::from(hi));
            if lo == hi {
                (lo, lo)
            } else {
                (rng.random_range(lo..=hi), rng.random_range(lo..=hi))
            }
        };
        let flip_horizontal = a.horizontal_flip && rng.random_bool(0.5);
        let flip_vertical = a.vertical_flip && rng.random_bool(0.5);
        Transform {
            theta,
            tx,
            ty,
            shear,
            zx,
            zy,
            flip_horizontal,
            flip_vertical,
        }
    }

    /// Applies `transform` to `image` (u8 in, u8 out, rounded), with this generator's fill mode.
    pub fn apply_transform(&self, image: &RgbImage, transform: &Transform) -> RgbImage {
        let (w, h) = image.dimensions();
        if transform.is_identity() {
            return image.clone();
        }
        let mut out = vec![0u8; image.as_raw().len()];
        warp_rgb_u8(
            image.as_raw(),
            h as usize,
            w as usize,
            &transform.sampling_map(h, w),
            self.fill(),
            &mut out,
        );
        RgbImage::from_raw(w, h, out).expect("output buffer has the input's size")
    }

    /// Draws a random transform from `rng` and applies it (u8 in, u8 out).
    pub fn augment_image<R: Rng + ?Sized>(&self, image: &RgbImage, rng: &mut R) -> RgbImage {
        let t = self.random_transform(image.height(), image.width(), rng);
        self.apply_transform(image, &t)
    }

    /// Applies `transform` to packed u8 RGB `src` (`height` × `width`) and writes the
    /// preprocessed result as f32 CHW planes into `dst` (`3 * height * width` values), without
    /// rounding in between.
    ///
    /// # Panics
    /// If a buffer has the wrong length (a programming error).
    pub fn transform_into(
        &self,
        src: &[u8],
        height: u32,
        width: u32,
        transform: &Transform,
        dst: &mut [f32],
    ) {
        let coeffs = self.preprocessing.affine_coefficients();
        if transform.is_identity() {
            rgb_to_planes(src, coeffs, dst);
        } else {
            warp_rgb_planes(
                src,
                height as usize,
                width as usize,
                &transform.sampling_map(height, width),
                self.fill(),
                coeffs,
                dst,
            );
        }
    }

    /// The fill mode and value of this generator's augmentation.
    pub fn fill(&self) -> Fill {
        Fill::new(self.augment.fill_mode, self.augment.cval)
    }

    /// Keras' `standardize`: preprocesses packed u8 RGB into f32 CHW planes.
    pub fn standardize_into(&self, src: &[u8], dst: &mut [f32]) {
        rgb_to_planes(src, self.preprocessing.affine_coefficients(), dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FillMode, ZoomRange};
    use crate::rng::stream;

    #[test]
    fn draws_stay_in_range_and_are_reproducible() {
        let g = ImageDataGenerator::new(
            AugmentConfig {
                rotation_range: 40.0,
                width_shift_range: 0.2,
                height_shift_range: 10.0,
                shear_range: 20.0,
                zoom_range: ZoomRange::Range([0.5, 1.5]),
                horizontal_flip: true,
                vertical_flip: true,
                fill_mode: FillMode::Reflect,
                cval: 0.0,
            },
            Preprocessing::default(),
        )
        .unwrap();
        let mut rng = stream(7, "augment");
        let mut flips = 0;
        let draws: Vec<Transform> = (0..2000)
            .map(|_| g.random_transform(100, 150, &mut rng))
            .collect();
        for t in &draws {
            assert!(t.theta.abs() <= 40.0);
            assert!(t.tx.abs() <= 10.0, "pixels when >= 1");
            assert!(t.ty.abs() <= 0.2 * 150.0, "fraction of the width when < 1");
            assert!(t.shear.abs() <= 20.0);
            assert!((0.5..=1.5).contains(&t.zx) && (0.5..=1.5).contains(&t.zy));
            flips += usize::from(t.flip_horizontal);
        }
        assert!((800..1200).contains(&flips), "{flips}");
        assert!(draws.iter().any(|t| t.ty.abs() > 20.0));
        let mut again = stream(7, "augment");
        let replay: Vec<Transform> = (0..2000)
            .map(|_| g.random_transform(100, 150, &mut again))
            .collect();
        assert_eq!(draws, replay);
    }

    #[test]
    fn identity_config_never_changes_an_image() {
        let g = ImageDataGenerator::default();
        let img = RgbImage::from_fn(9, 5, |x, y| image::Rgb([x as u8 * 20, y as u8 * 40, 3]));
        let mut rng = stream(1, "augment");
        for _ in 0..5 {
            let t = g.random_transform(5, 9, &mut rng);
            assert!(t.is_identity());
            assert_eq!(g.augment_image(&img, &mut rng), img);
        }
    }
}
