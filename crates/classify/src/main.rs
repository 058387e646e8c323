//! `classify`: evaluate a model artifact on a labelled folder, classify images and folders
//! with it, calibrate its probabilities, or serve it over HTTP.

use anyhow::{Context, Result, bail};
use candle_core::Device;
use clap::{Args, Parser, Subcommand};
use classify::{
    Cached, CalibrateOutcome, Classifier, ClassifierOptions, EvalOptions, EvalReport,
    FeatureLookup, FeatureSource, LoadedModel, PredictOptions, ServeOptions,
};
use indicatif::{ProgressBar, ProgressStyle};
use stage::DeviceArg;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Uses any model artifact the project writes (`small_cnn`, `top`, `finetune`): the
/// architecture, classes, image size, preprocessing and resize filter all come from the
/// artifact's metadata, and the temperature from `calibration.safetensors` beside it.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Accuracy, loss, confusion matrix and per-class precision / recall / F1 on a labelled
    /// folder (one subfolder per class, the model's classes).
    Evaluate {
        #[command(flatten)]
        model: ModelArgs,
        /// The labelled folder.
        #[arg(long, default_value = "data/validation")]
        data: PathBuf,
        /// Also write the report to this JSON file. It records what it evaluated, and a rerun
        /// with the same model file, calibration, images and options reads it back instead.
        #[arg(long, value_name = "FILE")]
        json: Option<PathBuf>,
        /// With --json: evaluate even when the file already holds the report of this model
        /// file, these images and these options.
        #[arg(long, requires = "json")]
        force: bool,
        #[command(flatten)]
        features: FeatureArgs,
    },
    /// The predicted class and its probability for each image. Folders are walked
    /// recursively for JPEG and PNG files. Images that cannot be read are listed at the end
    /// with the reason and do not stop the run; the exit status is then 1.
    Predict {
        #[command(flatten)]
        model: ModelArgs,
        /// Image files (JPEG or PNG) and folders of them.
        #[arg(required = true, value_name = "PATH")]
        paths: Vec<PathBuf>,
        /// Write every image's row to this file: CSV (`.csv`: path, class, probability, one
        /// column per class, error) or JSON (`.json`).
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Write the whole report as JSON to this file (as `--out FILE.json`).
        #[arg(long, value_name = "FILE", conflicts_with = "out")]
        json: Option<PathBuf>,
        /// Where the model looked: write the photo with the Grad-CAM heatmap of its predicted
        /// class drawn over it to this PNG (or JPEG) file. Exactly one photo; models on a
        /// pretrained backbone only (top or fine-tuned, on vgg16 or efficientnet_lite0).
        #[arg(long, value_name = "OUT.png")]
        explain: Option<PathBuf>,
    },
    /// Fit the model's temperature (one scalar dividing its logits) on a labelled folder by
    /// minimising the negative log-likelihood, and write it beside the model as
    /// calibration.safetensors, with the expected calibration error before and after (15
    /// bins; "after" by two-fold cross-fitting, never on the photos that fitted it).
    /// `predict`, `serve` and `evaluate` apply it from then on.
    Calibrate {
        #[command(flatten)]
        model: ModelArgs,
        /// The labelled folder to fit on (the validation split).
        #[arg(long, default_value = "data/validation")]
        data: PathBuf,
        /// The seed of the cross-fitting halves.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Calibrate even when the file already holds this model's calibration on these
        /// photos with this seed.
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        features: FeatureArgs,
    },
    /// Serve the model over HTTP: `POST /predict` (the image as the body, or multipart file
    /// fields), `GET /` (a page to pick or drop a photo), `GET /model`, `GET /healthz`.
    /// SIGTERM or Ctrl-C lets the requests in flight finish and exits 0.
    Serve {
        #[command(flatten)]
        model: ModelArgs,
        /// The address to listen on (loopback by default; 0.0.0.0:PORT for every interface).
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: SocketAddr,
        /// The largest request body accepted: bytes, or with a unit (KiB, MiB).
        #[arg(long, default_value = "20MiB", value_parser = parse_size)]
        max_body: usize,
        /// The most images one forward pass takes.
        #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
        max_batch: u32,
        /// How long to wait, after the first image of a batch, for more (milliseconds).
        #[arg(long, default_value_t = 2)]
        batch_wait_ms: u64,
    },
}

