//! `report.md`: the text of the report, written from what [`crate::gather`] read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use stage::EvalReport;

use crate::gather::{CalibrationState, Gathered, MethodRun, MethodState};
use crate::machine::Machine;
use crate::method::Method;
use crate::text::{code, code_cell, esc};

/// What the report says about its own making.
#[derive(Debug, Clone, PartialEq)]
pub struct Context {
    /// The pipeline file the stages were told to use.
    pub pipeline_file: PathBuf,
    /// Its sha256.
    pub pipeline_sha256: String,
    /// `--set` overrides given to the report.
    pub overrides: Vec<String>,
    /// The data folder (`[data] dir`), for the commands the report suggests.
    pub data_dir: PathBuf,
    /// The source commit.
    pub commit: String,
    /// The machine.
    pub machine: Machine,
    /// When the report was made (RFC 3339, UTC).
    pub created: String,
}

/// A mistakes grid drawn for one method.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MistakesFigure {
    /// The PNG's file name, in the report folder.
    pub file: String,
    /// Images shown.
    pub shown: usize,
    /// Mistakes in all.
    pub total: usize,
    /// Images shown as unreadable.
    pub unreadable: usize,
}

/// The figures drawn, by file name in the report folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// The training curves of the trained methods, when any has a history.
    pub curves: Option<String>,
    /// Each method's mistakes grid.
    pub mistakes: BTreeMap<Method, MistakesFigure>,
    /// Each calibrated method's reliability diagram.
    pub calibration: BTreeMap<Method, String>,
    /// The "Know your photos" section's grids and learning curve.
    pub audit: crate::audit::figures::AuditFigures,
}

/// The report as Markdown.
pub fn render(g: &Gathered, figures: &Figures, ctx: &Context) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# littledata: the three methods compared\n");
    let _ = writeln!(
        s,
        "From the artifacts in {} made with the pipeline file {}. The three methods of \
         *Building powerful image classification models using very little data*: a small \
         convnet trained from scratch, a small model on a pretrained backbone's bottleneck \
         features ({}), and the backbone's last part fine-tuned with that model on top.\n",
        code(&g.artifacts.display().to_string()),
        code(&ctx.pipeline_file.display().to_string()),
        backbones(g),
    );
    missing_section(&mut s, g);
    results_section(&mut s, g);
    curves_section(&mut s, g, figures);
    kfold_section(&mut s, g);
    confusion_section(&mut s, g);
    mistakes_section(&mut s, g, figures, ctx);
    calibration_section(&mut s, g, figures, ctx);
    crate::audit::section::render(&mut s, g.audit.as_ref(), &figures.audit, ctx);
    provenance_section(&mut s, g, ctx);
    s
}

/// The backbones the models and features were made with (`vgg16`), or `none yet`.
fn backbones(g: &Gathered) -> String {
    let mut names: Vec<&str> = g
        .runs()
        .filter_map(|r| r.spec.backbone_name())
        .chain(g.features.iter().map(|f| f.meta.settings.backbone.name()))
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "none yet".into()
    } else {
        names.iter().map(|n| code(n)).collect::<Vec<_>>().join(", ")
    }
}

/// Whether the data is the post's: two classes named cats and dogs (or cat and dog), so its
/// published figures are a fair comparison.
pub fn is_cats_vs_dogs(g: &Gathered) -> bool {
    let classes = g
        .runs()
        .map(|r| r.spec.classes.clone())
        .chain(g.features.iter().map(|f| f.meta.classes.clone()))
        .next();
    classes.is_some_and(|c| {
        let c: Vec<String> = c.iter().map(|x| x.to_ascii_lowercase()).collect();
        c == ["cats", "dogs"] || c == ["cat", "dog"]
    })
}

fn missing_section(s: &mut String, g: &Gathered) {
    let missing: Vec<(Method, &str)> = g
        .methods
        .iter()
        .filter_map(|m| match m {
            MethodState::Missing { method, reason, .. } => Some((*method, reason.as_str())),
            MethodState::Trained(_) => None,
        })
        .collect();
    if missing.is_empty() {
        return;
    }
    let _ = writeln!(s, "## Not run yet\n");
    for (method, reason) in missing {
        let _ = writeln!(s, "- **{}**: {reason}.", esc(&method.label()));
    }
    let _ = writeln!(
        s,
        "\n`just all` runs every stage that is missing or out of date.\n"
    );
}

