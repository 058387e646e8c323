//! `classify predict` over folders: recursive, sorted, other files skipped, undecodable files
//! listed at the end without stopping the run, and every row in `--out` CSV or JSON.

mod common;

use std::path::Path;

use common::*;

#[test]
fn folders_are_walked_and_every_row_is_written_with_the_failures_at_the_end() {
    let root = tempfile::tempdir().unwrap();
    let photos = root.path().join("photos");
    let (bright, dark) = write_fixture(&photos.join("nested"));
    write_uniform(&photos.join("top.png"), 240);
    std::fs::write(
        photos.join("notes.txt"),
        "not an image, and not named like one",
    )
    .unwrap();
    std::fs::write(photos.join("nested").join("broken.png"), "not a PNG at all").unwrap();
    let model = write_brightness_model(&root.path().join("model"));
    let model_dir = model.parent().unwrap().to_str().unwrap();
    let csv = root.path().join("out").join("rows.csv");
    std::fs::create_dir_all(csv.parent().unwrap()).unwrap();

    let out = run(
        &[
            "predict",
            "--model",
            model_dir,
            "--out",
            csv.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &[],
    );
    let (stdout, stderr) = testkit::cli::output_text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    // Every decodable image has its line; the broken one is listed at the end, named.
    let expected = bright.len() + dark.len() + 1;
    assert_eq!(stdout.lines().count(), expected, "{stdout}");
    assert!(stderr.contains("skipping 1 file"), "{stderr}");
    let tail = stderr
        .split("could not be classified:")
        .nth(1)
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        tail.contains("broken.png") && tail.contains("not a JPEG or PNG"),
        "{stderr}"
    );
    assert!(
        stderr.contains("1 of 9 images could not be classified"),
        "{stderr}"
    );

    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("path,class,probability,p_bright,p_dark,error")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 9);
    // Sorted walk: nested/ before top.png, and within nested/ bright/ before dark/.
    assert!(
        rows[0][0].ends_with("nested/bright/076.png"),
        "{:?}",
        rows[0]
    );
    assert!(rows.last().unwrap()[0].ends_with("top.png"));
    for row in &rows {
        assert_eq!(row.len(), 6, "{row:?}");
        if row[0].ends_with("broken.png") {
            assert_eq!(&row[1..5], ["", "", "", ""]);
            assert!(row[5].contains("not a JPEG or PNG"));
            continue;
        }
        let v: u8 = Path::new(row[0])
            .file_stem()
            .and_then(|s| s.to_str())
            .map(|s| if s == "top" { 240 } else { s.parse().unwrap() })
            .unwrap();
        let p_dark = sigmoid(logit(v));
        let got: f64 = row[4].parse().unwrap();
        assert!((got - p_dark).abs() < 1e-5, "{row:?}");
        let p_bright: f64 = row[3].parse().unwrap();
        assert!((p_bright + got - 1.0).abs() < 1e-5);
        assert_eq!(row[1], if p_dark > 0.5 { "dark" } else { "bright" });
        assert_eq!(row[2].parse::<f64>().unwrap(), p_bright.max(got));
        assert_eq!(row[5], "");
    }

    // The same as JSON.
    let json = root.path().join("rows.json");
    let out = run(
        &[
            "predict",
            "--model",
            model_dir,
            "--out",
            json.to_str().unwrap(),
            photos.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["predictions"].as_array().unwrap().len(), 9);
    assert_eq!(report["classes"], serde_json::json!(["bright", "dark"]));

    // A folder without images, and an --out of another kind, are clear errors.
    let empty = root.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let err = run_err(&["predict", "--model", model_dir, empty.to_str().unwrap()]);
    assert!(
        err.contains("no image files") && err.contains("empty"),
        "{err}"
    );
    let err = run_err(&[
        "predict",
        "--model",
        model_dir,
        "--out",
        "rows.xlsx",
        photos.to_str().unwrap(),
    ]);
    assert!(
        err.contains("rows.xlsx") && err.contains(".csv or .json"),
        "{err}"
    );
}

#[test]
fn explain_refuses_a_model_without_a_backbone_and_several_photos() {
    let root = tempfile::tempdir().unwrap();
    let (bright, _) = write_fixture(&root.path().join("photos"));
    let model = write_brightness_model(&root.path().join("model"));
    let model_dir = model.parent().unwrap().to_str().unwrap();
    let out = root.path().join("explained.png");
    // The small convnet has no pretrained backbone whose feature map Grad-CAM could weigh.
    let err = run_err(&[
        "predict",
        "--model",
        model_dir,
        "--explain",
        out.to_str().unwrap(),
        bright[0].to_str().unwrap(),
    ]);
    assert!(
        err.contains("cannot explain") && err.contains("small_cnn") && err.contains("no backbone"),
        "{err}"
    );
    // A folder of several photos: exactly one is explained, so none is.
    let err = run_err(&[
        "predict",
        "--model",
        model_dir,
        "--explain",
        out.to_str().unwrap(),
        root.path().join("photos").to_str().unwrap(),
    ]);
    assert!(err.contains("exactly one photo"), "{err}");
    assert!(!out.exists());
}
