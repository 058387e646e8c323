//! Streaming safetensors writer: memory stays bounded whatever the artifact size.
//!
//! The tensors' names, dtypes and shapes are declared up front (so the header can be written
//! first), then their data is appended in declaration order, in as many chunks as the caller
//! likes (typically one batch of rows at a time). `finish` checks that every byte arrived and
//! renames the temp file into place; dropping an unfinished writer leaves no file behind.
//!
//! The data digest (see [`crate::verify`]) cannot be known when the header is written: the
//! header records the placeholder `xxh3-128:000…0`, every byte written is hashed on the way
//! (with those zeros), and `finish` overwrites the 32 zeros with the digest in place — same
//! length, so nothing moves — before it fsyncs and renames. A file never reaches its final name
//! without its digest.

use crate::fresh::KEY_DATA_DIGEST;
use crate::integrity::{self, HEX_LEN, Hasher};
use crate::{ArtifactError, Metadata, Result};
use candle_core::{DType, Device, Tensor};
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

struct Slot {
    name: String,
    dtype: DType,
    shape: Vec<usize>,
    bytes: u64,
}

/// Writes one safetensors file incrementally; see the module docs.
pub struct StreamWriter {
    path: PathBuf,
    tmp: Option<BufWriter<tempfile::NamedTempFile>>,
    slots: Vec<Slot>,
    current: usize,
    written_in_current: u64,
    hasher: Hasher,
    /// Offset in the file of the digest's 32 hex digits.
    digest_at: u64,
}

fn st_dtype(path: &Path, dtype: DType) -> Result<&'static str> {
    Ok(match dtype {
        DType::F32 => "F32",
        DType::F16 => "F16",
        DType::BF16 => "BF16",
        DType::U32 => "U32",
        DType::U8 => "U8",
        DType::I64 => "I64",
        DType::F64 => "F64",
        other => {
            return Err(ArtifactError::Stream {
                path: path.to_path_buf(),
                reason: format!("dtype {other:?} is not supported by the streaming writer"),
            });
        }
    })
}

impl StreamWriter {
    /// Starts a file at `path` holding the declared `(name, dtype, shape)` tensors, in order.
    /// `meta` is stored with the data digest added (a digest key in it is replaced). Temp files
    /// of `path` that killed writers left behind are removed first (see
    /// [`crate::remove_stale_temps`]).
    pub fn create(
        path: &Path,
        tensors: &[(&str, DType, Vec<usize>)],
        meta: &Metadata,
    ) -> Result<Self> {
        let mut header = serde_json::Map::new();
        let mut offset = 0u64;
        let mut slots = Vec::new();
        for (name, dtype, shape) in tensors {
            let bytes = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
            header.insert(
                (*name).to_string(),
                serde_json::json!({
                    "dtype": st_dtype(path, *dtype)?,
                    "shape": shape,
                    "data_offsets": [offset, offset + bytes],
                }),
            );
            offset += bytes;
            slots.push(Slot {
                name: (*name).to_string(),
                dtype: *dtype,
                shape: shape.clone(),
                bytes,
            });
        }
        let mut meta = meta.clone();
        meta.insert(KEY_DATA_DIGEST.into(), integrity::placeholder_value());
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(&meta).expect("map"),
        );
        let mut json = serde_json::to_vec(&serde_json::Value::Object(header)).expect("json");
        while !json.len().is_multiple_of(8) {
            json.push(b' ');
        }
        let needle = integrity::digest_needle();
        let places: Vec<usize> = json
            .windows(needle.len())
            .enumerate()
            .filter(|(_, w)| *w == needle.as_bytes())
            .map(|(i, _)| i)
            .collect();
        let [place] = places[..] else {
            return Err(ArtifactError::Stream {
                path: path.to_path_buf(),
                reason: format!("the header holds {} digest keys, not 1", places.len()),
            });
        };
        let digest_at = (8 + place + needle.len()) as u64;
        let dir = crate::io::parent_dir(path);
        std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::io(&dir, e))?;
        // Best effort: a failed cleanup must not stop the write.
        let _ = crate::temp::remove_stale_temps(&dir, Some(path));
        let tmp = crate::temp::create_temp(&dir, path).map_err(|e| ArtifactError::io(&dir, e))?;
        let mut w = BufWriter::with_capacity(1 << 20, tmp);
        let len = (json.len() as u64).to_le_bytes();
        w.write_all(&len)
            .and_then(|_| w.write_all(&json))
            .map_err(|e| ArtifactError::io(path, e))?;
        let mut hasher = Hasher::new();
        hasher.update(&len);
        hasher.update(&json);
        let mut s = Self {
            path: path.to_path_buf(),
            tmp: Some(w),
            slots,
            current: 0,
            written_in_current: 0,
            hasher,
            digest_at,
        };
        s.skip_empty();
        Ok(s)
    }

    fn skip_empty(&mut self) {
        while self.current < self.slots.len()
            && self.written_in_current == self.slots[self.current].bytes
        {
            self.current += 1;
            self.written_in_current = 0;
        }
    }

    fn err(&self, reason: String) -> ArtifactError {
        ArtifactError::Stream {
            path: self.path.clone(),
            reason,
        }
    }

    /// Appends a chunk of tensor `name`'s data (row-major; converted to the declared dtype).
    /// Chunks must arrive in declaration order and may not overrun the declared size.
    pub fn append(&mut self, name: &str, chunk: &Tensor) -> Result<()> {
        let Some(slot) = self.slots.get(self.current) else {
            return Err(self.err(format!("`{name}`: all declared tensors are complete")));
        };
        if slot.name != name {
            return Err(self.err(format!(
                "got data for `{name}` while `{}` is still incomplete",
                slot.name
            )));
        }
        let dtype = slot.dtype;
        let tensor_err = |source| ArtifactError::Tensor {
            path: self.path.clone(),
            source,
        };
        let flat = chunk
            .to_device(&Device::Cpu)
            .and_then(|t| t.to_dtype(dtype))
            .and_then(|t| t.flatten_all())
            .map_err(tensor_err)?;
        let bytes: Vec<u8> = match dtype {
            DType::F32 => le_bytes(flat.to_vec1::<f32>(), |v| v.to_le_bytes()),
            DType::F16 => le_bytes(flat.to_vec1::<half::f16>(), |v| v.to_le_bytes()),
            DType::BF16 => le_bytes(flat.to_vec1::<half::bf16>(), |v| v.to_le_bytes()),
            DType::U32 => le_bytes(flat.to_vec1::<u32>(), |v| v.to_le_bytes()),
            DType::U8 => flat.to_vec1::<u8>(),
            DType::I64 => le_bytes(flat.to_vec1::<i64>(), |v| v.to_le_bytes()),
            DType::F64 => le_bytes(flat.to_vec1::<f64>(), |v| v.to_le_bytes()),
            _ => unreachable!("rejected in create"),
        }
        .map_err(|source| ArtifactError::Tensor {
            path: self.path.clone(),
            source,
        })?;
        let remaining = slot.bytes - self.written_in_current;
        if bytes.len() as u64 > remaining {
            return Err(self.err(format!(
                "`{name}`: chunk of {} bytes overruns the declared shape {:?} ({remaining} bytes left)",
                bytes.len(),
                slot.shape
            )));
        }
        let w = self.tmp.as_mut().expect("open until finish");
        w.write_all(&bytes)
            .map_err(|e| ArtifactError::io(&self.path, e))?;
        self.hasher.update(&bytes);
        self.written_in_current += bytes.len() as u64;
        self.skip_empty();
        Ok(())
    }

    /// Checks that every declared byte was written, writes the data digest into the header,
    /// flushes, fsyncs and renames into place.
    pub fn finish(mut self) -> Result<()> {
        if let Some(slot) = self.slots.get(self.current) {
            return Err(self.err(format!(
                "`{}` is incomplete ({} of {} bytes written)",
                slot.name, self.written_in_current, slot.bytes
            )));
        }
        let w = self.tmp.take().expect("open until finish");
        let mut tmp = w
            .into_inner()
            .map_err(|e| ArtifactError::io(&self.path, e.into_error()))?;
        let hex: [u8; HEX_LEN] = self.hasher.hex();
        let file = tmp.as_file_mut();
        file.seek(SeekFrom::Start(self.digest_at))
            .and_then(|_| file.write_all(&hex))
            .and_then(|_| file.sync_all())
            .map_err(|e| ArtifactError::io(&self.path, e))?;
        tmp.persist(&self.path)
            .map_err(|e| ArtifactError::io(&self.path, e.error))?;
        crate::io::sync_dir(&crate::io::parent_dir(&self.path));
        Ok(())
    }
}

