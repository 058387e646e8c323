//! VGG16 conv base against torchvision's output on the shared reference photos.

use candle_core::Device;
use candle_nn::VarMap;
use models::{
    Backbone, BackboneKind, Classifier, FinetuneNet, Head, Network, TopLayers, TopModel,
    TopModelConfig, Vgg16, WeightsResolver, WeightsSource,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use testkit::{max_abs_diff, reference_features, shared_dir, shared_weights};

/// sha256 of `models/vgg16_imagenet_features.safetensors`, as its SOURCE.md states.
const SHARED_WEIGHTS_SHA256: &str =
    "6d3e316e324ab7e1e4c48ddcf4741c29d465f7f60e17ff8efe7aa0befa998c91";

#[test]
fn block4_and_block5_match_torchvision() {
    let Some(shared) = shared_dir("block4_and_block5_match_torchvision") else {
        return;
    };
    let weights = shared_weights(&shared);
    let reference = reference_features(&shared);
    let device = Device::Cpu;

    let vgg = Vgg16::load(&weights, &device).expect("load VGG16 weights");
    assert_eq!(vgg.sha256(), SHARED_WEIGHTS_SHA256);
    assert_eq!(vgg.path(), weights.as_path());

    let refs = candle_core::safetensors::load(&reference, &device).expect("load reference");
    let input = &refs["input"];
    assert_eq!(input.dims(), &[4, 3, 150, 150]);

    let block4 = vgg.forward_blocks(input, 1, 4).unwrap();
    let d4 = max_abs_diff(&block4, &refs["block4_pool"]);
    eprintln!("block4_pool max abs diff {d4:e}");
    assert!(d4 <= 1e-3, "block4_pool differs from torchvision by {d4}");

    let block5 = vgg.forward_blocks(&block4, 5, 5).unwrap();
    let d5 = max_abs_diff(&block5, &refs["block5_pool"]);
    eprintln!("block5_pool max abs diff {d5:e}");
    assert!(d5 <= 1e-3, "block5_pool differs from torchvision by {d5}");

    // The fine-tuning network starts from the pretrained block 5: its output on block-4
    // features equals the top model applied to the reference block-5 features.
    let varmap = VarMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let backbone = Backbone::Vgg16(vgg.clone());
    let config = TopModelConfig {
        feature_shape: (512, 4, 4),
        units: 1,
        layers: TopLayers::default(),
    };
    let head = FinetuneNet::new(
        backbone.tail(&varmap, &device).unwrap(),
        TopModel::new(&varmap, config, &mut rng, &device).unwrap(),
    );
    let via_head = head.forward_eval(&block4).unwrap();
    let via_top = head.top().forward_eval(&refs["block5_pool"]).unwrap();
    assert!(max_abs_diff(&via_head, &via_top) <= 1e-3);

    // The full classifier on raw input runs the same path.
    let classifier = Classifier::new(backbone.clone(), Head::Finetune(head));
    let full = classifier.forward_eval(input).unwrap();
    assert!(max_abs_diff(&full, &via_head) <= 1e-5);
}

#[test]
fn resolving_an_explicit_path_records_its_digest() {
    let Some(shared) = shared_dir("resolving_an_explicit_path_records_its_digest") else {
        return;
    };
    let weights = shared_weights(&shared);
    let resolver = WeightsResolver {
        location: BackboneKind::Vgg16.weights_location(),
        explicit: Some(weights.clone()),
        env_value: None,
        hub_cache: None,
        download: false,
        progress: false,
        endpoint: None,
    };
    let resolved = resolver.resolve().unwrap();
    assert_eq!(resolved.path, weights);
    assert_eq!(resolved.source, WeightsSource::Explicit);
    assert_eq!(resolved.sha256, SHARED_WEIGHTS_SHA256);
    let vgg = Vgg16::load_resolved(&resolved, &Device::Cpu).unwrap();
    assert_eq!(vgg.sha256(), SHARED_WEIGHTS_SHA256);
}
