//! End-to-end training: learning, outputs, resume, freezing, NaN guard, early stopping and
//! evaluation, on tiny synthetic image sets.

mod common;

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use common::{Action, LinearNet, TinyNet, Tripwire, bits, bright_dark_sources, three_colours};
use engine::{
    BatchSource, EarlyStopping, EngineError, FitConfig, FitStatus, Interrupt, Metric,
    OptimizerConfig, OutputPaths, Params, TensorSource, Verbosity, Wrapped, evaluate, fit,
};
use models::{Mode, Network};

fn quiet(epochs: usize, optimizer: OptimizerConfig) -> FitConfig {
    let mut c = FitConfig::new(epochs, 42, optimizer);
    c.verbosity = Verbosity::Quiet;
    c
}

fn rmsprop(lr: f64) -> OptimizerConfig {
    let mut c = OptimizerConfig::rmsprop();
    c.learning_rate = Some(lr);
    c
}

#[test]
fn bright_vs_dark_is_learned_and_outputs_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, 3);
    let params = Params::all_trainable(&vm).unwrap();
    let (mut train, mut val) = bright_dark_sources(320, 96, 16);
    let mut config = quiet(4, rmsprop(1e-2));
    config.out_dir = Some(dir.path().to_path_buf());
    config.keep_best = Some(Metric::ValAcc);
    config
        .weights_metadata
        .insert("architecture".into(), "tiny".into());
    let out = fit(&net, &params, &mut train, Some(&mut val), &config).unwrap();

    assert_eq!(out.status, FitStatus::Completed);
    assert_eq!(out.history.epochs.len(), 4);
    let last = out.history.last().unwrap();
    assert!(last.val_acc.unwrap() > 0.95, "{:?}", out.history);
    assert!(last.acc > 0.9, "{:?}", out.history);
    assert!(last.loss < out.history.epochs[0].loss);

    // Independent check of the final weights.
    let e = evaluate(&net, &mut val).unwrap();
    assert!((e.acc - last.val_acc.unwrap()).abs() < 1e-12);
    assert_eq!(e.labels.len(), 96);

    let paths = out.paths.unwrap();
    assert_eq!(paths, OutputPaths::new(dir.path()));
    let csv = std::fs::read_to_string(&paths.history_csv).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "epoch,loss,acc,val_loss,val_acc,seconds,val_seconds,lr"
    );
    assert_eq!(lines.len(), 5);
    assert!(lines[4].starts_with("4,"));
    assert!(lines[4].ends_with(",0.01"));
    let json = std::fs::read_to_string(&paths.history_json).unwrap();
    assert_eq!(engine::History::from_json(&json).unwrap(), out.history);
    // Each epoch records the part of its time validation took.
    for r in &out.history.epochs {
        let v = r.val_seconds.unwrap();
        assert!(v > 0.0 && v < r.seconds, "{r:?}");
    }
    // Without restore_best the parameters hold the last epoch's weights.
    assert_eq!(out.weights_epoch, 4);
    let png = image::open(&paths.curves).unwrap();
    assert_eq!((png.width(), png.height()), (1200, 480));

    // The best weights are a complete artifact of the best epoch.
    let best = out.best.unwrap();
    assert_eq!(best.metric, Metric::ValAcc);
    let meta = artifact::read_metadata(&paths.best_weights).unwrap();
    assert_eq!(meta["architecture"], "tiny");
    assert_eq!(meta["engine.best_epoch"], best.epoch.to_string());
    let vm2 = VarMap::new();
    let net2 = TinyNet::new(&vm2, 1, 1, 99);
    Params::all_trainable(&vm2)
        .unwrap()
        .load(&paths.best_weights)
        .unwrap();
    let e2 = evaluate(&net2, &mut val).unwrap();
    assert!((e2.acc - best.value).abs() < 1e-12);
    assert!(paths.checkpoint.exists());
}

