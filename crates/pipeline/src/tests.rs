use super::*;
use std::path::Path;

fn parse(text: &str, sets: &[&str]) -> Result<Pipeline, PipelineError> {
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    Pipeline::from_toml_str(text, Path::new("test.toml"), &sets)
}

#[test]
fn empty_file_is_the_post_recipe() {
    let p = parse("", &[]).unwrap();
    assert_eq!(p, Pipeline::default());
    assert_eq!(p.data.target_size, [150, 150]);
    assert_eq!(p.small_cnn.epochs, 50);
    assert_eq!(p.small_cnn.batch_size, 16);
    assert_eq!(p.split.train, 1000);
    assert_eq!(p.split.validation, 500);
    assert!(p.small_cnn.augment.horizontal_flip);
}

#[test]
fn unknown_key_is_named() {
    let err = parse("[small_cnn]\nepoch = 3\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("small_cnn"), "{err}");
    assert!(err.contains("epoch"), "{err}");
    let err = parse("[smal_cnn]\n", &[]).unwrap_err().to_string();
    assert!(err.contains("smal_cnn"), "{err}");
}

#[test]
fn wrong_type_is_named() {
    let err = parse("[top]\nepochs = \"many\"\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("top.epochs"), "{err}");
}

#[test]
fn out_of_range_is_named() {
    let err = parse("[small_cnn]\nbatch_size = 0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("small_cnn.batch_size"), "{err}");
    let err = parse("[data]\ntarget_size = [8, 150]\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("data.target_size[0]"), "{err}");
    let err = parse("[finetune.augment]\nzoom_range = -1.0\n", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("finetune.augment.zoom_range"), "{err}");
}

#[test]
fn overrides_apply_and_are_checked() {
    let p = parse(
        "[small_cnn]\nepochs = 50\n",
        &["small_cnn.epochs=3", "data.seed=7"],
    )
    .unwrap();
    assert_eq!(p.small_cnn.epochs, 3);
    assert_eq!(p.data.seed, 7);
    let p = parse("", &["small_cnn.augment.zoom_range=[0.9, 1.3]"]).unwrap();
    assert_ne!(p.small_cnn.augment, Pipeline::default().small_cnn.augment);
    assert!(matches!(
        parse("", &["epochs=3"]).unwrap_err(),
        PipelineError::Override { .. }
    ));
    assert!(matches!(
        parse("", &["small_cnn.epochs"]).unwrap_err(),
        PipelineError::Override { .. }
    ));
    let err = parse("", &["small_cnn.epocs=3"]).unwrap_err().to_string();
    assert!(err.contains("epocs"), "{err}");
}

#[test]
fn digest_follows_the_sections_used() {
    let a = parse("", &[]).unwrap();
    let b = parse("", &["top.epochs=3"]).unwrap();
    let extra = serde_json::json!({});
    assert_eq!(
        a.digest(&["data", "small_cnn"], &extra),
        b.digest(&["data", "small_cnn"], &extra)
    );
    assert_ne!(
        a.digest(&["data", "top"], &extra),
        b.digest(&["data", "top"], &extra)
    );
    assert_ne!(
        a.digest(&["data"], &extra),
        a.digest(&["data"], &serde_json::json!({"shard": "1/2"}))
    );
}

#[test]
fn shipped_pipelines_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../pipelines");
    for name in ["blog.toml", "demo.toml", "smoke.toml"] {
        let p = Pipeline::load(&root.join(name), &[]);
        assert!(p.is_ok(), "{name}: {}", p.unwrap_err());
    }
}

#[test]
fn get_reads_effective_values() {
    let p = parse("[data]\ndir = \"data/demo\"\n", &["top.epochs=3"]).unwrap();
    assert_eq!(p.get("data.dir").unwrap(), serde_json::json!("data/demo"));
    assert_eq!(
        p.get("data.artifacts").unwrap(),
        serde_json::json!("artifacts")
    );
    assert_eq!(p.get("top.epochs").unwrap(), serde_json::json!(3));
    assert_eq!(
        p.get("bottleneck.weights").unwrap(),
        serde_json::Value::Null
    );
    assert_eq!(
        p.get("small_cnn.augment.zoom_range").unwrap(),
        serde_json::to_value(p.small_cnn.augment.zoom_range).unwrap()
    );
    assert_eq!(p.get("top").unwrap()["epochs"], 3);
    for key in ["data.dirs", "dat.dir", "data.dir.x", ""] {
        let err = p.get(key).unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{err}");
    }
}
