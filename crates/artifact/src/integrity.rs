//! The data digest every artifact records and every reader of tensor data checks.
//!
//! The digest is xxh3-128 of every byte of the file — the 8-byte header length, the whole
//! header (tensor table, metadata, padding) and all tensor data as stored — with the 32 hex
//! digits of the digest value itself read as `'0'`s. It is stored in the metadata under
//! [`KEY_DATA_DIGEST`] as `xxh3-128:<32 hex>`, so the algorithm can change later. A writer puts
//! the placeholder `xxh3-128:000…0` in the header, hashes the bytes as it writes them, and
//! overwrites the 32 zeros in place (same length) before the file is renamed into place.
//!
//! xxh3 is not a cryptographic hash: it detects damage (bad sectors, truncation, flipped bits,
//! stray edits), not a deliberate forgery.

use crate::fresh::{KEY_DATA_DIGEST, KEY_STAGE};
use crate::{ArtifactError, Metadata, Result};
use std::io::Read;
use std::path::Path;

/// The algorithm named in every digest this crate writes.
pub const DIGEST_ALGORITHM: &str = "xxh3-128";

/// Hex digits of a digest value.
pub(crate) const HEX_LEN: usize = 32;

/// What the hex digits read as while hashing (and what a writer puts there first).
pub(crate) const PLACEHOLDER: [u8; HEX_LEN] = [b'0'; HEX_LEN];

/// Largest header this crate reads (as safetensors itself).
const MAX_HEADER: u64 = 100 * 1024 * 1024;

/// Read size of [`verify`].
const CHUNK: usize = 256 << 10;

/// The bytes that precede the digest's hex digits in a header this crate wrote.
pub(crate) fn digest_needle() -> String {
    format!("\"{KEY_DATA_DIGEST}\":\"{DIGEST_ALGORITHM}:")
}

/// The metadata value a writer records before it knows the digest.
pub(crate) fn placeholder_value() -> String {
    format!("{DIGEST_ALGORITHM}:{}", "0".repeat(HEX_LEN))
}

/// Streaming digest of a file's bytes.
pub(crate) struct Hasher(xxhash_rust::xxh3::Xxh3);

impl Hasher {
    pub(crate) fn new() -> Self {
        Self(xxhash_rust::xxh3::Xxh3::new())
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    /// The 32 lowercase hex digits.
    pub(crate) fn hex(&self) -> [u8; HEX_LEN] {
        let s = format!("{:032x}", self.0.digest128());
        let mut out = [0u8; HEX_LEN];
        out.copy_from_slice(s.as_bytes());
        out
    }
}

/// Where a file records its digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Recorded {
    /// Offset of the 32 hex digits in the file.
    pub offset: usize,
    /// The digits.
    pub hex: [u8; HEX_LEN],
}

/// A parsed and checked header (not the data).
pub(crate) struct Header {
    /// The header's metadata.
    pub meta: Metadata,
    /// The recorded digest, if any.
    pub digest: Option<Recorded>,
}

/// The stage named in a header, read leniently from its raw bytes (for damaged headers).
fn stage_in_raw(raw: &[u8]) -> Option<String> {
    let needle = format!("\"{KEY_STAGE}\":\"");
    let at = find(raw, needle.as_bytes())? + needle.len();
    let rest = raw.get(at..)?;
    let end = rest.iter().take(64).position(|&b| b == b'"')?;
    let name = std::str::from_utf8(&rest[..end]).ok()?;
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    plain.then(|| name.to_string())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn count(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).filter(|w| *w == needle).count()
}