#[derive(Debug, Args)]
struct ModelArgs {
    /// The model artifact: a stage's output folder or its `model.safetensors`.
    #[arg(long, default_value = "artifacts/small_cnn")]
    model: PathBuf,
    /// The backbone's weights, for models built on one (unset: its environment variable such
    /// as LITTLEDATA_VGG16_WEIGHTS, then the hf-hub cache); must be the file the model was
    /// trained with.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Average each image's probabilities with its left-right mirror's (test-time
    /// augmentation).
    #[arg(long)]
    tta: bool,
    /// Ignore the model's calibration: the raw probabilities.
    #[arg(long)]
    uncalibrated: bool,
    /// Images per forward batch.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..))]
    batch_size: u32,
    /// Device: auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    device: DeviceArg,
}

/// Where `evaluate` and `calibrate` look for the backbone's outputs already cached.
#[derive(Debug, Args)]
struct FeatureArgs {
    /// Read the backbone's outputs from this features file when it holds them for these very
    /// photos (same images by digest, same backbone and weights, same input size, resize
    /// filter and preprocessing), instead of running the backbone. Unset: a top model looks
    /// in `<model dir>/../bottleneck/{validation,train}.safetensors` (what `extract` caches),
    /// a fine-tuned model in `<model dir>/validation_frozen.safetensors` (the fine-tuner's
    /// cache of its frozen part); any other folder runs the network over the images.
    #[arg(long, value_name = "FILE", conflicts_with = "no_cached_features")]
    features: Option<PathBuf>,
    /// Always run the network over the images, even when cached features match.
    #[arg(long)]
    no_cached_features: bool,
}

impl FeatureArgs {
    /// The lookup these flags ask for.
    fn lookup(&self) -> FeatureLookup {
        match (&self.features, self.no_cached_features) {
            (_, true) => FeatureLookup::Off,
            (Some(file), false) => FeatureLookup::File(file.clone()),
            (None, false) => FeatureLookup::Beside,
        }
    }
}

/// Says on stderr where the backbone's outputs came from: the cached file, or (with a note)
/// why cached features were not used.
fn print_features(source: &FeatureSource) {
    match source {
        FeatureSource::Cached { .. } => eprintln!("{}", source.describe()),
        FeatureSource::Computed { note: Some(note) } => eprintln!("note: {note}"),
        FeatureSource::Computed { note: None } => {}
    }
}

impl ModelArgs {
    /// Opens the model artifact at `path` on `device`, describing it on stderr.
    fn load(&self, path: &Path, device: &Device) -> classify::Result<LoadedModel> {
        let model = classify::load_model(path, self.weights.as_deref(), device)?;
        let model = if self.uncalibrated {
            model.uncalibrated()
        } else {
            model
        };
        eprintln!("model: {}", model.describe());
        if let (Some(w), Some(name)) = (&model.backbone, model.spec.backbone_name()) {
            eprintln!("{name} weights: {} (from {})", w.path.display(), w.source);
        }
        if !model.interpolation_recorded {
            eprintln!(
                "note: the artifact does not record its resize filter; using {:?}",
                model.interpolation
            );
        }
        match (&model.calibration, &model.calibration_skipped) {
            (Some(c), _) if c.calibration.applied => eprintln!(
                "calibrated: temperature {:.4} ({})",
                c.calibration.temperature,
                c.path.display()
            ),
            (Some(c), _) => eprintln!(
                "not calibrated: {} found that a temperature does not help on its photos",
                c.path.display()
            ),
            (None, Some(reason)) if !self.uncalibrated => {
                eprintln!("note: uncalibrated: {reason}")
            }
            _ => {}
        }
        Ok(model)
    }

    /// Opens the model as a [`Classifier`].
    fn classifier(&self) -> Result<Classifier> {
        let device = self.device.open()?;
        let model = self.load(&self.model, &device)?;
        let options = ClassifierOptions {
            device,
            tta: self.tta,
            ..ClassifierOptions::default()
        };
        Ok(Classifier::from_model(model, &options))
    }

