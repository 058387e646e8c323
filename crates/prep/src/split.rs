//! The split itself: choose each class's images, check they decode, and lay them out as
//! `train/<class>/`, `validation/<class>/` and `test/<class>/` under the output folder.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::decode::check_decodable;
use crate::error::{Rejected, SplitError};
use crate::exclude::{ExcludeList, Exclusions, Unmatched};
use crate::manifest::{
    LinkMode, MANIFEST_FILE, MANIFEST_FORMAT, Manifest, ManifestFile, Order, SplitParams, Subset,
    count_files,
};
use crate::source::{Candidate, ScannedSource, scan};

/// Default number of training images per class (the post's 1000).
pub const DEFAULT_TRAIN: usize = 1000;
/// Default number of validation images per class (the post's 500).
pub const DEFAULT_VALIDATION: usize = 500;
/// Default number of test images per class.
pub const DEFAULT_TEST: usize = 0;
/// Default output folder.
pub const DEFAULT_OUT: &str = "data";
/// Name of the random stream the shuffle draws from.
pub const SHUFFLE_STREAM: &str = imagedata::rng::names::SPLIT;

/// Prefix of the staging folder a new split is built in (inside the output folder).
const STAGING_PREFIX: &str = ".split-new-";
/// Prefix of the folder a replaced split is moved to before it is deleted.
const TRASH_PREFIX: &str = ".split-old-";

/// Everything `prep split` needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitOptions {
    /// The source folder (flat `<label>.<index>.<ext>` files, or one subfolder per class).
    pub source: PathBuf,
    /// The output folder; the split owns its `train/`, `validation/`, `test/` and
    /// `split.json` and leaves anything else there alone.
    pub out: PathBuf,
    /// Images per class in `train/`.
    pub train: usize,
    /// Images per class in `validation/`.
    pub validation: usize,
    /// Images per class in `test/` (none when 0).
    pub test: usize,
    /// The order each class's files are taken in.
    pub order: Order,
    /// Files naming photos to leave out (`--exclude`; see [`crate::exclude`]): an audit
    /// report, a JSON array of paths or a text list. The photos they match are removed before
    /// the selection, so the next photos in order take their places.
    pub exclude: Vec<PathBuf>,
    /// Make any unusable file an error instead of leaving it out, and an `exclude` entry that
    /// matches no photo an error instead of a warning.
    pub strict: bool,
    /// Replace an existing, different split.
    pub force: bool,
    /// Draw a progress bar on stderr while decoding.
    pub show_progress: bool,
}

impl SplitOptions {
    /// Options with the post's defaults for a given source: 1000 train and 500 validation
    /// images per class, no test set, numeric order, output `data/`.
    pub fn new(source: impl Into<PathBuf>) -> Self {
        Self {
            source: source.into(),
            out: PathBuf::from(DEFAULT_OUT),
            train: DEFAULT_TRAIN,
            validation: DEFAULT_VALIDATION,
            test: DEFAULT_TEST,
            order: Order::Numeric,
            exclude: Vec::new(),
            strict: false,
            force: false,
            show_progress: false,
        }
    }

    /// Images needed per class.
    pub fn per_class(&self) -> usize {
        self.train + self.validation + self.test
    }
}

/// What a split run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new split was written where there was none.
    Created,
    /// An existing split was replaced (`--force`).
    Replaced,
    /// The output already held this exact split; nothing was written.
    UpToDate,
}

/// How the files of a newly written split were made.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Files hard-linked to their source.
    pub hard_links: usize,
    /// Files copied.
    pub copies: usize,
    /// Why hard-linking failed, when it did.
    pub link_error: Option<String>,
}

/// The result of a split run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitReport {
    /// What happened.
    pub outcome: Outcome,
    /// The output folder.
    pub out: PathBuf,
    /// The manifest of the split now in place.
    pub manifest: Manifest,
    /// How the files were made (all zero for [`Outcome::UpToDate`]).
    pub links: LinkStats,
    /// The exclude files' entries that match no photo of the source (see
    /// [`SplitReport::warnings`]).
    pub unmatched: Vec<Unmatched>,
}

impl SplitReport {
    /// Warnings to show the user: one per exclude file with entries that match no photo of
    /// the source (the first few entries, and how many there are).
    pub fn warnings(&self) -> Vec<String> {
        self.unmatched.iter().map(ToString::to_string).collect()
    }

    /// Number of images of `class` in `subset`.
    pub fn count(&self, subset: Subset, class: &str) -> usize {
        self.manifest.files(subset, class).len()
    }