/// `0.8125`.
pub(crate) fn figure(v: f64) -> String {
    format!("{v:.4}")
}

/// The validation (or test) accuracy and loss of a run: from its evaluation file, else
/// (validation only) from the stage's metrics, marked `*`.
fn scores(run: &MethodRun, test: bool) -> (String, String) {
    let eval = if test { &run.test } else { &run.validation };
    match (eval, &run.metrics) {
        (Some(e), _) => (figure(e.report.accuracy), figure(e.report.loss)),
        (None, Some(m)) if !test => (
            format!("{}\\*", figure(m.summary.saved_val_acc)),
            format!("{}\\*", figure(m.summary.saved_val_loss)),
        ),
        _ => ("—".into(), "—".into()),
    }
}

fn results_section(s: &mut String, g: &Gathered) {
    let with_test = g.runs().any(|r| r.test.is_some());
    let _ = writeln!(s, "## Results\n");
    let mut header = vec!["method", "validation accuracy", "validation loss"];
    if with_test {
        header.extend(["test accuracy", "test loss"]);
    }
    let post = is_cats_vs_dogs(g);
    header.extend(["backbone", "epochs (best)", "training time", "device"]);
    if post {
        header.push("the post");
    }
    table_header(s, &header);
    let mut starred = false;
    for state in &g.methods {
        let method = state.method();
        let mut row = vec![esc(&method.label())];
        match state {
            MethodState::Missing { started, .. } => {
                row.push(
                    if *started {
                        "unfinished"
                    } else {
                        "not run yet"
                    }
                    .into(),
                );
                row.resize(header.len() - usize::from(post), String::new());
            }
            MethodState::Trained(run) => {
                let (acc, loss) = scores(run, false);
                starred |= run.validation.is_none() && run.metrics.is_some();
                row.extend([acc, loss]);
                if with_test {
                    let (acc, loss) = scores(run, true);
                    row.extend([acc, loss]);
                }
                row.push(run.spec.backbone_name().map_or("—".into(), code));
                row.push(match (run.epochs(), &run.metrics) {
                    (Some(n), Some(m)) => format!("{n} (best {})", m.summary.saved_epoch),
                    (Some(n), None) => n.to_string(),
                    _ => "—".into(),
                });
                row.push(run.training_seconds().map_or("—".into(), duration));
                row.push(
                    run.metrics
                        .as_ref()
                        .map(|m| m.device.as_str())
                        .filter(|d| !d.is_empty())
                        .map_or("not recorded".into(), esc),
                );
            }
        }
        if post {
            row.push(method.published().into());
        }
        table_row(s, &row);
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "Accuracy and loss are those of each model's saved weights (its best epoch by the \
         monitored metric).{}",
        if post {
            " The post's figures are validation accuracies after 50 epochs on 2,000 training \
             and 800 validation images, with VGG16."
        } else {
            ""
        }
    );
    if starred {
        let _ = writeln!(
            s,
            "Figures marked \\* come from the stage's own pass over the validation images after \
             training (`metrics.json`); `just evaluate` scores a model with `classify evaluate` \
             and gives the mistakes below as well."
        );
    }
    if let Some(m) = g.runs().find_map(|r| r.metrics.as_ref()) {
        let _ = writeln!(
            s,
            "This run: {} training and {} validation images ({}).",
            m.train_samples,
            m.validation_samples,
            esc(&m.classes.join(", "))
        );
    }
    s.push('\n');
    let notes: Vec<String> = g
        .runs()
        .flat_map(|r| {
            let prefix = format!("method {}: ", r.method.number());
            let mut lines: Vec<String> = Vec::new();
            if let Some(d) = r.metrics.as_ref().and_then(crate::gather::detail) {
                lines.push(esc(&d));
            }
            if let Some(m) = &r.metrics
                && m.status == "early_stopped"
            {
                lines.push(format!("stopped early after epoch {}", m.epochs));
            }
            for (name, e) in [("validation", &r.validation), ("test", &r.test)] {
                if let Some(e) = e {
                    lines.push(format!(
                        "{name} figures from {} on {} ({} images{})",
                        code(&e.path.display().to_string()),
                        code(&e.report.data.display().to_string()),
                        e.report.samples,
                        if e.report.tta {
                            ", with test-time augmentation"
                        } else {
                            ""
                        }
                    ));
                }
            }
            lines.extend(r.notes.iter().cloned());
            lines
                .into_iter()
                .map(move |l| format!("{prefix}{l}"))
                .collect::<Vec<_>>()
        })
        .collect();
    for n in &notes {
        let _ = writeln!(s, "- {n}");
    }
    if !notes.is_empty() {
        s.push('\n');
    }
}

