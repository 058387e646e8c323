//! Atomic writes and safetensors reading/writing with metadata.

use crate::{ArtifactError, Metadata, Result};
use candle_core::safetensors::Load;
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// Writes `bytes` to `path` atomically (temp file in the same folder, fsync, rename).
/// Parent folders are created.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with(path, |f| f.write_all(bytes))
}

/// Writes to `path` atomically through a closure that fills the temp file. If the closure fails,
/// the temp file is removed and `path` is untouched.
pub fn atomic_write_with(
    path: &Path,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::io(&dir, e))?;
    let mut tmp = temp_builder()
        .tempfile_in(&dir)
        .map_err(|e| ArtifactError::io(&dir, e))?;
    fill(tmp.as_file_mut()).map_err(|e| ArtifactError::io(path, e))?;
    tmp.as_file_mut()
        .sync_all()
        .map_err(|e| ArtifactError::io(path, e))?;
    tmp.persist(path)
        .map_err(|e| ArtifactError::io(path, e.error))?;
    // Make the rename itself durable where the platform allows; failure here is harmless.
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A temp-file builder for atomic writes: hidden `.tmp-*.partial` names, and on Unix the mode
/// of any file a program creates (0666 less the umask) rather than temp files' owner-only 0600.
pub(crate) fn temp_builder() -> tempfile::Builder<'static, 'static> {
    let mut b = tempfile::Builder::new();
    b.prefix(".tmp-").suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b
}

/// Saves named tensors with metadata as a safetensors file, atomically. Tensors are stored in
/// name order and the header is written with sorted keys, so equal inputs give equal bytes.
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
pub fn load(path: &Path, device: &Device) -> Result<(BTreeMap<String, Tensor>, Metadata)> {
    let bytes = std::fs::read(path).map_err(|e| ArtifactError::io(path, e))?;
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
    let meta = header_metadata(path, &bytes)?;
    Ok((out, meta))
}

/// Loads the named tensors only (each must exist), with the file's metadata.
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

/// Reads only the metadata of a safetensors file (the header, not the tensor data).
pub fn read_metadata(path: &Path) -> Result<Metadata> {
    let mut f = std::fs::File::open(path).map_err(|e| ArtifactError::io(path, e))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len).map_err(|_| ArtifactError::Format {
        path: path.to_path_buf(),
        reason: "shorter than a safetensors header".into(),
    })?;
    let n = u64::from_le_bytes(len);
    let file_len = f.metadata().map_err(|e| ArtifactError::io(path, e))?.len();
    if n > 100 * 1024 * 1024 || n + 8 > file_len {
        return Err(ArtifactError::Format {
            path: path.to_path_buf(),
            reason: format!("header length {n} does not fit a {file_len}-byte file"),
        });
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)
        .map_err(|e| ArtifactError::io(path, e))?;
    parse_header_metadata(path, &header)
}

fn header_metadata(path: &Path, bytes: &[u8]) -> Result<Metadata> {
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    parse_header_metadata(path, &bytes[8..8 + n])
}

fn parse_header_metadata(path: &Path, header: &[u8]) -> Result<Metadata> {
    let value: serde_json::Value =
        serde_json::from_slice(header).map_err(|e| ArtifactError::Format {
            path: path.to_path_buf(),
            reason: format!("header is not JSON: {e}"),
        })?;
    let mut meta = Metadata::new();
    if let Some(m) = value.get("__metadata__").and_then(|m| m.as_object()) {
        for (k, v) in m {
            if let Some(s) = v.as_str() {
                meta.insert(k.clone(), s.to_string());
            }
        }
    }
    Ok(meta)
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
