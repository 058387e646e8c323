//! Test-time augmentation averages each image's probabilities with its mirror's.

use candle_core::{Device, Tensor};
use models::{Mode, Network};

/// One logit: the mean of the left half of the first channel minus that of the right half.
struct LeftMinusRight;

impl Network for LeftMinusRight {
    fn forward_t(&self, x: &Tensor, _mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        let w = x.dim(3)?;
        let first = x.narrow(1, 0, 1)?;
        let left = first
            .narrow(3, 0, w / 2)?
            .flatten_from(1)?
            .mean_keepdim(1)?;
        let right = first
            .narrow(3, w / 2, w / 2)?
            .flatten_from(1)?
            .mean_keepdim(1)?;
        left - right
    }

    fn output_units(&self) -> usize {
        1
    }
}

fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z).exp())
}

#[test]
fn mirror_averaging_cancels_a_left_right_asymmetry() {
    // Image 0: left 2, right 0; image 1: left 0, right 1 (first channel; others zero).
    let mut data = vec![0f32; 2 * 3 * 2 * 4];
    for row in 0..2 {
        for col in 0..4 {
            data[row * 4 + col] = if col < 2 { 2.0 } else { 0.0 };
            data[3 * 8 + row * 4 + col] = if col < 2 { 0.0 } else { 1.0 };
        }
    }
    let x = Tensor::from_vec(data, (2, 3, 2, 4), &Device::Cpu).unwrap();
    let plain = classify::probabilities(&LeftMinusRight, &x, false)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    assert!((plain[0][1] - sigmoid(2.0)).abs() < 1e-6, "{plain:?}");
    assert!((plain[1][1] - sigmoid(-1.0)).abs() < 1e-6, "{plain:?}");
    let averaged = classify::probabilities(&LeftMinusRight, &x, true)
        .unwrap()
        .to_vec2::<f32>()
        .unwrap();
    for row in &averaged {
        assert!(row.iter().all(|p| (p - 0.5).abs() < 1e-6), "{averaged:?}");
    }
}
