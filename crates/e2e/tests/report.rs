//! The report on artifacts made by the real stages: the results table against the stages'
//! and the evaluations' figures, the post's figures, the embedded pictures, the k-fold
//! estimate, provenance, missing stages and unreadable files.

mod common;

use base64::Engine as _;
use common::{Project, fig, line_starting};

/// Every `src="…"` of the page.
fn sources(html: &str) -> Vec<&str> {
    html.split("src=\"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect()
}

#[test]
fn a_full_run_is_reported_with_its_figures_pictures_and_provenance() {
    let p = Project::new();
    p.train_small();
    p.train_top();
    let kfold = p.kfold();
    p.finetune();
    let small_val = p.evaluate("small_cnn", "validation");
    let small_test = p.evaluate("small_cnn", "test");
    let top_val = p.evaluate("top", "validation");
    let fine_val = p.evaluate("finetune", "validation");

    let started = std::time::Instant::now();
    let out = p.report().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert!(seconds < 10.0, "the report took {seconds:.1} s");
    let md = std::fs::read_to_string(&out.markdown).unwrap();

    // The table: evaluation figures, test figures where evaluated, epochs with the best
    // one, device, and the post's figures.
    assert!(md.contains(
        "| method | validation accuracy | validation loss | test accuracy | test loss | \
         backbone | epochs (best) | training time | device | the post |"
    ));
    let small = p.metrics("small_cnn");
    let row = line_starting(&md, "| 1. small convnet from scratch |");
    let expected = format!(
        "| 1. small convnet from scratch | {} | {} | {} | {} | — | 2 (best {}) | ",
        fig(small_val.accuracy),
        fig(small_val.loss),
        fig(small_test.accuracy),
        fig(small_test.loss),
        small["saved_epoch"]
    );
    assert!(row.starts_with(&expected), "{row}\nexpected {expected}");
    assert!(row.contains("| cpu ("), "{row}");
    assert!(row.ends_with("| 0.79–0.81 |"), "{row}");
    let top = p.metrics("top");
    let row = line_starting(&md, "| 2. bottleneck features + top model |");
    let expected = format!(
        "| 2. bottleneck features + top model | {} | {} | — | — | `vgg16` | 3 (best {}) | ",
        fig(top_val.accuracy),
        fig(top_val.loss),
        top["saved_epoch"]
    );
    assert!(row.starts_with(&expected), "{row}\nexpected {expected}");
    let device = top["device"]
        .as_str()
        .expect("train-top records its device");
    assert!(row.ends_with(&format!("| {device} | 0.90–0.91 |")), "{row}");
    let fine = p.metrics("finetune");
    let row = line_starting(&md, "| 3. fine-tuned backbone tail + top model |");
    let expected = format!(
        "| 3. fine-tuned backbone tail + top model | {} | {} | — | — | `vgg16` | 2 (best {}) | ",
        fig(fine_val.accuracy),
        fig(fine_val.loss),
        fine["saved_epoch"]
    );
    assert!(row.starts_with(&expected), "{row}\nexpected {expected}");
    assert!(row.ends_with("| 0.94 |"), "{row}");
    assert!(!md.contains("Not run yet"), "{md}");
    assert!(
        !md.contains("\\*"),
        "every figure comes from an evaluation:\n{md}"
    );

    // The k-fold estimate, per fold.
    assert!(
        md.contains(&format!(
            "**{} ± {}**",
            fig(kfold.mean_acc),
            fig(kfold.std_acc)
        )),
        "{md}"
    );
    for f in &kfold.folds {
        assert!(md.contains(&format!(
            "| {} | {} | {} | {} |",
            f.fold,
            f.train_samples,
            f.validation_samples,
            fig(f.acc)
        )));
    }

    // Confusion matrices, from the evaluations.
    let m = &small_val.confusion_matrix;
    assert!(
        md.contains(&format!("| **cats** | {} | {} |", m[0][0], m[0][1])),
        "{md}"
    );
    assert!(md.contains(&format!(
        "validation images ({} of {} right)",
        small_val.correct, small_val.samples
    )));

    // Mistakes: one grid per model that made any, all shown (fewer than the cap).
    let with_mistakes: Vec<(&str, usize)> = [
        ("small_cnn", small_val.mistakes.len()),
        ("top", top_val.mistakes.len()),
        ("finetune", fine_val.mistakes.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert!(
        !with_mistakes.is_empty(),
        "near-chance models on noise make mistakes"
    );
    for (stage, n) in &with_mistakes {
        let png = out.dir.join(format!("mistakes_{stage}.png"));
        let img = image::open(&png).unwrap();
        let columns = (*n).min(8) as u32;
        assert_eq!(img.width(), 8 + columns * (128 + 8), "{stage}");
        assert!(md.contains(&format!("({})", png.file_name().unwrap().to_str().unwrap())));
        assert!(md.contains(&format!("{n} of {} images wrong", common::VALIDATION * 2)));
    }

    // The curves of the three methods, side by side.
    let curves = image::open(out.dir.join("curves.png")).unwrap();
    assert_eq!(curves.width(), 3 * 560);
    assert!(md.contains("![training curves](curves.png)"));

    // Provenance: the pipeline file's digest, the weights' and the data's, the commit, the
    // machine.
    let pipeline_sha = artifact::sha256_file(&p.pipeline_file).unwrap();
    let weights_sha = artifact::sha256_file(&p.weights).unwrap();
    let meta = artifact::read_metadata(&p.artifacts.join("small_cnn/model.safetensors")).unwrap();
    let prov = artifact::Provenance::from_metadata(&meta).unwrap();
    let row = line_starting(&md, "| pipeline file |");
    assert!(row.contains(&pipeline_sha), "{row}");
    let row = line_starting(&md, "| backbone weights |");
    assert!(row.contains(&weights_sha), "{row}");
    assert!(!row.contains("differ"), "{row}");
    let row = line_starting(&md, "| training images |");
    assert!(row.contains(&prov.inputs["train_data"]), "{row}");
    assert!(
        row.contains("small_cnn/model.safetensors") && row.contains("bottleneck/train.safetensors"),
        "{row}"
    );
    assert!(
        line_starting(&md, "| commit |").contains("unknown"),
        "not a repository"
    );
    assert!(line_starting(&md, "| machine |").contains("threads"));

    // The page: every picture embedded, nothing outside referred to.
    let html = std::fs::read_to_string(&out.html).unwrap();
    let srcs = sources(&html);
    assert_eq!(srcs.len(), 1 + with_mistakes.len());
    for src in &srcs {
        assert!(src.starts_with("data:image/png;base64,"), "{src}");
    }
    let embedded = base64::engine::general_purpose::STANDARD
        .decode(srcs[0].trim_start_matches("data:image/png;base64,"))
        .unwrap();
    assert_eq!(embedded, std::fs::read(out.dir.join("curves.png")).unwrap());
    for outside in ["href=", "http:", "https:", "<link", "url(", "<script"] {
        assert!(!html.contains(outside), "{outside}");
    }
    assert!(html.contains("<table>") && html.contains("0.79–0.81"));

    // The binary does the same and ends by printing where the page is.
    let stdout = testkit::cli::expect_success(&"report", &p.run_binary(&[]));
    assert_eq!(
        stdout.lines().last().unwrap(),
        out.html.display().to_string()
    );
    assert!(stdout.contains(&format!(
        "1. small convnet from scratch: validation accuracy {} (evaluation; the post: 0.79–0.81)",
        fig(small_val.accuracy)
    )), "{stdout}");
}

#[test]
fn missing_stages_are_reported_with_what_to_run() {
    let p = Project::new();
    // Nothing run (fine-tuning started, not finished): every method is missing, and the report
    // still builds.
    let checkpoint = p.artifacts.join("finetune/checkpoints/last.safetensors");
    std::fs::create_dir_all(checkpoint.parent().unwrap()).unwrap();
    std::fs::write(&checkpoint, b"").unwrap();
    let out = p.report().unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("## Not run yet"));
    assert!(md.contains("run `just train-small`"), "{md}");
    assert!(
        md.contains("run `just extract-bottlenecks`, then `just train-top`"),
        "{md}"
    );
    assert!(md.contains("`just finetune --resume` continues it"), "{md}");
    assert!(
        line_starting(&md, "| 3. fine-tuned backbone tail + top model |")
            .starts_with("| 3. fine-tuned backbone tail + top model | unfinished |")
    );
    std::fs::remove_file(&checkpoint).unwrap();
    assert!(!out.dir.join("curves.png").exists());
    assert!(sources(&std::fs::read_to_string(&out.html).unwrap()).is_empty());

    // Method 1 trained but not evaluated: its figures come from metrics.json, marked.
    p.train_small();
    let out = p.report().unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    let small = p.metrics("small_cnn");
    let row = line_starting(&md, "| 1. small convnet from scratch |");
    let expected = format!(
        "| 1. small convnet from scratch | {}\\* | {}\\* | — | 2 (best {}) |",
        fig(small["saved_val_acc"].as_f64().unwrap()),
        fig(small["saved_val_loss"].as_f64().unwrap()),
        small["saved_epoch"]
    );
    assert!(row.starts_with(&expected), "{row}\nexpected {expected}");
    assert!(
        !md.contains("test accuracy"),
        "no test figures, no test columns"
    );
    assert!(
        line_starting(&md, "| 2. bottleneck features + top model |")
            .starts_with("| 2. bottleneck features + top model | not run yet |")
    );
    assert!(
        line_starting(&md, "| 3. fine-tuned backbone tail + top model |").ends_with("| 0.94 |")
    );
    assert!(md.contains("No evaluation yet: `just evaluate "), "{md}");
    assert!(md.contains("--json "), "{md}");
    let m = small["confusion_matrix"].as_array().unwrap();
    assert!(md.contains(&format!("| **cats** | {} | {} |", m[0][0], m[0][1])));
    assert!(out.dir.join("curves.png").exists());
    assert!(!out.dir.join("mistakes_small_cnn.png").exists());

    // Evaluated: the figures are the evaluation's, and the mistakes are shown.
    let eval = p.evaluate("small_cnn", "validation");
    let out = p.report().unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(
        line_starting(&md, "| 1. small convnet from scratch |").starts_with(&format!(
            "| 1. small convnet from scratch | {} | {} |",
            fig(eval.accuracy),
            fig(eval.loss)
        ))
    );
    assert!(out.dir.join("mistakes_small_cnn.png").exists());

    // An evaluation older than the model is of an earlier model: left out, with a note.
    let json = p.artifacts.join("small_cnn/evaluation/validation.json");
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&json)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = p.report().unwrap();
    let md = std::fs::read_to_string(&out.markdown).unwrap();
    assert!(md.contains("is the evaluation of an earlier model"), "{md}");
    assert!(line_starting(&md, "| 1. small convnet from scratch |").contains("\\*"));
    assert!(
        !out.dir.join("mistakes_small_cnn.png").exists(),
        "the old grid is removed"
    );
}

#[test]
fn unreadable_files_are_errors_naming_them() {
    let p = Project::new();
    p.train_small();
    p.evaluate("small_cnn", "validation");
    let small = p.artifacts.join("small_cnn");
    let cases = [
        (
            small.join("evaluation/validation.json"),
            "not valid evaluation results",
        ),
        (small.join("history.json"), "not valid training history"),
        (small.join("metrics.json"), "not valid training metrics"),
        (
            p.artifacts.join("top/kfold.json"),
            "not valid k-fold results",
        ),
    ];
    for (path, what) in &cases {
        let good = std::fs::read(path).ok();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"{ \"epochs\": [ {").unwrap();
        let err = p.report().unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains(what), "{err}");
        let (_, stderr) = testkit::cli::expect_failure(&path, &p.run_binary(&[]));
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&path.display().to_string()),
            "{stderr}"
        );
        match good {
            Some(bytes) => std::fs::write(path, bytes).unwrap(),
            None => std::fs::remove_file(path).unwrap(),
        }
    }
    // A model file that is not safetensors.
    let model = small.join("model.safetensors");
    std::fs::write(&model, b"junk").unwrap();
    let err = p.report().unwrap_err().to_string();
    assert!(err.contains(&model.display().to_string()), "{err}");
}
