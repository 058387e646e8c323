//! Live augmentation through the frozen blocks: a batch source that runs VGG16 blocks 1–4 on
//! every batch of (augmented) images from another source.

use engine::{Batch, BatchIter, BatchSource, Wrap, Wrapped};
use models::Vgg16;

use crate::cache::FROZEN_BLOCKS;

/// Batches of block-4 outputs `[n, 512, H/16, W/16]` computed from the image batches
/// `[n, 3, H, W]` of another source (for example an [`engine::FlowSource`] with live
/// augmentation) by [`FrozenBlocks`]: `Block4Source::new(images, FrozenBlocks(vgg))`.
pub type Block4Source<S> = Wrapped<S, FrozenBlocks>;

/// VGG16 blocks 1–4, run on every batch on the conv base's device.
///
/// The frozen blocks run outside the autograd graph: their weights are constants, not
/// variables, and the output is detached, so no gradient and no optimizer state ever
/// concerns them, and training only differentiates block 5 and the top.
#[derive(Debug, Clone)]
pub struct FrozenBlocks(pub Vgg16);

impl<S: BatchSource> Wrap<S> for FrozenBlocks {
    fn epoch_from<'a>(
        &'a mut self,
        inner: &'a mut S,
        epoch: usize,
        skip: usize,
    ) -> engine::Result<BatchIter<'a>> {
        let vgg = &self.0;
        let batches = inner.epoch_from(epoch, skip)?;
        Ok(Box::new(batches.map(move |batch| {
            let batch = batch?;
            let x = batch.x.to_device(vgg.device())?;
            let features = vgg.forward_blocks(&x, 1, FROZEN_BLOCKS)?.detach();
            let labels = batch.labels.to_device(vgg.device())?;
            Batch::new(features, labels)
        })))
    }
}