fn curves_section(s: &mut String, g: &Gathered, figures: &Figures) {
    let Some(file) = &figures.curves else {
        return;
    };
    let _ = writeln!(s, "## Training curves\n");
    let names: Vec<String> = g
        .runs()
        .filter(|r| r.history.is_some())
        .map(|r| r.method.label())
        .collect();
    let _ = writeln!(
        s,
        "Loss (top) and accuracy (bottom) per epoch, training in blue and validation in \
         orange, on the same scales for {}.\n",
        esc(&names.join("; "))
    );
    let _ = writeln!(s, "![training curves]({file})\n");
}

fn kfold_section(s: &mut String, g: &Gathered) {
    let Some((path, k)) = &g.kfold else {
        if g.runs().any(|r| r.method == Method::Top) {
            let _ = writeln!(
                s,
                "## k-fold estimate\n\nNot run: `just train-top --kfold` cross-validates the \
                 top model on the training and validation features pooled.\n"
            );
        }
        return;
    };
    let _ = writeln!(s, "## k-fold estimate (top model)\n");
    let _ = writeln!(
        s,
        "{}-fold stratified cross-validation on the training and validation features pooled \
         ({} images, seed {}): held-out accuracy **{} ± {}** (mean ± sample standard \
         deviation of each fold's last epoch), from {}.\n",
        k.k,
        k.samples,
        k.seed,
        figure(k.mean_acc),
        figure(k.std_acc),
        code(&path.display().to_string())
    );
    table_header(
        s,
        &[
            "fold",
            "trained on",
            "held out",
            "accuracy",
            "loss",
            "best accuracy (epoch)",
            "epochs",
            "time",
        ],
    );
    for f in &k.folds {
        table_row(
            s,
            &[
                f.fold.to_string(),
                f.train_samples.to_string(),
                f.validation_samples.to_string(),
                figure(f.acc),
                figure(f.loss),
                format!("{} ({})", figure(f.best_acc), f.best_epoch),
                f.epochs.to_string(),
                duration(f.seconds),
            ],
        );
    }
    let _ = writeln!(
        s,
        "\nThe best accuracy is chosen on the held-out fold, so it is optimistic; the mean \
         uses the last epoch only.\n"
    );
}

/// A confusion matrix with recall per row and precision per column.
fn confusion_table(s: &mut String, classes: &[String], m: &[Vec<usize>]) {
    let (scores, _, _) = stage::class_scores(classes, m);
    let mut header = vec!["actual ↓ predicted →".to_string()];
    header.extend(classes.iter().map(|c| esc(c)));
    header.push("recall".into());
    let refs: Vec<&str> = header.iter().map(String::as_str).collect();
    table_header(s, &refs);
    for ((class, row), score) in classes.iter().zip(m).zip(&scores) {
        let mut cells = vec![format!("**{}**", esc(class))];
        cells.extend(row.iter().map(usize::to_string));
        cells.push(format!("{:.3}", score.recall));
        table_row(s, &cells);
    }
    let mut last = vec!["precision".to_string()];
    last.extend(scores.iter().map(|c| format!("{:.3}", c.precision)));
    last.push(String::new());
    table_row(s, &last);
    s.push('\n');
}

