//! The default source, used when no `--source` is given and `LITTLEDATA_SOURCE` is unset: the
//! public `cats_and_dogs_filtered.zip` archive of the TensorFlow tutorials (1000 training and
//! 500 validation images per class, taken from the same Kaggle "Dogs vs. Cats" data as the
//! post), downloaded once into a cache folder, verified, and unpacked into one
//! class-subfolder source (`cats/`, `dogs/`) that merges the archive's `train/` and
//! `validation/` folders.
//!
//! Verification: the archive's published size is pinned. No sha256 digest of the archive is
//! published next to it, so the digest is recorded in the cache on the first download
//! (`<archive>.sha256`) and every later use is checked against that record; an archive with a
//! pinned digest ([`RemoteArchive::sha256`]) is checked against the pin instead.

use std::fs::{self, File};
use std::io::{self, BufReader};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::FetchError;

/// Environment variable naming a local source folder to use when `--source` is not given.
pub const SOURCE_ENV: &str = "LITTLEDATA_SOURCE";

/// Sub-folder of the user's cache folder that holds downloads.
pub const CACHE_SUBDIR: &str = "littledata";

/// A zip archive of class folders that can serve as the default source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteArchive {
    /// Where to download it from.
    pub url: String,
    /// File name in the cache.
    pub file_name: String,
    /// Its size in bytes, when known.
    pub size: Option<u64>,
    /// Its sha256 (lower-case hex), when published; otherwise the digest is recorded at the
    /// first download and checked on every later use.
    pub sha256: Option<String>,
    /// The top folder inside the archive, if any (`cats_and_dogs_filtered`).
    pub root: Option<String>,
    /// Folders under the root whose class folders are merged (`train`, `validation`); empty
    /// when the class folders sit directly under the root.
    pub merge: Vec<String>,
    /// Name of the unpacked source folder in the cache.
    pub unpacked_name: String,
}

impl RemoteArchive {
    /// `cats_and_dogs_filtered.zip`: 1000 + 500 images per class (cats, dogs).
    pub fn cats_and_dogs_filtered() -> Self {
        Self {
            url: "https://storage.googleapis.com/mledu-datasets/cats_and_dogs_filtered.zip".into(),
            file_name: "cats_and_dogs_filtered.zip".into(),
            size: Some(68_606_236),
            sha256: None,
            root: Some("cats_and_dogs_filtered".into()),
            merge: vec!["train".into(), "validation".into()],
            unpacked_name: "cats_and_dogs_filtered".into(),
        }
    }

    /// Where the archive is cached.
    pub fn archive_path(&self, cache: &Path) -> PathBuf {
        cache.join(&self.file_name)
    }

    /// Where the digest recorded at the first download is kept.
    pub fn record_path(&self, cache: &Path) -> PathBuf {
        cache.join(format!("{}.sha256", self.file_name))
    }

    /// Where the unpacked source folder is.
    pub fn unpacked_path(&self, cache: &Path) -> PathBuf {
        cache.join(&self.unpacked_name)
    }

    /// The marker saying which archive digest the unpacked folder came from.
    fn marker_path(&self, cache: &Path) -> PathBuf {
        cache.join(format!("{}.unpacked", self.unpacked_name))
    }

    fn expected_layout(&self) -> String {
        let root = self
            .root
            .as_deref()
            .map_or(String::new(), |r| format!("{r}/"));
        if self.merge.is_empty() {
            format!("{root}<class>/")
        } else {
            format!("{root}{{{}}}/<class>/", self.merge.join(","))
        }
    }
}

/// The cache folder: `$XDG_CACHE_HOME/littledata`, else `~/.cache/littledata`.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from)
        && xdg.is_absolute()
    {
        return Ok(xdg.join(CACHE_SUBDIR));
    }
    match std::env::home_dir() {
        Some(home) if !home.as_os_str().is_empty() => Ok(home.join(".cache").join(CACHE_SUBDIR)),
        _ => Err(FetchError::NoCacheDir),
    }
}

/// How an archive's digest was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Against the digest pinned in [`RemoteArchive::sha256`].
    Pinned,
    /// No digest was known: this one was recorded in `record` for later checks.
    Recorded {
        /// The record file.
        record: PathBuf,
    },
    /// Against the digest recorded at the first download.
    MatchesRecord {
        /// The record file.
        record: PathBuf,
    },
}

/// A downloaded, verified and unpacked archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedArchive {
    /// The unpacked class-subfolder source.
    pub source: PathBuf,
    /// The archive file.
    pub archive: PathBuf,
    /// Its sha256.
    pub sha256: String,
    /// How the digest was checked.
    pub verification: Verification,
    /// Whether it was downloaded by this call.
    pub downloaded: bool,
    /// Whether it was unpacked by this call.
    pub unpacked: bool,
    /// Number of files unpacked by this call (0 when it was already unpacked).
    pub files: usize,
}

