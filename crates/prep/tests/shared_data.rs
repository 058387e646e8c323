//! The split with its defaults on the real Kaggle images in `$LITTLEDATA_SHARED`.

use std::path::Path;

use prep::{Outcome, SplitOptions, Subset, run_split};

#[test]
fn default_split_of_the_shared_kaggle_folder() {
    let Some(shared) = testkit::shared_dir("default_split_of_the_shared_kaggle_folder") else {
        return;
    };
    let source = testkit::kaggle_photos(&shared);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("data");
    let opts = SplitOptions {
        out: out.clone(),
        ..SplitOptions::new(&source)
    };
    let report = run_split(&opts).unwrap();
    assert_eq!(report.outcome, Outcome::Created);
    assert!(
        report.manifest.rejected.is_empty(),
        "{:?}",
        report.manifest.rejected
    );
    assert_eq!(report.manifest.classes, ["cats", "dogs"]);

    for (label, class) in [("cat", "cats"), ("dog", "dogs")] {
        let train = report.manifest.files(Subset::Train, class);
        let validation = report.manifest.files(Subset::Validation, class);
        assert_eq!(train.len(), 1000);
        assert_eq!(validation.len(), 500);
        assert_eq!(train[0].name, format!("{label}.0.jpg"));
        assert_eq!(train[999].name, format!("{label}.999.jpg"));
        assert_eq!(validation[0].name, format!("{label}.1000.jpg"));
        assert_eq!(validation[499].name, format!("{label}.1499.jpg"));
        assert_eq!(count(&out.join("train").join(class)), 1000);
        assert_eq!(count(&out.join("validation").join(class)), 500);
        assert!(
            out.join("train")
                .join(class)
                .join(format!("{label}.999.jpg"))
                .is_file()
        );
        assert!(
            out.join("validation")
                .join(class)
                .join(format!("{label}.1000.jpg"))
                .is_file()
        );
    }
    assert!(!out.join("test").exists());

    // Running it again changes nothing.
    assert_eq!(run_split(&opts).unwrap().outcome, Outcome::UpToDate);
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|r| r.count()).unwrap_or(0)
}
