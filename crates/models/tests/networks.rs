//! Shapes, parameters, initialisation, dropout and gradients of the networks.

mod common;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use common::{random_vgg16, uniform};
use models::{
    Backbone, Classifier, FinetuneNet, Head, Mode, ModelError, Network, SmallCnn, SmallCnnConfig,
    TopLayers, TopModel, TopModelConfig, Vgg16, Vgg16Block5, dropout, glorot_uniform,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use testkit::{max_abs_diff, values};

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

fn param_count(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

fn var_values(varmap: &VarMap, name: &str) -> Vec<f32> {
    let data = varmap.data().lock().unwrap();
    values(data[name].as_tensor())
}

fn sorted_names(varmap: &VarMap) -> Vec<String> {
    let mut names: Vec<String> = varmap.data().lock().unwrap().keys().cloned().collect();
    names.sort();
    names
}

#[test]
fn small_cnn_has_the_posts_shape_and_parameter_count() {
    let varmap = VarMap::new();
    let net = SmallCnn::new(
        &varmap,
        SmallCnnConfig::default(),
        &mut rng(0),
        &Device::Cpu,
    )
    .unwrap();
    // Keras' model.summary() of the post's network: 1,212,513 parameters.
    assert_eq!(param_count(&varmap), 1_212_513);
    assert_eq!(SmallCnn::feature_shape((150, 150)), Some((64, 17, 17)));
    let expected: Vec<String> = SmallCnn::LAYER_NAMES
        .iter()
        .flat_map(|l| [format!("{l}.bias"), format!("{l}.weight")])
        .collect();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted_names(&varmap), expected_sorted);

    let x = uniform(&[2, 3, 150, 150], 1);
    let y = net.forward_eval(&x).unwrap();
    assert_eq!(y.dims(), &[2, 1]);
    assert_eq!(net.output_units(), 1);
    let p = net.predict_proba(&x).unwrap();
    assert_eq!(p.dims(), &[2, 2]);
    for row in p.to_vec2::<f32>().unwrap() {
        assert!((row[0] + row[1] - 1.0).abs() < 1e-6);
    }
}

#[test]
fn small_cnn_categorical_and_other_sizes() {
    let varmap = VarMap::new();
    let config = SmallCnnConfig {
        input_size: (64, 48),
        units: 3,
    };
    let net = SmallCnn::new(&varmap, config, &mut rng(0), &Device::Cpu).unwrap();
    let y = net.forward_eval(&uniform(&[3, 3, 64, 48], 2)).unwrap();
    assert_eq!(y.dims(), &[3, 3]);
    let p = net.predict_proba(&uniform(&[3, 3, 64, 48], 2)).unwrap();
    for row in p.to_vec2::<f32>().unwrap() {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    // A size built for must be the size fed.
    assert!(net.forward_eval(&uniform(&[1, 3, 48, 64], 2)).is_err());
    assert!(net.forward_eval(&uniform(&[1, 1, 64, 48], 2)).is_err());

    // The smallest input that survives three conv + pool stages.
    let tiny = SmallCnnConfig {
        input_size: (SmallCnn::MIN_INPUT, SmallCnn::MIN_INPUT),
        units: 1,
    };
    let net = SmallCnn::new(&VarMap::new(), tiny, &mut rng(0), &Device::Cpu).unwrap();
    assert_eq!(
        net.forward_eval(&uniform(&[1, 3, 22, 22], 3))
            .unwrap()
            .dims(),
        &[1, 1]
    );
    let too_small = SmallCnnConfig {
        input_size: (21, 150),
        units: 1,
    };
    let err = SmallCnn::new(&VarMap::new(), too_small, &mut rng(0), &Device::Cpu).unwrap_err();
    assert!(matches!(err, ModelError::InvalidConfig(_)), "{err:?}");
    let no_units = SmallCnnConfig {
        input_size: (150, 150),
        units: 0,
    };
    assert!(SmallCnn::new(&VarMap::new(), no_units, &mut rng(0), &Device::Cpu).is_err());
}

#[test]
fn top_model_has_the_posts_shape_and_parameter_count() {
    let varmap = VarMap::new();
    let config = TopModelConfig {
        feature_shape: (512, 4, 4),
        units: 1,
        layers: TopLayers::default(),
    };
    let top = TopModel::new(&varmap, config, &mut rng(0), &Device::Cpu).unwrap();
    // Keras' summary of the post's top model on 4×4×512 features: 2,097,665 parameters.
    assert_eq!(param_count(&varmap), 2_097_665);
    assert_eq!(
        sorted_names(&varmap),
        [
            "top.dense1.bias",
            "top.dense1.weight",
            "top.dense2.bias",
            "top.dense2.weight"
        ]
    );
    let features = uniform(&[5, 512, 4, 4], 4);
    let y = top.forward_eval(&features).unwrap();
    assert_eq!(y.dims(), &[5, 1]);
    // Flat features give the same result.
    let flat = top
        .forward_eval(&features.flatten_from(1).unwrap())
        .unwrap();
    assert_eq!(max_abs_diff(&y, &flat), 0.0);
    // Features of another shape are refused.
    assert!(top.forward_eval(&uniform(&[5, 512, 9, 9], 4)).is_err());

    let top5 = TopModel::new(
        &VarMap::new(),
        TopModelConfig {
            feature_shape: (512, 4, 4),
            units: 5,
            layers: TopLayers::default(),
        },
        &mut rng(0),
        &Device::Cpu,
    )
    .unwrap();
    assert_eq!(top5.forward_eval(&features).unwrap().dims(), &[5, 5]);
}

#[test]
fn initialisation_is_glorot_uniform_with_zero_biases_and_seeded() {
    let a = VarMap::new();
    SmallCnn::new(&a, SmallCnnConfig::default(), &mut rng(42), &Device::Cpu).unwrap();
    let w = var_values(&a, "dense1.weight");
    let (fan_in, fan_out) = (64 * 17 * 17, 64);
    let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
    assert!(w.iter().all(|&v| (v as f64).abs() <= limit));
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    assert!(mean.abs() < 0.01 * limit, "mean {mean}");
    let expected_var = limit * limit / 3.0;
    assert!(
        (var / expected_var - 1.0).abs() < 0.01,
        "variance {var} vs {expected_var}"
    );
    // Values fill the range.
    let max = w.iter().fold(0f32, |m, &v| m.max(v.abs())) as f64;
    assert!(max > 0.999 * limit);

    // Convolutions use Keras' fans: in·kh·kw and out·kh·kw.
    let c = var_values(&a, "conv2.weight");
    let climit = (6.0f64 / (32.0 * 9.0 + 32.0 * 9.0)).sqrt();
    assert!(c.iter().all(|&v| (v as f64).abs() <= climit));
    let cvar = c.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / c.len() as f64;
    assert!(
        (cvar / (climit * climit / 3.0) - 1.0).abs() < 0.05,
        "conv variance {cvar}"
    );

    for bias in [
        "conv1.bias",
        "conv2.bias",
        "conv3.bias",
        "dense1.bias",
        "dense2.bias",
    ] {
        assert!(
            var_values(&a, bias).iter().all(|&v| v == 0.0),
            "{bias} not zero"
        );
    }

    // Same seed, same weights; another seed, other weights.
    let b = VarMap::new();
    SmallCnn::new(&b, SmallCnnConfig::default(), &mut rng(42), &Device::Cpu).unwrap();
    let c2 = VarMap::new();
    SmallCnn::new(&c2, SmallCnnConfig::default(), &mut rng(43), &Device::Cpu).unwrap();
    for name in sorted_names(&a) {
        assert_eq!(var_values(&a, &name), var_values(&b, &name), "{name}");
    }
    assert_ne!(
        var_values(&a, "conv1.weight"),
        var_values(&c2, "conv1.weight")
    );

    // The generic initialiser uses the same rule.
    let t = glorot_uniform(&[10, 20], &mut rng(1), &Device::Cpu).unwrap();
    let l = (6.0f32 / 30.0).sqrt();
    assert!(values(&t).iter().all(|v| v.abs() <= l));
}

#[test]
fn building_over_existing_variables_keeps_them() {
    let varmap = VarMap::new();
    let config = TopModelConfig {
        feature_shape: (8, 2, 2),
        units: 1,
        layers: TopLayers::default(),
    };
    TopModel::new(&varmap, config, &mut rng(1), &Device::Cpu).unwrap();
    let before = var_values(&varmap, "top.dense1.weight");
    let top = TopModel::new(&varmap, config, &mut rng(2), &Device::Cpu).unwrap();
    assert_eq!(var_values(&varmap, "top.dense1.weight"), before);
    // The network reads the map's variables: setting one changes the output.
    let x = uniform(&[2, 8, 2, 2], 9);
    let y0 = top.forward_eval(&x).unwrap();
    {
        let data = varmap.data().lock().unwrap();
        let b = &data["top.dense2.bias"];
        b.set(&Tensor::ones(1, DType::F32, &Device::Cpu).unwrap())
            .unwrap();
    }
    let y1 = top.forward_eval(&x).unwrap();
    assert!((values(&y1)[0] - values(&y0)[0] - 1.0).abs() < 1e-5);
    // A clashing shape is an error, not a silent replacement.
    let other = TopModelConfig {
        feature_shape: (8, 2, 3),
        units: 1,
        layers: TopLayers::default(),
    };
    assert!(TopModel::new(&varmap, other, &mut rng(1), &Device::Cpu).is_err());
}

#[test]
fn dropout_is_seeded_in_training_and_identity_in_eval() {
    let x = (uniform(&[64, 256], 7) + 0.5).unwrap();
    assert_eq!(
        max_abs_diff(&dropout(&x, 0.5, &mut Mode::Eval).unwrap(), &x),
        0.0
    );

    let mut r1 = rng(11);
    let mut r2 = rng(11);
    let a = dropout(&x, 0.5, &mut Mode::Train { rng: &mut r1 }).unwrap();
    let b = dropout(&x, 0.5, &mut Mode::Train { rng: &mut r2 }).unwrap();
    assert_eq!(values(&a), values(&b));
    // The generator advanced: the next mask differs.
    let c = dropout(&x, 0.5, &mut Mode::Train { rng: &mut r1 }).unwrap();
    assert_ne!(values(&a), values(&c));
    let d = dropout(&x, 0.5, &mut Mode::Train { rng: &mut rng(12) }).unwrap();
    assert_ne!(values(&a), values(&d));

    // Kept values are scaled by 1 / (1 - rate); about half are dropped.
    let xs = values(&x);
    let ys = values(&a);
    let dropped = ys.iter().filter(|&&v| v == 0.0).count() as f64 / ys.len() as f64;
    assert!((dropped - 0.5).abs() < 0.02, "dropped fraction {dropped}");
    for (xv, yv) in xs.iter().zip(&ys) {
        assert!(*yv == 0.0 || (yv - 2.0 * xv).abs() < 1e-6);
    }

    let mut r = rng(0);
    assert_eq!(
        values(&dropout(&x, 0.0, &mut Mode::Train { rng: &mut r }).unwrap()),
        xs
    );
    assert!(dropout(&x, 1.0, &mut Mode::Train { rng: &mut r }).is_err());
    assert!(Mode::Train { rng: &mut r }.is_train());
    assert!(!Mode::Eval.is_train());
}

#[test]
fn networks_use_dropout_only_in_training() {
    let varmap = VarMap::new();
    let config = TopModelConfig {
        feature_shape: (16, 2, 2),
        units: 1,
        layers: TopLayers::default(),
    };
    let top = TopModel::new(&varmap, config, &mut rng(5), &Device::Cpu).unwrap();
    let x = uniform(&[8, 16, 2, 2], 6);
    let e1 = top.forward_eval(&x).unwrap();
    let e2 = top.forward_t(&x, &mut Mode::Eval).unwrap();
    assert_eq!(values(&e1), values(&e2));
    let t1 = top
        .forward_t(&x, &mut Mode::Train { rng: &mut rng(9) })
        .unwrap();
    let t2 = top
        .forward_t(&x, &mut Mode::Train { rng: &mut rng(9) })
        .unwrap();
    assert_eq!(values(&t1), values(&t2));
    assert_ne!(values(&t1), values(&e1));
}

#[test]
fn gradients_reach_every_parameter() {
    let varmap = VarMap::new();
    let config = SmallCnnConfig {
        input_size: (32, 32),
        units: 1,
    };
    let net = SmallCnn::new(&varmap, config, &mut rng(3), &Device::Cpu).unwrap();
    let x = uniform(&[4, 3, 32, 32], 8);
    let y = net
        .forward_t(&x, &mut Mode::Train { rng: &mut rng(4) })
        .unwrap();
    let loss = y.sqr().unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for var in varmap.all_vars() {
        let g = grads
            .get(var.as_tensor())
            .expect("a gradient for every parameter");
        assert_eq!(g.dims(), var.dims());
    }
}

#[test]
fn vgg16_runs_block_by_block() {
    let vgg = random_vgg16(1);
    let x = uniform(&[2, 3, 64, 48], 2);
    let full = vgg.forward(&x).unwrap();
    assert_eq!(full.dims(), &[2, 512, 2, 1]);
    let b2 = vgg.forward_blocks(&x, 1, 2).unwrap();
    assert_eq!(b2.dims(), &[2, 128, 16, 12]);
    let b4 = vgg.forward_blocks(&b2, 3, 4).unwrap();
    assert_eq!(b4.dims(), &[2, 512, 4, 3]);
    let b5 = vgg.forward_blocks(&b4, 5, 5).unwrap();
    assert!(
        max_abs_diff(&b5, &full)
            <= 1e-5 * (1.0 + values(&full).iter().fold(0f32, |m, v| m.max(v.abs())))
    );
    assert_eq!(Vgg16::output_shape((150, 150), 4), Some((512, 9, 9)));
    assert_eq!(Vgg16::output_shape((150, 150), 5), Some((512, 4, 4)));
    assert_eq!(Vgg16::output_shape((31, 150), 5), None);
    assert_eq!(Vgg16::output_shape((150, 150), 6), None);

    // Bad ranges, channels and sizes are errors.
    assert!(vgg.forward_blocks(&x, 0, 2).is_err());
    assert!(vgg.forward_blocks(&x, 3, 2).is_err());
    assert!(vgg.forward_blocks(&x, 1, 6).is_err());
    assert!(vgg.forward_blocks(&x, 2, 3).is_err());
    assert!(vgg.forward(&uniform(&[1, 3, 31, 64], 3)).is_err());
    assert!(vgg.forward(&uniform(&[1, 1, 64, 64], 3)).is_err());
    assert_eq!(vgg.block_tensors(5).len(), 6);
    assert!(vgg.block_tensors(0).is_empty());
}

#[test]
fn the_finetune_network_starts_from_the_base_and_owns_its_copy() {
    let vgg = random_vgg16(2);
    let varmap = VarMap::new();
    let backbone = Backbone::Vgg16(vgg.clone());
    let tail = backbone.tail(&varmap, &Device::Cpu).unwrap();
    let top_config = TopModelConfig {
        feature_shape: Vgg16::output_shape((64, 64), 5).unwrap(),
        units: 1,
        layers: TopLayers::default(),
    };
    let head = FinetuneNet::new(
        tail,
        TopModel::new(&varmap, top_config, &mut rng(1), &Device::Cpu).unwrap(),
    );
    let mut expected = Vgg16Block5::param_names();
    expected.extend(
        [
            "top.dense1.bias",
            "top.dense1.weight",
            "top.dense2.bias",
            "top.dense2.weight",
        ]
        .map(String::from),
    );
    expected.sort();
    assert_eq!(sorted_names(&varmap), expected);
    for (name, t) in vgg.block_tensors(5) {
        assert_eq!(var_values(&varmap, &name), values(&t), "{name}");
    }

    let x = uniform(&[2, 3, 64, 64], 4);
    let block4 = vgg.forward_blocks(&x, 1, 4).unwrap();
    let via_head = head.forward_eval(&block4).unwrap();
    assert_eq!(via_head.dims(), &[2, 1]);
    let via_top = head
        .top()
        .forward_eval(&vgg.forward_blocks(&block4, 5, 5).unwrap())
        .unwrap();
    assert!(max_abs_diff(&via_head, &via_top) < 1e-4);
    let classifier = Classifier::new(backbone.clone(), Head::Finetune(head.clone()));
    assert_eq!(
        max_abs_diff(&classifier.forward_eval(&x).unwrap(), &via_head),
        0.0
    );
    assert_eq!(classifier.output_units(), 1);

    // Training block 5 changes the map's variables, never the base.
    let base_before = values(&vgg.block_tensors(5)[0].1);
    {
        let data = varmap.data().lock().unwrap();
        let w = &data["features.24.weight"];
        w.set(&w.as_tensor().zeros_like().unwrap()).unwrap();
    }
    assert_eq!(values(&vgg.block_tensors(5)[0].1), base_before);
    assert!(
        var_values(&varmap, "features.24.weight")
            .iter()
            .all(|&v| v == 0.0)
    );

    // Gradients reach block 5 and the top only.
    let loss = head
        .forward_t(&block4, &mut Mode::Train { rng: &mut rng(2) })
        .unwrap()
        .sum_all()
        .unwrap();
    let grads = loss.backward().unwrap();
    for var in varmap.all_vars() {
        assert!(grads.get(var.as_tensor()).is_some());
    }
    for (_, t) in vgg.block_tensors(4) {
        assert!(grads.get(&t).is_none());
    }
}

#[test]
fn the_top_classifier_runs_all_five_blocks() {
    let vgg = random_vgg16(3);
    let varmap = VarMap::new();
    let top = TopModel::new(
        &varmap,
        TopModelConfig {
            feature_shape: Vgg16::output_shape((32, 32), 5).unwrap(),
            units: 4,
            layers: TopLayers::default(),
        },
        &mut rng(0),
        &Device::Cpu,
    )
    .unwrap();
    let x = uniform(&[3, 3, 32, 32], 5);
    let classifier = Classifier::new(Backbone::Vgg16(vgg.clone()), Head::Top(top.clone()));
    let y = classifier.forward_eval(&x).unwrap();
    assert_eq!(y.dims(), &[3, 4]);
    let expected = top.forward_eval(&vgg.forward(&x).unwrap()).unwrap();
    assert_eq!(max_abs_diff(&y, &expected), 0.0);
}