    /// The per-split, per-class table of counts.
    pub fn table(&self) -> String {
        let classes = &self.manifest.classes;
        let mut header = vec!["split".to_string()];
        header.extend(classes.iter().cloned());
        header.push("total".into());
        let mut rows = vec![header];
        let mut column_totals = vec![0usize; classes.len()];
        for subset in self.manifest.subsets() {
            let mut row = vec![subset.dir_name().to_string()];
            let mut total = 0;
            for (i, class) in classes.iter().enumerate() {
                let n = self.count(subset, class);
                column_totals[i] += n;
                total += n;
                row.push(n.to_string());
            }
            row.push(total.to_string());
            rows.push(row);
        }
        let mut total_row = vec!["total".to_string()];
        total_row.extend(column_totals.iter().map(usize::to_string));
        total_row.push(column_totals.iter().sum::<usize>().to_string());
        rows.push(total_row);

        let widths: Vec<usize> = (0..rows[0].len())
            .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &rows {
            let cells: Vec<String> = row
                .iter()
                .enumerate()
                .map(|(c, cell)| {
                    if c == 0 {
                        format!("{cell:<w$}", w = widths[c])
                    } else {
                        format!("{cell:>w$}", w = widths[c])
                    }
                })
                .collect();
            out.push_str(cells.join("  ").trim_end());
            out.push('\n');
        }
        out
    }
}

impl fmt::Display for SplitReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.manifest;
        if !m.rejected.is_empty() {
            writeln!(f, "left out {} file(s):", m.rejected.len())?;
            for r in &m.rejected {
                writeln!(f, "  {r}")?;
            }
        }
        if !m.excluded.is_empty() {
            writeln!(f, "excluded {} file(s):", m.excluded.len())?;
            for r in &m.excluded {
                writeln!(f, "  {r}")?;
            }
        }
        let order = match m.params.order {
            Order::Numeric => "numeric order".to_string(),
            Order::Shuffled { seed } => format!("shuffled with seed {seed}"),
        };
        match self.outcome {
            Outcome::UpToDate => writeln!(
                f,
                "{} is up to date ({} matches the source and the arguments); nothing to do",
                self.out.display(),
                MANIFEST_FILE
            )?,
            Outcome::Created | Outcome::Replaced => {
                let verb = if self.outcome == Outcome::Created {
                    "wrote"
                } else {
                    "replaced the split in"
                };
                let how = match (self.links.hard_links, self.links.copies) {
                    (h, 0) => format!("{h} hard links"),
                    (0, c) => format!("{c} copies"),
                    (h, c) => format!("{h} hard links, {c} copies"),
                };
                write!(f, "{verb} {} ({how}", self.out.display())?;
                if let Some(reason) = &self.links.link_error {
                    write!(f, "; hard links not possible: {reason}")?;
                }
                writeln!(f, ")")?;
            }
        }
        writeln!(
            f,
            "source {} ({}), {order}",
            m.params.source.display(),
            m.params.layout.describe()
        )?;
        write!(f, "{}", self.table())
    }
}

/// What the output folder currently holds.
enum Existing {
    /// No split folders and no manifest.
    Nothing,
    /// A readable manifest.
    Manifest(Box<Manifest>),
    /// A manifest that cannot be read (the reason).
    BadManifest(String),
    /// Split folders with files but no manifest (the first such folder).
    Unmanifested(PathBuf),
}

fn inspect_output(out: &Path) -> Existing {
    let manifest_path = out.join(MANIFEST_FILE);
    if manifest_path.exists() {
        return match Manifest::read(&manifest_path) {
            Ok(m) => Existing::Manifest(Box::new(m)),
            Err(reason) => Existing::BadManifest(reason),
        };
    }
    for subset in Subset::ALL {
        let dir = out.join(subset.dir_name());
        if count_files(&dir) > 0 {
            return Existing::Unmanifested(dir);
        }
    }
    Existing::Nothing
}

/// The output folder as an absolute path (canonical if it exists), without requiring it to
/// exist.
fn absolute_out(out: &Path) -> Result<PathBuf, SplitError> {
    if let Ok(c) = fs::canonicalize(out) {
        return Ok(c);
    }
    let abs = std::path::absolute(out).map_err(|e| SplitError::io("resolve", out, e))?;
    // Canonicalise the deepest existing ancestor so comparisons with the source hold.
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                existing = parent;
            }
            _ => return Ok(abs),
        }
    }
    let mut resolved =
        fs::canonicalize(existing).map_err(|e| SplitError::io("resolve", existing, e))?;
    for name in rest.into_iter().rev() {
        resolved.push(name);
    }
    Ok(resolved)
}