/// Where a split's source comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolvedSource {
    /// Given on the command line.
    Given(PathBuf),
    /// From the `LITTLEDATA_SOURCE` environment variable.
    FromEnv(PathBuf),
    /// The default archive.
    Archive(PreparedArchive),
}

impl ResolvedSource {
    /// The source folder.
    pub fn path(&self) -> &Path {
        match self {
            ResolvedSource::Given(p) | ResolvedSource::FromEnv(p) => p,
            ResolvedSource::Archive(a) => &a.source,
        }
    }
}

/// Resolves the source folder: `explicit` if given, else `$LITTLEDATA_SOURCE` if set and not
/// empty, else the default archive ([`RemoteArchive::cats_and_dogs_filtered`]), downloaded
/// into [`cache_dir`] if needed.
pub fn resolve_source(
    explicit: Option<&Path>,
    show_progress: bool,
) -> Result<ResolvedSource, FetchError> {
    if let Some(path) = explicit {
        return Ok(ResolvedSource::Given(path.to_path_buf()));
    }
    if let Some(env) = std::env::var_os(SOURCE_ENV).filter(|v| !v.is_empty()) {
        return Ok(ResolvedSource::FromEnv(PathBuf::from(env)));
    }
    let cache = cache_dir()?;
    prepare_archive(
        &RemoteArchive::cats_and_dogs_filtered(),
        &cache,
        show_progress,
    )
    .map(ResolvedSource::Archive)
}

/// Makes `archive` available as an unpacked source under `cache`: downloads it unless it is
/// cached, checks its size and sha256 (see the module documentation), and unpacks it unless
/// the unpacked folder already comes from an archive with this digest.
pub fn prepare_archive(
    archive: &RemoteArchive,
    cache: &Path,
    show_progress: bool,
) -> Result<PreparedArchive, FetchError> {
    fs::create_dir_all(cache).map_err(|e| FetchError::io("create", cache, e))?;
    let archive_path = archive.archive_path(cache);
    let downloaded = !archive_path.exists();
    if downloaded {
        download(&archive.url, &archive_path, show_progress)?;
    }
    let (sha256, verification) = match verify(archive, cache) {
        Ok(ok) => ok,
        Err(e) => {
            if downloaded {
                // A fresh download that fails verification is useless; do not keep it.
                let _ = fs::remove_file(&archive_path);
            }
            return Err(e);
        }
    };

    let source = archive.unpacked_path(cache);
    let marker = archive.marker_path(cache);
    let up_to_date =
        source.is_dir() && fs::read_to_string(&marker).is_ok_and(|m| m.trim() == sha256);
    let mut files = 0;
    if !up_to_date {
        files = unpack(archive, &archive_path, &source)?;
        write_atomic(&marker, format!("{sha256}\n").as_bytes())?;
    }
    Ok(PreparedArchive {
        source,
        archive: archive_path,
        sha256,
        verification,
        downloaded,
        unpacked: !up_to_date,
        files,
    })
}

/// Checks the cached archive's size and digest; records the digest on first use when none is
/// pinned.
fn verify(archive: &RemoteArchive, cache: &Path) -> Result<(String, Verification), FetchError> {
    let path = archive.archive_path(cache);
    if let Some(expected) = archive.size {
        let actual = fs::metadata(&path)
            .map_err(|e| FetchError::io("read", &path, e))?
            .len();
        if actual != expected {
            return Err(FetchError::SizeMismatch {
                path,
                expected,
                actual,
            });
        }
    }
    let actual = sha256_file(&path)?;
    if let Some(pinned) = &archive.sha256 {
        if !pinned.eq_ignore_ascii_case(&actual) {
            return Err(FetchError::DigestMismatch {
                path,
                expected: pinned.to_lowercase(),
                actual,
                origin: "the published digest".into(),
            });
        }
        return Ok((actual, Verification::Pinned));
    }
    let record = archive.record_path(cache);
    match fs::read_to_string(&record) {
        Ok(text) => {
            let expected = text.split_whitespace().next().unwrap_or("").to_lowercase();
            if expected != actual {
                return Err(FetchError::DigestMismatch {
                    path,
                    expected,
                    actual,
                    origin: format!("recorded at the first download in {}", record.display()),
                });
            }
            Ok((actual, Verification::MatchesRecord { record }))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            write_atomic(
                &record,
                format!("{actual}  {}\n", archive.file_name).as_bytes(),
            )?;
            Ok((actual, Verification::Recorded { record }))
        }
        Err(e) => Err(FetchError::io("read", &record, e)),
    }
}

