//! Optimizer, keep-best and early-stopping settings, as serde structs a pipeline file can carry.

use imagedata::ConfigError;
use serde::{Deserialize, Serialize};

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Which optimizer to train with (`optimizer = "rmsprop" | "sgd" | "adam"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// RMSprop (Keras defaults: `learning_rate` 1e-3, `rho` 0.9, `momentum` 0, `epsilon` 1e-7).
    #[default]
    Rmsprop,
    /// Stochastic gradient descent (Keras defaults: `learning_rate` 1e-2, `momentum` 0,
    /// `nesterov` false).
    Sgd,
    /// Adam (Keras defaults: `learning_rate` 1e-3, `beta_1` 0.9, `beta_2` 0.999, `epsilon` 1e-7).
    Adam,
}

impl OptimizerKind {
    /// The name used in pipeline files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rmsprop => "rmsprop",
            Self::Sgd => "sgd",
            Self::Adam => "adam",
        }
    }
}

/// Optimizer settings with Keras names; absent values take Keras' defaults for the chosen
/// optimizer.
///
/// Unknown keys are rejected when deserializing; [`OptimizerConfig::validate`] rejects values
/// out of range and keys that do not apply to the chosen optimizer (for example `rho` with
/// `sgd`), naming the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct OptimizerConfig {
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// Step size (every optimizer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_rate: Option<f64>,
    /// Momentum (`sgd`, `rmsprop`), in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    /// Nesterov momentum (`sgd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nesterov: Option<bool>,
    /// Discount of the squared-gradient average (`rmsprop`), in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rho: Option<f64>,
    /// Numerical-stability constant (`rmsprop`, `adam`), > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epsilon: Option<f64>,
    /// Decay of the first-moment estimate (`adam`), in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_1: Option<f64>,
    /// Decay of the second-moment estimate (`adam`), in [0, 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub beta_2: Option<f64>,
    /// Normalise by the estimated gradient variance instead of the second moment (`rmsprop`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub centered: Option<bool>,
}

/// Fully resolved optimizer hyper-parameters (defaults filled in).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OptimizerRule {
    /// Keras `SGD`.
    Sgd {
        /// Step size.
        learning_rate: f64,
        /// Momentum (0 disables the velocity slot).
        momentum: f64,
        /// Nesterov momentum.
        nesterov: bool,
    },
    /// Keras `RMSprop`.
    Rmsprop {
        /// Step size.
        learning_rate: f64,
        /// Discount of the squared-gradient average.
        rho: f64,
        /// Momentum (0 disables the momentum slot).
        momentum: f64,
        /// Added to the average under the square root.
        epsilon: f64,
        /// Centered variant.
        centered: bool,
    },
    /// Keras `Adam`.
    Adam {
        /// Step size.
        learning_rate: f64,
        /// First-moment decay.
        beta_1: f64,
        /// Second-moment decay.
        beta_2: f64,
        /// Added to the square root of the second moment.
        epsilon: f64,
    },
}

impl OptimizerRule {
    /// The learning rate.
    pub fn learning_rate(&self) -> f64 {
        match *self {
            Self::Sgd { learning_rate, .. }
            | Self::Rmsprop { learning_rate, .. }
            | Self::Adam { learning_rate, .. } => learning_rate,
        }
    }
}

impl std::fmt::Display for OptimizerRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Self::Sgd {
                learning_rate,
                momentum,
                nesterov,
            } => write!(
                f,
                "SGD(learning_rate={learning_rate}, momentum={momentum}, nesterov={nesterov})"
            ),
            Self::Rmsprop {
                learning_rate,
                rho,
                momentum,
                epsilon,
                centered,
            } => write!(
                f,
                "RMSprop(learning_rate={learning_rate}, rho={rho}, momentum={momentum}, \
                 epsilon={epsilon}, centered={centered})"
            ),
            Self::Adam {
                learning_rate,
                beta_1,
                beta_2,
                epsilon,
            } => write!(
                f,
                "Adam(learning_rate={learning_rate}, beta_1={beta_1}, beta_2={beta_2}, \
                 epsilon={epsilon})"
            ),
        }
    }
}

