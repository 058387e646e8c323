//! Training on cached augmented views: each epoch sees one view of every image, as live
//! augmentation would show one random variant of it.

use candle_core::{DType, Tensor};
use engine::{Batch, BatchIter, BatchSource, EngineError};
use imagedata::rng::names;
use rand::Rng;
use rand::seq::SliceRandom;

/// Batches over `K` cached views per image (rows `i·K .. i·K + K` belong to image `i`): epoch
/// `e` takes one view per image, drawn from `imagedata::rng::substream(seed, "views", e)`, in
/// an order shuffled from `substream(seed, "shuffle", e)`. An epoch has as many samples as
/// there are images, so epochs compare one for one with plain training.
#[derive(Debug, Clone)]
pub struct ViewSource {
    x: Tensor,
    labels: Tensor,
    views: usize,
    images: usize,
    batch_size: usize,
    seed: u64,
}

impl ViewSource {
    /// A source over `x` `[N·K, ...]` and `labels` `[N·K]` (u32) with `views` = K views per
    /// image, in batches of `batch_size`, seeded with `seed`. The views of one image must
    /// share its label.
    pub fn new(
        x: Tensor,
        labels: Tensor,
        views: usize,
        batch_size: usize,
        seed: u64,
    ) -> engine::Result<Self> {
        let labels = labels.to_device(x.device())?;
        Batch::new(x.clone(), labels.clone())?;
        if views == 0 || batch_size == 0 {
            return Err(EngineError::Config {
                key: if views == 0 { "views" } else { "batch_size" }.into(),
                reason: "must be at least 1".into(),
            });
        }
        let rows = labels.dims()[0];
        if rows % views != 0 {
            return Err(EngineError::Data {
                what: "augmented views".into(),
                reason: format!("{rows} rows are not a whole number of {views}-view groups"),
            });
        }
        let values = labels.to_vec1::<u32>()?;
        if let Some(i) = values
            .chunks(views)
            .position(|g| g.iter().any(|&l| l != g[0]))
        {
            return Err(EngineError::Data {
                what: "augmented views".into(),
                reason: format!("the views of image {i} have different labels"),
            });
        }
        Ok(Self {
            x,
            labels,
            views,
            images: rows / views,
            batch_size,
            seed,
        })
    }

    /// The rows epoch `epoch` uses, in order.
    pub fn rows(&self, epoch: usize) -> Vec<u32> {
        let mut pick = imagedata::rng::substream(self.seed, names::VIEW_PICK, epoch as u64);
        let mut rows: Vec<u32> = (0..self.images)
            .map(|i| (i * self.views + pick.random_range(0..self.views)) as u32)
            .collect();
        let mut shuffle = imagedata::rng::substream(self.seed, names::SHUFFLE, epoch as u64);
        rows.shuffle(&mut shuffle);
        rows
    }

    fn batch(&self, rows: &[u32]) -> engine::Result<Batch> {
        let idx = Tensor::from_slice(rows, rows.len(), self.x.device())?;
        let mut x = self.x.index_select(&idx, 0)?;
        if x.dtype() != DType::F32 {
            x = x.to_dtype(DType::F32)?;
        }
        Ok(Batch {
            x,
            labels: self.labels.index_select(&idx, 0)?,
        })
    }
}

impl BatchSource for ViewSource {
    fn num_samples(&self) -> usize {
        self.images
    }

    fn num_batches(&self) -> usize {
        self.images.div_ceil(self.batch_size)
    }

    fn epoch(&mut self, epoch: usize) -> engine::Result<BatchIter<'_>> {
        self.epoch_from(epoch, 0)
    }

    fn epoch_from(&mut self, epoch: usize, skip: usize) -> engine::Result<BatchIter<'_>> {
        let chunks: Vec<Vec<u32>> = self
            .rows(epoch)
            .chunks(self.batch_size)
            .skip(skip)
            .map(<[u32]>::to_vec)
            .collect();
        let this = &*self;
        Ok(Box::new(
            chunks.into_iter().map(move |rows| this.batch(&rows)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn source() -> ViewSource {
        // 4 images × 3 views; row r holds the value r, image i has label i % 2.
        let x = Tensor::arange(0f32, 12.0, &Device::Cpu)
            .unwrap()
            .reshape((12, 1))
            .unwrap();
        let labels: Vec<u32> = (0..12).map(|r| (r / 3) % 2).collect();
        let labels = Tensor::from_vec(labels, 12, &Device::Cpu).unwrap();
        ViewSource::new(x, labels, 3, 3, 5).unwrap()
    }

    #[test]
    fn one_view_per_image_per_epoch_reproducibly() {
        let mut s = source();
        assert_eq!((s.num_samples(), s.num_batches()), (4, 2));
        let mut seen_views = std::collections::BTreeSet::new();
        for epoch in 0..20 {
            let rows = s.rows(epoch);
            let mut images: Vec<u32> = rows.iter().map(|r| r / 3).collect();
            images.sort_unstable();
            assert_eq!(images, [0, 1, 2, 3], "every image once");
            seen_views.extend(rows.iter().map(|r| r % 3));
            assert_eq!(rows, s.rows(epoch));
            let batches: Vec<Batch> = s.epoch(epoch).unwrap().map(|b| b.unwrap()).collect();
            assert_eq!(batches.len(), 2);
            for b in &batches {
                let x = b.x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let l = b.labels.to_vec1::<u32>().unwrap();
                for (v, l) in x.iter().zip(l) {
                    assert_eq!((*v as u32 / 3) % 2, l, "rows keep their labels");
                }
            }
            let skipped: Vec<Batch> = s
                .epoch_from(epoch, 1)
                .unwrap()
                .map(|b| b.unwrap())
                .collect();
            assert_eq!(
                skipped[0].labels.to_vec1::<u32>().unwrap(),
                batches[1].labels.to_vec1::<u32>().unwrap()
            );
        }
        assert_eq!(seen_views.len(), 3, "every view is used sometimes");
        assert_ne!(s.rows(0), s.rows(1));
    }

    #[test]
    fn inconsistent_views_are_refused() {
        let x = Tensor::zeros((6, 2), DType::F32, &Device::Cpu).unwrap();
        let labels = Tensor::from_slice(&[0u32, 0, 1, 1, 1, 1], 6, &Device::Cpu).unwrap();
        assert!(ViewSource::new(x.clone(), labels.clone(), 4, 2, 0).is_err());
        let err = ViewSource::new(x.clone(), labels.clone(), 3, 2, 0).unwrap_err();
        assert!(err.to_string().contains("image 0"), "{err}");
        assert!(ViewSource::new(x, labels, 2, 0, 0).is_err());
    }
}
