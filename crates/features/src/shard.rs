//! `--shard i/n` (one contiguous slice of every split) and `merge` (joining a complete set of
//! slices into the files a single run writes, bit for bit the same tensors).
//!
//! Shard `i` of `n` holds images `⌊N·(i−1)/n⌋ .. ⌊N·i/n⌋` of a split of `N` images; shards are
//! numbered from 1, so a scheduler's array index maps onto them directly. Every shard records
//! the whole split's file list and content digest, the settings and the weights digest; merge
//! refuses a set that is incomplete, mixes shard counts, or whose shards disagree on any of
//! those, and the merged file carries exactly the provenance of a single run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use artifact::{Freshness, Provenance, StreamWriter, check_fresh};
use candle_core::DType;
use pipeline::Pipeline;

use crate::error::{FeaturesError, Result};
use crate::meta::{ExtractSettings, FeatureFile, FeatureMeta, feature_path, features_provenance};
use crate::reader::RowReader;
use crate::slice::Shard;

/// Rows copied per chunk while merging (bounds memory: 256 rows of 512×4×4 f32 are 8 MiB).
const CHUNK_ROWS: usize = 256;

/// How to merge.
#[derive(Debug, Clone, Copy, Default)]
pub struct MergeOptions {
    /// Merge even when the merged file is up to date with the shards.
    pub force: bool,
    /// Keep the shard files after a successful merge (they are removed otherwise).
    pub keep_shards: bool,
}

/// What merge did to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOutcome {
    /// The shards were joined into the file.
    Merged,
    /// The file was already up to date with the shards.
    UpToDate,
    /// No shards were found, but the file exists (left as it is).
    NoShards,
}

/// One merged file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergedFile {
    /// Which file.
    pub file: FeatureFile,
    /// Where it is.
    pub path: PathBuf,
    /// The number of shards joined (0 when none were found).
    pub shards: usize,
    /// Rows in the file.
    pub rows: usize,
    /// What happened.
    pub outcome: MergeOutcome,
}

/// What merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Every file the pipeline extracts.
    pub files: Vec<MergedFile>,
}