    fn eval_options(&self, progress: bool, features: &FeatureArgs) -> EvalOptions {
        EvalOptions {
            batch_size: self.batch_size as usize,
            tta: self.tta,
            progress,
            calibrated: !self.uncalibrated,
            features: features.lookup(),
        }
    }
}

/// A size in bytes: a number, optionally with `B`, `KiB`, `MiB` or `GiB` (also `K`, `M`,
/// `G`, `KB`, `MB`, `GB`, all powers of 1024).
fn parse_size(text: &str) -> std::result::Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: usize = digits
        .parse()
        .map_err(|_| format!("`{text}` is not a size (such as 20MiB or 1048576)"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{text}` (use KiB, MiB or GiB)"
            ));
        }
    };
    n.checked_mul(1usize << shift)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("`{text}` is out of range"))
}

/// Prints an evaluation report.
fn print_report(data: &Path, report: &EvalReport) {
    println!("data: {} ({} images)", data.display(), report.samples);
    print!("{}", report.to_text());
}

/// A progress bar on stderr for `len` images, shown when stderr is a terminal and there are
/// more than a few.
fn progress_bar(len: usize) -> ProgressBar {
    if len <= 8 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:30}] {pos:>6}/{len:6} images  {per_sec}  ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let bar = ProgressBar::new(len as u64).with_style(style);
    bar.set_prefix("classifying");
    bar
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    pipeline::run_main(run)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    let progress = std::io::stderr().is_terminal();
    match &cli.command {
        Command::Evaluate {
            model,
            data,
            json,
            force,
            features,
        } => {
            let device = model.device.open()?;
            let options = model.eval_options(progress, features);
            let Some(json) = json else {
                let loaded = model.load(&model.model, &device)?;
                let report = classify::evaluate(&loaded, data, &options)?;
                if let Some(source) = &report.features {
                    print_features(source);
                }
                print_report(data, &report);
                return Ok(());
            };
            let outcome =
                classify::evaluate_cached(&model.model, data, json, &options, *force, |file| {
                    model.load(file, &device)
                })?;
            if let Cached::Evaluated { report, .. } = &outcome
                && let Some(source) = &report.features
            {
                print_features(source);
            }
            print_report(data, outcome.report());
            match &outcome {
                Cached::UpToDate(_) => println!("{}: up to date", json.display()),
                Cached::Evaluated { reason, .. } => eprintln!(
                    "wrote {}{}",
                    json.display(),
                    reason
                        .as_ref()
                        .map(|r| format!(" (replacing the stored report: {r})"))
                        .unwrap_or_default()
                ),
            }
        }
        Command::Predict {
            model,
            paths,
            out,
            json,
            explain,
        } => predict(
            model,
            paths,
            out.as_deref(),
            json.as_deref(),
            explain.as_deref(),
        )?,
        Command::Calibrate {
            model,
            data,
            seed,
            force,
            features,
        } => {
            let device = model.device.open()?;
            let options = model.eval_options(progress, features);
            let outcome =
                classify::calibrate_cached(&model.model, data, *seed, &options, *force, |file| {
                    model.load(file, &device)
                })?;
            let c = outcome.calibration();
            println!(
                "temperature {:.4} (halves: {:.4}, {:.4}) on {} images of {}",
                c.temperature,
                c.fold_temperatures[0],
                c.fold_temperatures[1],
                c.samples,
                data.display()
            );
            println!(
                "ECE ({} bins): {:.4} uncalibrated, {:.4} calibrated (two-fold cross-fitted); \
                 NLL {:.4} -> {:.4}; accuracy {:.4} (unchanged)",
                c.bins, c.ece_before, c.ece_after, c.nll_before, c.nll_after, c.accuracy
            );
            if !c.applied {
                println!(
                    "not applied: the cross-fitted NLL is no better than the uncalibrated one \
                     on these {} photos, so the model's probabilities are used as they are",
                    c.samples
                );
            }
            match outcome {
                CalibrateOutcome::UpToDate(_, path) => println!("{}: up to date", path.display()),
                CalibrateOutcome::Calibrated(_, path, source) => {
                    print_features(&source);
                    println!("wrote {}", path.display())
                }
            }
        }
        Command::Serve {
            model,
            addr,
            max_body,
            max_batch,
            batch_wait_ms,
        } => {
            let classifier = model.classifier()?;
            let options = ServeOptions {
                max_body: *max_body,
                max_batch: *max_batch as usize,
                batch_wait: Duration::from_millis(*batch_wait_ms),
                ..ServeOptions::default()
            };
            classify::serve::run(classifier, *addr, &options, |bound| {
                println!("listening on http://{bound}");
            })
            .with_context(|| format!("serving on {addr}"))?;
            eprintln!("stopped: every request in flight was answered");
        }
    }
    Ok(())
}

/// The format `--out` names by its extension `ext`.
fn ext_format(out: Option<&Path>, ext: Option<Option<&str>>) -> Result<Option<&'static str>> {
    Ok(match ext {
        None => None,
        Some(Some(e)) if e.eq_ignore_ascii_case("csv") => Some("csv"),
        Some(Some(e)) if e.eq_ignore_ascii_case("json") => Some("json"),
        Some(_) => bail!(
            "{}: --out takes a .csv or .json file",
            out.map(|p| p.display().to_string()).unwrap_or_default()
        ),
    })
}

/// `classify predict`: every image under `paths`, a line each (a progress bar for many),
/// the failures at the end, the rows in `out` (CSV or JSON by its extension), and with
/// `explain` the one photo's Grad-CAM overlay.
fn predict(
    model: &ModelArgs,
    paths: &[PathBuf],
    out: Option<&Path>,
    json: Option<&Path>,
    explain: Option<&Path>,
) -> Result<()> {
    if let Some(file) = explain {
        classify::explain_format(file)?;
    }
    let (out, format) = match (json, out.map(|p| p.extension().and_then(|e| e.to_str()))) {
        (Some(json), _) => (Some(json), Some("json")),
        (None, ext) => (out, ext_format(out, ext)?),
    };
    let (images, skipped) = classify::expand_inputs(paths)?;
    if images.is_empty() {
        bail!(
            "no image files (.jpg, .jpeg, .png) under {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if skipped > 0 {
        eprintln!("skipping {skipped} file(s) without an image extension in the folders given");
    }
    if explain.is_some() && images.len() != 1 {
        bail!(
            "--explain draws where the model looked on exactly one photo; {} photos were given \
             (pass a single image file)",
            images.len()
        );
    }
    let classifier = model.classifier()?;
    if explain.is_some() {
        classifier.check_explain()?;
    }
    let options = PredictOptions {
        batch_size: model.batch_size as usize,
    };
    let bar = progress_bar(images.len());
    let report = classify::predict(&classifier, &images, &options, &mut |p| {
        if p.is_ok() {
            bar.suspend(|| println!("{}", p.line()));
        }
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    if let (Some(path), Some(format)) = (out, format) {
        let text = if format == "csv" {
            report.to_csv()
        } else {
            report.to_json()
        };
        classify::write_output(path, &text)?;
        eprintln!(
            "wrote {} ({} rows)",
            path.display(),
            report.predictions.len()
        );
    }
    let failed = report.failures();
    if let (Some(file), 0) = (explain, failed) {
        let explanation = classifier.explain_file(&images[0], None)?;
        explanation.save(file)?;
        eprintln!(
            "wrote {} (where the model looked for `{}`: its Grad-CAM, {}x{}, over the photo)",
            file.display(),
            explanation.class_name,
            explanation.cam.height,
            explanation.cam.width
        );
    }
    if failed > 0 {
        eprintln!("\n{failed} image(s) could not be classified:");
        for p in report.predictions.iter().filter(|p| !p.is_ok()) {
            eprintln!("  {}", p.line());
        }
        bail!(
            "{failed} of {} images could not be classified",
            report.predictions.len()
        );
    }
    Ok(())
}