#[test]
fn three_classes_with_softmax() {
    let (x, y) = three_colours(240, 5);
    let (vx, vy) = three_colours(90, 6);
    let mut train = TensorSource::new(x, y, 16).unwrap().shuffled(3);
    let mut val = TensorSource::new(vx, vy, 32).unwrap();
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 3, 3, 4);
    let params = Params::all_trainable(&vm).unwrap();
    let mut c = OptimizerConfig::adam();
    c.learning_rate = Some(1e-2);
    let out = fit(&net, &params, &mut train, Some(&mut val), &quiet(4, c)).unwrap();
    let last = out.history.last().unwrap();
    assert!(last.val_acc.unwrap() > 0.95, "{:?}", out.history);
    let e = evaluate(&net, &mut val).unwrap();
    assert_eq!(e.classes, 3);
    assert_eq!(e.probabilities[0].len(), 3);
    let s: f32 = e.probabilities[0].iter().sum();
    assert!((s - 1.0).abs() < 1e-5);
    let m = e.confusion_matrix();
    assert_eq!(m.iter().flatten().sum::<usize>(), 90);
    assert!(m[0][0] + m[1][1] + m[2][2] > 85, "{m:?}");
}

/// Trains a fresh tiny network (initialised from `init_seed`) and returns its final bits.
fn run_to_end(
    dir: &std::path::Path,
    epochs: usize,
    optimizer: &OptimizerConfig,
    init_seed: u64,
    resume: bool,
    interrupt: Option<(usize, usize)>,
) -> (
    engine::FitOutcome,
    std::collections::BTreeMap<String, Vec<u32>>,
) {
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, init_seed);
    let params = Params::all_trainable(&vm).unwrap();
    let (train, mut val) = bright_dark_sources(96, 32, 16);
    let flag = Interrupt::new();
    let mut train = Wrapped::new(
        train,
        Tripwire {
            epoch: interrupt.map_or(usize::MAX, |i| i.0),
            batch: interrupt.map_or(usize::MAX, |i| i.1),
            action: Action::Interrupt(flag.clone()),
        },
    );
    let mut config = quiet(epochs, optimizer.clone());
    config.out_dir = Some(dir.to_path_buf());
    config.resume = resume;
    config.keep_best = Some(Metric::ValLoss);
    config.early_stopping = Some(EarlyStopping {
        monitor: Metric::ValLoss,
        patience: 100,
        min_delta: 0.0,
    });
    config.interrupt = Some(flag);
    let out = fit(&net, &params, &mut train, Some(&mut val), &config).unwrap();
    (out, bits(&params))
}

fn same_history(a: &engine::History, b: &engine::History) {
    assert_eq!(a.epochs.len(), b.epochs.len());
    for (x, y) in a.epochs.iter().zip(&b.epochs) {
        assert_eq!(
            (x.epoch, x.loss, x.acc, x.val_loss, x.val_acc, x.lr),
            (y.epoch, y.loss, y.acc, y.val_loss, y.val_acc, y.lr)
        );
    }
}