/// sha256 of a file, lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    Ok(artifact::sha256_file(path)?)
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, flushed, renamed).
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    Ok(artifact::atomic_write(path, bytes)?)
}

/// Downloads `url` to `dest` (through a temporary file in the same folder, renamed when
/// complete), with a progress bar on stderr when `show_progress`.
pub fn download(url: &str, dest: &Path, show_progress: bool) -> Result<u64, FetchError> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(120))
        .build();
    let response = agent.get(url).call().map_err(|e| FetchError::Download {
        url: url.to_string(),
        source: Box::new(e),
    })?;
    let length = response
        .header("Content-Length")
        .and_then(|v| v.parse::<u64>().ok());
    let bar = if show_progress {
        let bar = length.map_or_else(ProgressBar::no_length, ProgressBar::new);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta})",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(format!("downloading {url}"));
        bar
    } else {
        ProgressBar::hidden()
    };

    let mut reader = bar.wrap_read(response.into_reader());
    let mut received = 0;
    let mut body_error = None;
    let written = artifact::atomic_write_with(dest, |file| match io::copy(&mut reader, file) {
        Ok(n) => {
            received = n;
            Ok(())
        }
        Err(e) => {
            let kind = e.kind();
            body_error = Some(e);
            Err(io::Error::new(kind, "download interrupted"))
        }
    });
    bar.finish_and_clear();
    if let Some(source) = body_error {
        return Err(FetchError::DownloadBody {
            url: url.to_string(),
            received: bar.position(),
            source,
        });
    }
    written?;
    Ok(received)
}

/// Unpacks the class folders of `archive` (found at `zip_path`) into `dest`, merging the
/// [`RemoteArchive::merge`] folders: `<root>/<merge>/<class>/<file>` becomes
/// `dest/<class>/<file>`. Other entries are ignored. The result is built in a temporary
/// folder next to `dest` and renamed over it. Returns the number of files unpacked.
pub fn unpack(archive: &RemoteArchive, zip_path: &Path, dest: &Path) -> Result<usize, FetchError> {
    let zip_err = |source| FetchError::Zip {
        path: zip_path.to_path_buf(),
        source,
    };
    let file = File::open(zip_path).map_err(|e| FetchError::io("open", zip_path, e))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let parent = dest.parent().unwrap_or(Path::new("."));
    let staging = tempfile::Builder::new()
        .prefix(".unpack-")
        .tempdir_in(parent)
        .map_err(|e| FetchError::io("create a temporary folder in", parent, e))?;

    let mut count = 0;
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(zip_err)?;
        if entry.is_dir() {
            continue;
        }
        let raw_name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
        let Some(relative) = entry.enclosed_name() else {
            return Err(FetchError::UnsafeEntry {
                path: zip_path.to_path_buf(),
                entry: raw_name,
            });
        };
        let parts: Option<Vec<&str>> = relative
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_str())
            .collect();
        let Some(parts) = parts else { continue };
        let parts = match archive.root.as_deref() {
            Some(root) if parts.first() == Some(&root) => &parts[1..],
            Some(_) => continue,
            None => &parts[..],
        };
        let (class, name) = match (archive.merge.is_empty(), parts) {
            (true, [class, name]) => (*class, *name),
            (false, [group, class, name]) if archive.merge.iter().any(|m| m == group) => {
                (*class, *name)
            }
            _ => continue,
        };
        if class.starts_with('.') || name.starts_with('.') || entry.is_symlink() {
            continue;
        }
        let class_dir = staging.path().join(class);
        fs::create_dir_all(&class_dir).map_err(|e| FetchError::io("create", &class_dir, e))?;
        let target = class_dir.join(name);
        let mut out = match File::create_new(&target) {
            Ok(out) => out,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(FetchError::DuplicateEntry {
                    path: zip_path.to_path_buf(),
                    entry: format!("{class}/{name}"),
                    merged: archive.merge.join(", "),
                });
            }
            Err(e) => return Err(FetchError::io("create", &target, e)),
        };
        // Reading to the end checks the entry's CRC-32.
        io::copy(&mut entry, &mut out).map_err(|e| FetchError::io("extract", &target, e))?;
        count += 1;
    }
    if count == 0 {
        return Err(FetchError::NoImagesInArchive {
            path: zip_path.to_path_buf(),
            expected: archive.expected_layout(),
        });
    }
    if fs::symlink_metadata(dest).is_ok() {
        fs::remove_dir_all(dest).map_err(|e| FetchError::io("remove", dest, e))?;
    }
    let built = staging.keep();
    fs::rename(&built, dest).map_err(|e| {
        let _ = fs::remove_dir_all(&built);
        FetchError::io("move into place", dest, e)
    })?;
    Ok(count)
}
