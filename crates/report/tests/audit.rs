//! The report's "Know your photos" section from a hand-made `audit/audit.json` over a few tiny
//! photos: the summary counts, the accuracy without the leaking photos, the exclude command,
//! the power law's numbers, the thumbnail grids and the learning curve (in the folder, of the
//! expected sizes, the same bytes on a rebuild), the audit in the provenance, what changed
//! since the audit, an unreadable `audit.json`, and the line that says how to make one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use report::ReportOptions;
use report::audit::figures::LEARNING_CURVE_SIZE;
use report::grid::{BLANK, MARK, grid_size};
use stage::StoredProvenance;
use stage::audit::{
    AUDIT_FORMAT, AuditReport, CurvePoint, Duplicates, FlagKind, Flagged, LabelIssues,
    LeakFreeAccuracy, LearningCurve, PhotoRef, PowerLaw, Strays,
};
use testkit::fixtures;

/// A project with a data folder of tiny photos and no models.
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    pipeline_file: PathBuf,
    pipeline: pipeline::Pipeline,
}

/// A photo: split, file, colour, width and height.
type Photo = (&'static str, &'static str, [u8; 3], (u32, u32));

/// The photos, PNGs and JPEGs.
const PHOTOS: [Photo; 7] = [
    ("train", "cats/cat.1.png", [0, 200, 0], (40, 30)),
    ("train", "dogs/cat.2.png", [200, 0, 0], (30, 40)),
    ("train", "cats/dog.3.jpg", [0, 0, 220], (32, 32)),
    ("train", "dogs/dog.4.png", [220, 220, 0], (24, 24)),
    ("validation", "cats/copy.png", [0, 200, 0], (40, 30)),
    ("validation", "dogs/dog.5.jpg", [0, 180, 180], (36, 20)),
    ("validation", "dogs/blank.png", [128, 128, 128], (20, 20)),
];

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let data = root.join("data");
        let artifacts = root.join("artifacts");
        for (split, file, color, (w, h)) in PHOTOS {
            let path = data.join(split).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbImage::from_pixel(w, h, Rgb(color)).save(&path).unwrap();
        }
        let text = fixtures::data_section(&data, &artifacts, [32, 32]);
        let pipeline_file = root.join("pipeline.toml");
        std::fs::write(&pipeline_file, &text).unwrap();
        Self {
            _dir: dir,
            pipeline: fixtures::pipeline(&text, &[]),
            root,
            data,
            pipeline_file,
        }
    }

    fn audit_path(&self) -> PathBuf {
        self.pipeline.layout().audit_report()
    }

    fn photo(&self, split: &str, file: &str) -> PhotoRef {
        PhotoRef {
            path: self.data.join(split).join(file),
            split: split.into(),
            file: file.into(),
            given: file.split('/').next().unwrap().into(),
        }
    }

    fn write_audit(&self, audit: &AuditReport) {
        let path = self.audit_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, serde_json::to_string_pretty(audit).unwrap()).unwrap();
    }

    fn report(&self) -> report::Result<report::ReportOutput> {
        report::build_report(
            &self.pipeline,
            &ReportOptions {
                pipeline_file: self.pipeline_file.clone(),
                overrides: Vec::new(),
                max_mistakes: 8,
                source_dir: self.root.clone(),
            },
        )
    }

    fn markdown(&self) -> (report::ReportOutput, String) {
        let out = self.report().unwrap();
        let md = std::fs::read_to_string(&out.markdown).unwrap();
        (out, md)
    }
}

fn flag(photo: PhotoRef, kind: FlagKind, score: f64) -> Flagged {
    Flagged {
        photo,
        kind,
        score,
        suggested: None,
        twin: None,
        exact: None,
        similarity: None,
        hash_distance: None,
    }
}

