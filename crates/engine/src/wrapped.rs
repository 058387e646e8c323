//! Sources made from another source: the same samples and batches, passed through something
//! on the way ([`Wrapped`]).

use crate::data::{BatchIter, BatchSource};
use crate::error::Result;

/// What a [`Wrapped`] source does with the source it wraps.
pub trait Wrap<S> {
    /// The batches of epoch `epoch` (0-based) from batch `skip` on, drawn from `inner`
    /// ([`BatchSource::epoch_from`]) and passed on, changed or observed.
    fn epoch_from<'a>(
        &'a mut self,
        inner: &'a mut S,
        epoch: usize,
        skip: usize,
    ) -> Result<BatchIter<'a>>;
}

/// A [`BatchSource`] over the batches of `inner` passed through `wrap` (timing them, running
/// frozen layers on them, ...): the same samples and the same number of batches as `inner`.
#[derive(Debug, Clone)]
pub struct Wrapped<S, W> {
    /// The source of the batches.
    pub inner: S,
    /// What is done with them.
    pub wrap: W,
}

impl<S, W> Wrapped<S, W> {
    /// `inner`'s batches through `wrap`.
    pub fn new(inner: S, wrap: W) -> Self {
        Self { inner, wrap }
    }
}

impl<S: BatchSource, W: Wrap<S>> BatchSource for Wrapped<S, W> {
    fn num_samples(&self) -> usize {
        self.inner.num_samples()
    }

    fn num_batches(&self) -> usize {
        self.inner.num_batches()
    }

    fn epoch(&mut self, epoch: usize) -> Result<BatchIter<'_>> {
        self.epoch_from(epoch, 0)
    }

    fn epoch_from(&mut self, epoch: usize, skip: usize) -> Result<BatchIter<'_>> {
        self.wrap.epoch_from(&mut self.inner, epoch, skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::{Batch, TensorSource};
    use candle_core::{Device, Tensor};

    /// Counts the batches handed out and doubles the inputs.
    struct Double(usize);

    impl<S: BatchSource> Wrap<S> for Double {
        fn epoch_from<'a>(
            &'a mut self,
            inner: &'a mut S,
            epoch: usize,
            skip: usize,
        ) -> Result<BatchIter<'a>> {
            let count = &mut self.0;
            Ok(Box::new(inner.epoch_from(epoch, skip)?.map(move |b| {
                *count += 1;
                let b = b?;
                Batch::new((b.x * 2.0)?, b.labels)
            })))
        }
    }

    #[test]
    fn a_wrapped_source_has_the_inner_shape_and_passes_batches_through() {
        let x = Tensor::arange(0f32, 5.0, &Device::Cpu)
            .unwrap()
            .reshape((5, 1))
            .unwrap();
        let y = Tensor::zeros(5, candle_core::DType::U32, &Device::Cpu).unwrap();
        let mut s = Wrapped::new(TensorSource::new(x, y, 2).unwrap(), Double(0));
        assert_eq!((s.num_samples(), s.num_batches()), (5, 3));
        let firsts: Vec<f32> = s
            .epoch_from(0, 1)
            .unwrap()
            .map(|b| {
                b.unwrap()
                    .x
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()[0]
            })
            .collect();
        assert_eq!(firsts, [4.0, 8.0]);
        assert_eq!(s.epoch(0).unwrap().count(), 3);
        assert_eq!(s.wrap.0, 5);
    }
}