#[test]
fn resume_after_an_epoch_is_bit_identical() {
    let mut adam = OptimizerConfig::adam();
    adam.learning_rate = Some(5e-3);
    let full_dir = tempfile::tempdir().unwrap();
    let (full, full_bits) = run_to_end(full_dir.path(), 4, &adam, 1, false, None);
    assert_eq!(full.status, FitStatus::Completed);

    // Same seed, same build: the same weights.
    let again_dir = tempfile::tempdir().unwrap();
    let (_, again_bits) = run_to_end(again_dir.path(), 4, &adam, 1, false, None);
    assert_eq!(again_bits, full_bits);

    // Stop after epoch 2, then resume into a network initialised differently: the
    // checkpoint restores weights, Adam's moments and step count, and the dropout generator.
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = run_to_end(dir.path(), 2, &adam, 1, false, None);
    assert_eq!(first.history.epochs.len(), 2);
    let (rest, rest_bits) = run_to_end(dir.path(), 4, &adam, 777, true, None);
    assert_eq!(rest.status, FitStatus::Completed);
    assert_eq!(rest_bits, full_bits);
    same_history(&rest.history, &full.history);
    assert_eq!(rest.best, full.best);

    // The best-weights files agree too (tensors bit for bit, and metadata).
    let (a, a_meta) = artifact::load(
        &OutputPaths::new(full_dir.path()).best_weights,
        &Device::Cpu,
    )
    .unwrap();
    let (b, b_meta) =
        artifact::load(&OutputPaths::new(dir.path()).best_weights, &Device::Cpu).unwrap();
    assert_eq!(a_meta, b_meta);
    assert_eq!(a.len(), b.len());
    for (name, t) in &a {
        let x = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = b[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(
            x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            "{name}"
        );
    }
}

#[test]
fn interrupt_mid_epoch_then_resume_is_bit_identical() {
    let mut sgd = OptimizerConfig::sgd(0.05, 0.9);
    sgd.nesterov = Some(true);
    let full_dir = tempfile::tempdir().unwrap();
    let (full, full_bits) = run_to_end(full_dir.path(), 3, &sgd, 1, false, None);

    // Interrupted after the third batch (index 2) of the second epoch (index 1).
    let dir = tempfile::tempdir().unwrap();
    let (stopped, _) = run_to_end(dir.path(), 3, &sgd, 1, false, Some((1, 2)));
    assert_eq!(
        stopped.status,
        FitStatus::Interrupted { epoch: 2, batch: 3 }
    );
    assert_eq!(stopped.history.epochs.len(), 1);
    let (rest, rest_bits) = run_to_end(dir.path(), 3, &sgd, 5, true, None);
    assert_eq!(rest.status, FitStatus::Completed);
    assert_eq!(rest_bits, full_bits);
    same_history(&rest.history, &full.history);

    // Interrupted during the last batch of an epoch: resumes straight into validation.
    let dir = tempfile::tempdir().unwrap();
    let (stopped, _) = run_to_end(dir.path(), 3, &sgd, 1, false, Some((0, 5)));
    assert_eq!(
        stopped.status,
        FitStatus::Interrupted { epoch: 1, batch: 6 }
    );
    let (_, rest_bits) = run_to_end(dir.path(), 3, &sgd, 5, true, None);
    assert_eq!(rest_bits, full_bits);
}

#[test]
fn frozen_weights_stay_bit_identical() {
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, 8);
    let params = Params::from_varmap(&vm, |n| n.starts_with("fc.")).unwrap();
    let before = bits(&params);
    let (mut train, mut val) = bright_dark_sources(64, 32, 16);
    let dir = tempfile::tempdir().unwrap();
    let mut config = quiet(2, OptimizerConfig::sgd(0.05, 0.9));
    config.out_dir = Some(dir.path().to_path_buf());
    fit(&net, &params, &mut train, Some(&mut val), &config).unwrap();
    let after = bits(&params);
    assert_eq!(after["conv.weight"], before["conv.weight"]);
    assert_eq!(after["conv.bias"], before["conv.bias"]);
    assert_ne!(after["fc.weight"], before["fc.weight"]);
    assert_ne!(after["fc.bias"], before["fc.bias"]);
    // The checkpoint holds optimizer state for the trainable parameters only.
    let (tensors, _) =
        artifact::load(&OutputPaths::new(dir.path()).checkpoint, &Device::Cpu).unwrap();
    let state: Vec<&String> = tensors
        .keys()
        .filter(|k| k.starts_with("optimizer/"))
        .collect();
    assert_eq!(
        state,
        ["optimizer/fc.bias/momentum", "optimizer/fc.weight/momentum"]
    );
    assert!(tensors.contains_key("param/conv.weight"));
}

