# littledata: train strong image classifiers from very little data.
# `just --list` shows every recipe. Stage settings live in the pipeline file;
# override one with e.g. `just train-small --set small_cnn.epochs=5`.

pipeline := env_var_or_default("LITTLEDATA_PIPELINE", "pipelines/blog.toml")
# Extra cargo flags, e.g. `just cargo_flags="--release --features cuda" finetune --device cuda`.
cargo_flags := "--release"
# The pipeline file of `just demo`.
demo_pipeline := "pipelines/demo.toml"

# List the recipes.
default:
    @just --list

# Split a labelled folder into data/train, data/validation (and data/test).
split *ARGS:
    cargo run {{cargo_flags}} -p prep -- split --pipeline {{pipeline}} {{ARGS}}

# Write 20 augmented variants of one training image and a contact sheet to preview/.
preview *ARGS:
    cargo run {{cargo_flags}} -p preview -- --pipeline {{pipeline}} {{ARGS}}

# Train the small convnet from scratch (method 1); `--resume` continues an interrupted run.
train-small *ARGS:
    cargo run {{cargo_flags}} -p train-small -- --pipeline {{pipeline}} {{ARGS}}

# Accuracy, loss, confusion matrix and per-class precision/recall/F1 of a model artifact.
evaluate MODEL="artifacts/small_cnn" DATA="data/validation" *ARGS:
    cargo run {{cargo_flags}} -p classify -- evaluate --model {{MODEL}} --data {{DATA}} {{ARGS}}

# The predicted class and its probability for each image; folders are walked recursively
# (`--out FILE.csv` writes every row).
predict MODEL *PATHS:
    cargo run {{cargo_flags}} -p classify -- predict --model {{MODEL}} {{PATHS}}

# Fit a model's temperature on the validation split (calibrated probabilities).
calibrate MODEL="artifacts/top" DATA="data/validation" *ARGS:
    cargo run {{cargo_flags}} -p classify -- calibrate --model {{MODEL}} --data {{DATA}} {{ARGS}}

# Serve a model over HTTP with a page to try it (http://127.0.0.1:8080 by default).
serve MODEL="artifacts/finetune" *ARGS:
    cargo run {{cargo_flags}} -p classify -- serve --model {{MODEL}} {{ARGS}}

# `--shard i/n` (or `auto` under Slurm/Kubernetes) computes one slice; `merge` joins them.
# Cache the pretrained backbone's features of the splits (method 2, part 1).
extract-bottlenecks *ARGS:
    cargo run {{cargo_flags}} -p extract -- --pipeline {{pipeline}} {{ARGS}}

# Train the top model on the cached features (method 2, part 2); `--kfold K` for k-fold.
train-top *ARGS:
    cargo run {{cargo_flags}} -p train-top -- --pipeline {{pipeline}} {{ARGS}}

# `--live` for live augmentation instead of the view cache.
# Mislabelled, duplicated, leaking and stray photos and the learning curve, from the cached
# features (after extract-bottlenecks); writes <data.artifacts>/audit/audit.json.
audit *ARGS:
    cargo run {{cargo_flags}} -p audit -- --pipeline {{pipeline}} {{ARGS}}

# Fine-tune the backbone's tail (VGG16: block 5) + the trained top model (method 3).
finetune *ARGS:
    cargo run {{cargo_flags}} -p finetune -- --pipeline {{pipeline}} {{ARGS}}

# A report comparing the three methods, rebuilt from the artifacts alone.
report *ARGS:
    cargo run {{cargo_flags}} -p report -- --pipeline {{pipeline}} {{ARGS}}

# Stage by stage (scripts/chain.sh): split (when the data folder has no train/), preview,
# train-small, extract-bottlenecks, train-top, finetune, evaluate each model, report; a stage
# whose artifacts are up to date does nothing. ARGS (`--set`, `--seed`) go to every stage.
# The whole post with the pipeline file, then each stage's wall time.
all *ARGS:
    CARGO_FLAGS="{{cargo_flags}}" scripts/chain.sh {{pipeline}} {{ARGS}}

# pipelines/demo.toml: 200 + 100 images per class, 5 epochs per stage, into data/demo and
# artifacts/demo.
# `just all` on a small slice, in minutes on a laptop CPU; ends with where the report is.
demo *ARGS:
    CARGO_FLAGS="{{cargo_flags}}" scripts/chain.sh {{demo_pipeline}} {{ARGS}}

# scripts/smoke.sh: pipelines/smoke.toml into target/smoke; the second run must find every
# stage up to date. Needs LITTLEDATA_SHARED (skipped without it, a failure under CI).
# The whole chain on a handful of shared photos, twice.
smoke:
    CARGO_FLAGS="{{cargo_flags}}" scripts/smoke.sh

# The workspace's tests, then the smoke run of the chain on the stage binaries built with the
# test build's features (only the binaries compile: a build of fewer packages, or without the
# tests, would unify features differently and recompile candle).
# Run every test (the CI command).
test:
    cargo test --workspace --locked
    cargo build --workspace --bins --tests --locked
    BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" scripts/smoke.sh

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Criterion benchmarks of the data pipeline and the kernels.
bench:
    cargo bench --workspace
