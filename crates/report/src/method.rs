//! The post's three methods, and where each keeps its model.

use std::path::{Path, PathBuf};

/// One of the post's three methods, named by the stage that trains its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Method 1: the small convnet trained from scratch (`train-small`).
    SmallCnn,
    /// Method 2: VGG16 bottleneck features and a small top model (`extract`, `train-top`).
    Top,
    /// Method 3: VGG16 block 5 and the top model fine-tuned (`finetune`).
    Finetune,
}

impl Method {
    /// The three methods in the post's order.
    pub const ALL: [Method; 3] = [Method::SmallCnn, Method::Top, Method::Finetune];

    /// The method's number in the post (1, 2, 3).
    pub fn number(self) -> usize {
        match self {
            Method::SmallCnn => 1,
            Method::Top => 2,
            Method::Finetune => 3,
        }
    }

    /// What the method is, in a few words.
    pub fn title(self) -> &'static str {
        match self {
            Method::SmallCnn => "small convnet from scratch",
            Method::Top => "VGG16 bottleneck features + top model",
            Method::Finetune => "fine-tuned VGG16 block 5 + top model",
        }
    }

    /// `"1. small convnet from scratch"`.
    pub fn label(self) -> String {
        format!("{}. {}", self.number(), self.title())
    }

    /// The folder name under the artifacts folder (`small_cnn`, `top`, `finetune`).
    pub fn key(self) -> &'static str {
        match self {
            Method::SmallCnn => "small_cnn",
            Method::Top => "top",
            Method::Finetune => "finetune",
        }
    }

    /// The stage's output folder under `artifacts`.
    pub fn dir(self, artifacts: &Path) -> PathBuf {
        match self {
            Method::SmallCnn => train_small::small_cnn_dir(artifacts),
            Method::Top => train_top::top_dir(artifacts),
            Method::Finetune => finetune::finetune_dir(artifacts),
        }
    }

    /// The validation accuracy the post reports for the method.
    pub fn published(self) -> &'static str {
        match self {
            Method::SmallCnn => "0.79–0.81",
            Method::Top => "0.90–0.91",
            Method::Finetune => "0.94",
        }
    }

    /// The `just` recipe that trains the method's model.
    pub fn recipe(self) -> &'static str {
        match self {
            Method::SmallCnn => "just train-small",
            Method::Top => "just train-top",
            Method::Finetune => "just finetune",
        }
    }
}