#[test]
fn nan_loss_stops_and_keeps_the_last_good_checkpoint() {
    let opt = rmsprop(1e-2);
    // Reference: one clean epoch.
    let clean_dir = tempfile::tempdir().unwrap();
    {
        let vm = VarMap::new();
        let net = LinearNet::new(&vm, 1, 1, 2);
        let params = Params::all_trainable(&vm).unwrap();
        let (mut train, mut val) = bright_dark_sources(64, 32, 16);
        let mut c = quiet(1, opt.clone());
        c.out_dir = Some(clean_dir.path().to_path_buf());
        fit(&net, &params, &mut train, Some(&mut val), &c).unwrap();
    }
    // Poisoned: NaN inputs in the third batch of the second epoch.
    let dir = tempfile::tempdir().unwrap();
    let vm = VarMap::new();
    let net = LinearNet::new(&vm, 1, 1, 2);
    let params = Params::all_trainable(&vm).unwrap();
    let (train, mut val) = bright_dark_sources(64, 32, 16);
    let mut train = Wrapped::new(
        train,
        Tripwire {
            epoch: 1,
            batch: 2,
            action: Action::Poison,
        },
    );
    let mut c = quiet(3, opt);
    c.out_dir = Some(dir.path().to_path_buf());
    let err = fit(&net, &params, &mut train, Some(&mut val), &c).unwrap_err();
    let checkpoint = OutputPaths::new(dir.path()).checkpoint;
    match &err {
        EngineError::NonFiniteLoss {
            epoch: 2,
            batch: 3,
            checkpoint: Some(p),
            ..
        } => assert_eq!(p, &checkpoint),
        other => panic!("unexpected error: {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("epoch 2, batch 3"), "{msg}");
    assert!(msg.contains("last.safetensors"), "{msg}");
    // The checkpoint on disk is the end of epoch 1, identical to the clean run's.
    let (good, _) = artifact::load(&checkpoint, &Device::Cpu).unwrap();
    let (reference, _) =
        artifact::load(&OutputPaths::new(clean_dir.path()).checkpoint, &Device::Cpu).unwrap();
    for (name, t) in &reference {
        let a = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = good[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b, "{name}");
    }
    // The weights in memory were not touched by the NaN batch: two batches of epoch 2 moved
    // them, but none is NaN.
    assert!(
        bits(&params)
            .values()
            .flatten()
            .all(|&b| f32::from_bits(b).is_finite())
    );
}

#[test]
fn early_stopping_ends_the_run_and_resume_respects_it() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, 2);
    let params = Params::all_trainable(&vm).unwrap();
    let (mut train, mut val) = bright_dark_sources(32, 16, 16);
    // A learning rate too small to change the validation loss by 0.5.
    let mut c = quiet(10, OptimizerConfig::sgd(1e-9, 0.0));
    c.out_dir = Some(dir.path().to_path_buf());
    c.early_stopping = Some(EarlyStopping {
        monitor: Metric::ValLoss,
        patience: 2,
        min_delta: 0.5,
    });
    let out = fit(&net, &params, &mut train, Some(&mut val), &c).unwrap();
    assert_eq!(out.status, FitStatus::EarlyStopped { epoch: 3 });
    assert_eq!(out.history.epochs.len(), 3);
    c.resume = true;
    let again = fit(&net, &params, &mut train, Some(&mut val), &c).unwrap();
    assert_eq!(again.status, FitStatus::EarlyStopped { epoch: 3 });
    assert_eq!(again.history, out.history);
}

