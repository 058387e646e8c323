//! Where batches come from: the [`BatchSource`] trait and an in-memory [`TensorSource`].

use crate::error::{EngineError, Result};
use candle_core::{DType, Tensor};
use rand::seq::SliceRandom;

/// One batch: inputs and class indices.
#[derive(Debug, Clone)]
pub struct Batch {
    /// Inputs, `[N, ...]` (NCHW images or cached feature maps), f32.
    pub x: Tensor,
    /// Class indices `[N]`, u32.
    pub labels: Tensor,
}

impl Batch {
    /// A batch, checking that `labels` is `[N]` u32 and `x` has `N` rows.
    pub fn new(x: Tensor, labels: Tensor) -> Result<Self> {
        let n = match (labels.dims(), labels.dtype()) {
            (&[n], DType::U32) => n,
            (dims, dtype) => {
                return Err(EngineError::Data {
                    what: "batch".into(),
                    reason: format!("labels must be u32 [N], got {dtype:?} {dims:?}"),
                });
            }
        };
        if x.dims().first() != Some(&n) {
            return Err(EngineError::Data {
                what: "batch".into(),
                reason: format!("{n} labels for inputs of shape {:?}", x.dims()),
            });
        }
        Ok(Self { x, labels })
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The batches of one epoch.
pub type BatchIter<'a> = Box<dyn Iterator<Item = Result<Batch>> + 'a>;

/// A source of batches, epoch by epoch.
///
/// `epoch(e)` must yield the same batches every time it is called with the same `e` (derive
/// shuffling and augmentation from the seed and the epoch index), so that a resumed run sees
/// exactly the data an uninterrupted one would have.
pub trait BatchSource {
    /// The number of samples per epoch.
    fn num_samples(&self) -> usize;

    /// The number of batches per epoch.
    fn num_batches(&self) -> usize;

    /// The batches of epoch `epoch` (0-based).
    fn epoch(&mut self, epoch: usize) -> Result<BatchIter<'_>>;

    /// The batches of epoch `epoch` from batch `skip` on (used when resuming a run interrupted
    /// mid-epoch). The default draws and drops the first `skip` batches, which keeps any
    /// per-batch random state in step; sources that can jump ahead cheaply may override it.
    fn epoch_from(&mut self, epoch: usize, skip: usize) -> Result<BatchIter<'_>> {
        Ok(Box::new(self.epoch(epoch)?.skip(skip)))
    }
}

/// Batches drawn from tensors held in memory (for example cached bottleneck features), in
/// order or reshuffled every epoch from a seed.
///
/// Inputs stored in another float type (f16 caches) are converted to f32 batch by batch.
#[derive(Debug, Clone)]
pub struct TensorSource {
    x: Tensor,
    labels: Tensor,
    batch_size: usize,
    shuffle_seed: Option<u64>,
}

impl TensorSource {
    /// Batches of `batch_size` rows of `x` `[N, ...]` with class indices `labels` `[N]` (u32), in
    /// order; the last batch may be smaller.
    pub fn new(x: Tensor, labels: Tensor, batch_size: usize) -> Result<Self> {
        let labels = labels.to_device(x.device())?;
        Batch::new(x.clone(), labels.clone())?;
        if batch_size == 0 {
            return Err(EngineError::config("batch_size", "must be at least 1"));
        }
        Ok(Self {
            x,
            labels,
            batch_size,
            shuffle_seed: None,
        })
    }

    /// Reshuffles the rows every epoch, epoch `e` from
    /// `imagedata::rng::substream(seed, "shuffle", e)`.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle_seed = Some(seed);
        self
    }

    /// The order of the rows in epoch `epoch`.
    pub fn order(&self, epoch: usize) -> Vec<u32> {
        let n = self.num_samples() as u32;
        let mut order: Vec<u32> = (0..n).collect();
        if let Some(seed) = self.shuffle_seed {
            let mut rng =
                imagedata::rng::substream(seed, imagedata::rng::names::SHUFFLE, epoch as u64);
            order.shuffle(&mut rng);
        }
        order
    }