fn check_positive(key: &str, v: Option<f64>) -> Result<()> {
    match v {
        Some(x) if !(x.is_finite() && x > 0.0) => Err(ConfigError::new(
            key,
            format!("must be a finite number > 0, got {x}"),
        )),
        _ => Ok(()),
    }
}

fn check_unit(key: &str, v: Option<f64>) -> Result<()> {
    match v {
        Some(x) if !(x.is_finite() && (0.0..1.0).contains(&x)) => {
            Err(ConfigError::new(key, format!("must be in [0, 1), got {x}")))
        }
        _ => Ok(()),
    }
}

impl OptimizerConfig {
    /// Keras' RMSprop with its defaults (the post's optimizer for the small convnet).
    pub fn rmsprop() -> Self {
        Self::default()
    }

    /// Keras' SGD with the given learning rate and momentum (the post's fine-tuning optimizer is
    /// `sgd(1e-4, 0.9)`).
    pub fn sgd(learning_rate: f64, momentum: f64) -> Self {
        Self {
            optimizer: OptimizerKind::Sgd,
            learning_rate: Some(learning_rate),
            momentum: Some(momentum),
            ..Self::default()
        }
    }

    /// Keras' Adam with its defaults.
    pub fn adam() -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            ..Self::default()
        }
    }

    /// Checks every value and that each key given applies to the chosen optimizer; the error
    /// names the key.
    pub fn validate(&self) -> Result<()> {
        let kind = self.optimizer;
        let not_for = |key: &str, hint: &str| {
            ConfigError::new(
                key,
                format!("does not apply to optimizer \"{}\"{hint}", kind.name()),
            )
        };
        let allowed: &[&str] = match kind {
            OptimizerKind::Sgd => &["learning_rate", "momentum", "nesterov"],
            OptimizerKind::Rmsprop => &["learning_rate", "rho", "momentum", "epsilon", "centered"],
            OptimizerKind::Adam => &["learning_rate", "beta_1", "beta_2", "epsilon"],
        };
        let given = [
            ("momentum", self.momentum.is_some()),
            ("nesterov", self.nesterov.is_some()),
            ("rho", self.rho.is_some()),
            ("epsilon", self.epsilon.is_some()),
            ("beta_1", self.beta_1.is_some()),
            ("beta_2", self.beta_2.is_some()),
            ("centered", self.centered.is_some()),
        ];
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                let hint = match (kind, key) {
                    (OptimizerKind::Adam, "momentum") => " (Adam's momentum is `beta_1`)",
                    (OptimizerKind::Rmsprop, "nesterov") => {
                        " (RMSprop uses plain momentum; use \"sgd\" for Nesterov)"
                    }
                    _ => "",
                };
                return Err(not_for(key, hint));
            }
        }
        check_positive("learning_rate", self.learning_rate)?;
        check_unit("momentum", self.momentum)?;
        check_unit("rho", self.rho)?;
        check_positive("epsilon", self.epsilon)?;
        check_unit("beta_1", self.beta_1)?;
        check_unit("beta_2", self.beta_2)?;
        Ok(())
    }

    /// Validates and fills in Keras' defaults.
    pub fn resolve(&self) -> Result<OptimizerRule> {
        self.validate()?;
        Ok(match self.optimizer {
            OptimizerKind::Sgd => OptimizerRule::Sgd {
                learning_rate: self.learning_rate.unwrap_or(0.01),
                momentum: self.momentum.unwrap_or(0.0),
                nesterov: self.nesterov.unwrap_or(false),
            },
            OptimizerKind::Rmsprop => OptimizerRule::Rmsprop {
                learning_rate: self.learning_rate.unwrap_or(1e-3),
                rho: self.rho.unwrap_or(0.9),
                momentum: self.momentum.unwrap_or(0.0),
                epsilon: self.epsilon.unwrap_or(1e-7),
                centered: self.centered.unwrap_or(false),
            },
            OptimizerKind::Adam => OptimizerRule::Adam {
                learning_rate: self.learning_rate.unwrap_or(1e-3),
                beta_1: self.beta_1.unwrap_or(0.9),
                beta_2: self.beta_2.unwrap_or(0.999),
                epsilon: self.epsilon.unwrap_or(1e-7),
            },
        })
    }
}

