//! EfficientNet-Lite0 against the PyTorch reference forward pass on the shared photos, the
//! trainable tail's values and gradients, and the loading errors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::VarMap;
use models::{EfficientNetLite0, Lite0Tail, ModelError};
use testkit::{max_abs, max_abs_diff, shared_dir};

/// sha256 of `models/efficientnet_lite0_imagenet.safetensors`, as its SOURCE.md states.
const WEIGHTS_SHA256: &str = "b233dedd18cbfbb5ceb1a87850e619f2a0110db431c0ef0bbea75a9e5ef56a77";

fn weights(shared: &Path) -> PathBuf {
    shared.join("models/efficientnet_lite0_imagenet.safetensors")
}

fn reference(shared: &Path) -> BTreeMap<String, Tensor> {
    let path = shared.join("reference/efficientnet_lite0_features.safetensors");
    candle_core::safetensors::load(&path, &Device::Cpu)
        .expect("load the reference")
        .into_iter()
        .collect()
}

/// Asserts `max |got - want| ≤ 1e-3 · max |want|`.
#[track_caller]
fn assert_parity(what: &str, got: &Tensor, want: &Tensor) {
    let d = max_abs_diff(got, want);
    let scale = max_abs(want);
    eprintln!("{what}: max abs diff {d:e} (reference max {scale})");
    assert!(
        d <= 1e-3 * scale,
        "{what} differs by {d} (reference max {scale})"
    );
}

#[test]
fn lite0_matches_the_pytorch_reference() {
    let Some(shared) = shared_dir("lite0_matches_the_pytorch_reference") else {
        return;
    };
    let path = weights(&shared);
    let net = EfficientNetLite0::load(&path, &Device::Cpu).expect("load Lite0");
    assert_eq!(net.sha256(), WEIGHTS_SHA256);
    assert_eq!(net.path(), path.as_path());
    assert!(net.device().is_cpu());
    let refs = reference(&shared);
    let input = &refs["input"];
    assert_eq!(input.dims(), &[4, 3, 224, 224]);

    let block4 = net.forward_to_block(input, 4).unwrap();
    assert_parity("block4", &block4, &refs["block4"]);
    let block10 = net.forward_blocks(&block4, 5, 10).unwrap();
    assert_parity("block10", &block10, &refs["block10"]);
    let block14 = net.forward_blocks(&block10, 11, 14).unwrap();
    assert_parity("block14", &block14, &refs["block14"]);
    let block15 = net.forward_blocks(&refs["block14"], 15, 15).unwrap();
    assert_parity("block15", &block15, &refs["block15"]);
    assert_parity(
        "block15 from the input",
        &net.forward_to_block(input, 15).unwrap(),
        &refs["block15"],
    );
    let head = net.forward_head(&refs["block15"]).unwrap();
    assert_parity("head", &head, &refs["head"]);
    let pooled = net.pooled(input).unwrap();
    assert_eq!(pooled.dims(), &[4, EfficientNetLite0::FEATURES]);
    assert_parity("pooled", &pooled, &refs["pooled"]);

    // The classifier, read from the weights file by the test.
    let all = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let logits = pooled
        .matmul(&all["_fc.weight"].t().unwrap())
        .unwrap()
        .broadcast_add(&all["_fc.bias"])
        .unwrap();
    assert_parity("logits", &logits, &refs["logits"]);
    // Same top-1 class as PyTorch for every photo.
    let ours = logits.argmax(D::Minus1).unwrap().to_vec1::<u32>().unwrap();
    let theirs = refs["logits"]
        .argmax(D::Minus1)
        .unwrap()
        .to_vec1::<u32>()
        .unwrap();
    assert_eq!(ours, theirs);

    for (last, t) in [
        (4, &refs["block4"]),
        (10, &refs["block10"]),
        (14, &refs["block14"]),
    ] {
        let (c, h, w) = EfficientNetLite0::block_output_shape((224, 224), last).unwrap();
        assert_eq!(&[4, c, h, w], t.dims());
    }
    assert_eq!(EfficientNetLite0::block_output_shape((224, 224), 16), None);
    assert_eq!(EfficientNetLite0::block_output_shape((0, 224), 3), None);
    assert_eq!(
        EfficientNetLite0::block_output_shape((225, 100), 15),
        Some((320, 8, 4))
    );
    // An odd size runs and has the announced shape.
    let small = input.narrow(2, 0, 97).unwrap().narrow(3, 0, 61).unwrap();
    let out = net.forward_to_block(&small, 15).unwrap();
    let (c, h, w) = EfficientNetLite0::block_output_shape((97, 61), 15).unwrap();
    assert_eq!(out.dims(), &[4, c, h, w]);
    // Misuse is an error, not a panic.
    assert!(net.forward_to_block(input, 16).is_err());
    assert!(net.forward_blocks(&refs["block10"], 14, 15).is_err());
    assert!(net.forward_head(&refs["block14"]).is_err());
}