fn check_locations(source: &ScannedSource, out: &Path) -> Result<(), SplitError> {
    if out.starts_with(&source.root) {
        return Err(SplitError::OutputInsideSource {
            out: out.to_path_buf(),
            source_dir: source.root.clone(),
        });
    }
    for subset in Subset::ALL {
        let split_dir = out.join(subset.dir_name());
        if source.root.starts_with(&split_dir) {
            return Err(SplitError::SourceInsideOutput {
                source_dir: source.root.clone(),
                split_dir,
            });
        }
    }
    if source.root.starts_with(out.join(MANIFEST_FILE)) {
        return Err(SplitError::SourceInsideOutput {
            source_dir: source.root.clone(),
            split_dir: out.join(MANIFEST_FILE),
        });
    }
    Ok(())
}

/// Splits `opts.source` into `opts.out` (see the crate documentation for the rules).
///
/// Returns [`Outcome::UpToDate`] without decoding or writing anything when the output already
/// holds the same split, intact; refuses a different existing split unless `opts.force`.
/// Nothing is written unless the whole split succeeds.
pub fn run_split(opts: &SplitOptions) -> Result<SplitReport, SplitError> {
    if opts.per_class() == 0 {
        return Err(SplitError::NothingRequested);
    }
    let lists = opts
        .exclude
        .iter()
        .map(|file| ExcludeList::read(file))
        .collect::<Result<Vec<_>, _>>()?;
    let source = scan(&opts.source)?;
    let out = absolute_out(&opts.out)?;
    check_locations(&source, &out)?;
    let exclusions = Exclusions::apply(&lists, &source);
    if opts.strict
        && let Some(unmatched) = exclusions.unmatched.first()
    {
        return Err(SplitError::ExcludeUnmatched(unmatched.clone()));
    }
    check_enough(&source, &exclusions, opts)?;

    let params = SplitParams {
        source: source.root.clone(),
        layout: source.layout,
        source_digest: source.digest(),
        train: opts.train,
        validation: opts.validation,
        test: opts.test,
        order: opts.order,
        exclude_digest: crate::exclude::digest(&exclusions.names),
        exclude: exclusions.names.clone(),
    };

    let outcome = match inspect_output(&out) {
        Existing::Nothing => Outcome::Created,
        Existing::Manifest(manifest) => {
            let mut reasons = manifest.differences(&params);
            if reasons.is_empty()
                && let Err(reason) = manifest.check_intact(&out)
            {
                reasons.push(reason);
            }
            if reasons.is_empty() {
                if opts.strict && !manifest.rejected.is_empty() {
                    return Err(SplitError::Strict {
                        files: manifest.rejected.clone(),
                    });
                }
                return Ok(SplitReport {
                    outcome: Outcome::UpToDate,
                    out,
                    manifest: *manifest,
                    links: LinkStats::default(),
                    unmatched: exclusions.unmatched,
                });
            }
            if !opts.force {
                return Err(SplitError::ExistingSplit {
                    out,
                    reason: reasons.join("; "),
                });
            }
            Outcome::Replaced
        }
        Existing::BadManifest(reason) => {
            if !opts.force {
                return Err(SplitError::ExistingSplit { out, reason });
            }
            Outcome::Replaced
        }
        Existing::Unmanifested(dir) => {
            if !opts.force {
                return Err(SplitError::ExistingSplit {
                    out,
                    reason: format!(
                        "{} has files but there is no {MANIFEST_FILE}",
                        dir.display()
                    ),
                });
            }
            Outcome::Replaced
        }
    };

    let (selection, mut rejected) = select(&source, &exclusions, opts)?;
    rejected.extend(source.rejected.iter().cloned());
    rejected.sort_by(|a, b| a.path.cmp(&b.path));
    if opts.strict && !rejected.is_empty() {
        return Err(SplitError::Strict { files: rejected });
    }

    let mut manifest = Manifest {
        format: MANIFEST_FORMAT,
        generator: format!("{} {}", env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION")),
        created: now_rfc3339(),
        params,
        classes: source.classes.iter().map(|c| c.name.clone()).collect(),
        link_mode: LinkMode::Copy,
        splits: BTreeMap::new(),
        rejected,
        excluded: exclusions.rejected.clone(),
    };
    let mut plan: Vec<(Subset, &str, &Candidate)> = Vec::new();
    for (class, chosen) in source.classes.iter().zip(&selection) {
        let mut taken = chosen.iter();
        for subset in Subset::ALL {
            let n = opts_count(opts, subset);
            if n == 0 {
                continue;
            }
            let files: Vec<&Candidate> = taken.by_ref().take(n).copied().collect();
            manifest
                .splits
                .entry(subset.dir_name().to_string())
                .or_default()
                .insert(
                    class.name.clone(),
                    files
                        .iter()
                        .map(|c| ManifestFile {
                            name: c.name.clone(),
                            bytes: c.bytes,
                        })
                        .collect(),
                );
            plan.extend(files.into_iter().map(|c| (subset, class.name.as_str(), c)));
        }
    }

    let links = write_split(&out, &plan, &mut manifest)?;
    Ok(SplitReport {
        outcome,
        out,
        manifest,
        links,
        unmatched: exclusions.unmatched,
    })
}

fn opts_count(opts: &SplitOptions, subset: Subset) -> usize {
    match subset {
        Subset::Train => opts.train,
        Subset::Validation => opts.validation,
        Subset::Test => opts.test,
    }
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| String::from("unknown"))
}

