//! Grad-CAM: against PyTorch's autograd on the real VGG16 and EfficientNet-Lite0 weights and
//! the shared reference inputs (`tests/data/gradcam_reference.safetensors`, from
//! `scripts/reference/gradcam_torch.py`), and on its own: the channel weights are the
//! numerical derivative of the class score, a map where one location drives the score peaks
//! there, the top-model and fine-tuned paths agree, and the models that cannot be explained
//! say why.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use models::gradcam::{class_score, grad_cam_tensors};
use models::{
    Backbone, Classifier, EfficientNetLite0, FinetuneNet, GradCam, Head, HubBackbone, HubModel,
    Model, ModelError, Network, SmallCnn, SmallCnnConfig, TopLayers, TopModel, TopModelConfig,
    Vgg16,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use testkit::shared_dir;

fn fixture_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/gradcam_reference.safetensors")
}

/// A top model whose parameters are `tensors` (`top.dense1.weight`, ...; the hidden layer's
/// size and the units read off their shapes).
fn top_from(tensors: &BTreeMap<String, Tensor>, feature_shape: (usize, usize, usize)) -> TopModel {
    let varmap = VarMap::new();
    {
        let mut data = varmap.data().lock().unwrap();
        for (name, t) in tensors {
            data.insert(name.clone(), Var::from_tensor(t).unwrap());
        }
    }
    let hidden_units = tensors
        .get("top.dense1.weight")
        .map_or(0, |w| w.dim(0).unwrap());
    let units = tensors["top.dense2.weight"].dim(0).unwrap();
    let config = TopModelConfig {
        feature_shape,
        units,
        layers: TopLayers {
            hidden_units,
            dropout: 0.5,
        },
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    TopModel::new(&varmap, config, &mut rng, &Device::Cpu).unwrap()
}

/// A random top model on feature maps of `feature_shape`.
fn random_top(
    feature_shape: (usize, usize, usize),
    hidden: usize,
    units: usize,
    seed: u64,
) -> TopModel {
    let config = TopModelConfig {
        feature_shape,
        units,
        layers: TopLayers {
            hidden_units: hidden,
            dropout: 0.5,
        },
    };
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    TopModel::new(&VarMap::new(), config, &mut rng, &Device::Cpu).unwrap()
}

/// One case of the reference: its top model's tensors and the expected cams
/// `[classes, N, h, w]`.
struct Case {
    top: BTreeMap<String, Tensor>,
    cams: Tensor,
}

fn reference_case(all: &BTreeMap<String, Tensor>, case: &str) -> Case {
    let prefix = format!("{case}/");
    let top = all
        .iter()
        .filter_map(|(k, t)| Some((k.strip_prefix(&prefix)?.to_string(), t.clone())))
        .filter(|(k, _)| k.starts_with("top."))
        .collect();
    Case {
        top,
        cams: all[&format!("{case}/cams")].clone(),
    }
}

/// The largest `max |ours - reference| / max reference` over the images, asserting each is
/// at most 1e-3.
#[track_caller]
fn check_cams(what: &str, ours: &[GradCam], reference: &Tensor) -> f32 {
    let (n, h, w) = reference.dims3().unwrap();
    assert_eq!(ours.len(), n, "{what}");
    let want = reference.flatten_from(1).unwrap().to_vec2::<f32>().unwrap();
    let mut worst = 0.0f32;
    for (i, (got, want)) in ours.iter().zip(&want).enumerate() {
        assert_eq!((got.height, got.width), (h, w), "{what}, image {i}");
        let scale = want.iter().copied().fold(0.0, f32::max);
        assert!(
            scale > 0.0,
            "{what}, image {i}: the reference map is all zero"
        );
        let d = got
            .values
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let rel = d / scale;
        worst = worst.max(rel);
        assert!(
            rel <= 1e-3,
            "{what}, image {i}: max diff {d:e} is {rel:e} of the reference's max {scale:e}\n\
             ours {:?}\nwant {want:?}",
            got.values
        );
    }
    worst
}

/// Every class of `case` through the top-model classifier, one class through the fine-tuned
/// one (its tail starts from the pretrained weights, so it explains the same map).
fn check_case(backbone: &Backbone, input: &Tensor, all: &BTreeMap<String, Tensor>, case: &str) {
    let Case { top, cams } = reference_case(all, case);
    let (classes, _, h, w) = cams.dims4().unwrap();
    let feature_shape = match backbone {
        Backbone::Vgg16(_) => (512, h, w),
        _ => (EfficientNetLite0::FEATURES, 1, 1),
    };
    let top = top_from(&top, feature_shape);
    let classifier = Classifier::new(backbone.clone(), Head::Top(top.clone()));
    let mut worst = 0.0f32;
    for class in 0..classes {
        let ours = classifier.grad_cam(input, class).unwrap();
        let want = cams.get(class).unwrap();
        worst = worst.max(check_cams(&format!("{case} class {class}"), &ours, &want));
    }
    let varmap = VarMap::new();
    let tail = backbone.tail(&varmap, &Device::Cpu).unwrap();
    let finetuned = Classifier::new(
        backbone.clone(),
        Head::Finetune(FinetuneNet::new(tail, top)),
    );
    let last = classes - 1;
    let ours = finetuned.grad_cam(input, last).unwrap();
    let fine = check_cams(
        &format!("{case} fine-tuned, class {last}"),
        &ours,
        &cams.get(last).unwrap(),
    );
    eprintln!(
        "{case}: worst |ours - torch| / max(torch) = {worst:e} (top model), {fine:e} (fine-tuned)"
    );
}

fn load_reference() -> BTreeMap<String, Tensor> {
    candle_core::safetensors::load(fixture_path(), &Device::Cpu)
        .expect("load the Grad-CAM reference")
        .into_iter()
        .collect()
}

#[test]
fn vgg16_cams_match_pytorch() {
    let Some(shared) = shared_dir("vgg16_cams_match_pytorch") else {
        return;
    };
    let vgg = Vgg16::load(&testkit::shared_weights(&shared), &Device::Cpu).unwrap();
    let refs =
        candle_core::safetensors::load(testkit::reference_features(&shared), &Device::Cpu).unwrap();
    let input = &refs["input"];
    assert_eq!(input.dims(), &[4, 3, 150, 150]);
    let all = load_reference();
    let backbone = Backbone::Vgg16(vgg);
    for case in ["vgg16_binary", "vgg16_categorical"] {
        check_case(&backbone, input, &all, case);
    }
}

#[test]
fn efficientnet_lite0_cams_match_pytorch() {
    let Some(shared) = shared_dir("efficientnet_lite0_cams_match_pytorch") else {
        return;
    };
    let path = shared.join("models/efficientnet_lite0_imagenet.safetensors");
    let net = EfficientNetLite0::load(&path, &Device::Cpu).unwrap();
    let refs = candle_core::safetensors::load(
        shared.join("reference/efficientnet_lite0_features.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let input = &refs["input"];
    // The unpooled map is the reference's head output, and `pooled` is its mean.
    let head = net.head_map(input).unwrap();
    let d = testkit::max_abs_diff(&head, &refs["head"]);
    assert!(
        d <= 1e-3 * testkit::max_abs(&refs["head"]),
        "head map differs by {d}"
    );
    let mean = head.mean((2, 3)).unwrap();
    assert!(testkit::max_abs_diff(&mean, &net.pooled(input).unwrap()) <= 1e-4);
    let all = load_reference();
    let backbone = Backbone::EfficientNetLite0(net);
    for case in ["lite0_binary", "lite0_categorical"] {
        check_case(&backbone, input, &all, case);
    }
}

/// The score of `class` for each image of `map` through `top`.
fn scores(top: &TopModel, map: &Tensor, class: usize) -> Vec<f32> {
    class_score(&top.forward_eval(map).unwrap(), class)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

#[test]
fn channel_weights_are_the_numerical_derivative_of_the_score() {
    let (n, c, h, w) = (2, 3, 2, 3);
    let map = common::uniform(&[n, c, h, w], 7);
    for (units, classes) in [(1, 2), (3, 3)] {
        let top = random_top((c, h, w), 5, units, 11 + units as u64);
        for class in 0..classes {
            let got = grad_cam_tensors(&map, class, |a| top.forward_eval(a)).unwrap();
            let alphas = got.weights.to_vec2::<f32>().unwrap();
            // α_k = (1/hw) Σ_ij ∂y/∂A_kij = (1/hw) d/dε y(A + ε·1_k): a central difference of
            // the score with channel k shifted as a whole.
            let eps = 1e-3f32;
            for k in 0..c {
                let mut bump = vec![0f32; n * c * h * w];
                for i in 0..n {
                    for p in 0..h * w {
                        bump[((i * c) + k) * h * w + p] = eps;
                    }
                }
                let bump = Tensor::from_vec(bump, (n, c, h, w), &Device::Cpu).unwrap();
                let up = scores(&top, &(&map + &bump).unwrap(), class);
                let down = scores(&top, &(&map - &bump).unwrap(), class);
                for i in 0..n {
                    let numeric = (up[i] - down[i]) / (2.0 * eps) / (h * w) as f32;
                    let analytic = alphas[i][k];
                    assert!(
                        (numeric - analytic).abs() <= 1e-3 * analytic.abs() + 1e-4,
                        "units {units}, class {class}, image {i}, channel {k}: \
                         autograd {analytic} vs numerical {numeric}"
                    );
                }
            }
            // The map is ReLU(Σ_k α_k A_k), by hand.
            let flat = map.flatten_from(2).unwrap().to_vec3::<f32>().unwrap();
            let cams = got.maps().unwrap();
            for ((cam, a), alpha) in cams.iter().zip(&flat).zip(&alphas) {
                for (p, got) in cam.values.iter().enumerate() {
                    let want = a
                        .iter()
                        .zip(alpha)
                        .map(|(channel, alpha)| alpha * channel[p])
                        .sum::<f32>()
                        .max(0.0);
                    assert!((got - want).abs() <= 1e-5, "{got} vs {want}");
                }
            }
        }
    }
}

#[test]
fn the_map_peaks_where_one_location_drives_the_score() {
    let (c, h, w) = (2, 3, 4);
    // Channel 0 is active at (1, 2) only; channel 1 is noise the top ignores.
    let mut values = vec![0f32; c * h * w];
    values[w + 2] = 5.0;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for v in &mut values[h * w..] {
        *v = rng.random::<f32>();
    }
    let map = Tensor::from_vec(values, (1, c, h, w), &Device::Cpu).unwrap();
    // A linear top: weight 1 on every location of channel 0, 0 on channel 1.
    let weight: Vec<f32> = (0..c * h * w)
        .map(|i| if i < h * w { 1.0 } else { 0.0 })
        .collect();
    let tensors = BTreeMap::from([
        (
            "top.dense2.weight".to_string(),
            Tensor::from_vec(weight, (1, c * h * w), &Device::Cpu).unwrap(),
        ),
        (
            "top.dense2.bias".to_string(),
            Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap(),
        ),
    ]);
    let top = top_from(&tensors, (c, h, w));
    let got = grad_cam_tensors(&map, 1, |a| top.forward_eval(a)).unwrap();
    assert_eq!(got.weights.to_vec2::<f32>().unwrap(), [[1.0, 0.0]]);
    let cam = &got.maps().unwrap()[0];
    assert_eq!(cam.peak(), (1, 2));
    assert_eq!(cam.get(1, 2), 5.0);
    assert_eq!(cam.values.iter().filter(|v| **v > 0.0).count(), 1);
    // The other class's score falls with that activation: nothing raises it.
    let other = grad_cam_tensors(&map, 0, |a| top.forward_eval(a)).unwrap();
    assert!(other.maps().unwrap()[0].is_zero());
}

/// A random EfficientNet-Lite0 (BatchNorm statistics in a sane range).
fn random_lite0(seed: u64) -> EfficientNetLite0 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tensors: BTreeMap<String, Tensor> = EfficientNetLite0::tensor_specs()
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let t = if shape.len() == 4 {
                models::glorot_uniform(&shape, &mut rng, &Device::Cpu).unwrap()
            } else {
                let (lo, hi) = if name.ends_with("running_var") || name.ends_with(".weight") {
                    (0.5, 1.5)
                } else {
                    (-0.1, 0.1)
                };
                let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
                Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap()
            };
            (name, t)
        })
        .collect();
    EfficientNetLite0::from_tensors(&tensors, Path::new("random-lite0"), "0".repeat(64)).unwrap()
}

#[test]
fn top_and_fine_tuned_paths_explain_the_same_map() {
    let x = common::uniform(&[2, 3, 64, 64], 3);
    let backbones = [
        (Backbone::Vgg16(common::random_vgg16(1)), (512, 2, 2)),
        (
            Backbone::EfficientNetLite0(random_lite0(2)),
            (EfficientNetLite0::FEATURES, 1, 1),
        ),
    ];
    for (backbone, shape) in backbones {
        let name = backbone.kind();
        let top = random_top(shape, 6, 3, 4);
        let classifier = Classifier::new(backbone.clone(), Head::Top(top.clone()));
        assert!(classifier.supports_grad_cam());
        let varmap = VarMap::new();
        let tail = backbone.tail(&varmap, &Device::Cpu).unwrap();
        let finetuned = Classifier::new(
            backbone.clone(),
            Head::Finetune(FinetuneNet::new(tail, top.clone())),
        );
        // The map is the backbone's last feature map, and the logits through it are the
        // classifier's.
        let map = backbone.feature_map(&x).unwrap();
        assert_eq!(map.dims(), &[2, shape.0, 2, 2], "{name}");
        for class in 0..3 {
            let a = classifier.grad_cam(&x, class).unwrap();
            let b = finetuned.grad_cam(&x, class).unwrap();
            assert_eq!(a.len(), 2);
            for (a, b) in a.iter().zip(&b) {
                assert_eq!((a.height, a.width), (2, 2), "{name}");
                let scale = a.max().max(1e-6);
                for (u, v) in a.values.iter().zip(&b.values) {
                    assert!(
                        (u - v).abs() <= 1e-3 * scale,
                        "{name} class {class}: {a:?} vs {b:?}"
                    );
                }
            }
        }
        // Through the `Model` seam too.
        let model = Model::Pretrained(classifier.clone());
        assert!(model.supports_grad_cam());
        assert_eq!(
            model.grad_cam(&x, 1).unwrap(),
            classifier.grad_cam(&x, 1).unwrap()
        );
        // A class the model does not have is an error, not a panic.
        let err = classifier.grad_cam(&x, 3).unwrap_err();
        assert!(matches!(err, ModelError::GradCam(_)), "{err}");
        assert!(err.to_string().contains("out of range"), "{err}");
    }
}

#[test]
fn models_without_a_feature_map_say_why() {
    let device = Device::Cpu;
    // The small convnet has no backbone.
    let varmap = VarMap::new();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let config = SmallCnnConfig {
        input_size: (32, 32),
        units: 1,
    };
    let cnn = Model::SmallCnn(SmallCnn::new(&varmap, config, &mut rng, &device).unwrap());
    assert!(!cnn.supports_grad_cam());
    let x = common::uniform(&[1, 3, 32, 32], 1);
    let err = cnn.grad_cam(&x, 0).unwrap_err();
    assert!(matches!(err, ModelError::GradCam(_)), "{err}");
    assert!(err.to_string().contains("no backbone"), "{err}");

    // A hub backbone gives pooled features only.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet50.safetensors");
    testkit::hub::write_random_hub_weights(HubModel::ResNet50, &path);
    let hub = Backbone::Hub(HubBackbone::load(HubModel::ResNet50, &path, &device).unwrap());
    assert!(hub.feature_map(&x).is_err());
    let top = random_top((HubModel::ResNet50.feature_dim(), 1, 1), 0, 1, 2);
    let classifier = Classifier::new(hub, Head::Top(top));
    assert!(!classifier.supports_grad_cam());
    let err = classifier.grad_cam(&x, 1).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelError::GradCam(_)), "{text}");
    assert!(
        text.contains("resnet50") && text.contains("pooled features"),
        "{text}"
    );
}
