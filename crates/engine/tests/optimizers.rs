//! Optimizer updates against values worked out by hand from Keras' update rules.
//!
//! Every case minimises `L = Σ w²/2` (so the gradient is `w` itself) from
//! `w = [1, -2, 0.5]` for three steps. The expected values follow the rules step by step; the
//! comments show the arithmetic for the first element.

use candle_core::{Device, Var};
use candle_nn::VarMap;
use engine::{Optimizer, OptimizerConfig, OptimizerKind, Params};

const W0: [f32; 3] = [1.0, -2.0, 0.5];

fn params_with(values: &[f32]) -> (VarMap, Params) {
    let vm = VarMap::new();
    let var = Var::from_slice(values, values.len(), &Device::Cpu).unwrap();
    vm.data().lock().unwrap().insert("w".into(), var);
    let p = Params::all_trainable(&vm).unwrap();
    (vm, p)
}

/// Runs `steps` optimizer steps on `Σ w²/2` and returns `w` after each.
fn trajectory(config: OptimizerConfig, steps: usize) -> Vec<Vec<f32>> {
    let (_vm, params) = params_with(&W0);
    let mut opt = Optimizer::new(config.resolve().unwrap(), &params).unwrap();
    let w = params.get("w").unwrap().var.clone();
    (0..steps)
        .map(|_| {
            let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
            let grads = loss.backward().unwrap();
            opt.step(&params, &grads).unwrap();
            w.as_tensor().to_vec1::<f32>().unwrap()
        })
        .collect()
}

fn assert_close(got: &[Vec<f32>], expected: &[[f64; 3]]) {
    assert_eq!(got.len(), expected.len());
    for (step, (g, e)) in got.iter().zip(expected).enumerate() {
        for (i, (&g, &e)) in g.iter().zip(e).enumerate() {
            assert!(
                (f64::from(g) - e).abs() <= 2e-6 * e.abs().max(1.0),
                "step {}, element {i}: got {g}, expected {e}",
                step + 1
            );
        }
    }
}

#[test]
fn sgd_plain() {
    // w -= 0.1·w: 1 → 0.9 → 0.81 → 0.729.
    let c = OptimizerConfig {
        optimizer: OptimizerKind::Sgd,
        learning_rate: Some(0.1),
        ..Default::default()
    };
    assert_close(
        &trajectory(c, 3),
        &[
            [0.9, -1.8, 0.45],
            [0.81, -1.62, 0.405],
            [0.729, -1.458, 0.3645],
        ],
    );
}

#[test]
fn sgd_momentum() {
    // m1 = 0.9·0 - 0.1·1 = -0.1, w1 = 1 - 0.1 = 0.9;
    // m2 = 0.9·(-0.1) - 0.1·0.9 = -0.18, w2 = 0.72;
    // m3 = 0.9·(-0.18) - 0.1·0.72 = -0.234, w3 = 0.486.
    assert_close(
        &trajectory(OptimizerConfig::sgd(0.1, 0.9), 3),
        &[
            [0.9, -1.8, 0.45],
            [0.72, -1.44, 0.36],
            [0.486, -0.972, 0.243],
        ],
    );
}

#[test]
fn sgd_nesterov() {
    // m1 = -0.1, w1 = 1 + 0.9·(-0.1) - 0.1·1 = 0.81;
    // m2 = 0.9·(-0.1) - 0.1·0.81 = -0.171, w2 = 0.81 + 0.9·(-0.171) - 0.081 = 0.5751;
    // m3 = 0.9·(-0.171) - 0.05751 = -0.21141, w3 = 0.5751 - 0.190269 - 0.05751 = 0.327321.
    let mut c = OptimizerConfig::sgd(0.1, 0.9);
    c.nesterov = Some(true);
    assert_close(
        &trajectory(c, 3),
        &[
            [0.81, -1.62, 0.405],
            [0.5751, -1.1502, 0.28755],
            [0.327321, -0.654642, 0.1636605],
        ],
    );
}

#[test]
fn rmsprop_keras_docstring_example() {
    // Keras' RMSprop docstring: learning_rate 0.1, var 10, loss var²/2 → 9.683772 after one
    // step (v = 0.1·100 = 10, w = 10 - 0.1·10/sqrt(10 + 1e-7)).
    let (_vm, params) = params_with(&[10.0]);
    let mut c = OptimizerConfig::rmsprop();
    c.learning_rate = Some(0.1);
    let mut opt = Optimizer::new(c.resolve().unwrap(), &params).unwrap();
    let w = params.get("w").unwrap().var.clone();
    let loss = (w.as_tensor().sqr().unwrap().sum_all().unwrap() * 0.5).unwrap();
    opt.step(&params, &loss.backward().unwrap()).unwrap();
    let got = w.as_tensor().to_vec1::<f32>().unwrap()[0];
    assert!((got - 9.683_772).abs() < 1e-5, "{got}");
}

