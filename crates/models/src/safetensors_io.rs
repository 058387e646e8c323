//! Reading selected tensors from a safetensors file, checked, without reading the rest.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

use crate::error::{ModelError, Result};

/// The largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// Reads the tensors named in `specs` (name, expected shape) from the safetensors file at
/// `path` as `f32` tensors on `device`. Every tensor's presence, shape, dtype (F32, F16 or
/// BF16) and byte range is checked before any data is read; only the named tensors' bytes are
/// read, so a large file with other tensors costs little.
pub(crate) fn read_tensors(
    path: &Path,
    specs: &[(String, Vec<usize>)],
    device: &Device,
) -> Result<BTreeMap<String, Tensor>> {
    let io = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let not_st = |reason: String| ModelError::NotSafetensors {
        path: path.to_path_buf(),
        reason,
    };
    let mut file = File::open(path).map_err(io)?;
    let file_len = file.metadata().map_err(io)?.len();
    if file_len < 8 {
        return Err(not_st(format!(
            "the file is {file_len} bytes, too short for a safetensors header"
        )));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io)?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || header_len > file_len - 8 {
        return Err(not_st(format!(
            "its header length {header_len} exceeds the file's size ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io)?;
    let entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| not_st(format!("its header is not a JSON object: {e}")))?;
    let data_start = 8 + header_len;
    let data_len = file_len - data_start;

    let missing: Vec<&String> = specs
        .iter()
        .map(|(name, _)| name)
        .filter(|name| !entries.contains_key(*name))
        .collect();
    if let Some(first) = missing.first() {
        return Err(ModelError::MissingTensor {
            path: path.to_path_buf(),
            name: (*first).clone(),
            also_missing: missing.len() - 1,
        });
    }

    let mut infos = Vec::with_capacity(specs.len());
    for (name, expected) in specs {
        let info: TensorInfo = serde_json::from_value(entries[name].clone())
            .map_err(|e| not_st(format!("bad header entry for tensor `{name}`: {e}")))?;
        if info.shape != *expected {
            return Err(ModelError::ShapeMismatch {
                path: path.to_path_buf(),
                name: name.clone(),
                expected: expected.clone(),
                found: info.shape,
            });
        }
        let dtype = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(ModelError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    name: name.clone(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let (start, end) = info.data_offsets;
        let (start, end) = (start as u64, end as u64);
        let count: u64 = expected.iter().map(|&d| d as u64).product();
        if end < start || end - start != count * dtype.size_in_bytes() as u64 {
            return Err(not_st(format!(
                "tensor `{name}`'s byte range {start}..{end} does not match its shape {expected:?} and dtype {:?}",
                info.dtype
            )));
        }
        if end > data_len {
            return Err(not_st(format!(
                "tensor `{name}`'s data ({start}..{end}) lies past the end of the file (truncated?)"
            )));
        }
        infos.push((name, expected, dtype, start, end));
    }

    let mut tensors = BTreeMap::new();
    let mut buf = Vec::new();
    for (name, shape, dtype, start, end) in infos {
        file.seek(SeekFrom::Start(data_start + start)).map_err(io)?;
        buf.resize((end - start) as usize, 0);
        file.read_exact(&mut buf).map_err(io)?;
        let t = Tensor::from_raw_buffer(&buf, dtype, shape, device)?.to_dtype(DType::F32)?;
        tensors.insert(name.clone(), t);
    }
    Ok(tensors)
}
