//! Batches from an image folder: a [`BatchSource`] over an `imagedata` [`Flow`].

use crate::data::{Batch, BatchIter, BatchSource};
use crate::error::{EngineError, Result};
use imagedata::{DataError, Flow};

/// The metadata key under which an image model artifact records the resampling filter its
/// images were resized with (JSON, `"nearest"` or `"bilinear"`), beside its model spec, so
/// that evaluation and prediction resize new images exactly as training did.
pub const INTERPOLATION_KEY: &str = "data.interpolation";

/// A [`BatchSource`] over an image [`Flow`] (Keras' `flow_from_directory` batches).
///
/// The flow's shuffle and augmentation depend only on its seed, the epoch and the sample, so
/// [`BatchSource::epoch`] yields the same batches every time, as resuming requires; the flow's
/// background prefetching is kept. Resuming mid-epoch ([`BatchSource::epoch_from`]) prepares
/// only the batches from `skip` on, without augmenting the skipped ones.
#[derive(Debug, Clone)]
pub struct FlowSource {
    flow: Flow,
}

impl FlowSource {
    /// A source over `flow`, whose images must be labelled (any class mode but `none`).
    pub fn new(flow: Flow) -> Result<Self> {
        if flow.image_set().labels().is_none() {
            return Err(EngineError::Data {
                what: "image flow".into(),
                reason: "the images have no labels (class_mode \"none\"); training and \
                         evaluation need one class per image"
                    .into(),
            });
        }
        Ok(Self { flow })
    }

    /// The flow.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The class names, in label order.
    pub fn classes(&self) -> &[String] {
        self.flow.classes()
    }
}

/// An `imagedata` batch as an engine batch.
fn convert(batch: std::result::Result<imagedata::Batch, DataError>) -> Result<Batch> {
    let batch = batch.map_err(EngineError::source)?;
    let labels = batch.labels.ok_or_else(|| EngineError::Data {
        what: "image flow".into(),
        reason: "a batch came without labels".into(),
    })?;
    Batch::new(batch.images, labels)
}

impl BatchSource for FlowSource {
    fn num_samples(&self) -> usize {
        self.flow.samples()
    }

    fn num_batches(&self) -> usize {
        self.flow.len()
    }

    fn epoch(&mut self, epoch: usize) -> Result<BatchIter<'_>> {
        Ok(Box::new(self.flow.epoch(epoch).map(convert)))
    }

    fn epoch_from(&mut self, epoch: usize, skip: usize) -> Result<BatchIter<'_>> {
        if skip == 0 {
            return self.epoch(epoch);
        }
        let flow = self.flow.clone();
        let batches = flow.len();
        Ok(Box::new(
            (skip.min(batches)..batches).map(move |index| convert(flow.batch(epoch, index))),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imagedata::{AugmentConfig, FlowOptions, ImageDataGenerator, Preprocessing};

    fn images(n: usize) -> Vec<image::RgbImage> {
        (0..n)
            .map(|i| {
                image::RgbImage::from_fn(6, 4, |x, y| image::Rgb([i as u8 * 10, x as u8, y as u8]))
            })
            .collect()
    }

    fn flow(labels: Option<Vec<u32>>, augment: AugmentConfig) -> Flow {
        let generator = ImageDataGenerator::new(augment, Preprocessing::rescale(1.0)).unwrap();
        generator
            .flow(
                images(7),
                labels,
                FlowOptions {
                    batch_size: 3,
                    seed: 11,
                    ..Default::default()
                },
            )
            .unwrap()
    }

    fn epoch_of(source: &mut FlowSource, epoch: usize, skip: usize) -> Vec<(Vec<u32>, Vec<f32>)> {
        source
            .epoch_from(epoch, skip)
            .unwrap()
            .map(|b| {
                let b = b.unwrap();
                (
                    b.labels.to_vec1::<u32>().unwrap(),
                    b.x.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn yields_the_flows_batches_and_resumes_mid_epoch() {
        let labels: Vec<u32> = (0..7).collect();
        let flips = AugmentConfig {
            horizontal_flip: true,
            ..AugmentConfig::default()
        };
        let mut source = FlowSource::new(flow(Some(labels), flips)).unwrap();
        assert_eq!((source.num_samples(), source.num_batches()), (7, 3));
        assert_eq!(source.classes().len(), 0);
        let e1 = epoch_of(&mut source, 1, 0);
        assert_eq!(e1.len(), 3);
        let mut seen: Vec<u32> = e1.iter().flat_map(|b| b.0.clone()).collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..7).collect::<Vec<u32>>());
        // Labels follow their images: image i's red plane is 10·i everywhere, flipped or not.
        let plane = 6 * 4;
        for (labels, x) in &e1 {
            for (k, &l) in labels.iter().enumerate() {
                let red = &x[k * 3 * plane..k * 3 * plane + plane];
                assert!(red.iter().all(|&v| v == 10.0 * l as f32), "{l}: {red:?}");
            }
        }
        // Same epoch, same batches; another epoch, another order; skipping drops a prefix.
        assert_eq!(epoch_of(&mut source, 1, 0), e1);
        assert_ne!(epoch_of(&mut source, 2, 0), e1);
        assert_eq!(epoch_of(&mut source, 1, 2), e1[2..].to_vec());
        assert!(epoch_of(&mut source, 1, 5).is_empty());
    }

    #[test]
    fn unlabelled_flows_are_refused() {
        let err = FlowSource::new(flow(None, AugmentConfig::default()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no labels"), "{err}");
    }
}