#[test]
fn rmsprop_defaults() {
    // rho 0.9, epsilon 1e-7, learning_rate 0.01 here:
    // v1 = 0.1·1² = 0.1, w1 = 1 - 0.01·1/sqrt(0.1 + 1e-7) = 0.968377239;
    // v2 = 0.9·0.1 + 0.1·0.968377² = 0.183775, w2 = 0.968377 - 0.01·0.968377/sqrt(0.183775)
    //    = 0.945788047.
    let mut c = OptimizerConfig::rmsprop();
    c.learning_rate = Some(0.01);
    assert_close(
        &trajectory(c, 3),
        &[
            [0.968377239, -1.96837723, 0.468377287],
            [0.945788047, -1.94560964, 0.446158547],
            [0.927053123, -1.92663369, 0.427928973],
        ],
    );
}

#[test]
fn rmsprop_centered_with_momentum() {
    // v1 = 0.1, a1 = 0.1·1 = 0.1, inc = 0.01·1/sqrt(0.1 - 0.01 + 1e-7) = 0.0333333,
    // m1 = 0.5·0 + inc, w1 = 0.966666685.
    let mut c = OptimizerConfig::rmsprop();
    c.learning_rate = Some(0.01);
    c.momentum = Some(0.5);
    c.centered = Some(true);
    assert_close(
        &trajectory(c, 3),
        &[
            [0.966666685, -1.96666667, 0.466666741],
            [0.924923512, -1.92471349, 0.425361839],
            [0.882418414, -1.88166024, 0.384029867],
        ],
    );
}

#[test]
fn adam_with_bias_correction() {
    // learning_rate 0.1: m1 = 0.1·1 = 0.1, v1 = 0.001·1 = 0.001,
    // alpha1 = 0.1·sqrt(1 - 0.999)/(1 - 0.9) = 0.0316228,
    // w1 = 1 - 0.0316228·0.1/(sqrt(0.001) + 1e-7) = 0.900000316: the bias-corrected first
    // step is ~learning_rate whatever the gradient's size (-2 → -1.9, 0.5 → 0.4).
    let mut c = OptimizerConfig::adam();
    c.learning_rate = Some(0.1);
    assert_close(
        &trajectory(c, 3),
        &[
            [0.900000316, -1.90000016, 0.400000632],
            [0.800412776, -1.80016676, 0.301188528],
            [0.701587015, -1.70062376, 0.20487275],
        ],
    );
}

#[test]
fn frozen_parameters_get_no_state_and_do_not_move() {
    let vm = VarMap::new();
    {
        let mut d = vm.data().lock().unwrap();
        d.insert(
            "frozen".into(),
            Var::from_slice(&[1.0f32, 2.0], 2, &Device::Cpu).unwrap(),
        );
        d.insert(
            "trained".into(),
            Var::from_slice(&[1.0f32, 2.0], 2, &Device::Cpu).unwrap(),
        );
    }
    let params = Params::from_varmap(&vm, |n| n != "frozen").unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::adam().resolve().unwrap(), &params).unwrap();
    let names: Vec<String> = opt.state_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["optimizer/trained/momentum", "optimizer/trained/velocity"]
    );
    // The loss depends on both; only the trainable one moves.
    let f = params.get("frozen").unwrap().var.as_tensor().clone();
    let t = params.get("trained").unwrap().var.as_tensor().clone();
    for _ in 0..3 {
        let loss = (f.sqr().unwrap() + t.sqr().unwrap())
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&params, &loss.backward().unwrap()).unwrap();
    }
    assert_eq!(f.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
    assert_ne!(t.to_vec1::<f32>().unwrap(), [1.0, 2.0]);
    assert_eq!(opt.iterations(), 3);

    // Plain SGD keeps no state at all.
    let sgd = OptimizerConfig {
        optimizer: OptimizerKind::Sgd,
        ..Default::default()
    };
    let opt = Optimizer::new(sgd.resolve().unwrap(), &params).unwrap();
    assert!(opt.state_tensors().is_empty());
}
