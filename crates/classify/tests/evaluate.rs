//! `classify evaluate` and `classify predict` on a hand-set model whose every output is known.

mod common;

use common::*;

/// The cross-entropy of the hand-set model on the fixture, computed from its definition.
fn expected_loss() -> f64 {
    let bright = BRIGHT.iter().map(|&v| -(1.0 - sigmoid(logit(v))).ln());
    let dark = DARK.iter().map(|&v| -sigmoid(logit(v)).ln());
    bright.chain(dark).sum::<f64>() / 7.0
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-5
}

#[test]
fn evaluate_gives_the_exact_confusion_matrix_and_scores() {
    let dir = tempfile::tempdir().unwrap();
    write_fixture(&dir.path().join("data"));
    let model = write_brightness_model(&dir.path().join("model"));
    let json = dir.path().join("out/eval.json");
    let data = dir.path().join("data");
    let model_dir = dir.path().join("model");
    let args = [
        "evaluate",
        "--model",
        model_dir.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    let stdout = run_ok(&args);

    // bright 179, 153 → bright, 76 → dark; dark 25, 51 → dark, 204, 230 → bright.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["classes"], serde_json::json!(["bright", "dark"]));
    assert_eq!(
        report["confusion_matrix"],
        serde_json::json!([[2, 1], [2, 2]])
    );
    assert_eq!(report["samples"], 7);
    assert_eq!(report["correct"], 4);
    assert_eq!(report["architecture"], "small_cnn");
    assert_eq!(report["model"], model.to_str().unwrap());
    let f = |v: &serde_json::Value| v.as_f64().unwrap();
    assert!(close(f(&report["accuracy"]), 4.0 / 7.0));
    assert!(
        close(f(&report["loss"]), expected_loss()),
        "{} vs {}",
        report["loss"],
        expected_loss()
    );
    // Per class: (precision, recall, f1, support), by hand from the matrix.
    let expected = [
        ("bright", 2.0 / 4.0, 2.0 / 3.0, 4.0 / 7.0, 3),
        ("dark", 2.0 / 3.0, 2.0 / 4.0, 4.0 / 7.0, 4),
    ];
    for (row, (class, p, r, f1, support)) in
        report["per_class"].as_array().unwrap().iter().zip(expected)
    {
        assert_eq!(row["class"], class);
        assert!(close(f(&row["precision"]), p), "{row}");
        assert!(close(f(&row["recall"]), r), "{row}");
        assert!(close(f(&row["f1"]), f1), "{row}");
        assert_eq!(row["support"], support);
    }
    let m = &report["macro_avg"];
    assert!(close(f(&m["precision"]), 7.0 / 12.0) && close(f(&m["recall"]), 7.0 / 12.0));
    assert!(close(f(&m["f1"]), 4.0 / 7.0));
    let w = &report["weighted_avg"];
    assert!(close(
        f(&w["precision"]),
        (3.0 * 0.5 + 4.0 * 2.0 / 3.0) / 7.0
    ));
    assert!(close(f(&w["recall"]), 4.0 / 7.0));
    // The three mistakes, in folder order, with the probability of the wrong class.
    let mistakes = report["mistakes"].as_array().unwrap();
    let named: Vec<(String, &str)> = mistakes
        .iter()
        .map(|m| {
            let image = m["image"].as_str().unwrap();
            let file = std::path::Path::new(image).file_name().unwrap();
            (
                file.to_string_lossy().into_owned(),
                m["predicted"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        named,
        [
            ("076.png".to_string(), "dark"),
            ("204.png".to_string(), "bright"),
            ("230.png".to_string(), "bright")
        ]
    );
    assert!(close(f(&mistakes[0]["probability"]), sigmoid(logit(76))));

    // The printed report.
    assert!(stdout.contains("accuracy: 0.5714 (4/7 images)"), "{stdout}");
    assert!(
        stdout.contains(&format!("loss: {:.4}", expected_loss())),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.starts_with("confusion matrix"))
        .unwrap();
    let cells = |l: &str| l.split_whitespace().map(str::to_string).collect::<Vec<_>>();
    assert_eq!(cells(lines[header + 1]), ["bright", "dark"]);
    assert_eq!(cells(lines[header + 2]), ["bright", "2", "1"]);
    assert_eq!(cells(lines[header + 3]), ["dark", "2", "2"]);
    let scores = lines.iter().position(|l| l.contains("precision")).unwrap();
    let row = lines[scores..]
        .iter()
        .find(|l| l.starts_with("dark "))
        .unwrap();
    assert_eq!(cells(row), ["dark", "0.6667", "0.5000", "0.5714", "4"]);
    assert!(stdout.contains("macro avg"), "{stdout}");

    // Mirror averaging changes nothing on uniform images.
    let mut tta = args.to_vec();
    tta.push("--tta");
    let json_tta = dir.path().join("out/eval-tta.json");
    tta[6] = json_tta.to_str().unwrap();
    let stdout = run_ok(&tta);
    assert!(stdout.contains("test-time augmentation"), "{stdout}");
    let with: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json_tta).unwrap()).unwrap();
    assert_eq!(with["tta"], true);
    assert_eq!(with["confusion_matrix"], report["confusion_matrix"]);
    assert!(close(f(&with["loss"]), expected_loss()));
}

#[test]
fn predict_prints_each_class_and_probability_and_reports_bad_images() {
    let dir = tempfile::tempdir().unwrap();
    let (bright, dark) = write_fixture(&dir.path().join("data"));
    let model = write_brightness_model(&dir.path().join("model"));
    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let missing = dir.path().join("missing.png");
    let json = dir.path().join("pred.json");
    let images = [&bright[0], &corrupt, &dark[0], &missing, &dark[2]];
    let mut args = vec![
        "predict",
        "--model",
        model.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--batch-size",
        "2",
    ];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let (stdout, stderr) = run_err_env(&args, &[]);

    let line = |p: &std::path::Path, class: &str, prob: f64| {
        format!("{}: {class} ({prob:.4})", p.display())
    };
    let p_dark = |v: u8| sigmoid(logit(v));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            line(&bright[0], "bright", 1.0 - p_dark(BRIGHT[0])),
            line(&dark[0], "dark", p_dark(DARK[0])),
            line(&dark[2], "bright", 1.0 - p_dark(DARK[2])),
        ]
    );
    assert!(
        stderr.contains(&format!("{}: error: ", corrupt.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{}: error: no such file", missing.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("error: 2 of 5 images could not be classified"),
        "{stderr}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let predictions = report["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 5);
    assert_eq!(predictions[0]["class"], "bright");
    let probs: Vec<f64> = predictions[2]["probabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(close(probs[1], p_dark(DARK[0])) && close(probs[0] + probs[1], 1.0));
    assert!(
        predictions[1]["error"]
            .as_str()
            .unwrap()
            .contains("corrupt.jpg")
    );
    assert!(predictions[1].get("class").is_none());
    assert!(
        predictions[3]["error"]
            .as_str()
            .unwrap()
            .contains("missing.png")
    );

    // Only good images: exit status 0.
    let stdout = run_ok(&[
        "predict",
        "--model",
        model.to_str().unwrap(),
        dark[1].to_str().unwrap(),
    ]);
    assert_eq!(stdout.trim(), line(&dark[1], "dark", p_dark(DARK[1])));
}
