//! Where the model looked: the Grad-CAM of a class on a photo ([`Explanation`], from
//! [`crate::Classifier::explain`]), drawn over the photo and written as an image
//! (`classify predict --explain OUT.png`).

use std::path::Path;

use image::{ImageFormat, RgbImage};
use models::GradCam;

use crate::classifier::Scores;
use crate::error::{ClassifyError, Result};

/// One photo's classification and the Grad-CAM of one class on it.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// The photo's classification (with the classifier's calibration and test-time
    /// augmentation; the map is of the photo itself, not of its mirror).
    pub scores: Scores,
    /// The class explained: its index in [`crate::Classifier::classes`] (the predicted
    /// class unless another was asked for).
    pub class: usize,
    /// Its name.
    pub class_name: String,
    /// The map at the resolution of the network's last feature map (VGG16 at 150 × 150:
    /// 4 × 4; EfficientNet-Lite0 at 224 × 224: 7 × 7).
    pub cam: GradCam,
    /// The photo as given (its own size) with the map upsampled over it in a jet colour map
    /// ([`models::gradcam::overlay`]).
    pub overlay: RgbImage,
}

/// The image format `path`'s extension names, for [`Explanation::save`]: PNG (`.png`) or
/// JPEG (`.jpg`, `.jpeg`); an error naming the file otherwise.
pub fn explain_format(path: &Path) -> Result<ImageFormat> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(ImageFormat::Png),
        Some("jpg" | "jpeg") => Ok(ImageFormat::Jpeg),
        _ => Err(ClassifyError::Output {
            path: path.to_path_buf(),
            reason: "the explanation is written as an image: name a .png (or .jpg) file".into(),
        }),
    }
}

impl Explanation {
    /// Writes [`Explanation::overlay`] to `path` atomically (a temporary file in the same
    /// folder, then a rename; folders are created), as PNG or JPEG by its extension
    /// ([`explain_format`]).
    pub fn save(&self, path: &Path) -> Result<()> {
        let format = explain_format(path)?;
        let mut bytes = Vec::new();
        let encoded = match format {
            ImageFormat::Jpeg => {
                let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 92);
                self.overlay.write_with_encoder(encoder)
            }
            _ => self
                .overlay
                .write_to(&mut std::io::Cursor::new(&mut bytes), format),
        };
        encoded.map_err(|e| ClassifyError::Output {
            path: path.to_path_buf(),
            reason: format!("cannot encode the image: {e}"),
        })?;
        artifact::atomic_write(path, &bytes)?;
        Ok(())
    }
}