/// Shard files of `file` in `dir`, by shard count then index.
fn find_shards(dir: &Path, file: FeatureFile) -> Result<BTreeMap<usize, BTreeMap<usize, PathBuf>>> {
    let mut sets: BTreeMap<usize, BTreeMap<usize, PathBuf>> = BTreeMap::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(sets),
        Err(e) => return Err(FeaturesError::io(dir)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(FeaturesError::io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let parsed = name
            .strip_prefix(file.stem())
            .and_then(|r| r.strip_prefix(".shard-"))
            .and_then(|r| r.strip_suffix(".safetensors"))
            .and_then(|r| r.split_once("-of-"))
            .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
        if let Some((i, n)) = parsed {
            sets.entry(n).or_default().insert(i, entry.path());
        }
    }
    Ok(sets)
}

/// The first field in which two shards' descriptions differ, in words.
fn difference(a: &FeatureMeta, b: &FeatureMeta) -> String {
    if a.files != b.files || a.data_digest != b.data_digest || a.classes != b.classes {
        "it was extracted from other images".into()
    } else if a.settings != b.settings {
        "it was extracted with other settings".into()
    } else if a.weights_sha256 != b.weights_sha256 {
        "it was extracted with other VGG16 weights".into()
    } else {
        "its description differs".into()
    }
}

/// Joins the complete shard set of `file` in `dir` into the single file; `settings` are the
/// pipeline's current settings for it, which the shards must have been made with.
pub fn merge_file(
    dir: &Path,
    file: FeatureFile,
    settings: &ExtractSettings,
    options: &MergeOptions,
) -> Result<MergedFile> {
    let target = feature_path(dir, file, None);
    let sets = find_shards(dir, file)?;
    let (count, shards) = match sets.len() {
        0 => {
            if target.exists() {
                let (meta, _) = FeatureMeta::read(&target)?;
                return Ok(MergedFile {
                    file,
                    rows: meta.rows(),
                    path: target,
                    shards: 0,
                    outcome: MergeOutcome::NoShards,
                });
            }
            return Err(FeaturesError::Merge {
                path: dir.join(format!("{}.shard-*-of-*.safetensors", file.stem())),
                reason: "no shard files to merge (run `extract --shard i/n` for every i first)"
                    .into(),
            });
        }
        1 => sets.into_iter().next().expect("one set"),
        _ => {
            let counts: Vec<String> = sets.keys().map(|n| format!("of-{n}")).collect();
            return Err(FeaturesError::Merge {
                path: dir.to_path_buf(),
                reason: format!(
                    "{} shards of different counts ({}); remove the stale set",
                    file.stem(),
                    counts.join(", ")
                ),
            });
        }
    };
    let missing: Vec<String> = (1..=count)
        .filter(|i| !shards.contains_key(i))
        .map(|i| {
            feature_path(dir, file, Some(Shard { index: i, count }))
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    if let Some(first) = shards.values().next()
        && !missing.is_empty()
    {
        return Err(FeaturesError::Merge {
            path: first.clone(),
            reason: format!(
                "the set of {count} is incomplete: missing {} (run `extract --shard i/{count}` \
                 for them)",
                missing.join(", ")
            ),
        });
    }

    // Read and check every shard's description and tensors.
    let mut metas: Vec<(PathBuf, FeatureMeta, RowReader)> = Vec::with_capacity(count);
    for (i, path) in shards {
        let (meta, raw) = FeatureMeta::read(&path)?;
        let shard = Shard { index: i, count };
        let expected_range = shard.range(meta.files.len());
        match meta.shard {
            Some(s) if s.index == i && s.count == count && (s.start..s.end) == expected_range => {}
            other => {
                return Err(FeaturesError::Merge {
                    path,
                    reason: format!(
                        "its metadata says shard {:?}, its name says {shard} (images {}..{})",
                        other.map(|s| format!(
                            "{}/{} (images {}..{})",
                            s.index, s.count, s.start, s.end
                        )),
                        expected_range.start,
                        expected_range.end
                    ),
                });
            }
        }
        let provenance = features_provenance(
            file,
            &meta.settings,
            Some(shard),
            &meta.data_digest,
            &meta.weights_sha256,
        );
        if Provenance::from_metadata(&raw).is_none_or(|p| p.difference(&provenance).is_some()) {
            return Err(FeaturesError::Merge {
                path,
                reason: "its provenance does not match its description (not written by \
                         `extract --shard`?)"
                    .into(),
            });
        }
        if let Some((first_path, first, _)) = metas.first() {
            let (a, b) = (
                FeatureMeta {
                    shard: None,
                    ..first.clone()
                },
                FeatureMeta {
                    shard: None,
                    ..meta.clone()
                },
            );
            if a != b {
                return Err(FeaturesError::Merge {
                    path,
                    reason: format!(
                        "it does not belong with {}: {}",
                        first_path.display(),
                        difference(&a, &b)
                    ),
                });
            }
        }
        if &meta.settings != settings {
            return Err(FeaturesError::Merge {
                path,
                reason: "it was extracted with other settings than the pipeline file's current \
                         ones (image size, interpolation, preprocessing or views); extract the \
                         shards again"
                    .into(),
            });
        }
        // The rows are copied unread by any other check: prove the shard's bytes first, so a
        // damaged shard is never merged into a file with a valid digest.
        artifact::verify(&path)?;
        let reader = RowReader::open(&path)?;
        meta.check_shapes(&path, reader.shape("features")?, reader.shape("labels")?)?;
        if reader.dtype("labels")? != DType::U32 {
            return Err(FeaturesError::features(&path, "`labels` is not u32"));
        }
        if let Some((first_path, _, first_reader)) = metas.first()
            && first_reader.dtype("features")? != reader.dtype("features")?
        {
            return Err(FeaturesError::Merge {
                path,
                reason: format!(
                    "its features are stored as {:?}, those of {} as {:?}",
                    reader.dtype("features")?,
                    first_path.display(),
                    first_reader.dtype("features")?
                ),
            });
        }
        metas.push((path, meta, reader));
    }

    let (_, first, first_reader) = metas.first().expect("at least one shard");
    let merged_meta = FeatureMeta {
        shard: None,
        ..first.clone()
    };
    let dtype = first_reader.dtype("features")?;
    let provenance = features_provenance(
        file,
        &merged_meta.settings,
        None,
        &merged_meta.data_digest,
        &merged_meta.weights_sha256,
    );
    let rows = merged_meta.rows();
    if !options.force && check_fresh(&target, &provenance)? == Freshness::UpToDate {
        return Ok(MergedFile {
            file,
            path: target,
            shards: count,
            rows,
            outcome: MergeOutcome::UpToDate,
        });
    }

    let mut metadata = merged_meta.to_metadata();
    metadata.extend(provenance.to_metadata());
    let [c, h, w] = merged_meta.feature_shape;
    let mut writer = StreamWriter::create(
        &target,
        &[
            ("features", dtype, vec![rows, c, h, w]),
            ("labels", DType::U32, vec![rows]),
        ],
        &metadata,
    )?;
    for name in ["features", "labels"] {
        for (_, meta, reader) in &mut metas {
            let n = meta.rows();
            for lo in (0..n).step_by(CHUNK_ROWS) {
                let chunk = reader.read_rows(name, lo..(lo + CHUNK_ROWS).min(n))?;
                writer.append(name, &chunk)?;
            }
        }
    }
    writer.finish()?;
    let paths: Vec<PathBuf> = metas.into_iter().map(|(p, _, _)| p).collect();
    if !options.keep_shards {
        for p in &paths {
            std::fs::remove_file(p).map_err(FeaturesError::io(p))?;
        }
    }
    Ok(MergedFile {
        file,
        path: target,
        shards: count,
        rows,
        outcome: MergeOutcome::Merged,
    })
}

/// Merges the shard sets of every file the pipeline extracts (`train`, `validation` and, with
/// augmented views, `train_augmented`) in `<data.artifacts>/bottleneck`.
pub fn merge(pipeline: &Pipeline, options: &MergeOptions) -> Result<MergeReport> {
    let dir = pipeline.layout().bottleneck();
    let mut files = Vec::new();
    for file in FeatureFile::ALL {
        if let Some(settings) = ExtractSettings::for_file(pipeline, file) {
            files.push(merge_file(&dir, file, &settings, options)?);
        }
    }
    Ok(MergeReport { files })
}