    fn batch(&self, rows: &[u32]) -> Result<Batch> {
        let idx = Tensor::from_slice(rows, rows.len(), self.x.device())?;
        let mut x = self.x.index_select(&idx, 0)?;
        if x.dtype() != DType::F32 {
            x = x.to_dtype(DType::F32)?;
        }
        let labels = self.labels.index_select(&idx, 0)?;
        Ok(Batch { x, labels })
    }
}

impl BatchSource for TensorSource {
    fn num_samples(&self) -> usize {
        self.labels.dims().first().copied().unwrap_or(0)
    }

    fn num_batches(&self) -> usize {
        self.num_samples().div_ceil(self.batch_size)
    }

    fn epoch(&mut self, epoch: usize) -> Result<BatchIter<'_>> {
        self.epoch_from(epoch, 0)
    }

    fn epoch_from(&mut self, epoch: usize, skip: usize) -> Result<BatchIter<'_>> {
        let order = self.order(epoch);
        let this = &*self;
        let chunks: Vec<Vec<u32>> = order
            .chunks(self.batch_size)
            .skip(skip)
            .map(<[u32]>::to_vec)
            .collect();
        Ok(Box::new(
            chunks.into_iter().map(move |rows| this.batch(&rows)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn source() -> TensorSource {
        let x = Tensor::arange(0f32, 10.0, &Device::Cpu)
            .unwrap()
            .reshape((5, 2))
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let labels = Tensor::from_slice(&[0u32, 1, 2, 3, 4], 5, &Device::Cpu).unwrap();
        TensorSource::new(x, labels, 2).unwrap()
    }

    fn labels_of(s: &mut TensorSource, epoch: usize, skip: usize) -> Vec<Vec<u32>> {
        s.epoch_from(epoch, skip)
            .unwrap()
            .map(|b| b.unwrap().labels.to_vec1::<u32>().unwrap())
            .collect()
    }

    #[test]
    fn in_order_batches_convert_to_f32() {
        let mut s = source();
        assert_eq!((s.num_samples(), s.num_batches()), (5, 3));
        assert_eq!(labels_of(&mut s, 0, 0), [vec![0, 1], vec![2, 3], vec![4]]);
        let b = s.epoch(0).unwrap().next().unwrap().unwrap();
        assert_eq!(b.x.dtype(), DType::F32);
        assert_eq!(b.x.to_vec2::<f32>().unwrap(), [[0.0, 1.0], [2.0, 3.0]]);
    }

    #[test]
    fn shuffles_per_epoch_reproducibly() {
        let mut s = source().shuffled(7);
        let e0 = labels_of(&mut s, 0, 0);
        let e1 = labels_of(&mut s, 1, 0);
        assert_ne!(e0, e1);
        assert_eq!(e0, labels_of(&mut s, 0, 0));
        assert_eq!(labels_of(&mut s, 1, 1), e1[1..].to_vec());
        let mut all: Vec<u32> = e1.concat();
        all.sort_unstable();
        assert_eq!(all, [0, 1, 2, 3, 4]);
        // The rows follow their labels.
        for b in s.epoch(1).unwrap() {
            let b = b.unwrap();
            let x = b.x.to_vec2::<f32>().unwrap();
            for (row, l) in x.iter().zip(b.labels.to_vec1::<u32>().unwrap()) {
                assert_eq!(row[0], 2.0 * l as f32);
            }
        }
    }

    #[test]
    fn mismatched_inputs_are_refused() {
        let x = Tensor::zeros((4, 2), DType::F32, &Device::Cpu).unwrap();
        let labels = Tensor::from_slice(&[0u32, 1, 0], 3, &Device::Cpu).unwrap();
        assert!(TensorSource::new(x.clone(), labels, 2).is_err());
        let labels = Tensor::from_slice(&[0f32, 1., 0., 1.], 4, &Device::Cpu).unwrap();
        assert!(TensorSource::new(x, labels, 2).is_err());
    }
}
