//! `--set section.key=value` overrides applied to the raw TOML table before typing.

use crate::PipelineError;

/// Applies one `section.key=value` (any depth: `small_cnn.augment.zoom_range=[0.8, 1.2]`) to
/// `table`. The value is read as a TOML value (`5`, `1e-4`, `true`, `[1, 2]`, `"text"`); a bare
/// word that is not valid TOML is taken as a string (`optimizer.name=sgd`).
pub fn apply_override(table: &mut toml::Table, arg: &str) -> Result<(), PipelineError> {
    let err = |message: &str| PipelineError::Override {
        arg: arg.to_string(),
        message: message.to_string(),
    };
    let (key, raw) = arg
        .split_once('=')
        .ok_or_else(|| err("expected section.key=value"))?;
    let parts: Vec<&str> = key.trim().split('.').map(str::trim).collect();
    if parts.len() < 2 || parts.iter().any(|p| p.is_empty()) {
        return Err(err(
            "the key must name a section and a key, like small_cnn.epochs",
        ));
    }
    let raw = raw.trim();
    let value = match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(mut t) => t.remove("v").expect("parsed key"),
        Err(_) => toml::Value::String(raw.to_string()),
    };
    let (last, parents) = parts.split_last().expect("at least two parts");
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| err(&format!("`{p}` is a value, not a section")))?;
    }
    cur.insert(last.to_string(), value);
    Ok(())
}
