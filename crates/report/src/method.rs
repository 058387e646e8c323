//! The post's three methods, and where each keeps its model.

use std::path::PathBuf;

use pipeline::Layout;

/// One of the post's three methods, named by the stage that trains its model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// Method 1: the small convnet trained from scratch (`train-small`).
    SmallCnn,
    /// Method 2: a pretrained backbone's bottleneck features and a small top model (`extract`,
    /// `train-top`).
    Top,
    /// Method 3: the backbone's tail and the top model fine-tuned (`finetune`).
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
            Method::Top => "bottleneck features + top model",
            Method::Finetune => "fine-tuned backbone tail + top model",
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

    /// The stage's output folder in `layout`.
    pub fn dir(self, layout: &Layout) -> PathBuf {
        match self {
            Method::SmallCnn => layout.small_cnn(),
            Method::Top => layout.top(),
            Method::Finetune => layout.finetune(),
        }
    }

    /// The validation accuracy the post reports for the method (on cats vs dogs, with VGG16).
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
