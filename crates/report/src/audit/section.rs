//! The Markdown of the "Know your photos" section.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use stage::audit::{AuditReport, FlagKind};

use super::figures::{AuditFigures, GridFigure, doubling};
use super::{AUDIT_COMMAND, AuditInfo};
use crate::markdown::{Context, figure, short, table_header, table_row};
use crate::method::Method;
use crate::text::{code, esc};

/// The section's heading.
pub const HEADING: &str = "## Know your photos";

/// Label issues, leaking photos, duplicates and strays above the fence in `r`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Likely wrong labels.
    pub label_issues: usize,
    /// Of them, those in the confident joint's off-diagonal.
    pub confident: usize,
    /// Validation photos with a copy in train.
    pub leakage: usize,
    /// Copies within a split.
    pub duplicates: usize,
    /// Strays above the fence.
    pub strays: usize,
    /// Distinct photos the `flagged` list names (what `prep split --exclude` leaves out).
    pub flagged_photos: usize,
}

impl Counts {
    /// The counts of `r`.
    pub fn of(r: &AuditReport) -> Self {
        let found = |kind: FlagKind| r.duplicates.found.iter().filter(|f| f.kind == kind).count();
        Self {
            label_issues: r.label_issues.issues.len(),
            confident: r.label_issues.confident,
            leakage: found(FlagKind::Leakage),
            duplicates: found(FlagKind::Duplicate),
            strays: r
                .strays
                .ranked
                .iter()
                .filter(|f| f.score > r.strays.threshold)
                .count(),
            flagged_photos: r
                .flagged
                .iter()
                .map(|f| &f.photo.path)
                .collect::<BTreeSet<_>>()
                .len(),
        }
    }
}

/// `word` as one shell word: as it is when it holds nothing the shell reads, else in single
/// quotes.
pub fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:@%+,".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The command that rebuilds the split without the photos `audit` flags, with the report's
/// pipeline file and overrides.
pub fn exclude_command(audit: &AuditInfo, ctx: &Context) -> String {
    let mut cmd = format!(
        "cargo run -p prep -- split --exclude {} --force --pipeline {}",
        shell_word(&audit.path.display().to_string()),
        shell_word(&ctx.pipeline_file.display().to_string())
    );
    for o in &ctx.overrides {
        let _ = write!(cmd, " --set {}", shell_word(o));
    }
    cmd
}

/// The model `name` of a leak-free accuracy (`top`) as the report names it.
fn model_label(name: &str) -> String {
    Method::ALL
        .iter()
        .find(|m| m.key() == name)
        .map_or_else(|| esc(name), |m| esc(&m.label()))
}

/// `n` and the noun, singular or plural (`1 photo`, `3 photos`).
fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A penalty as written in the pipeline file (`0.01`, `1`).
fn penalty(v: f64) -> String {
    format!("{v}")
}