fn le_bytes<T, const N: usize>(
    values: candle_core::Result<Vec<T>>,
    f: impl Fn(T) -> [u8; N],
) -> candle_core::Result<Vec<u8>> {
    Ok(values?.into_iter().flat_map(f).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_equals_saved() {
        let dir = tempfile::tempdir().unwrap();
        let feats = Tensor::arange(0f32, 24., &Device::Cpu)
            .unwrap()
            .reshape((4, 2, 3))
            .unwrap();
        let labels = Tensor::new(&[0u32, 1, 1, 0], &Device::Cpu).unwrap();
        let mut meta = Metadata::new();
        meta.insert("k".into(), "v".into());
        let p = dir.path().join("s.safetensors");
        let mut w = StreamWriter::create(
            &p,
            &[
                ("features", DType::F16, vec![4, 2, 3]),
                ("labels", DType::U32, vec![4]),
            ],
            &meta,
        )
        .unwrap();
        w.append("features", &feats.narrow(0, 0, 3).unwrap())
            .unwrap();
        w.append("features", &feats.narrow(0, 3, 1).unwrap())
            .unwrap();
        w.append("labels", &labels).unwrap();
        w.finish().unwrap();
        let (t, m) = crate::load(&p, &Device::Cpu).unwrap();
        assert_eq!(m["k"], "v");
        assert_eq!(t["features"].dtype(), DType::F16);
        let back = t["features"].to_dtype(DType::F32).unwrap();
        assert_eq!(
            back.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            feats.flatten_all().unwrap().to_vec1::<f32>().unwrap()
        );
        assert_eq!(t["labels"].to_vec1::<u32>().unwrap(), vec![0, 1, 1, 0]);
    }

    #[test]
    fn misuse_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.safetensors");
        let x = Tensor::zeros((2, 3), DType::F32, &Device::Cpu).unwrap();
        let mut w = StreamWriter::create(
            &p,
            &[("a", DType::F32, vec![2, 3]), ("b", DType::F32, vec![1])],
            &Metadata::new(),
        )
        .unwrap();
        assert!(w.append("b", &x).is_err(), "out of order");
        w.append("a", &x.narrow(0, 0, 1).unwrap()).unwrap();
        assert!(w.append("a", &x).is_err(), "overrun");
        let err = w.finish().unwrap_err();
        assert!(err.to_string().contains("`a` is incomplete"), "{err}");
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