fn confusion_section(s: &mut String, g: &Gathered) {
    if g.runs().next().is_none() {
        return;
    }
    let _ = writeln!(s, "## Confusion matrices\n");
    for run in g.runs() {
        let _ = writeln!(s, "### {}\n", esc(&run.method.label()));
        let mut any = false;
        for (name, eval) in [("validation", &run.validation), ("test", &run.test)] {
            if let Some(e) = eval {
                any = true;
                let r: &EvalReport = &e.report;
                let _ = writeln!(s, "{name} images ({} of {} right):\n", r.correct, r.samples);
                confusion_table(s, &r.classes, &r.confusion_matrix);
            }
        }
        if !any {
            match &run.metrics {
                Some(m) => {
                    let _ = writeln!(
                        s,
                        "validation images, from the stage's own pass (`metrics.json`):\n"
                    );
                    confusion_table(s, &m.classes, &m.summary.confusion_matrix);
                }
                None => {
                    let _ = writeln!(s, "No figures yet.\n");
                }
            }
        }
    }
}

/// The command that writes a method's validation evaluation.
fn evaluate_command(run: &MethodRun, ctx: &Context) -> String {
    format!(
        "just evaluate {} {} --json {}",
        run.dir.display(),
        ctx.data_dir.join("validation").display(),
        run.dir
            .join(pipeline::layout::EVALUATION_DIR)
            .join("validation.json")
            .display()
    )
}

fn mistakes_section(s: &mut String, g: &Gathered, figures: &Figures, ctx: &Context) {
    if g.runs().next().is_none() {
        return;
    }
    let _ = writeln!(s, "## Validation images each model got wrong\n");
    let _ = writeln!(
        s,
        "The most confident mistakes first; under each image, the class the model predicted \
         and its probability, then the file name.\n"
    );
    for run in g.runs() {
        let _ = writeln!(s, "### {}\n", esc(&run.method.label()));
        let Some(eval) = &run.validation else {
            let _ = writeln!(
                s,
                "No evaluation yet: {} writes it (the confusion matrix above is the stage's own).\n",
                code(&evaluate_command(run, ctx))
            );
            continue;
        };
        let r = &eval.report;
        match figures.mistakes.get(&run.method) {
            None => {
                let _ = writeln!(s, "No mistakes: all {} images right.\n", r.samples);
            }
            Some(f) => {
                let _ = write!(s, "{} of {} images wrong", f.total, r.samples);
                if f.shown < f.total {
                    let _ = write!(
                        s,
                        "; the {} most confident are shown, {} more are listed in {}",
                        f.shown,
                        f.total - f.shown,
                        code(&eval.path.display().to_string())
                    );
                }
                let _ = writeln!(s, ".\n");
                let _ = writeln!(
                    s,
                    "![validation images {} got wrong]({})\n",
                    esc(&run.method.label()),
                    f.file
                );
                if f.unreadable > 0 {
                    let _ = writeln!(
                        s,
                        "{} of them could not be read from where the evaluation found them \
                         (moved or deleted since).\n",
                        f.unreadable
                    );
                }
            }
        }
    }
}

/// The command that fits a method's calibration on the validation split.
fn calibrate_command(run: &MethodRun, ctx: &Context) -> String {
    format!(
        "classify calibrate --model {} --data {}",
        run.dir.display(),
        ctx.data_dir.join("validation").display()
    )
}