/// A per-epoch quantity that keep-best and early stopping watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Metric {
    /// Training loss (lower is better).
    #[serde(rename = "loss")]
    Loss,
    /// Training accuracy (higher is better).
    #[serde(rename = "acc", alias = "accuracy")]
    Acc,
    /// Validation loss (lower is better).
    #[serde(rename = "val_loss")]
    ValLoss,
    /// Validation accuracy (higher is better).
    #[serde(rename = "val_acc", alias = "val_accuracy")]
    ValAcc,
}

impl Metric {
    /// The Keras name (`loss`, `acc`, `val_loss`, `val_acc`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Loss => "loss",
            Self::Acc => "acc",
            Self::ValLoss => "val_loss",
            Self::ValAcc => "val_acc",
        }
    }

    /// Whether larger values are better (accuracies) or smaller ones (losses).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::Acc | Self::ValAcc)
    }

    /// Whether the metric needs validation data.
    pub fn needs_validation(self) -> bool {
        matches!(self, Self::ValLoss | Self::ValAcc)
    }

    /// Whether `current` improves on `best` by more than `min_delta` (Keras semantics: for a
    /// maximised metric `current - min_delta > best`, for a minimised one
    /// `current + min_delta < best`).
    pub fn improves(self, current: f64, best: Option<f64>, min_delta: f64) -> bool {
        match best {
            None => current.is_finite(),
            Some(best) if self.higher_is_better() => current - min_delta.abs() > best,
            Some(best) => current + min_delta.abs() < best,
        }
    }
}

impl std::str::FromStr for Metric {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "loss" => Ok(Self::Loss),
            "acc" | "accuracy" => Ok(Self::Acc),
            "val_loss" => Ok(Self::ValLoss),
            "val_acc" | "val_accuracy" => Ok(Self::ValAcc),
            other => Err(ConfigError::new(
                "monitor",
                format!("unknown metric \"{other}\" (expected loss, acc, val_loss or val_acc)"),
            )),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The keys of a training section (`[small_cnn]`, `[top]`, `[finetune]`) that drive the
/// training loop.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// Training epochs.
    pub epochs: usize,
    /// The optimizer.
    pub optimizer: OptimizerConfig,
    /// The metric that picks the best epoch (keep-best and early stopping).
    pub monitor: Metric,
    /// Stop after this many epochs without improvement of `monitor` (`None`: never).
    pub early_stopping_patience: Option<usize>,
}

impl Schedule {
    /// Early stopping on `monitor` after `early_stopping_patience` epochs without any
    /// improvement.
    pub fn early_stopping(&self) -> Option<EarlyStopping> {
        self.early_stopping_patience.map(|patience| EarlyStopping {
            monitor: self.monitor,
            patience,
            min_delta: 0.0,
        })
    }
}

fn default_monitor() -> Metric {
    Metric::ValLoss
}

/// Keras-style early stopping: stop when `monitor` has not improved by more than `min_delta`
/// for `patience` epochs in a row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EarlyStopping {
    /// The watched metric (Keras' default: `val_loss`).
    #[serde(default = "default_monitor")]
    pub monitor: Metric,
    /// Epochs without improvement tolerated before stopping (Keras' default: 0).
    #[serde(default)]
    pub patience: usize,
    /// The smallest change that counts as an improvement (Keras' default: 0).
    #[serde(default)]
    pub min_delta: f64,
}