/// The order a class's candidates are tried in: the whole class in numeric or shuffled order,
/// less the excluded files (so an exclusion does not reshuffle the rest).
fn ordered_classes<'a>(
    source: &'a ScannedSource,
    exclusions: &Exclusions,
    order: Order,
) -> Vec<Vec<&'a Candidate>> {
    let mut rng = match order {
        Order::Numeric => None,
        Order::Shuffled { seed } => Some(crate::decode::rng(seed, SHUFFLE_STREAM)),
    };
    source
        .classes
        .iter()
        .map(|class| {
            let mut files: Vec<&Candidate> = class.files.iter().collect();
            if let Some(rng) = rng.as_mut() {
                files.shuffle(rng);
            }
            files.retain(|f| !exclusions.paths.contains(&f.path));
            files
        })
        .collect()
}

/// Refuses, before decoding anything, a split that some class cannot fill even if every one
/// of its files decodes.
fn check_enough(
    source: &ScannedSource,
    exclusions: &Exclusions,
    opts: &SplitOptions,
) -> Result<(), SplitError> {
    let needed = opts.per_class();
    for class in &source.classes {
        let excluded = exclusions.in_class(&class.name);
        let available = class.files.len() - excluded;
        if available < needed {
            return Err(SplitError::TooFewImages {
                class: class.name.clone(),
                source_dir: source.root.clone(),
                needed,
                available,
                undecodable: 0,
                excluded,
                request: request(opts),
            });
        }
    }
    Ok(())
}

/// The requested counts as flags.
fn request(opts: &SplitOptions) -> String {
    format!(
        "--train {} --validation {} --test {}",
        opts.train, opts.validation, opts.test
    )
}

/// Chooses `per_class` decodable images of every class, in order; an undecodable file is
/// left out (and listed) and the next one takes its place. Each file is decoded at most once.
fn select<'a>(
    source: &'a ScannedSource,
    exclusions: &Exclusions,
    opts: &SplitOptions,
) -> Result<(Vec<Vec<&'a Candidate>>, Vec<Rejected>), SplitError> {
    let needed = opts.per_class();
    let ordered = ordered_classes(source, exclusions, opts.order);
    let mut chosen: Vec<Vec<&Candidate>> = vec![Vec::with_capacity(needed); ordered.len()];
    let mut bad: Vec<Vec<Rejected>> = vec![Vec::new(); ordered.len()];
    let mut next = vec![0usize; ordered.len()];

    let progress = if opts.show_progress {
        let bar = ProgressBar::new((needed * ordered.len()) as u64);
        if let Ok(style) =
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message("checking images");
        bar
    } else {
        ProgressBar::hidden()
    };

    loop {
        // Every class's next batch: as many untried files as it still lacks.
        let mut batch: Vec<(usize, &Candidate)> = Vec::new();
        for (c, files) in ordered.iter().enumerate() {
            let missing = needed - chosen[c].len();
            let take = missing.min(files.len() - next[c]);
            batch.extend(files[next[c]..next[c] + take].iter().map(|f| (c, *f)));
            next[c] += take;
        }
        if batch.is_empty() {
            break;
        }
        let results: Vec<Result<(), String>> = batch
            .par_iter()
            .map(|(_, file)| {
                let r = check_decodable(&file.path);
                progress.inc(1);
                r
            })
            .collect();
        let mut replacements = 0u64;
        for ((c, file), result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => chosen[c].push(file),
                Err(reason) => {
                    bad[c].push(Rejected {
                        path: file.path.clone(),
                        reason,
                    });
                    if next[c] < ordered[c].len() {
                        replacements += 1;
                    }
                }
            }
        }
        progress.inc_length(replacements);
    }
    progress.finish_and_clear();

    for (c, class) in source.classes.iter().enumerate() {
        if chosen[c].len() < needed {
            return Err(SplitError::TooFewImages {
                class: class.name.clone(),
                source_dir: source.root.clone(),
                needed,
                available: chosen[c].len(),
                undecodable: bad[c].len(),
                excluded: exclusions.in_class(&class.name),
                request: request(opts),
            });
        }
    }
    Ok((chosen, bad.into_iter().flatten().collect()))
}

