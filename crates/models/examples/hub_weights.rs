//! Writes the deterministic random weights of a hub backbone (the ones
//! `tests/hub_models.rs` regenerates) to a safetensors file, for
//! `scripts/reference/hub_models.py` to load into timm:
//!
//! `cargo run -p models --example hub_weights -- convnext_tiny /tmp/convnext_tiny.safetensors`

use std::path::PathBuf;
use std::process::ExitCode;

use models::{BackboneKind, HubModel};

use testkit::hub as hub_weights;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let names: Vec<&str> = HubModel::ALL.iter().map(|m| m.name()).collect();
    let [name, out] = args.as_slice() else {
        eprintln!(
            "usage: hub_weights MODEL OUT.safetensors (MODEL: {})",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    let Some(model) = BackboneKind::parse(name).and_then(BackboneKind::hub_model) else {
        eprintln!("unknown model `{name}` (known: {})", names.join(", "));
        return ExitCode::FAILURE;
    };
    let out = PathBuf::from(out);
    hub_weights::write_random_hub_weights(model, &out);
    println!(
        "{}: random weights (seed {}) written to {}",
        model,
        hub_weights::seed(model),
        out.display()
    );
    ExitCode::SUCCESS
}