fn calibration_section(s: &mut String, g: &Gathered, figures: &Figures, ctx: &Context) {
    if g.runs().next().is_none() {
        return;
    }
    let _ = writeln!(
        s,
        "## Calibration
"
    );
    let fitted: Vec<(&MethodRun, &stage::Calibration)> = g
        .runs()
        .filter_map(|r| Some((r, r.calibration.fitted()?)))
        .collect();
    if fitted.is_empty() {
        let _ = writeln!(
            s,
            "No model is calibrated yet. `classify calibrate` fits a temperature that the \
             logits are divided by, so that the probabilities say how often the model is right.\n"
        );
    } else {
        let mut bins: Vec<usize> = fitted.iter().map(|(_, c)| c.bins).collect();
        bins.sort_unstable();
        bins.dedup();
        let bins = bins
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        let _ = writeln!(
            s,
            "Each model's temperature T (its logits are divided by T) is fitted on the \
             validation split by minimising the negative log-likelihood (NLL), by `classify \
             calibrate`. ECE is the expected calibration error: the photo-weighted gap between \
             confidence and accuracy over {bins} equal-width confidence bins. The \"after\" \
             figures are two-fold cross-fitted: the photos are dealt into two stratified halves, \
             a temperature is fitted on each, and each half is scored with the other half's, so \
             they are never measured on the photos that fitted them. Dividing the logits by one \
             positive number never changes which class is predicted, so the accuracy is \
             unchanged. A temperature is applied only when its cross-fitted NLL is lower than \
             the uncalibrated one; otherwise the table says \"not applied\" and the model's \
             probabilities are used as they are.\n"
        );
        table_header(
            s,
            &[
                "method",
                "temperature",
                "ECE before",
                "ECE after (cross-fitted)",
                "NLL before",
                "NLL after",
                "photos",
            ],
        );
        for (run, c) in &fitted {
            table_row(
                s,
                &[
                    esc(&run.method.label()),
                    if c.applied {
                        format!("{:.3}", c.temperature)
                    } else {
                        format!("{:.3} (not applied)", c.temperature)
                    },
                    figure(c.ece_before),
                    figure(c.ece_after),
                    figure(c.nll_before),
                    figure(c.nll_after),
                    c.samples.to_string(),
                ],
            );
        }
        s.push('\n');
    }
    let mut lines = Vec::new();
    for run in g.runs() {
        let label = esc(&run.method.label());
        match &run.calibration {
            CalibrationState::Fitted {
                artifact,
                calibration: c,
            } => lines.push(format!(
                "**{label}**: fitted on {} ({} photos, accuracy {} with and without the \
                 temperature; the halves' temperatures {:.3} and {:.3}), from {}.",
                code(&c.data.display().to_string()),
                c.samples,
                figure(c.accuracy),
                c.fold_temperatures[0],
                c.fold_temperatures[1],
                code(&artifact.path.display().to_string())
            )),
            CalibrationState::Stale {
                path,
                fitted_for,
                model_sha256,
            } => lines.push(format!(
                "**{label}**: {} is stale: it was fitted for another model file (sha256 {}; \
                 this one is {}) and was left out; {} fits this one.",
                code(&path.display().to_string()),
                code(short(fitted_for)),
                code(short(model_sha256)),
                code(&calibrate_command(run, ctx))
            )),
            CalibrationState::Missing => lines.push(format!(
                "**{label}**: not calibrated yet; {} fits its temperature.",
                code(&calibrate_command(run, ctx))
            )),
        }
    }
    for l in &lines {
        let _ = writeln!(s, "- {l}");
    }
    s.push('\n');
    if fitted.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "In each reliability diagram the photos are grouped by confidence (the probability of \
         the predicted class); each bin's bars are the accuracy of its photos without the \
         temperature (orange, left) and with it, cross-fitted (blue, right). A calibrated \
         model's bars reach the diagonal.\n"
    );
    for (run, _) in &fitted {
        let Some(file) = figures.calibration.get(&run.method) else {
            continue;
        };
        let label = esc(&run.method.label());
        let _ = writeln!(s, "### {label}\n");
        let _ = writeln!(s, "![reliability diagram of {label}]({file})\n");
    }
}

/// Each recorded digest of a kind (training images, validation images, backbone weights) with
/// the artifacts that record it.
type DigestSources = BTreeMap<&'static str, BTreeMap<String, Vec<String>>>;

