//! End-to-end parity: the VGG16 conv base run through the crate's kernels reproduces
//! torchvision's features of the shared reference photos.

mod common;

use candle_core::{Device, Tensor};

/// torchvision indices of the 13 conv layers, and whether a max-pool follows each.
const LAYERS: [(usize, bool); 13] = [
    (0, false),
    (2, true),
    (5, false),
    (7, true),
    (10, false),
    (12, false),
    (14, true),
    (17, false),
    (19, false),
    (21, true),
    (24, false),
    (26, false),
    (28, true),
];

/// Largest |a - b| over the largest |b|.
fn relative_error(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (common::values(a), common::values(b));
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    a.iter()
        .zip(&b)
        .fold(0.0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

#[test]
fn conv_base_matches_torchvision() {
    let Some(shared) = testkit::shared_dir("conv_base_matches_torchvision") else {
        return;
    };
    let weights_path = testkit::shared_weights(&shared);
    let reference_path = testkit::reference_features(&shared);
    let weights = candle_core::safetensors::load(&weights_path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", weights_path.display()));
    let reference = candle_core::safetensors::load(&reference_path, &Device::Cpu)
        .unwrap_or_else(|e| panic!("{}: {e}", reference_path.display()));
    let mut h = reference["input"].clone();
    let mut block4 = None;
    for (i, (idx, pool)) in LAYERS.iter().enumerate() {
        let w = &weights[&format!("features.{idx}.weight")];
        let b = &weights[&format!("features.{idx}.bias")];
        h = kernels::conv2d_relu(&h, w, Some(b), 1).unwrap();
        if *pool {
            h = kernels::max_pool2d(&h, 2).unwrap();
        }
        if i == 9 {
            block4 = Some(h.clone());
        }
    }
    let e4 = relative_error(&block4.expect("ten layers ran"), &reference["block4_pool"]);
    let e5 = relative_error(&h, &reference["block5_pool"]);
    eprintln!("relative error: block4_pool {e4:.2e}, block5_pool {e5:.2e}");
    assert!(e4 <= 1e-4, "block4_pool relative error {e4}");
    assert!(e5 <= 1e-4, "block5_pool relative error {e5}");
}
