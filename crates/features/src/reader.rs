//! Reading rows of a tensor from a safetensors file, a chunk at a time, so that files larger
//! than memory (merged shards of a big dataset) can be copied or scanned.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::error::{FeaturesError, Result};

/// The largest header accepted (the format's own limit).
const MAX_HEADER: u64 = 100_000_000;

#[derive(Debug, Clone)]
struct Entry {
    dtype: DType,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

/// An open safetensors file whose tensors can be read row by row (rows along the first
/// dimension).
#[derive(Debug)]
pub struct RowReader {
    path: PathBuf,
    file: File,
    data_start: u64,
    entries: BTreeMap<String, Entry>,
}

fn parse_dtype(s: &str) -> Option<DType> {
    Some(match s {
        "F32" => DType::F32,
        "F16" => DType::F16,
        "BF16" => DType::BF16,
        "U32" => DType::U32,
        "U8" => DType::U8,
        "I64" => DType::I64,
        "F64" => DType::F64,
        _ => return None,
    })
}

impl RowReader {
    /// Opens `path` and reads its header, checking every tensor's dtype, shape and byte range.
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |reason: String| FeaturesError::features(path, reason);
        let mut file = File::open(path).map_err(FeaturesError::io(path))?;
        let file_len = file.metadata().map_err(FeaturesError::io(path))?.len();
        let mut len = [0u8; 8];
        if file_len < 8 {
            return Err(bad(
                "not a safetensors file (shorter than its header)".into()
            ));
        }
        file.read_exact(&mut len).map_err(FeaturesError::io(path))?;
        let header_len = u64::from_le_bytes(len);
        if header_len > MAX_HEADER || header_len > file_len - 8 {
            return Err(bad(format!(
                "not a safetensors file (header length {header_len} in a {file_len}-byte file)"
            )));
        }
        let mut header = vec![0u8; header_len as usize];
        file.read_exact(&mut header)
            .map_err(FeaturesError::io(path))?;
        let json: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
            .map_err(|e| bad(format!("not a safetensors file (header: {e})")))?;
        let data_start = 8 + header_len;
        let data_len = file_len - data_start;
        let mut entries = BTreeMap::new();
        for (name, info) in json {
            if name == "__metadata__" {
                continue;
            }
            let dtype_name = info["dtype"].as_str().unwrap_or_default();
            let dtype = parse_dtype(dtype_name).ok_or_else(|| {
                bad(format!(
                    "tensor `{name}` has unsupported dtype `{dtype_name}`"
                ))
            })?;
            let shape: Vec<usize> = serde_json::from_value(info["shape"].clone())
                .map_err(|e| bad(format!("tensor `{name}`: bad shape: {e}")))?;
            let [start, end]: [u64; 2] = serde_json::from_value(info["data_offsets"].clone())
                .map_err(|e| bad(format!("tensor `{name}`: bad data offsets: {e}")))?;
            let expected = shape.iter().product::<usize>() as u64 * dtype.size_in_bytes() as u64;
            if end < start || end - start != expected || end > data_len {
                return Err(bad(format!(
                    "tensor `{name}`: bytes {start}..{end} do not fit shape {shape:?} {dtype:?} \
                     in a file with {data_len} data bytes (truncated?)"
                )));
            }
            entries.insert(
                name,
                Entry {
                    dtype,
                    shape,
                    start,
                    end,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            file,
            data_start,
            entries,
        })
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| FeaturesError::features(&self.path, format!("missing tensor `{name}`")))
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.shape)
    }

    /// The dtype of tensor `name`.
    pub fn dtype(&self, name: &str) -> Result<DType> {
        Ok(self.entry(name)?.dtype)
    }

    /// Rows `rows` of tensor `name` (along its first dimension), on the CPU.
    pub fn read_rows(&mut self, name: &str, rows: std::ops::Range<usize>) -> Result<Tensor> {
        let e = self.entry(name)?.clone();
        let n = e.shape.first().copied().unwrap_or(0);
        if rows.start > rows.end || rows.end > n {
            return Err(FeaturesError::features(
                &self.path,
                format!(
                    "rows {}..{} of `{name}`, which has {n}",
                    rows.start, rows.end
                ),
            ));
        }
        let row_bytes = if n == 0 {
            0
        } else {
            (e.end - e.start) / n as u64
        };
        let offset = self.data_start + e.start + rows.start as u64 * row_bytes;
        let mut buf = vec![0u8; (rows.len() as u64 * row_bytes) as usize];
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.read_exact(&mut buf))
            .map_err(FeaturesError::io(&self.path))?;
        let mut shape = e.shape.clone();
        if let Some(first) = shape.first_mut() {
            *first = rows.len();
        }
        Tensor::from_raw_buffer(&buf, e.dtype, &shape, &Device::Cpu).map_err(FeaturesError::tensor(
            format!("{}: reading `{name}`", self.path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_row_slices_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.safetensors");
        let x = Tensor::arange(0f32, 24.0, &Device::Cpu)
            .unwrap()
            .reshape((4, 2, 3))
            .unwrap();
        let l = Tensor::new(&[3u32, 1, 4, 1], &Device::Cpu).unwrap();
        artifact::save(&p, [("features", &x), ("labels", &l)], &Default::default()).unwrap();
        let mut r = RowReader::open(&p).unwrap();
        assert_eq!(r.shape("features").unwrap(), [4, 2, 3]);
        let rows = r.read_rows("features", 1..3).unwrap();
        assert_eq!(rows.dims(), [2, 2, 3]);
        assert_eq!(
            rows.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            (6..18).map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(
            r.read_rows("labels", 2..4)
                .unwrap()
                .to_vec1::<u32>()
                .unwrap(),
            [4, 1]
        );
        assert!(r.read_rows("labels", 3..5).is_err());
        let err = r.read_rows("nope", 0..1).unwrap_err().to_string();
        assert!(
            err.contains("a.safetensors") && err.contains("nope"),
            "{err}"
        );

        std::fs::write(&p, b"not a safetensors file, not at all").unwrap();
        let err = RowReader::open(&p).unwrap_err().to_string();
        assert!(
            err.contains("a.safetensors") && err.contains("not a safetensors"),
            "{err}"
        );
        // Truncated data.
        artifact::save(&p, [("features", &x)], &Default::default()).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        std::fs::write(&p, &bytes[..bytes.len() - 8]).unwrap();
        let err = RowReader::open(&p).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
    }
}