fn digests(g: &Gathered) -> DigestSources {
    let mut out: DigestSources = BTreeMap::new();
    let mut add = |kind: &'static str, digest: &str, source: String| {
        let sources = out
            .entry(kind)
            .or_default()
            .entry(digest.to_string())
            .or_default();
        if !sources.contains(&source) {
            sources.push(source);
        }
    };
    const TRAIN: &str = "training images";
    const VALIDATION: &str = "validation images";
    const WEIGHTS: &str = "backbone weights";
    for f in &g.features {
        let name = relative(&g.artifacts, &f.artifact.path);
        let kind = match f.meta.split {
            imagedata::Split::Validation => VALIDATION,
            _ => TRAIN,
        };
        add(kind, &f.meta.data_digest, name.clone());
        add(WEIGHTS, &f.meta.weights_sha256, name);
    }
    for run in g.runs() {
        let name = relative(&g.artifacts, &run.model.path);
        if let Some(p) = &run.model.provenance {
            for (input, kind) in [
                ("train_data", TRAIN),
                ("validation_data", VALIDATION),
                ("weights", WEIGHTS),
            ] {
                if let Some(d) = p.inputs.get(input) {
                    add(kind, d, name.clone());
                }
            }
        }
        if let Some(b) = &run.spec.backbone {
            add(WEIGHTS, &b.sha256, name);
        }
    }
    out
}

fn provenance_section(s: &mut String, g: &Gathered, ctx: &Context) {
    let _ = writeln!(s, "## Provenance\n");
    table_header(s, &["", ""]);
    let mut pipeline = format!(
        "{}, sha256 {}",
        code_cell(&ctx.pipeline_file.display().to_string()),
        code_cell(&ctx.pipeline_sha256)
    );
    if !ctx.overrides.is_empty() {
        let _ = write!(
            pipeline,
            ", with {}",
            ctx.overrides
                .iter()
                .map(|o| code_cell(&format!("--set {o}")))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    table_row(s, &["pipeline file".into(), pipeline]);
    let found = digests(g);
    for kind in ["backbone weights", "training images", "validation images"] {
        let cell = match found.get(kind) {
            None => "not recorded yet".to_string(),
            Some(values) => {
                let mut parts: Vec<String> = values
                    .iter()
                    .map(|(digest, sources)| {
                        format!(
                            "sha256 {} ({})",
                            code_cell(digest),
                            sources
                                .iter()
                                .map(|x| code_cell(x))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })
                    .collect();
                if values.len() > 1 {
                    parts.push(
                        "**these differ: some artifacts were made from other inputs; `just all` \
                         remakes the stale ones**"
                            .into(),
                    );
                }
                parts.join("; ")
            }
        };
        table_row(s, &[kind.into(), cell]);
    }
    if let Some(a) = &g.audit {
        table_row(
            s,
            &[
                "audit of the photos".into(),
                format!(
                    "{}, sha256 {}",
                    code_cell(&relative(&g.artifacts, &a.path)),
                    code_cell(&a.sha256)
                ),
            ],
        );
    }
    table_row(s, &["commit".into(), code_cell(&ctx.commit)]);
    table_row(s, &["machine".into(), esc(&ctx.machine.describe())]);
    table_row(
        s,
        &[
            "report made".into(),
            format!(
                "{}, littledata {}",
                esc(&ctx.created),
                env!("CARGO_PKG_VERSION")
            ),
        ],
    );
    s.push('\n');

    let _ = writeln!(
        s,
        "Each artifact records the stage that made it, a digest of the settings it used and \
         digests of its inputs (first 12 hex digits here):\n"
    );
    table_header(s, &["artifact", "stage", "made", "settings", "inputs"]);
    let mut rows: Vec<(&Path, Option<&artifact::Provenance>, Option<&str>)> = Vec::new();
    for state in &g.methods {
        if let MethodState::Trained(run) = state {
            if run.method == Method::Top {
                for f in &g.features {
                    rows.push((
                        &f.artifact.path,
                        f.artifact.provenance.as_ref(),
                        f.artifact.created.as_deref(),
                    ));
                }
            }
            rows.push((
                &run.model.path,
                run.model.provenance.as_ref(),
                run.model.created.as_deref(),
            ));
            if let CalibrationState::Fitted { artifact, .. } = &run.calibration {
                rows.push((
                    &artifact.path,
                    artifact.provenance.as_ref(),
                    artifact.created.as_deref(),
                ));
            }
        }
    }
    if g.runs().all(|r| r.method != Method::Top) {
        for f in &g.features {
            rows.push((
                &f.artifact.path,
                f.artifact.provenance.as_ref(),
                f.artifact.created.as_deref(),
            ));
        }
    }
    for (path, provenance, created) in rows {
        let name = code_cell(&relative(&g.artifacts, path));
        let created = created.map_or("—".into(), |c| esc(&to_seconds(c)));
        match provenance {
            Some(p) => {
                let inputs = p
                    .inputs
                    .iter()
                    .map(|(k, v)| format!("{} {}", esc(k), code_cell(short(v))))
                    .collect::<Vec<_>>()
                    .join("; ");
                table_row(
                    s,
                    &[
                        name,
                        esc(&p.stage),
                        created,
                        code_cell(short(&p.config_digest)),
                        inputs,
                    ],
                );
            }
            None => table_row(
                s,
                &[
                    name,
                    "not recorded".into(),
                    created,
                    String::new(),
                    String::new(),
                ],
            ),
        }
    }
    let stored = g
        .kfold
        .iter()
        .map(|(path, k)| (path, &k.provenance))
        .chain(g.audit.iter().map(|a| (&a.path, &a.report.provenance)));
    for (path, p) in stored {
        table_row(
            s,
            &[
                code_cell(&relative(&g.artifacts, path)),
                esc(&p.stage),
                "—".into(),
                code_cell(short(&p.config_digest)),
                p.inputs
                    .iter()
                    .map(|(k, v)| format!("{} {}", esc(k), code_cell(short(v))))
                    .collect::<Vec<_>>()
                    .join("; "),
            ],
        );
    }
    s.push('\n');
}

/// `path` relative to `root` with `/` separators, or as it is when outside it.
pub(crate) fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .map(|p| {
            p.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/")
        })
        .unwrap_or_else(|_| path.display().to_string())
}

/// An RFC 3339 time without its fraction of a second (`2025-01-02T03:04:05Z`).
fn to_seconds(time: &str) -> String {
    match (time.find('.'), time.ends_with('Z')) {
        (Some(dot), true) => format!("{}Z", &time[..dot]),
        _ => time.to_string(),
    }
}

/// The first 12 characters of a digest.
pub(crate) fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// `0.8 s`, `45 s`, `12 min 3 s`, `2 h 5 min`.
pub fn duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "—".into();
    }
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let total = seconds.round() as u64;
    let (h, m, sec) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{sec} s"),
        (0, _) => format!("{m} min {sec} s"),
        _ => format!("{h} h {m} min"),
    }
}

