//! Atomic writes and safetensors reading/writing with metadata.

use crate::{ArtifactError, Metadata, Result, integrity};
use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
/// Parent folders are created.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Writes to `path` atomically through a closure that fills the temp file. If the closure fails,
/// the temp file is removed and `path` is untouched.
///
/// The bytes are written as given (JSON, PNG, downloads): a safetensors file written this way
/// records no data digest; tensors go through [`save`] or [`crate::StreamWriter`], which record
/// one. The temp file is named after `path` and this process (see
/// [`crate::remove_stale_temps`]).
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = parent_dir(path);
    std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::io(&dir, e))?;
    // What a killed writer of the same file left; best effort, as the write does not need it.
    let _ = crate::temp::remove_stale_temps(&dir, Some(path));
    let mut tmp = crate::temp::create_temp(&dir, path).map_err(|e| ArtifactError::io(&dir, e))?;
    fill(tmp.as_file_mut()).map_err(|e| ArtifactError::io(path, e))?;
    tmp.as_file_mut()
        .sync_all()
        .map_err(|e| ArtifactError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ArtifactError::io(path, e.error))?;
    sync_dir(&dir);
    Ok(())
}

/// The folder a file at `path` goes in (`.` for a bare name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename in `dir` durable where the platform allows; failure here is harmless.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

/// Saves named tensors with metadata as a safetensors file, atomically. Tensors are stored in
/// name order and the header is written with sorted keys, so equal inputs give equal bytes.
/// The file records the digest of its bytes (see [`crate::verify`]); a digest key in `meta`
/// (metadata read back from another artifact) is replaced.
pub fn save<'a, I, S>(path: &Path, tensors: I, meta: &Metadata) -> Result<()>
where
    I: IntoIterator<Item = (S, &'a Tensor)>,
    S: AsRef<str>,
{
    let mut named: Vec<(String, &Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| (n.as_ref().to_string(), t))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let decl: Vec<(&str, candle_core::DType, Vec<usize>)> = named
        .iter()
        .map(|(n, t)| (n.as_str(), t.dtype(), t.dims().to_vec()))
        .collect();
    let mut w = crate::StreamWriter::create(path, &decl, meta)?;
    for (name, t) in &named {
        w.append(name, t)?;
    }
    w.finish()
}

/// Loads every tensor of a safetensors file onto `device`, with its metadata.
///
/// The file is checked before any tensor is made: a broken header, a size that does not match
/// its tensor table, or bytes that do not match its recorded digest are
/// [`ArtifactError::Damaged`]. A file that records no digest (written before digests were
/// recorded, or by another program) loads after the structural checks alone.
pub fn load(path: &Path, device: &Device) -> Result<(BTreeMap<String, Tensor>, Metadata)> {
    let mut file = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let before = file.metadata().map_err(|e| ArtifactError::io(path, e))?;
    let started = std::time::SystemTime::now();
    let mut bytes = Vec::with_capacity(before.len() as usize);
    file.read_to_end(&mut bytes)
        .map_err(|e| ArtifactError::io(path, e))?;
    let file_len = bytes.len() as u64;
    let n = integrity::header_len(path, &bytes, file_len)?;
    let header = integrity::parse_header(path, &bytes[8..8 + n], file_len)?;
    if let Some(recorded) = &header.digest {
        let computed = integrity::digest_bytes(&bytes, recorded.offset);
        integrity::compare(path, recorded, computed, &header.meta)?;
        if let Ok(after) = file.metadata() {
            integrity::remember(path, &before, &after, started);
        }
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ArtifactError::Format {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let t = view.load(device).map_err(|source| ArtifactError::Tensor {
            path: path.to_path_buf(),
            source,
        })?;
        out.insert(name, t);
    }
    Ok((out, header.meta))
}

/// Loads the named tensors only (each must exist), with the file's metadata. The whole file
/// is checked as by [`load`].
pub fn load_tensors(
    path: &Path,
    names: &[&str],
    device: &Device,
) -> Result<(BTreeMap<String, Tensor>, Metadata)> {
    let (mut all, meta) = load(path, device)?;
    let mut out = BTreeMap::new();
    for &name in names {
        let t = all
            .remove(name)
            .ok_or_else(|| ArtifactError::MissingTensor {
                path: path.to_path_buf(),
                name: name.to_string(),
            })?;
        out.insert(name.to_string(), t);
    }
    Ok((out, meta))
}

/// Reads only the metadata of a safetensors file (the header, not the tensor data). The header
/// is checked (a valid tensor table whose data fills the file, a well-formed digest), the data
/// is not: [`crate::verify`] checks it.
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let mut f = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let file_len = f.metadata().map_err(|e| ArtifactError::io(path, e))?.len();
    let (_, _, header) = integrity::read_header(path, &mut f, file_len)?;
    Ok(header.meta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;

    fn sample() -> (Tensor, Tensor) {
        let a = Tensor::arange(0f32, 12., &Device::Cpu)
            .unwrap()
            .reshape((3, 4))
            .unwrap();
        let b = Tensor::new(&[1u32, 0, 1], &Device::Cpu).unwrap();
        (a, b)
    }

    #[test]
    fn roundtrip_with_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.safetensors");
        let (a, b) = sample();
        let mut meta = Metadata::new();
        meta.insert("stage".into(), "test".into());
        save(&p, [("features", &a), ("labels", &b)], &meta).unwrap();
        let (t, m) = load(&p, &Device::Cpu).unwrap();
        assert_eq!(m.get("stage").map(String::as_str), Some("test"));
        assert_eq!(
            t["features"].to_vec2::<f32>().unwrap(),
            a.to_vec2::<f32>().unwrap()
        );
        assert_eq!(t["labels"].dtype(), DType::U32);
        assert_eq!(read_metadata(&p).unwrap(), m);
        // Equal inputs give equal bytes (sorted header keys, name-ordered tensors).
        let q = dir.path().join("sub/b.safetensors");
        save(&q, [("labels", &b), ("features", &a)], &meta).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&q).unwrap());
        std::fs::remove_file(&q).unwrap();
        // No temp files are left behind.
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_write_leaves_destination_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keep.txt");
        atomic_write(&p, b"old").unwrap();
        let err = atomic_write_with(&p, |f| {
            f.write_all(b"half")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("keep.txt"), "{err}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn artifacts_are_not_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        atomic_write(&p, b"{}").unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_ne!(mode & 0o044, 0, "mode {mode:o}");
    }

    #[test]
    fn garbage_is_a_format_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, b"this is not a safetensors file at all").unwrap();
        let err = load(&p, &Device::Cpu).unwrap_err();
        assert!(matches!(err, ArtifactError::Format { .. }), "{err}");
        assert!(err.to_string().contains("bad.safetensors"));
        assert!(read_metadata(&p).is_err());
        std::fs::write(&p, b"").unwrap();
        assert!(read_metadata(&p).is_err());
    }

    #[test]
    fn missing_tensor_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let (a, _) = sample();
        save(&p, [("x", &a)], &Metadata::new()).unwrap();
        let err = load_tensors(&p, &["x", "y"], &Device::Cpu).unwrap_err();
        assert!(err.to_string().contains("missing tensor `y`"), "{err}");
    }
}