/// Writes the section: what to run when `audit` is `None`, else the summary, the leak-free
/// accuracies, the exclude command, the grids and the learning curve.
pub fn render(s: &mut String, audit: Option<&AuditInfo>, figures: &AuditFigures, ctx: &Context) {
    let _ = writeln!(s, "{HEADING}\n");
    let Some(a) = audit else {
        let _ = writeln!(
            s,
            "Not audited yet: `{AUDIT_COMMAND}` looks through the cached bottleneck features \
             (`just extract-bottlenecks` first) for photos whose label is likely wrong, copies, \
             validation photos with a copy in train and strays, and measures the learning \
             curve.\n"
        );
        return;
    };
    let r = &a.report;
    let c = Counts::of(r);
    let _ = writeln!(
        s,
        "What `audit` found in the photos through their cached {} features, from {} (sha256 \
         {}). Nothing has been removed: look at the photos below, then decide.\n",
        code(&r.backbone),
        code(&a.path.display().to_string()),
        code(short(&a.sha256)),
    );
    for note in &a.notes {
        let _ = writeln!(s, "- **Out of date**: {note}.");
    }
    if !a.notes.is_empty() {
        s.push('\n');
    }
    summary_table(s, r, &c);
    leak_free(s, r, &c);

    let _ = writeln!(s, "### Rebuild the split without the flagged photos\n");
    let _ = writeln!(
        s,
        "First delete from the `flagged` list of {} every entry you judge fine (each names a \
         photo by its `path` and says why, by `kind`); it names {} now. Then\n",
        code(&a.path.display().to_string()),
        count(c.flagged_photos, "photo", "photos"),
    );
    let _ = writeln!(s, "```sh\n{}\n```\n", exclude_command(a, ctx));
    let _ = writeln!(
        s,
        "lays out the split again without the photos left in the list (the next photos in \
         order take their places, and `split.json` records which were excluded), and `just \
         all` reruns every stage on it.\n"
    );

    label_issues(s, r, figures.label_issues.as_ref(), a);
    pairs(s, r, FlagKind::Leakage, figures.leakage.as_ref(), a);
    pairs(s, r, FlagKind::Duplicate, figures.duplicates.as_ref(), a);
    strays(s, r, &c, figures.strays.as_ref(), a);
    learning_curve(s, r, figures.learning_curve.as_deref());
}

fn summary_table(s: &mut String, r: &AuditReport, c: &Counts) {
    table_header(s, &["", ""]);
    table_row(
        s,
        &[
            "photos audited".into(),
            format!(
                "{}: {} train, {} validation; classes {}",
                r.train_photos + r.validation_photos,
                r.train_photos,
                r.validation_photos,
                esc(&r.classes.join(", "))
            ),
        ],
    );
    table_row(s, &["backbone".into(), code(&r.backbone)]);
    let l = &r.label_issues;
    table_row(
        s,
        &[
            "label issues flagged".into(),
            format!(
                "{}, {} of them in the confident joint's off-diagonal (out-of-fold accuracy {} \
                 over {} folds)",
                c.label_issues,
                c.confident,
                figure(l.oof_accuracy),
                l.folds
            ),
        ],
    );
    table_row(
        s,
        &[
            "leaking photos".into(),
            format!(
                "{} with a copy or near copy in train",
                count(c.leakage, "validation photo", "validation photos")
            ),
        ],
    );
    let d = &r.duplicates;
    table_row(
        s,
        &[
            "duplicates".into(),
            format!(
                "{} within a split ({} in all, leakage included; {} of identical files)",
                count(c.duplicates, "photo", "photos"),
                count(d.pairs, "pair", "pairs"),
                count(d.exact_groups, "group", "groups")
            ),
        ],
    );
    table_row(
        s,
        &[
            "strays above the fence".into(),
            format!("{} (score above {})", c.strays, figure(r.strays.threshold)),
        ],
    );
    table_row(
        s,
        &[
            "flagged in all".into(),
            format!(
                "{} naming {} (a photo may be flagged twice)",
                count(r.flagged.len(), "entry", "entries"),
                count(c.flagged_photos, "photo", "photos")
            ),
        ],
    );
    s.push('\n');
}

fn leak_free(s: &mut String, r: &AuditReport, c: &Counts) {
    let _ = writeln!(s, "### Validation accuracy without the leaking photos\n");
    if r.leak_free.is_empty() {
        let _ = writeln!(
            s,
            "No model had a validation evaluation when the audit ran; after `just evaluate`, \
             `{AUDIT_COMMAND}` gives each model's accuracy without the leaking photos.\n"
        );
        return;
    }
    table_header(
        s,
        &[
            "model",
            "validation accuracy",
            "without the leaking photos",
            "photos left",
        ],
    );
    for m in &r.leak_free {
        table_row(
            s,
            &[
                model_label(&m.model),
                figure(m.accuracy),
                figure(m.without_leaks),
                m.photos.to_string(),
            ],
        );
    }
    s.push('\n');
    if c.leakage == 0 {
        let _ = writeln!(
            s,
            "No validation photo has a copy in train, so the two figures agree.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "A model that trained on a photo's copy is likely right on it, so the accuracy \
             without the {} is the fairer figure.\n",
            count(c.leakage, "leaking photo", "leaking photos")
        );
    }
}