pub(crate) fn table_header(s: &mut String, cells: &[&str]) {
    let _ = writeln!(s, "| {} |", cells.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(cells.len()));
}

pub(crate) fn table_row(s: &mut String, cells: &[String]) {
    let cells: Vec<&str> = cells
        .iter()
        .map(|c| if c.is_empty() { " " } else { c.as_str() })
        .collect();
    let _ = writeln!(s, "| {} |", cells.join(" | "));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.84), "0.8 s");
        assert_eq!(duration(45.2), "45 s");
        assert_eq!(duration(723.0), "12 min 3 s");
        assert_eq!(duration(7530.0), "2 h 5 min");
        assert_eq!(duration(f64::NAN), "—");
    }

    #[test]
    fn markup_is_escaped() {
        assert_eq!(esc("a_b*c|d<e>"), "a\\_b\\*c\\|d\\<e\\>");
        assert_eq!(code("x`y"), "``x`y``");
        assert_eq!(code("`"), "`` ` ``");
        assert_eq!(code_cell("a|b"), "`a\\|b`");
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(
            to_seconds("2025-11-29T07:28:56.006808885Z"),
            "2025-11-29T07:28:56Z"
        );
        assert_eq!(
            relative(
                Path::new("/a/art"),
                Path::new("/a/art/top/model.safetensors")
            ),
            "top/model.safetensors"
        );
    }
}