#[test]
fn fine_tuning_setup_trains_the_top_model_with_a_frozen_layer() {
    // Cached "feature maps" [N, 4, 2, 2] stored as f16, as the fine-tuning view cache does:
    // class 1 has bright channels 0-1, class 0 bright channels 2-3.
    let n = 128;
    let mut values = Vec::with_capacity(n * 16);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let label = (i % 2) as u32;
        for c in 0..4 {
            let bright = (c < 2) == (label == 1);
            let v = if bright { 1.0f32 } else { 0.0 } + 0.05 * ((i * 7 + c) % 5) as f32;
            values.extend([v; 4]);
        }
        labels.push(label);
    }
    let x = Tensor::from_vec(values, (n, 4, 2, 2), &Device::Cpu)
        .unwrap()
        .to_dtype(candle_core::DType::F16)
        .unwrap();
    let y = Tensor::from_vec(labels, n, &Device::Cpu).unwrap();
    let mut train = TensorSource::new(x.clone(), y.clone(), 16)
        .unwrap()
        .shuffled(1);
    let mut val = TensorSource::new(x, y, 32).unwrap();

    let vm = VarMap::new();
    let mut rng = imagedata::rng::stream(1, "init");
    let config = models::TopModelConfig {
        feature_shape: (4, 2, 2),
        units: 1,
        layers: models::TopLayers::default(),
    };
    let top = models::TopModel::new(&vm, config, &mut rng, &Device::Cpu).unwrap();

    // All trainable, RMSprop: learns.
    let params = Params::all_trainable(&vm).unwrap();
    let out = fit(
        &top,
        &params,
        &mut train,
        Some(&mut val),
        &quiet(3, rmsprop(1e-3)),
    )
    .unwrap();
    assert!(
        out.history.last().unwrap().val_acc.unwrap() > 0.95,
        "{:?}",
        out.history
    );

    // The fine-tuning optimizer (SGD 1e-4, momentum 0.9) with the first layer frozen.
    let params = Params::from_varmap(&vm, |n| n.starts_with("top.dense2")).unwrap();
    let before = bits(&params);
    let out = fit(
        &top,
        &params,
        &mut train,
        Some(&mut val),
        &quiet(2, OptimizerConfig::sgd(1e-4, 0.9)),
    )
    .unwrap();
    assert_eq!(out.status, FitStatus::Completed);
    let after = bits(&params);
    for name in ["top.dense1.weight", "top.dense1.bias"] {
        assert_eq!(after[name], before[name], "{name}");
    }
    for name in ["top.dense2.weight", "top.dense2.bias"] {
        assert_ne!(after[name], before[name], "{name}");
    }
}

/// A network whose logits are its inputs (no parameters): predictions are known exactly.
struct Identity(usize);

impl Network for Identity {
    fn forward_t(&self, x: &Tensor, _mode: &mut Mode<'_>) -> candle_core::Result<Tensor> {
        Ok(x.clone())
    }
    fn output_units(&self) -> usize {
        self.0
    }
}

