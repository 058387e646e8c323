//! Live augmentation through the frozen blocks: a batch source that runs VGG16 blocks 1–4 on
//! every batch of (augmented) images from another source.

use engine::{Batch, BatchIter, BatchSource};
use models::Vgg16;

use crate::cache::FROZEN_BLOCKS;

/// Batches of block-4 outputs `[n, 512, H/16, W/16]` computed from the image batches
/// `[n, 3, H, W]` of `inner` (for example an [`engine::FlowSource`] with live augmentation),
/// on the conv base's device.
///
/// The frozen blocks run outside the autograd graph: their weights are constants, not
/// variables, and the output is detached, so no gradient and no optimizer state ever
/// concerns them, and training only differentiates block 5 and the top.
#[derive(Debug, Clone)]
pub struct Block4Source<S> {
    inner: S,
    vgg: Vgg16,
}

impl<S: BatchSource> Block4Source<S> {
    /// Block-4 outputs of `inner`'s images through `vgg`.
    pub fn new(inner: S, vgg: Vgg16) -> Self {
        Self { inner, vgg }
    }

    /// The source of images.
    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl<S: BatchSource> BatchSource for Block4Source<S> {
    fn num_samples(&self) -> usize {
        self.inner.num_samples()
    }

    fn num_batches(&self) -> usize {
        self.inner.num_batches()
    }

    fn epoch(&mut self, epoch: usize) -> engine::Result<BatchIter<'_>> {
        self.epoch_from(epoch, 0)
    }

    fn epoch_from(&mut self, epoch: usize, skip: usize) -> engine::Result<BatchIter<'_>> {
        let vgg = &self.vgg;
        let batches = self.inner.epoch_from(epoch, skip)?;
        Ok(Box::new(batches.map(move |batch| {
            let batch = batch?;
            let x = batch.x.to_device(vgg.device())?;
            let features = vgg.forward_blocks(&x, 1, FROZEN_BLOCKS)?.detach();
            let labels = batch.labels.to_device(vgg.device())?;
            Batch::new(features, labels)
        })))
    }
}