/// What a grid's shown and total counts say, and its picture.
fn grid(s: &mut String, f: &GridFigure, what: &str, alt: &str, a: &AuditInfo) {
    if f.shown < f.total {
        let _ = writeln!(
            s,
            "The {} {what} of {} are shown; {} lists every one.\n",
            f.shown,
            f.total,
            code(&a.path.display().to_string())
        );
    }
    let _ = writeln!(s, "![{alt}]({})\n", f.file);
    if f.unreadable > 0 {
        let _ = writeln!(
            s,
            "{} could not be read where the audit found {} (moved or deleted since).\n",
            count(f.unreadable, "photo", "photos"),
            if f.unreadable == 1 { "it" } else { "them" }
        );
    }
}

fn label_issues(s: &mut String, r: &AuditReport, f: Option<&GridFigure>, a: &AuditInfo) {
    let l = &r.label_issues;
    let _ = writeln!(s, "### Likely wrong labels\n");
    let _ = writeln!(
        s,
        "Confident learning on out-of-fold probabilities: a linear probe (L2 {}) on the \
         features, train and validation pooled, each photo scored by the fold that did not \
         train on it ({} folds). A photo is flagged when its probability of another class is \
         above that class's threshold (the mean probability of the class over the photos \
         given it: the confident joint below, off the diagonal), or when another class is \
         simply the most probable. Its score is one minus the probability of its given \
         class.\n",
        penalty(l.l2),
        l.folds
    );
    if l.confident_joint.len() == r.classes.len() && !r.classes.is_empty() {
        let mut header = vec!["given ↓ confidently predicted →".to_string()];
        header.extend(r.classes.iter().map(|c| esc(c)));
        let refs: Vec<&str> = header.iter().map(String::as_str).collect();
        table_header(s, &refs);
        for (class, row) in r.classes.iter().zip(&l.confident_joint) {
            let mut cells = vec![format!("**{}**", esc(class))];
            cells.extend(row.iter().map(usize::to_string));
            table_row(s, &cells);
        }
        if l.thresholds.len() == r.classes.len() {
            let mut cells = vec!["threshold".to_string()];
            cells.extend(l.thresholds.iter().map(|t| format!("{t:.3}")));
            table_row(s, &cells);
        }
        s.push('\n');
    }
    match f {
        None => {
            let _ = writeln!(s, "No photo's label looks wrong.\n");
        }
        Some(f) => {
            let _ = writeln!(
                s,
                "Under each photo: its given class → the suggested one, the score, and the \
                 split and file name; the highest scores first.\n"
            );
            grid(s, f, "highest scores", "likely wrong labels", a);
        }
    }
}

fn pairs(s: &mut String, r: &AuditReport, kind: FlagKind, f: Option<&GridFigure>, a: &AuditInfo) {
    let d = &r.duplicates;
    let leakage = kind == FlagKind::Leakage;
    if leakage {
        let _ = writeln!(s, "### Validation photos leaking from train\n");
    } else {
        let _ = writeln!(s, "### Duplicates within a split\n");
        let _ = writeln!(
            s,
            "Two photos count as copies when their files are identical, the cosine \
             similarity of their centred features is above {}, or their difference hashes \
             differ in at most {} bits of 256. Of the photos without a copy, the closest come \
             to a similarity of {:.3} and a hash distance of {}.\n",
            d.threshold, d.hash_bits, d.closest_similarity, d.closest_hash_distance
        );
    }
    let Some(f) = f else {
        let _ = writeln!(
            s,
            "{}\n",
            if leakage {
                "No validation photo has a copy in train."
            } else {
                "No photo has a copy in its own split."
            }
        );
        return;
    };
    let _ = writeln!(
        s,
        "Each {} (left: the one `--exclude` leaves out) beside its twin (right); under \
         them: `identical files`, or the cosine similarity of their features and the distance \
         of their difference hashes in bits, then both files (the twin's in red when it is in \
         another class folder).\n",
        if leakage { "validation photo" } else { "copy" }
    );
    let alt = if leakage {
        "validation photos with a copy in train"
    } else {
        "duplicates within a split"
    };
    grid(s, f, "most alike", alt, a);
}