/// Lite0Tail's variables, in [`Lite0Tail::param_names`] order.
fn tail_vars(varmap: &VarMap) -> Vec<Var> {
    let data = varmap.data().lock().unwrap();
    Lite0Tail::param_names()
        .iter()
        .map(|n| {
            data.get(n)
                .unwrap_or_else(|| panic!("variable {n}"))
                .clone()
        })
        .collect()
}

/// The tail from candle's own ops (grouped convolution for the depthwise step).
fn tail_reference(vars: &[Var], x: &Tensor) -> Tensor {
    let t = |i: usize| vars[i].as_tensor();
    let bias = |y: Tensor, b: &Tensor| {
        y.broadcast_add(&b.reshape((1, b.dim(0).unwrap(), 1, 1)).unwrap())
            .unwrap()
    };
    let relu6 = |y: Tensor| y.clamp(0f32, 6f32).unwrap();
    let h = relu6(bias(x.conv2d(t(0), 0, 1, 1, 1).unwrap(), t(1)));
    let e = h.dim(1).unwrap();
    let h = relu6(bias(h.conv2d(t(2), 1, 1, 1, e).unwrap(), t(3)));
    let h = bias(h.conv2d(t(4), 0, 1, 1, 1).unwrap(), t(5));
    let h = relu6(bias(h.conv2d(t(6), 0, 1, 1, 1).unwrap(), t(7)));
    h.mean((2, 3)).unwrap()
}

