//! The report's calibration section on artifacts with and without `calibration.safetensors`:
//! the table of temperatures, ECE and NLL, the reliability diagrams (in the folder and
//! embedded in the page), a stale calibration, a missing one, and unreadable ones.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use engine::calibration as cal;
use report::{CalibrationState, ReportOptions};
use testkit::fixtures;

/// An artifacts folder with hand-set models for methods 1 and 2 (method 3 not run).
struct Project {
    _dir: tempfile::TempDir,
    root: PathBuf,
    artifacts: PathBuf,
    pipeline_file: PathBuf,
    pipeline: pipeline::Pipeline,
}

impl Project {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let artifacts = root.join("artifacts");
        let text = fixtures::data_section(&root.join("data"), &artifacts, [32, 32]);
        let pipeline_file = root.join("pipeline.toml");
        std::fs::write(&pipeline_file, &text).unwrap();
        for stage in ["small_cnn", "top"] {
            let folder = artifacts.join(stage);
            std::fs::create_dir_all(&folder).unwrap();
            fixtures::write_brightness_model(&folder);
        }
        Self {
            _dir: dir,
            root,
            pipeline: fixtures::pipeline(&text, &[]),
            artifacts,
            pipeline_file,
        }
    }

    fn model(&self, stage: &str) -> PathBuf {
        self.artifacts.join(stage).join("model.safetensors")
    }

    fn calibration_path(&self, stage: &str) -> PathBuf {
        self.artifacts
            .join(stage)
            .join(pipeline::layout::CALIBRATION_FILE)
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

/// The calibration of an over-confident model on 200 photos, measured as `classify calibrate`
/// measures it (two-fold cross-fitted), recorded for the model file with digest `sha`.
fn calibration(sha: &str) -> stage::Calibration {
    // Logits of two classes whose true temperature is 2.5: the raw probabilities are too
    // sure. Ten photos per logit, of which the true probability's share are right.
    let mut logits = Vec::new();
    let mut labels = Vec::new();
    for level in 0..20u32 {
        let z = 0.5 + 6.0 * f64::from(level) / 19.0;
        let truth = cal::softmax(&[0.0, z], 2.5)[1];
        let right = (truth * 10.0).round() as u32;
        for j in 0..10 {
            logits.push(vec![0.0, z]);
            labels.push(u32::from(j < right));
        }
    }
    let order: Vec<usize> = (0..labels.len()).rev().collect();
    let halves = cal::stratified_halves(&labels, &order);
    let fit = cal::cross_fit(&logits, &labels, &halves);
    let temperature = cal::fit_temperature(&logits, &labels);
    let raw: Vec<Vec<f64>> = logits.iter().map(|r| cal::softmax(r, 1.0)).collect();
    let before = cal::reliability(&raw, &labels, cal::ECE_BINS);
    let after = cal::reliability(&fit.probabilities, &labels, cal::ECE_BINS);
    let correct = raw
        .iter()
        .zip(&labels)
        .filter(|(p, y)| u32::from(p[1] > p[0]) == **y)
        .count();
    let nll_after = labels
        .iter()
        .zip(&fit.probabilities)
        .map(|(&y, p)| -p[y as usize].ln())
        .sum::<f64>()
        / labels.len() as f64;
    let nll_before = cal::nll(&logits, &labels, 1.0);
    stage::Calibration {
        applied: nll_after < nll_before,
        method: "temperature".into(),
        temperature,
        model_sha256: sha.into(),
        data: PathBuf::from("data/validation"),
        data_digest: "digest".into(),
        seed: 42,
        samples: labels.len(),
        accuracy: correct as f64 / labels.len() as f64,
        fold_temperatures: fit.temperatures,
        bins: cal::ECE_BINS,
        ece_before: cal::ece(&before),
        ece_after: cal::ece(&after),
        nll_before,
        nll_after,
        reliability_before: before,
        reliability_after: after,
    }
}

fn save(c: &stage::Calibration, path: &Path) {
    c.save(
        path,
        &stage::calibration::provenance(&c.model_sha256, "digest", 42),
    )
    .unwrap();
}

fn line_starting<'a>(md: &'a str, start: &str) -> &'a str {
    md.lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no line starting {start:?} in\n{md}"))
}