fn strays(s: &mut String, r: &AuditReport, c: &Counts, f: Option<&GridFigure>, a: &AuditInfo) {
    let st = &r.strays;
    let _ = writeln!(s, "### Strays\n");
    let _ = writeln!(
        s,
        "Photos far from all others (of neither class, a blank frame, a screenshot): the \
         score is the mean cosine distance to the {} nearest photos, and the fence {} is \
         the upper quartile plus three interquartile ranges of every photo's score. {} above \
         it.\n",
        st.neighbours,
        figure(st.threshold),
        match c.strays {
            0 => "No photo is".to_string(),
            1 => "One photo is".to_string(),
            n => format!("{n} photos are"),
        }
    );
    if let Some(f) = f {
        let _ = writeln!(
            s,
            "The highest scores first, framed in red when above the fence; under each: the \
             score, the split and given class, and the file name.\n"
        );
        grid(s, f, "highest scores", "strays", a);
    }
}

fn learning_curve(s: &mut String, r: &AuditReport, file: Option<&str>) {
    let lc = &r.learning_curve;
    let _ = writeln!(s, "### Learning curve\n");
    if lc.points.is_empty() {
        let _ = writeln!(s, "No learning curve: no size was measured.\n");
        return;
    }
    let sizes: Vec<String> = lc.points.iter().map(|p| p.per_class.to_string()).collect();
    let _ = write!(
        s,
        "The validation accuracy (on {} photos) of a {} (L2 {}) trained on {} random subsets \
         of {} training photos per class. ",
        lc.validation_photos,
        esc(&lc.head),
        penalty(lc.l2),
        lc.seeds,
        sizes.join(", ")
    );
    match &lc.power_law {
        Some(law) => {
            let _ = writeln!(
                s,
                "The power law fitted to the mean error, error ≈ {:.3} · n^−{:.3}, says \
                 **{}** (from {} to {} photos per class); each doubling multiplies the error \
                 by {:.3}. This is a linear probe on the cached features, not one of the trained \
                 models: it says how much more photos would help a model on these features, \
                 and a fine-tuned one may gain more.\n",
                law.a,
                law.b,
                doubling(law),
                lc.points.iter().map(|p| p.per_class).max().unwrap_or(0),
                2 * lc.points.iter().map(|p| p.per_class).max().unwrap_or(0),
                2f64.powf(-law.b)
            );
        }
        None => {
            let _ = writeln!(
                s,
                "No power law was fitted (fewer than three sizes, or a perfect score \
                 everywhere). This is a linear probe on the cached features, not one of the \
                 trained models.\n"
            );
        }
    }
    if let Some(file) = file {
        let _ = writeln!(s, "![learning curve]({file})\n");
    }
    table_header(
        s,
        &[
            "photos per class",
            "mean accuracy",
            "standard deviation",
            "each seed",
        ],
    );
    for p in &lc.points {
        table_row(
            s,
            &[
                p.per_class.to_string(),
                figure(p.mean),
                figure(p.std),
                p.accuracies
                    .iter()
                    .map(|a| figure(*a))
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
        );
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(
            shell_word("artifacts/audit/audit.json"),
            "artifacts/audit/audit.json"
        );
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
        assert_eq!(count(1, "photo", "photos"), "1 photo");
        assert_eq!(count(2, "photo", "photos"), "2 photos");
        assert_eq!(penalty(1.0), "1");
        assert_eq!(penalty(0.01), "0.01");
    }
}