/// 30 label issues (the first two of their own photos, one found under the data folder
/// only), two leaking photos (one identical), one duplicate whose twin is gone, three strays
/// (one above the fence) and a learning curve with its power law.
fn audit(p: &Project) -> AuditReport {
    let mut issues = Vec::new();
    // Recorded where the audit ran (another folder): found under the data folder.
    let mut moved = p.photo("train", "dogs/cat.2.png");
    moved.path = PathBuf::from("elsewhere/data/train/dogs/cat.2.png");
    let mut first = flag(moved, FlagKind::LabelIssue, 0.97);
    first.suggested = Some("cats".into());
    issues.push(first);
    let mut second = flag(
        p.photo("train", "cats/dog.3.jpg"),
        FlagKind::LabelIssue,
        0.9,
    );
    second.suggested = Some("dogs".into());
    issues.push(second);
    for i in 0..28 {
        let mut f = flag(
            p.photo("validation", "dogs/dog.5.jpg"),
            FlagKind::LabelIssue,
            0.6 - 0.01 * f64::from(i),
        );
        f.suggested = Some("cats".into());
        issues.push(f);
    }
    let mut identical = flag(
        p.photo("validation", "cats/copy.png"),
        FlagKind::Leakage,
        1.0,
    );
    identical.twin = Some(p.photo("train", "cats/cat.1.png"));
    identical.exact = Some(true);
    identical.similarity = Some(1.0);
    identical.hash_distance = Some(0);
    let mut near = flag(
        p.photo("validation", "dogs/dog.5.jpg"),
        FlagKind::Leakage,
        0.97,
    );
    near.twin = Some(p.photo("train", "dogs/dog.4.png"));
    near.exact = Some(false);
    near.similarity = Some(0.97);
    near.hash_distance = Some(5);
    let mut duplicate = flag(
        p.photo("train", "dogs/dog.4.png"),
        FlagKind::Duplicate,
        0.95,
    );
    duplicate.twin = Some(p.photo("train", "dogs/gone.png"));
    duplicate.exact = Some(false);
    duplicate.similarity = Some(0.95);
    duplicate.hash_distance = Some(12);
    let found = vec![identical, near, duplicate];
    let ranked = vec![
        flag(
            p.photo("validation", "dogs/blank.png"),
            FlagKind::Stray,
            0.8,
        ),
        flag(p.photo("train", "cats/cat.1.png"), FlagKind::Stray, 0.5),
        flag(p.photo("train", "dogs/dog.4.png"), FlagKind::Stray, 0.4),
    ];
    let mut flagged = issues.clone();
    flagged.extend(found.iter().cloned());
    flagged.push(ranked[0].clone());
    let point = |n: usize, accuracies: Vec<f64>| {
        let mean = accuracies.iter().sum::<f64>() / accuracies.len() as f64;
        CurvePoint {
            per_class: n,
            mean,
            std: 0.01,
            accuracies,
        }
    };
    AuditReport {
        format: AUDIT_FORMAT,
        backbone: "vgg16".into(),
        classes: vec!["cats".into(), "dogs".into()],
        train_photos: 4,
        validation_photos: 3,
        flagged,
        label_issues: LabelIssues {
            folds: 3,
            l2: 0.01,
            oof_accuracy: 0.625,
            thresholds: vec![0.71, 0.68],
            confident_joint: vec![vec![2, 1], vec![1, 3]],
            confident: 2,
            issues,
        },
        duplicates: Duplicates {
            threshold: 0.9,
            hash_bits: 24,
            exact_groups: 1,
            pairs: 3,
            closest_similarity: 0.8,
            closest_hash_distance: 40,
            found,
        },
        leak_free: vec![
            LeakFreeAccuracy {
                model: "top".into(),
                accuracy: 0.9,
                without_leaks: 0.875,
                photos: 1,
            },
            LeakFreeAccuracy {
                model: "resnet".into(),
                accuracy: 0.5,
                without_leaks: 0.25,
                photos: 1,
            },
        ],
        strays: Strays {
            neighbours: 2,
            threshold: 0.6,
            ranked,
        },
        learning_curve: LearningCurve {
            head: "linear probe".into(),
            l2: 0.01,
            seeds: 2,
            validation_photos: 3,
            points: vec![
                point(1, vec![0.6, 0.7]),
                point(2, vec![0.75, 0.8]),
                point(4, vec![0.85, 0.85]),
            ],
            power_law: Some(PowerLaw {
                a: 0.3,
                b: 0.5,
                accuracy_now: 0.85,
                accuracy_doubled: 0.893_934,
            }),
        },
        seconds: 1.5,
        part_seconds: Default::default(),
        provenance: StoredProvenance {
            stage: "audit".into(),
            config_digest: "c0".repeat(32),
            inputs: BTreeMap::new(),
        },
    }
}