/// How one output file was made.
enum Made {
    /// Hard-linked to its source.
    Linked,
    /// Copied; with the hard-link error when a link was tried.
    Copied(Option<std::io::Error>),
}

/// Hard-links `src` to `dst` when `try_link`, or copies it (also when the link fails).
fn link_or_copy(src: &Path, dst: &Path, try_link: bool) -> Result<Made, SplitError> {
    let link_error = if try_link {
        match fs::hard_link(src, dst) {
            Ok(()) => return Ok(Made::Linked),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    fs::copy(src, dst).map_err(|e| SplitError::io("copy", src, e))?;
    Ok(Made::Copied(link_error))
}

/// Removes leftovers of an interrupted earlier run (staging and trash folders).
fn remove_stale(out: &Path) -> Result<(), SplitError> {
    let read = fs::read_dir(out).map_err(|e| SplitError::io("read folder", out, e))?;
    for entry in read.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX))
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            fs::remove_dir_all(entry.path())
                .map_err(|e| SplitError::io("remove", entry.path(), e))?;
        }
    }
    Ok(())
}

/// Builds the split in a staging folder inside `out`, then swaps it into place: the old
/// manifest is removed first, the old subset folders moved aside, the new ones renamed in,
/// and the new manifest renamed in last. An interruption at any point leaves either the old
/// split, or folders without a manifest (which a rerun refuses without `--force`), never a
/// half-written split that claims to be complete.
fn write_split(
    out: &Path,
    plan: &[(Subset, &str, &Candidate)],
    manifest: &mut Manifest,
) -> Result<LinkStats, SplitError> {
    fs::create_dir_all(out).map_err(|e| SplitError::io("create", out, e))?;
    remove_stale(out)?;
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(out)
        .map_err(|e| SplitError::io("create a staging folder in", out, e))?;

    let mut stats = LinkStats::default();
    let mut try_link = true;
    for (subset, class, file) in plan {
        let dir = staging.path().join(subset.dir_name()).join(class);
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| SplitError::io("create", &dir, e))?;
        }
        match link_or_copy(&file.path, &dir.join(&file.name), try_link)? {
            Made::Linked => stats.hard_links += 1,
            Made::Copied(link_error) => {
                stats.copies += 1;
                if let Some(e) = link_error {
                    // One failure (another file system, no permission) means the rest fail too.
                    try_link = false;
                    stats.link_error = Some(e.to_string());
                }
            }
        }
    }
    manifest.link_mode = match (stats.hard_links, stats.copies) {
        (_, 0) => LinkMode::HardLink,
        (0, _) => LinkMode::Copy,
        _ => LinkMode::Mixed,
    };
    let staged_manifest = manifest.write_atomic(staging.path())?;

    // Swap into place.
    let trash = tempfile::Builder::new()
        .prefix(TRASH_PREFIX)
        .tempdir_in(out)
        .map_err(|e| SplitError::io("create a folder in", out, e))?;
    let manifest_path = out.join(MANIFEST_FILE);
    if fs::symlink_metadata(&manifest_path).is_ok() {
        fs::remove_file(&manifest_path).map_err(|e| SplitError::io("remove", &manifest_path, e))?;
    }
    for subset in Subset::ALL {
        let old = out.join(subset.dir_name());
        if fs::symlink_metadata(&old).is_ok() {
            let aside = trash.path().join(subset.dir_name());
            fs::rename(&old, &aside).map_err(|e| SplitError::io("move aside", &old, e))?;
        }
    }
    for subset in Subset::ALL {
        let new = staging.path().join(subset.dir_name());
        if new.exists() {
            let dst = out.join(subset.dir_name());
            fs::rename(&new, &dst).map_err(|e| SplitError::io("move into place", &dst, e))?;
        }
    }
    fs::rename(&staged_manifest, &manifest_path)
        .map_err(|e| SplitError::io("move into place", &manifest_path, e))?;
    if let Ok(dir) = fs::File::open(out) {
        // Make the renames durable; not all platforms allow syncing a folder.
        let _ = dir.sync_all();
    }
    staging
        .close()
        .map_err(|e| SplitError::io("remove", out.join(STAGING_PREFIX), e))?;
    trash
        .close()
        .map_err(|e| SplitError::io("remove", out.join(TRASH_PREFIX), e))?;
    Ok(stats)
}
