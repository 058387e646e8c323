//! Conversions between images and NCHW tensors.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::config::Preprocessing;
use crate::error::DataError;
use crate::transform::rgb_to_planes;

/// Turns a batch `[n, 3, h, w]` back into u8 RGB images by inverting `preprocessing`
/// (rounded and clamped to 0–255), for previews.
pub fn batch_to_images(
    images: &Tensor,
    preprocessing: &Preprocessing,
) -> Result<Vec<RgbImage>, DataError> {
    let (n, c, h, w) = images.dims4()?;
    if c != 3 {
        return Err(DataError::Invalid(format!(
            "expected a [n, 3, h, w] batch, got {:?}",
            images.dims()
        )));
    }
    let data: Vec<f32> = images
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let hw = h * w;
    let out = data
        .chunks_exact(3 * hw)
        .take(n)
        .map(|planes| {
            let mut raw = vec![0u8; 3 * hw];
            for (ch, plane) in planes.chunks_exact(hw).enumerate() {
                for (i, &v) in plane.iter().enumerate() {
                    raw[i * 3 + ch] = preprocessing.invert(v, ch);
                }
            }
            RgbImage::from_raw(w as u32, h as u32, raw).expect("buffer matches the size")
        })
        .collect();
    Ok(out)
}

/// Stacks same-sized images into a preprocessed `[n, 3, h, w]` f32 tensor on `device`.
pub fn images_to_tensor(
    images: &[RgbImage],
    preprocessing: &Preprocessing,
    device: &Device,
) -> Result<Tensor, DataError> {
    let first = images
        .first()
        .ok_or_else(|| DataError::Invalid("no images given".to_string()))?;
    let (w, h) = first.dimensions();
    if let Some((i, img)) = images
        .iter()
        .enumerate()
        .find(|(_, i)| i.dimensions() != (w, h))
    {
        return Err(DataError::Invalid(format!(
            "all images must have the same size: image 0 is {w}x{h} (w x h), image {i} is {}x{}",
            img.width(),
            img.height()
        )));
    }
    let plane = 3 * (w as usize) * (h as usize);
    let coeffs = preprocessing.affine_coefficients();
    let mut data = vec![0f32; images.len() * plane];
    for (img, dst) in images.iter().zip(data.chunks_exact_mut(plane)) {
        rgb_to_planes(img.as_raw(), coeffs, dst);
    }
    Ok(Tensor::from_vec(
        data,
        (images.len(), 3, h as usize, w as usize),
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_through_a_tensor() {
        let imgs: Vec<RgbImage> = (0..3)
            .map(|k| {
                RgbImage::from_fn(5, 4, |x, y| {
                    image::Rgb([x as u8 * 50, y as u8 * 60, k * 100])
                })
            })
            .collect();
        for p in [
            Preprocessing::imagenet(),
            Preprocessing::rescale(1.0 / 255.0),
        ] {
            let t = images_to_tensor(&imgs, &p, &Device::Cpu).unwrap();
            assert_eq!(t.dims(), &[3, 3, 4, 5]);
            let back = batch_to_images(&t, &p).unwrap();
            assert_eq!(back, imgs);
        }
        // Channel planes are in RGB order: the G plane of image 0 is y * 60 / 255.
        let t =
            images_to_tensor(&imgs, &Preprocessing::rescale(1.0 / 255.0), &Device::Cpu).unwrap();
        let g: Vec<f32> = t
            .get(0)
            .unwrap()
            .get(1)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((g[5] - 60.0 / 255.0).abs() < 1e-6);
        assert!(images_to_tensor(&[], &Preprocessing::default(), &Device::Cpu).is_err());
    }
}