impl EarlyStopping {
    /// Checks `min_delta`; the error names the key.
    pub fn validate(&self) -> Result<()> {
        if !(self.min_delta.is_finite() && self.min_delta >= 0.0) {
            return Err(ConfigError::new(
                "min_delta",
                format!("must be a finite number >= 0, got {}", self.min_delta),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_keras() {
        assert_eq!(
            OptimizerConfig::rmsprop().resolve().unwrap(),
            OptimizerRule::Rmsprop {
                learning_rate: 1e-3,
                rho: 0.9,
                momentum: 0.0,
                epsilon: 1e-7,
                centered: false
            }
        );
        assert_eq!(
            OptimizerConfig::adam().resolve().unwrap(),
            OptimizerRule::Adam {
                learning_rate: 1e-3,
                beta_1: 0.9,
                beta_2: 0.999,
                epsilon: 1e-7
            }
        );
        let sgd = OptimizerConfig {
            optimizer: OptimizerKind::Sgd,
            ..Default::default()
        };
        assert_eq!(
            sgd.resolve().unwrap(),
            OptimizerRule::Sgd {
                learning_rate: 0.01,
                momentum: 0.0,
                nesterov: false
            }
        );
    }

    #[test]
    fn validate_names_bad_keys() {
        let mut c = OptimizerConfig::sgd(1e-4, 0.9);
        c.rho = Some(0.9);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("rho:") && e.contains("sgd"), "{e}");

        let mut c = OptimizerConfig::adam();
        c.momentum = Some(0.9);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("momentum:") && e.contains("beta_1"), "{e}");

        let mut c = OptimizerConfig::rmsprop();
        c.learning_rate = Some(-1.0);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("learning_rate:"), "{e}");

        let mut c = OptimizerConfig::sgd(0.1, 1.0);
        c.nesterov = Some(true);
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("momentum:") && e.contains("[0, 1)"), "{e}");

        let mut c = OptimizerConfig::adam();
        c.epsilon = Some(0.0);
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .starts_with("epsilon:")
        );
    }

    #[test]
    fn deserializes_pipeline_keys_and_rejects_unknown_ones() {
        let c: OptimizerConfig = serde_json::from_str(
            r#"{"optimizer": "sgd", "learning_rate": 0.0001, "momentum": 0.9, "nesterov": true}"#,
        )
        .unwrap();
        assert_eq!(
            c.resolve().unwrap(),
            OptimizerRule::Sgd {
                learning_rate: 1e-4,
                momentum: 0.9,
                nesterov: true
            }
        );
        let e = serde_json::from_str::<OptimizerConfig>(r#"{"optimizer": "adam", "lr": 0.1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("lr"), "{e}");
        let e = serde_json::from_str::<OptimizerConfig>(r#"{"optimizer": "adagrad"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("adagrad"), "{e}");
        // Serialising and reading back gives the same settings.
        let back: OptimizerConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn metrics_parse_and_compare() {
        assert_eq!("val_accuracy".parse::<Metric>().unwrap(), Metric::ValAcc);
        assert!("val_f1".parse::<Metric>().is_err());
        let m: Metric = serde_json::from_str("\"val_loss\"").unwrap();
        assert_eq!(m, Metric::ValLoss);
        assert!(Metric::ValAcc.improves(0.8, Some(0.7), 0.05));
        assert!(!Metric::ValAcc.improves(0.74, Some(0.7), 0.05));
        assert!(Metric::ValLoss.improves(0.5, Some(0.6), 0.05));
        assert!(!Metric::ValLoss.improves(0.56, Some(0.6), 0.05));
        assert!(Metric::Loss.improves(3.0, None, 0.0));
        assert!(!Metric::Loss.improves(f64::NAN, None, 0.0));
        let es: EarlyStopping = serde_json::from_str(r#"{"patience": 3}"#).unwrap();
        assert_eq!(es.monitor, Metric::ValLoss);
        assert_eq!(es.min_delta, 0.0);
    }
}
