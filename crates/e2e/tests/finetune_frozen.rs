//! Freezing: blocks 1–4 get no gradient and no optimizer state and stay bit-identical through
//! training, while block 5 and the top move.

mod finetune_fixture;

use candle_core::Device;
use candle_nn::VarMap;
use engine::{BatchSource, FitConfig, FlowSource, Params, TensorSource, Verbosity};
use finetune::{CacheKind, CachePlan, Frozen, FrozenSource};
use finetune_fixture::Fixture;
use imagedata::{ClassMode, DirectoryOptions, FlowOptions, ImageDataGenerator, TargetSize};
use imagedata::{Split, SplitData};
use models::{
    Backbone, BackboneKind, BackboneRef, FinetuneNet, Mode, Network, TopLayers, TopModel,
    TopModelConfig, Vgg16,
};
use stage::{TopRequirements, TrainedTop};
use testkit::bits;

#[test]
fn frozen_blocks_stay_bit_identical_and_block5_moves() {
    let Some(f) = Fixture::new("frozen_blocks_stay_bit_identical_and_block5_moves") else {
        return;
    };
    let p = f.pipeline(&[]);
    f.train_top(&p);
    let device = Device::Cpu;
    let vgg = Vgg16::load(&f.weights, &device).unwrap();
    let frozen_before: Vec<(String, Vec<u32>)> = (1..=4)
        .flat_map(|b| vgg.block_tensors(b))
        .map(|(name, t)| (name, bits(&t)))
        .collect();
    assert_eq!(frozen_before.len(), 20);

    let train = SplitData::scan(&f.data, Split::Train).unwrap();
    let validation = SplitData::scan(&f.data, Split::Validation).unwrap();
    let backbone = Backbone::Vgg16(vgg.clone());
    let top = TrainedTop::load(
        &p.layout().top_model(),
        &TopRequirements {
            classes: &train.classes,
            target_size: (32, 32),
            preprocessing: p.bottleneck.pixel_preprocessing(),
            backbone: &BackboneRef {
                kind: BackboneKind::Vgg16,
                sha256: vgg.sha256().to_string(),
            },
        },
        &device,
    )
    .unwrap();

    // The network fine-tuning trains: block 5 from the pretrained weights, the trained top.
    let varmap = VarMap::new();
    let mut rng = imagedata::rng::stream(7, imagedata::rng::names::FINETUNE_INIT);
    let config = TopModelConfig {
        feature_shape: (512, 1, 1),
        units: 1,
        layers: TopLayers::default(),
    };
    let network = FinetuneNet::new(
        backbone.tail(&varmap, &device).unwrap(),
        TopModel::new(&varmap, config, &mut rng, &device).unwrap(),
    );
    models::load_varmap(&varmap, &top.tensors, &top.path, "top.").unwrap();
    let params = Params::all_trainable(&varmap).unwrap();
    let names: Vec<&str> = params.iter().map(|p| p.name.as_str()).collect();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("features.2") || n.starts_with("top.")),
        "{names:?}"
    );
    assert_eq!(names.len(), 10);
    let start = params.snapshot().unwrap();
    assert_eq!(
        bits(&start["top.dense1.weight"]),
        bits(&top.tensors["top.dense1.weight"])
    );
    for (name, t) in vgg.block_tensors(5) {
        assert_eq!(bits(&start[&name]), bits(&t), "{name} starts pretrained");
    }

    // Live augmentation through the frozen blocks: the loss's gradients reach block 5 and the
    // top, never the frozen weights.
    let generator = ImageDataGenerator::new(
        p.finetune.augment.clone(),
        p.bottleneck.pixel_preprocessing(),
    )
    .unwrap();
    let (flow, _) = generator
        .flow_from_directory(
            &train.root,
            &DirectoryOptions {
                target_size: TargetSize::new(32, 32),
                class_mode: ClassMode::Binary,
                ..Default::default()
            },
            FlowOptions {
                batch_size: 4,
                seed: 7,
                ..Default::default()
            },
            None,
        )
        .unwrap();
    let mut live = FrozenSource::new(FlowSource::new(flow).unwrap(), Frozen(backbone.clone()));
    let batch = live.epoch(0).unwrap().next().unwrap().unwrap();
    assert_eq!(batch.x.dims(), [4, 512, 2, 2]);
    let logits = network.forward_t(&batch.x, &mut Mode::Eval).unwrap();
    let loss = engine::Task::from_units(1)
        .unwrap()
        .loss(&logits, &batch.labels)
        .unwrap();
    let grads = loss.backward().unwrap();
    for (name, t) in (1..=4).flat_map(|b| vgg.block_tensors(b)) {
        assert!(grads.get(&t).is_none(), "{name} got a gradient");
    }
    for p in params.iter() {
        assert!(
            grads.get(p.var.as_tensor()).is_some(),
            "{} got no gradient",
            p.name
        );
    }

    // Training steps, live, with validation on the cached block-4 outputs.
    let sha = vgg.sha256().to_string();
    let plan = CachePlan::new(CacheKind::Validation, &p, &validation, &sha, 100).unwrap();
    plan.build(&backbone, false, None).unwrap();
    let (vx, vl) = plan.load(&device).unwrap();
    let mut val = TensorSource::new(vx, vl, 4).unwrap();
    let mut config = FitConfig::new(2, 7, p.finetune.optimizer.clone());
    config.verbosity = Verbosity::Quiet;
    let outcome = engine::fit(&network, &params, &mut live, Some(&mut val), &config).unwrap();
    assert_eq!(outcome.history.epochs.len(), 2);

    let frozen_after: Vec<(String, Vec<u32>)> = (1..=4)
        .flat_map(|b| vgg.block_tensors(b))
        .map(|(name, t)| (name, bits(&t)))
        .collect();
    assert!(frozen_before == frozen_after, "a frozen weight changed");
    let end = params.snapshot().unwrap();
    for name in [
        "features.24.weight",
        "features.26.weight",
        "features.28.weight",
        "top.dense1.weight",
    ] {
        assert_ne!(bits(&start[name]), bits(&end[name]), "{name} did not move");
    }
    // The pretrained base keeps its own block 5: the trained copy is separate.
    for (name, t) in vgg.block_tensors(5) {
        assert_eq!(bits(&start[&name]), bits(&t), "the base's {name} changed");
    }
}
