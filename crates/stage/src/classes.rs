//! The one class-mode rule of the training stages.

use imagedata::ClassMode;

use crate::error::{Result, StageError};

/// The class mode a model for `classes` trains in under the setting `data.class_mode`: two
/// classes are always one sigmoid unit (`binary`, the same model as a two-way softmax), more
/// are a softmax (`categorical`). `binary` with another number of classes, and `none` (no
/// labels), are refused.
pub fn class_mode(setting: Option<ClassMode>, classes: &[String]) -> Result<ClassMode> {
    match (setting, classes.len()) {
        (Some(ClassMode::None), _) => Err(StageError::Settings(
            "data.class_mode = \"none\" gives no labels to train on; use \"binary\" or \
             \"categorical\" (or leave it unset)"
                .into(),
        )),
        (Some(ClassMode::Binary), n) if n != 2 => Err(StageError::Settings(format!(
            "data.class_mode = \"binary\" needs exactly 2 classes, the data has {n}: {}",
            classes.join(", ")
        ))),
        (_, 2) => Ok(ClassMode::Binary),
        _ => Ok(ClassMode::Categorical),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }

    #[test]
    fn class_modes_follow_the_class_count() {
        assert_eq!(class_mode(None, &names(2)).unwrap(), ClassMode::Binary);
        assert_eq!(class_mode(None, &names(3)).unwrap(), ClassMode::Categorical);
        assert_eq!(
            class_mode(Some(ClassMode::Categorical), &names(2)).unwrap(),
            ClassMode::Binary
        );
        assert_eq!(
            class_mode(Some(ClassMode::Categorical), &names(4)).unwrap(),
            ClassMode::Categorical
        );
        let e = class_mode(Some(ClassMode::Binary), &names(3))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("exactly 2 classes") && e.contains("c0, c1, c2"),
            "{e}"
        );
        let e = class_mode(Some(ClassMode::None), &names(2))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no labels"), "{e}");
    }
}
