//! Live augmentation through the frozen part: a batch source that runs the backbone's frozen
//! part on every batch of (augmented) images from another source.

use engine::{Batch, BatchIter, BatchSource, Wrap, Wrapped};
use models::Backbone;

/// Batches of the frozen part's outputs computed from the image batches `[n, 3, H, W]` of
/// another source (for example an [`engine::FlowSource`] with live augmentation) by
/// [`Frozen`]: `FrozenSource::new(images, Frozen(backbone))`.
pub type FrozenSource<S> = Wrapped<S, Frozen>;

/// A backbone's frozen part (VGG16: blocks 1–4), run on every batch on the backbone's device.
///
/// It runs outside the autograd graph: its weights are constants, not variables, and the
/// output is detached, so no gradient and no optimizer state ever concerns it, and training
/// only differentiates the tail and the top.
#[derive(Debug, Clone)]
pub struct Frozen(pub Backbone);

impl<S: BatchSource> Wrap<S> for Frozen {
    fn epoch_from<'a>(
        &'a mut self,
        inner: &'a mut S,
        epoch: usize,
        skip: usize,
    ) -> engine::Result<BatchIter<'a>> {
        let backbone = &self.0;
        let batches = inner.epoch_from(epoch, skip)?;
        Ok(Box::new(batches.map(move |batch| {
            let batch = batch?;
            let x = batch.x.to_device(backbone.device())?;
            let features = backbone.frozen(&x)?.detach();
            let labels = batch.labels.to_device(backbone.device())?;
            Batch::new(features, labels)
        })))
    }
}