#[test]
fn lite0_tail_reproduces_pooled_and_its_gradients() {
    let Some(shared) = shared_dir("lite0_tail_reproduces_pooled_and_its_gradients") else {
        return;
    };
    let net = EfficientNetLite0::load(&weights(&shared), &Device::Cpu).unwrap();
    let refs = reference(&shared);
    let varmap = VarMap::new();
    let tail = Lite0Tail::new(&varmap, &net, &Device::Cpu).unwrap();
    assert_eq!(Lite0Tail::param_names().len(), 8);
    assert!(Lite0Tail::param_names().contains(&"_blocks.15._expand_conv.weight".to_string()));
    assert!(Lite0Tail::param_names().contains(&"_conv_head.bias".to_string()));
    let x = &refs["block14"];
    let pooled = tail.forward(x).unwrap();
    assert_parity("tail pooled", &pooled, &refs["pooled"]);

    // Gradients of Σ pooled · r for every variable against candle's own ops.
    let vars = tail_vars(&varmap);
    // A fixed weighting of the outputs (deterministic, of both signs).
    let r = Tensor::arange(0u32, pooled.elem_count() as u32, &Device::Cpu)
        .unwrap()
        .to_dtype(DType::F32)
        .unwrap()
        .affine(0.37, 0.0)
        .unwrap()
        .sin()
        .unwrap()
        .reshape(pooled.dims())
        .unwrap();
    let ours = (&pooled * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let yr = tail_reference(&vars, x);
    assert_parity("tail reference", &yr, &refs["pooled"]);
    let theirs = (&yr * &r).unwrap().sum_all().unwrap().backward().unwrap();
    for (name, v) in Lite0Tail::param_names().iter().zip(&vars) {
        let g = ours
            .get(v.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let gr = theirs.get(v.as_tensor()).unwrap();
        assert_eq!(g.dims(), v.dims(), "{name}");
        assert_parity(&format!("grad {name}"), g, gr);
    }

    // A central finite difference on a few head biases agrees with the gradient.
    let gb = ours
        .get(vars[7].as_tensor())
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let loss = |t: &Lite0Tail| -> f64 {
        let p = t.forward(x).unwrap().to_dtype(DType::F64).unwrap();
        (p * r.to_dtype(DType::F64).unwrap())
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let base = vars[7].as_tensor().to_vec1::<f32>().unwrap();
    for &i in &[3usize, 500, 1279] {
        let eps = 1e-3f32;
        let mut plus = base.clone();
        plus[i] += eps;
        vars[7]
            .set(&Tensor::new(plus.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        let lp = loss(&tail);
        let mut minus = base.clone();
        minus[i] -= eps;
        vars[7]
            .set(&Tensor::new(minus.as_slice(), &Device::Cpu).unwrap())
            .unwrap();
        let lm = loss(&tail);
        let fd = (lp - lm) / (2.0 * eps as f64);
        eprintln!(
            "head bias {i}: finite difference {fd:e}, gradient {:e}",
            gb[i]
        );
        // (A step can cross a ReLU6 kink of one pixel: a few percent of slack.)
        assert!(
            (fd - gb[i] as f64).abs() <= 1e-3 + 3e-2 * fd.abs(),
            "head bias {i}: {fd} vs {}",
            gb[i]
        );
    }
    vars[7]
        .set(&Tensor::new(base.as_slice(), &Device::Cpu).unwrap())
        .unwrap();

    // Values already in the map are kept.
    let zero = Tensor::zeros(1280, DType::F32, &Device::Cpu).unwrap();
    vars[7].set(&zero).unwrap();
    let _again = Lite0Tail::new(&varmap, &net, &Device::Cpu).unwrap();
    assert_eq!(max_abs(tail_vars(&varmap)[7].as_tensor()), 0.0);
}

#[test]
fn loading_errors_name_the_file_and_the_tensor() {
    let Some(shared) = shared_dir("loading_errors_name_the_file_and_the_tensor") else {
        return;
    };
    let path = weights(&shared);
    let all: BTreeMap<String, Tensor> = candle_core::safetensors::load(&path, &Device::Cpu)
        .unwrap()
        .into_iter()
        .collect();
    let origin = Path::new("/somewhere/lite0.safetensors");
    // Every needed tensor is in the file; `_fc` is not needed.
    let specs = EfficientNetLite0::tensor_specs();
    assert!(specs.iter().all(|(n, s)| all[n].dims() == s.as_slice()));
    assert!(specs.iter().all(|(n, _)| !n.starts_with("_fc")));
    assert!(EfficientNetLite0::from_tensors(&all, origin, "x").is_ok());

    let mut missing = all.clone();
    missing.remove("_blocks.7._depthwise_conv.weight");
    let err = EfficientNetLite0::from_tensors(&missing, origin, "x").unwrap_err();
    assert!(matches!(err, ModelError::MissingTensor { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/somewhere/lite0.safetensors")
            && msg.contains("_blocks.7._depthwise_conv.weight"),
        "{msg}"
    );

    let mut wrong = all.clone();
    wrong.insert(
        "_blocks.3._bn1.running_var".into(),
        Tensor::zeros(7, DType::F32, &Device::Cpu).unwrap(),
    );
    let err = EfficientNetLite0::from_tensors(&wrong, origin, "x").unwrap_err();
    assert!(matches!(err, ModelError::ShapeMismatch { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("/somewhere/lite0.safetensors") && msg.contains("_blocks.3._bn1.running_var"),
        "{msg}"
    );

    // Loading a file that lacks a tensor names the file too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("partial.safetensors");
    let mut partial: std::collections::HashMap<String, Tensor> = all.clone().into_iter().collect();
    partial.remove("_conv_head.weight");
    candle_core::safetensors::save(&partial, &file).unwrap();
    let err = EfficientNetLite0::load(&file, &Device::Cpu).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("partial.safetensors") && msg.contains("_conv_head.weight"),
        "{msg}"
    );
}

/// The hub's copy of the weights (`timm/tf_efficientnet_lite0.in1k`) names its tensors as
/// timm does: the same file under timm's names loads to the same network.
#[test]
fn timm_named_weights_load_to_the_same_network() {
    let Some(shared) = testkit::shared_dir("timm_named_weights_load_to_the_same_network") else {
        return;
    };
    let ours = shared.join("models/efficientnet_lite0_imagenet.safetensors");
    let tensors = candle_core::safetensors::load(&ours, &Device::Cpu).unwrap();
    let renamed: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .iter()
        .map(|(name, t)| (timm_named(name), t.clone()))
        .collect();
    assert!(renamed.contains_key("blocks.6.0.conv_pwl.weight"));
    let dir = tempfile::tempdir().unwrap();
    let timm = dir.path().join("model.safetensors");
    candle_core::safetensors::save(&renamed, &timm).unwrap();

    let a = EfficientNetLite0::load(&ours, &Device::Cpu).unwrap();
    let b = EfficientNetLite0::load(&timm, &Device::Cpu).unwrap();
    let refs = candle_core::safetensors::load(
        shared.join("reference/efficientnet_lite0_features.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let x = refs["input"].narrow(0, 0, 2).unwrap();
    assert_eq!(
        testkit::max_abs_diff(&a.pooled(&x).unwrap(), &b.pooled(&x).unwrap()),
        0.0
    );
    // A file with neither naming names the tensor it lacks, in this module's naming.
    let partial: std::collections::HashMap<String, candle_core::Tensor> = renamed
        .into_iter()
        .filter(|(n, _)| n != "conv_head.weight")
        .collect();
    let broken = dir.path().join("broken.safetensors");
    candle_core::safetensors::save(&partial, &broken).unwrap();
    let err = EfficientNetLite0::load(&broken, &Device::Cpu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv_head.weight") && err.contains("broken.safetensors"),
        "{err}"
    );
}

/// timm's name for one of the shared file's tensors (see `efficientnet.rs`'s own mapping; this
/// copy is spelled out independently so the test checks it).
fn timm_named(name: &str) -> String {
    const STARTS: [usize; 7] = [0, 1, 3, 5, 8, 11, 15];
    if let Some(rest) = name.strip_prefix("_blocks.") {
        let (i, layer) = rest.split_once('.').unwrap();
        let i: usize = i.parse().unwrap();
        let stage = STARTS.iter().rposition(|&s| s <= i).unwrap();
        let j = i - STARTS[stage];
        let layer = if i == 0 {
            layer
                .replace("_depthwise_conv", "conv_dw")
                .replace("_bn1", "bn1")
                .replace("_project_conv", "conv_pw")
                .replace("_bn2", "bn2")
        } else {
            layer
                .replace("_expand_conv", "conv_pw")
                .replace("_bn0", "bn1")
                .replace("_depthwise_conv", "conv_dw")
                .replace("_bn1", "bn2")
                .replace("_project_conv", "conv_pwl")
                .replace("_bn2", "bn3")
        };
        return format!("blocks.{stage}.{j}.{layer}");
    }
    name.replacen("_conv_stem", "conv_stem", 1)
        .replacen("_conv_head", "conv_head", 1)
        .replacen("_bn0", "bn1", 1)
        .replacen("_bn1", "bn2", 1)
        .replacen("_fc", "classifier", 1)
}