pub(crate) fn damaged(
    path: &Path,
    reason: impl Into<String>,
    stage: Option<String>,
) -> ArtifactError {
    ArtifactError::Damaged {
        path: path.to_path_buf(),
        reason: reason.into(),
        stage,
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> ArtifactError {
    ArtifactError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Checks the 8-byte length prefix against the file's length and returns the header length.
/// `first` holds the file's first bytes (at least 9 when the file has them). A file whose
/// header would start with `{` is taken for a damaged safetensors file, anything else for a
/// foreign one.
pub(crate) fn header_len(path: &Path, first: &[u8], file_len: u64) -> Result<usize> {
    let Some(prefix) = first.get(..8) else {
        return Err(format_err(path, "shorter than a safetensors header"));
    };
    let n = u64::from_le_bytes(prefix.try_into().expect("8 bytes"));
    if n <= MAX_HEADER && n.saturating_add(8) <= file_len {
        return Ok(n as usize);
    }
    if first.get(8) != Some(&b'{') {
        return Err(format_err(
            path,
            format!("header length {n} does not fit a {file_len}-byte file"),
        ));
    }
    let reason = if n <= MAX_HEADER {
        format!(
            "not a valid safetensors file: truncated or bad header length (the header alone \
             should be {n} bytes, the file holds {})",
            file_len - 8
        )
    } else {
        format!("not a valid safetensors file: bad header: length field {n} is implausible")
    };
    Err(damaged(path, reason, stage_in_raw(first)))
}

/// Parses and checks the header JSON `raw` (the `n` bytes after the length prefix) of a file of
/// `file_len` bytes: a valid tensor table whose data exactly fills the rest of the file, and a
/// well-formed digest when one is recorded.
pub(crate) fn parse_header(path: &Path, raw: &[u8], file_len: u64) -> Result<Header> {
    let table: safetensors::tensor::Metadata = match serde_json::from_slice(raw) {
        Ok(t) => t,
        Err(e) if raw.first() == Some(&b'{') || find(raw, b"\"data_offsets\"").is_some() => {
            return Err(damaged(
                path,
                format!("not a valid safetensors file: bad header: {e}"),
                stage_in_raw(raw),
            ));
        }
        Err(e) => return Err(format_err(path, format!("header is not JSON: {e}"))),
    };
    let meta: Metadata = table
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let stage = meta.get(KEY_STAGE).cloned();
    let held = file_len - 8 - raw.len() as u64;
    let declared = table.data_len() as u64;
    if held < declared {
        return Err(damaged(
            path,
            format!(
                "truncated: the header describes {declared} bytes of tensor data, the file \
                 holds {held}"
            ),
            stage,
        ));
    }
    if held > declared {
        return Err(damaged(
            path,
            format!(
                "{} bytes follow the last tensor's data ({declared} bytes described)",
                held - declared
            ),
            stage,
        ));
    }
    let digest = match meta.get(KEY_DATA_DIGEST) {
        Some(value) => Some(locate_digest(path, raw, value, stage.clone())?),
        None => {
            // A flipped bit in the key's name would make the file look undigested: a key one
            // byte away from it whose value is a digest gives that away.
            let near = meta.iter().find(|(k, v)| {
                k.len() == KEY_DATA_DIGEST.len()
                    && k.bytes()
                        .zip(KEY_DATA_DIGEST.bytes())
                        .filter(|(a, b)| a != b)
                        .count()
                        == 1
                    && v.starts_with(DIGEST_ALGORITHM)
            });
            if let Some((k, _)) = near {
                return Err(damaged(
                    path,
                    format!("the data digest's key reads `{k}`, not `{KEY_DATA_DIGEST}`"),
                    stage,
                ));
            }
            None
        }
    };
    Ok(Header { meta, digest })
}

fn locate_digest(path: &Path, raw: &[u8], value: &str, stage: Option<String>) -> Result<Recorded> {
    let Some((algorithm, hex)) = value.split_once(':') else {
        return Err(damaged(
            path,
            format!("malformed data digest `{value}`"),
            stage,
        ));
    };
    if algorithm != DIGEST_ALGORITHM {
        return Err(damaged(
            path,
            format!(
                "data digest of unknown algorithm `{algorithm}` (written by a newer littledata?)"
            ),
            stage,
        ));
    }
    let lower_hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
    let valid = hex.len() == HEX_LEN && hex.bytes().all(lower_hex);
    if !valid {
        return Err(damaged(
            path,
            format!("malformed data digest `{value}`"),
            stage,
        ));
    }
    let needle = digest_needle();
    let at = match (count(raw, needle.as_bytes()), find(raw, needle.as_bytes())) {
        (1, Some(at)) => 8 + at + needle.len(),
        _ => {
            return Err(damaged(
                path,
                "the data digest is not where littledata writes it",
                stage,
            ));
        }
    };
    if raw.get(at - 8..at - 8 + HEX_LEN) != Some(hex.as_bytes()) {
        return Err(damaged(
            path,
            "the data digest is not where littledata writes it",
            stage,
        ));
    }
    let mut digits = [0u8; HEX_LEN];
    digits.copy_from_slice(hex.as_bytes());
    Ok(Recorded {
        offset: at,
        hex: digits,
    })
}

/// Compares a computed digest with the recorded one.
pub(crate) fn compare(
    path: &Path,
    recorded: &Recorded,
    computed: [u8; HEX_LEN],
    meta: &Metadata,
) -> Result<()> {
    if computed == recorded.hex {
        return Ok(());
    }
    Err(damaged(
        path,
        format!(
            "data digest mismatch: recorded {DIGEST_ALGORITHM}:{}, the bytes give \
             {DIGEST_ALGORITHM}:{}",
            String::from_utf8_lossy(&recorded.hex),
            String::from_utf8_lossy(&computed)
        ),
        meta.get(KEY_STAGE).cloned(),
    ))
}

/// The digest of a whole file held in memory, the digits at `at` read as zeros.
pub(crate) fn digest_bytes(bytes: &[u8], at: usize) -> [u8; HEX_LEN] {
    let mut h = Hasher::new();
    h.update(&bytes[..at]);
    h.update(&PLACEHOLDER);
    h.update(&bytes[at + HEX_LEN..]);
    h.hex()
}

/// Reads and checks the header of an open file: returns the length prefix, the raw header and
/// the parsed header.
pub(crate) fn read_header(
    path: &Path,
    file: &mut std::fs::File,
    file_len: u64,
) -> Result<([u8; 8], Vec<u8>, Header)> {
    let mut first = [0u8; 9];
    let got = read_up_to(file, &mut first).map_err(|e| ArtifactError::io(path, e))?;
    let n = header_len(path, &first[..got], file_len)?;
    let mut raw = vec![0u8; n];
    let have = got - 8;
    let head = have.min(n);
    raw[..head].copy_from_slice(&first[8..8 + head]);
    file.read_exact(&mut raw[head..])
        .map_err(|e| ArtifactError::io(path, e))?;
    if have > n {
        // An empty header (n == 0) followed by data: put the extra byte back.
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(8 + n as u64))
            .map_err(|e| ArtifactError::io(path, e))?;
    }
    let header = parse_header(path, &raw, file_len)?;
    let mut len = [0u8; 8];
    len.copy_from_slice(&first[..8]);
    Ok((len, raw, header))
}

fn read_up_to(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Checks that the artifact at `path` is whole: its header parses, its tensor data exactly
/// fills the file, and every byte matches the digest it records. Streams the file through
/// the hasher in 256 KiB reads (memory stays bounded whatever its size; reads that fit the
/// CPU's L2 cache go twice as fast as 4 MiB ones).
///
/// Errors: [`ArtifactError::Damaged`] when it is not whole, [`ArtifactError::NoDigest`] when
/// it records no digest (written before digests were recorded, or by another program),
/// [`ArtifactError::Format`] when it is not a safetensors file, [`ArtifactError::Io`] when it
/// cannot be read.
///
/// Speed, measured on the project's 2-core development machine (AMD EPYC VM, shared with other
/// builds: load average about 10) on a 4.3 GB file in the page cache: 1.9–2.3 GB/s wall,
/// about 4.4 GB per CPU-second — a 4 GB view cache takes about 1 s of CPU. xxh3-128 alone
/// hashes about 5.7 GB per CPU-second there (memory-bound: the same with AVX2 enabled;
/// blake3 managed 1.1, sha256 about 1). A file that is not in the page cache goes at the
/// disk's speed.
pub fn verify(path: &Path) -> Result<()> {
    let mut file = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let file_len = file
        .metadata()
        .map_err(|e| ArtifactError::io(path, e))?
        .len();
    let (len, mut raw, header) = read_header(path, &mut file, file_len)?;
    let Some(recorded) = header.digest else {
        return Err(ArtifactError::NoDigest {
            path: path.to_path_buf(),
        });
    };
    let mut h = Hasher::new();
    h.update(&len);
    let at = recorded.offset - 8;
    raw[at..at + HEX_LEN].copy_from_slice(&PLACEHOLDER);
    h.update(&raw);
    drop(raw);
    let mut left = file_len - 8 - u64::from_le_bytes(len);
    let mut buf = vec![0u8; CHUNK];
    while left > 0 {
        let want = (left.min(CHUNK as u64)) as usize;
        let got =
            read_up_to(&mut file, &mut buf[..want]).map_err(|e| ArtifactError::io(path, e))?;
        if got == 0 {
            return Err(damaged(
                path,
                format!("truncated while being read ({left} bytes short)"),
                header.meta.get(KEY_STAGE).cloned(),
            ));
        }
        h.update(&buf[..got]);
        left -= got as u64;
    }
    compare(path, &recorded, h.hex(), &header.meta)
}

/// What identifies one version of a file: if none of it changed, neither did the bytes.
#[cfg(unix)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

#[cfg(unix)]
fn stamp(meta: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        len: meta.size(),
        mtime: (meta.mtime(), meta.mtime_nsec()),
        ctime: (meta.ctime(), meta.ctime_nsec()),
    }
}

/// Files this process verified, with the stamp they had.
#[cfg(unix)]
type Verified = std::collections::HashMap<std::path::PathBuf, Stamp>;

#[cfg(unix)]
fn verified() -> std::sync::MutexGuard<'static, Verified> {
    static VERIFIED: std::sync::OnceLock<std::sync::Mutex<Verified>> = std::sync::OnceLock::new();
    VERIFIED
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long before a verification a file must have been last modified for the verification to
/// be remembered: a later in-place change then gets a visibly different modification time,
/// however coarse the file system's clock.
const SETTLED: std::time::Duration = std::time::Duration::from_secs(2);

/// Records that the file at `path` verified, when its stamp did not change while it was read
/// (`before`, `after`) and it had settled before the reading `started`.
#[cfg(unix)]
pub(crate) fn remember(
    path: &Path,
    before: &std::fs::Metadata,
    after: &std::fs::Metadata,
    started: std::time::SystemTime,
) {
    let settled = before
        .modified()
        .ok()
        .and_then(|m| started.duration_since(m).ok())
        .is_some_and(|age| age > SETTLED);
    if settled && stamp(before) == stamp(after) {
        verified().insert(path.to_path_buf(), stamp(after));
    }
}

#[cfg(not(unix))]
pub(crate) fn remember(
    _path: &Path,
    _before: &std::fs::Metadata,
    _after: &std::fs::Metadata,
    _started: std::time::SystemTime,
) {
}

/// [`verify`], skipped when this process already verified the file and its identity, size,
/// modification and change times are the same (and it had not been modified for a couple of
/// seconds before it was verified, so a change since cannot hide behind a coarse clock).
/// What [`crate::check_fresh`] uses: a stage checks its inputs' freshness more than once.
pub(crate) fn verify_remembered(path: &Path) -> Result<()> {
    let before = std::fs::metadata(path).map_err(|e| ArtifactError::io(path, e))?;
    #[cfg(unix)]
    if verified().get(path) == Some(&stamp(&before)) {
        return Ok(());
    }
    let started = std::time::SystemTime::now();
    verify(path)?;
    if let Ok(after) = std::fs::metadata(path) {
        remember(path, &before, &after, started);
    }
    Ok(())
}