/// The Markdown from `## Calibration` to the next `## ` heading.
fn section(md: &str) -> &str {
    let start = md
        .find("## Calibration\n")
        .unwrap_or_else(|| panic!("no calibration section in\n{md}"));
    let rest = &md[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

#[test]
fn a_calibrated_model_gets_its_table_row_and_reliability_diagram() {
    let p = Project::new();
    let small_sha = artifact::sha256_file(&p.model("small_cnn")).unwrap();
    let fitted = calibration(&small_sha);
    assert!(
        fitted.temperature > 1.2 && fitted.ece_after < fitted.ece_before,
        "the fixture is over-confident: {fitted:?}"
    );
    save(&fitted, &p.calibration_path("small_cnn"));
    // Method 2's calibration was fitted for another model file.
    save(&calibration(&"ab".repeat(32)), &p.calibration_path("top"));

    let (out, md) = p.markdown();
    let s = section(&md);
    assert!(
        s.contains("fitted on the validation split by minimising the negative log-likelihood"),
        "{s}"
    );
    assert!(s.contains("two-fold cross-fitted"), "{s}");
    assert!(
        s.contains("never measured on the photos that fitted them"),
        "{s}"
    );
    assert!(s.contains("accuracy is unchanged"), "{s}");
    assert!(s.contains(
        "| method | temperature | ECE before | ECE after (cross-fitted) | NLL before | NLL after | \
         photos |"
    ));
    let row = line_starting(s, "| 1. small convnet from scratch |");
    assert_eq!(
        row,
        format!(
            "| 1. small convnet from scratch | {:.3} | {:.4} | {:.4} | {:.4} | {:.4} | 200 |",
            fitted.temperature,
            fitted.ece_before,
            fitted.ece_after,
            fitted.nll_before,
            fitted.nll_after
        )
    );
    assert!(
        !s.contains("| 2. bottleneck features"),
        "a stale calibration has no row:\n{s}"
    );
    let small_line = line_starting(s, "- **1. small convnet from scratch**");
    assert!(
        small_line.contains(&format!(
            "{} photos, accuracy {:.4}",
            fitted.samples, fitted.accuracy
        )),
        "{small_line}"
    );
    let stale = line_starting(s, "- **2. bottleneck features + top model**");
    assert!(stale.contains("stale"), "{stale}");
    assert!(stale.contains("fitted for another model file"), "{stale}");
    assert!(stale.contains(&format!("`{}`", "ab".repeat(6))), "{stale}");
    assert!(
        stale.contains(&format!(
            "`classify calibrate --model {} --data {}`",
            p.artifacts.join("top").display(),
            p.root.join("data/validation").display()
        )),
        "{stale}"
    );
    assert!(
        !s.contains("fine-tuned"),
        "a method not run has no line here:\n{s}"
    );
    assert!(s.contains(
        "### 1. small convnet from scratch\n\n![reliability diagram of 1. small convnet from \
         scratch](calibration_small_cnn.png)\n"
    ));
    assert_eq!(s.matches("![").count(), 1, "{s}");
    let gathered = &out.gathered.methods;
    assert!(matches!(
        gathered[1].run().unwrap().calibration,
        CalibrationState::Stale { .. }
    ));

    // The calibration file is listed with its provenance.
    let row = line_starting(&md, "| `small_cnn/calibration.safetensors` |");
    assert!(row.contains("| calibrate |"), "{row}");
    assert!(row.contains(&small_sha[..12]), "{row}");

    // The diagram: in the folder, in both colours, and embedded in the page.
    let png_path = out.dir.join("calibration_small_cnn.png");
    assert_eq!(
        png_path.file_name().unwrap(),
        report::calibration_file(report::Method::SmallCnn).as_str()
    );
    assert!(out.images.contains(&png_path));
    assert!(!out.dir.join("calibration_top.png").exists());
    let png = std::fs::read(&png_path).unwrap();
    let img = image::load_from_memory(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), report::figures::RELIABILITY_SIZE);
    for color in [
        report::figures::UNCALIBRATED_COLOR,
        report::figures::CALIBRATED_COLOR,
    ] {
        let c = [color.0, color.1, color.2];
        let n = img.pixels().filter(|p| p.0 == c).count();
        assert!(n > 200, "{n} pixels of {c:?}");
    }
    let html = std::fs::read_to_string(&out.html).unwrap();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&png);
    assert!(html.contains(&format!("src=\"data:image/png;base64,{encoded}\"")));
    assert!(html.contains("<h2>Calibration</h2>"));

    // The binary says so too.
    let run = std::process::Command::new(env!("CARGO_BIN_EXE_report"))
        .arg("--pipeline")
        .arg(&p.pipeline_file)
        .current_dir(&p.root)
        .env_remove("LITTLEDATA_PIPELINE")
        .output()
        .unwrap();
    let stdout = testkit::cli::expect_success(&"report", &run);
    assert!(
        stdout.contains(&format!(
            "  calibrated: temperature {:.3}, ECE {:.4} before, {:.4} after (cross-fitted)",
            fitted.temperature, fitted.ece_before, fitted.ece_after
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "fitted for another model file and is left out; `classify calibrate --model {}`",
            p.artifacts.join("top").display()
        )),
        "{stdout}"
    );

    // Without the calibration, the command that makes one, and the old diagram is removed.
    std::fs::remove_file(p.calibration_path("small_cnn")).unwrap();
    let (out, md) = p.markdown();
    let s = section(&md);
    let line = line_starting(s, "- **1. small convnet from scratch**");
    assert_eq!(
        line,
        format!(
            "- **1. small convnet from scratch**: not calibrated yet; `classify calibrate --model \
             {} --data {}` fits its temperature.",
            p.artifacts.join("small_cnn").display(),
            p.root.join("data/validation").display()
        )
    );
    assert!(s.contains("No model is calibrated yet."), "{s}");
    assert!(
        !s.contains("| method |"),
        "no table without a calibration:\n{s}"
    );
    assert!(!s.contains("!["), "{s}");
    assert!(!out.dir.join("calibration_small_cnn.png").exists());
    assert!(!md.contains("calibration.safetensors` |"), "{md}");
}

#[test]
fn unreadable_calibration_files_are_errors_naming_them() {
    let p = Project::new();
    let path = p.calibration_path("small_cnn");

    // Not a safetensors file.
    std::fs::write(&path, b"junk").unwrap();
    let err = p.report().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");

    // An artifact, but its temperature is not a positive number.
    let sha = artifact::sha256_file(&p.model("small_cnn")).unwrap();
    let mut bad = calibration(&sha);
    bad.temperature = -1.0;
    save(&bad, &path);
    let err = p.report().unwrap_err();
    assert!(
        matches!(&err, report::ReportError::Calibration { path: p, .. } if p == &path),
        "{err:?}"
    );
    let err = err.to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("temperature"), "{err}");

    // Damaged after writing: its digest no longer matches.
    save(&calibration(&sha), &path);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let err = p.report().unwrap_err().to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
}