#[test]
fn evaluate_gives_an_exact_confusion_matrix() {
    // Binary: logits > 0 predict class 1.
    let x = Tensor::from_slice(&[2.0f32, -1.0, 0.5, -3.0, 1.0], (5, 1), &Device::Cpu).unwrap();
    let y = Tensor::from_slice(&[1u32, 0, 0, 1, 1], 5, &Device::Cpu).unwrap();
    let mut src = TensorSource::new(x, y, 2).unwrap();
    let e = evaluate(&Identity(1), &mut src).unwrap();
    assert_eq!(e.predicted, [1, 0, 1, 0, 1]);
    assert_eq!(e.confusion_matrix(), [[1, 1], [1, 2]]);
    assert!((e.acc - 0.6).abs() < 1e-12);
    let p = 1.0 / (1.0 + (-2.0f32).exp());
    assert!((e.probabilities[0][1] - p).abs() < 1e-6);
    assert!((e.probabilities[0][0] - (1.0 - p)).abs() < 1e-6);
    // The loss is the mean binary cross-entropy.
    let expected: f64 = [(2.0, 1), (-1.0, 0), (0.5, 0), (-3.0, 1), (1.0, 1)]
        .iter()
        .map(|&(z, y): &(f64, u32)| {
            let p = 1.0 / (1.0 + (-z).exp());
            if y == 1 { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum::<f64>()
        / 5.0;
    assert!((e.loss - expected).abs() < 1e-6, "{} vs {expected}", e.loss);

    // Three classes: arg-max.
    let x = Tensor::from_slice(
        &[
            3.0f32, 1.0, 0.0, //
            0.0, 2.0, 1.0, //
            0.0, 5.0, 1.0, //
            1.0, 0.0, 4.0,
        ],
        (4, 3),
        &Device::Cpu,
    )
    .unwrap();
    let y = Tensor::from_slice(&[0u32, 1, 2, 2], 4, &Device::Cpu).unwrap();
    let mut src = TensorSource::new(x, y, 3).unwrap();
    let e = evaluate(&Identity(3), &mut src).unwrap();
    assert_eq!(e.predicted, [0, 1, 1, 2]);
    assert_eq!(e.confusion_matrix(), [[1, 0, 0], [0, 1, 0], [0, 1, 1]]);
    assert_eq!(e.labels, [0, 1, 2, 2]);
}

#[test]
fn bad_input_gives_clear_errors() {
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, 2);
    let params = Params::all_trainable(&vm).unwrap();
    let (mut train, mut val) = bright_dark_sources(32, 16, 16);
    let dir = tempfile::tempdir().unwrap();

    // Resuming without a checkpoint.
    let mut c = quiet(1, OptimizerConfig::rmsprop());
    c.out_dir = Some(dir.path().to_path_buf());
    c.resume = true;
    let e = fit(&net, &params, &mut train, Some(&mut val), &c).unwrap_err();
    assert!(matches!(e, EngineError::NoCheckpoint { .. }), "{e}");

    // A checkpoint from another seed or another optimizer is refused.
    c.resume = false;
    fit(&net, &params, &mut train, Some(&mut val), &c).unwrap();
    c.resume = true;
    c.epochs = 2;
    c.seed = 43;
    let e = fit(&net, &params, &mut train, Some(&mut val), &c)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("seed 42") && e.contains("last.safetensors"),
        "{e}"
    );
    c.seed = 42;
    c.optimizer = OptimizerConfig::adam();
    let e = fit(&net, &params, &mut train, Some(&mut val), &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("RMSprop") && e.contains("Adam"), "{e}");

    // A truncated checkpoint is an error naming the file, not a panic.
    c.optimizer = OptimizerConfig::rmsprop();
    let ckpt = OutputPaths::new(dir.path()).checkpoint;
    let bytes = std::fs::read(&ckpt).unwrap();
    std::fs::write(&ckpt, &bytes[..bytes.len() / 2]).unwrap();
    let e = fit(&net, &params, &mut train, Some(&mut val), &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("last.safetensors"), "{e}");

    // Keep-best on a validation metric without validation data.
    let mut c = quiet(1, OptimizerConfig::rmsprop());
    c.keep_best = Some(Metric::ValAcc);
    let e = fit(&net, &params, &mut train, None, &c)
        .unwrap_err()
        .to_string();
    assert!(e.contains("val_acc") && e.contains("validation"), "{e}");

    // Labels beyond the network's classes.
    let x = Tensor::zeros((4, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let y = Tensor::from_slice(&[0u32, 1, 2, 1], 4, &Device::Cpu).unwrap();
    let mut bad = TensorSource::new(x, y, 4).unwrap();
    let e = fit(
        &net,
        &params,
        &mut bad,
        None,
        &quiet(1, OptimizerConfig::rmsprop()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("label 2"), "{e}");

    // Nothing to train.
    let frozen = Params::from_varmap(&vm, |_| false).unwrap();
    let e = fit(
        &net,
        &frozen,
        &mut train,
        None,
        &quiet(1, OptimizerConfig::rmsprop()),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("trainable"), "{e}");
    assert_eq!(train.num_batches(), 2);
}

#[test]
fn restore_best_leaves_the_best_epochs_weights_in_the_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let vm = VarMap::new();
    let net = TinyNet::new(&vm, 1, 1, 5);
    let params = Params::all_trainable(&vm).unwrap();
    let (mut train, mut val) = bright_dark_sources(96, 32, 16);
    let mut config = quiet(4, rmsprop(1e-2));
    config.out_dir = Some(dir.path().to_path_buf());
    config.keep_best = Some(Metric::ValLoss);
    config.restore_best = true;
    let out = fit(&net, &params, &mut train, Some(&mut val), &config).unwrap();
    let best = out.best.unwrap();
    assert_eq!(out.weights_epoch, best.epoch);
    // The parameters score exactly what the best epoch scored.
    let e = evaluate(&net, &mut val).unwrap();
    assert!(
        (e.loss - best.value).abs() < 1e-12,
        "{} vs {best:?}",
        e.loss
    );
    assert_eq!(bits(&params), {
        let vm2 = VarMap::new();
        let _ = TinyNet::new(&vm2, 1, 1, 99);
        let p2 = Params::all_trainable(&vm2).unwrap();
        p2.load(&OutputPaths::new(dir.path()).best_weights).unwrap();
        bits(&p2)
    });
}