/// The Markdown from `## Know your photos` to the next `## ` heading.
fn section(md: &str) -> &str {
    let start = md
        .find("## Know your photos\n")
        .unwrap_or_else(|| panic!("no audit section in\n{md}"));
    let rest = &md[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

fn line_starting<'a>(md: &'a str, start: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in\n{md}"))
}

fn decode(path: &Path) -> RgbImage {
    image::load_from_memory(&std::fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8()
}

#[test]
fn an_audit_gets_its_summary_grids_and_learning_curve() {
    let p = Project::new();
    let a = audit(&p);
    p.write_audit(&a);
    let (out, md) = p.markdown();
    let s = section(&md);

    // The summary.
    assert!(
        s.contains("| photos audited | 7: 4 train, 3 validation; classes cats, dogs |"),
        "{s}"
    );
    assert!(s.contains("| backbone | `vgg16` |"), "{s}");
    assert_eq!(
        line_starting(s, "| label issues flagged |"),
        "| label issues flagged | 30, 2 of them in the confident joint's off-diagonal \
         (out-of-fold accuracy 0.6250 over 3 folds) |"
    );
    assert!(
        s.contains("| leaking photos | 2 validation photos with a copy or near copy in train |"),
        "{s}"
    );
    assert!(
        line_starting(s, "| duplicates |").starts_with("| duplicates | 1 photo within a split"),
        "{s}"
    );
    assert!(
        s.contains("| strays above the fence | 1 (score above 0.6000) |"),
        "{s}"
    );
    // 30 + 3 + 1 entries; the label issues name three photos, the copies and the stray three
    // more.
    assert!(
        s.contains("| flagged in all | 34 entries naming 6 photos"),
        "{s}"
    );

    // The accuracy without the leaking photos, by the report's name for the model.
    assert!(
        s.contains("| 2. bottleneck features + top model | 0.9000 | 0.8750 | 1 |"),
        "{s}"
    );
    assert!(s.contains("| resnet | 0.5000 | 0.2500 | 1 |"), "{s}");

    // The command that rebuilds the split, after deleting the entries judged fine.
    let audit_path = p.audit_path();
    assert!(s.contains("every entry you judge fine"), "{s}");
    assert!(
        s.contains(&format!(
            "```sh\ncargo run -p prep -- split --exclude {} --force --pipeline {}\n```",
            audit_path.display(),
            p.pipeline_file.display()
        )),
        "{s}"
    );

    // The learning curve's numbers and caveat.
    assert!(
        s.contains("**doubling the photos: 0.8500 → 0.8939** (from 4 to 8 photos per class)"),
        "{s}"
    );
    assert!(s.contains("error ≈ 0.300 · n^−0.500"), "{s}");
    assert!(
        s.contains("This is a linear probe on the cached features"),
        "{s}"
    );
    assert!(
        s.contains("| 2 | 0.7750 | 0.0100 | 0.7500, 0.8000 |"),
        "{s}"
    );
    assert!(
        s.contains("| given ↓ confidently predicted → | cats | dogs |"),
        "{s}"
    );
    assert!(s.contains("| threshold | 0.710 | 0.680 |"), "{s}");
    assert!(s.contains("The 24 highest scores of 30 are shown"), "{s}");
    assert!(
        s.contains("1 photo could not be read where the audit found it"),
        "the duplicate's twin is gone:\n{s}"
    );
    assert_eq!(
        s.matches("could not be read").count(),
        1,
        "the moved photo is found under the data folder:\n{s}"
    );
    assert!(!s.contains("Out of date"), "{s}");

    // The pictures: in the folder, listed, linked, of the expected sizes.
    let expected = [
        ("audit_label_issues.png", grid_size(24, 1, 3)),
        ("audit_leakage.png", grid_size(2, 2, 3)),
        ("audit_duplicates.png", grid_size(1, 2, 3)),
        ("audit_strays.png", grid_size(3, 1, 3)),
        ("learning_curve.png", LEARNING_CURVE_SIZE),
    ];
    let html = std::fs::read_to_string(&out.html).unwrap();
    assert!(html.contains("<h2>Know your photos</h2>"));
    let mut pngs = BTreeMap::new();
    for (file, size) in expected {
        let path = out.dir.join(file);
        assert!(out.images.contains(&path), "{file} is not listed");
        assert!(
            s.contains(&format!("]({file})")),
            "{file} is not shown:\n{s}"
        );
        let img = decode(&path);
        assert_eq!(img.dimensions(), size, "{file}");
        pngs.insert(file, (std::fs::read(&path).unwrap(), img));
    }
    assert_eq!(
        html.matches("src=\"data:image/png;base64,").count(),
        expected.len(),
        "every picture embedded"
    );
    assert_eq!(grid_size(24, 1, 3).0, 8 + 8 * (128 + 8));
    // The photo recorded elsewhere is drawn (red, portrait: centred horizontally).
    let issues = &pngs["audit_label_issues.png"].1;
    assert_eq!(issues.get_pixel(8 + 64, 8 + 64).0, [200, 0, 0]);
    assert_eq!(issues.get_pixel(8 + 2, 8 + 64).0, BLANK.0);
    // The identical pair: the copy and its twin, both green.
    let leakage = &pngs["audit_leakage.png"].1;
    assert_eq!(leakage.get_pixel(8 + 64, 8 + 64).0, [0, 200, 0]);
    assert_eq!(leakage.get_pixel(8 + 128 + 4 + 64, 8 + 64).0, [0, 200, 0]);
    // The stray above the fence is framed, the next one not.
    let strays = &pngs["audit_strays.png"].1;
    assert_eq!(strays.get_pixel(6, 20).0, MARK.0);
    assert_ne!(strays.get_pixel(8 + 136 - 2, 20).0, MARK.0);

    // The audit file's digest and provenance in the provenance section.
    let sha = artifact::sha256_file(&audit_path).unwrap();
    assert!(md.contains(&format!(
        "| audit of the photos | `audit/audit.json`, sha256 `{sha}` |"
    )));
    let row = line_starting(&md, "| `audit/audit.json` |");
    assert!(row.contains("| audit |"), "{row}");
    assert!(row.contains(&"c0".repeat(6)), "{row}");

    // Rebuilt from the same artifacts, the pictures are the same bytes.
    let out = p.report().unwrap();
    for (file, (bytes, _)) in &pngs {
        assert_eq!(
            &std::fs::read(out.dir.join(file)).unwrap(),
            bytes,
            "{file} changed"
        );
    }

    // The binary sums it up.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("--pipeline")
        .arg(&p.pipeline_file)
        .current_dir(&p.root)
        .env_remove("LITTLEDATA_PIPELINE")
        .output()
        .unwrap();
    let stdout = testkit::cli::expect_success(&"report", &run);
    assert!(
        stdout.contains(
            "audit: label issues 30, leaking photos 2, duplicates 1, strays above the fence 1"
        ),
        "{stdout}"
    );

    // Without the audit: the line that says how to make it, and the old pictures are gone.
    std::fs::remove_file(&audit_path).unwrap();
    let (out, md) = p.markdown();
    let s = section(&md);
    assert!(
        s.starts_with("## Know your photos\n\nNot audited yet: `just audit`"),
        "{s}"
    );
    assert!(!s.contains("!["), "{s}");
    for (file, _) in expected {
        assert!(!out.dir.join(file).exists(), "{file} is left over");
    }
    assert!(!md.contains("audit of the photos"), "{md}");
}

#[test]
fn an_audit_with_nothing_found_and_changed_inputs() {
    let p = Project::new();
    let mut a = audit(&p);
    a.label_issues.issues.clear();
    a.label_issues.confident = 0;
    a.duplicates.found.clear();
    a.strays.ranked.truncate(0);
    a.flagged.clear();
    a.leak_free.clear();
    a.learning_curve.power_law = None;
    a.provenance
        .inputs
        .insert("train_features".into(), "ab".repeat(32));
    a.provenance
        .inputs
        .insert("evaluation_top".into(), "cd".repeat(32));
    p.write_audit(&a);
    let (out, md) = p.markdown();
    let s = section(&md);
    assert!(s.contains("No photo's label looks wrong."), "{s}");
    assert!(
        s.contains("No validation photo has a copy in train."),
        "{s}"
    );
    assert!(s.contains("No photo has a copy in its own split."), "{s}");
    assert!(s.contains("No photo is above it."), "{s}");
    assert!(
        s.contains("No model had a validation evaluation when the audit ran"),
        "{s}"
    );
    assert!(s.contains("No power law was fitted"), "{s}");
    assert!(s.contains("it names 0 photos now"), "{s}");
    // Only the learning curve is drawn.
    assert_eq!(s.matches("![").count(), 1, "{s}");
    assert!(out.dir.join("learning_curve.png").exists());
    assert!(!out.dir.join("audit_label_issues.png").exists());
    // The features and the evaluation it recorded are not there now.
    let stale = line_starting(s, "- **Out of date**: the audit was computed from other");
    assert!(
        stale.contains("`just audit` audits the current ones"),
        "{stale}"
    );
    let eval = line_starting(s, "- **Out of date**: 2. bottleneck features");
    assert!(
        eval.contains("has no validation evaluation any more"),
        "{eval}"
    );
}

#[test]
fn an_unreadable_audit_is_an_error_naming_it() {
    let p = Project::new();
    let path = p.audit_path();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"format\": 1}").unwrap();
    let err = p.report().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("not valid audit results"), "{err}");
    assert!(err.contains("`just audit` writes it again"), "{err}");

    let mut a = audit(&p);
    a.format = AUDIT_FORMAT + 1;
    p.write_audit(&a);
    let err = p.report().unwrap_err();
    assert!(
        matches!(&err, report::ReportError::Audit { path: q, .. } if q == &path),
        "{err:?}"
    );
    assert!(err.to_string().contains("of format 2"), "{err}");
}
