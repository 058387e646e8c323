//! Looking inside tensors: values, exact bits, raw bytes, differences.

use candle_core::{DType, Tensor};

/// A tensor's values as a flat `f32` vector (any float dtype is converted).
pub fn values(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// A float tensor's values as raw `f32` bits, for bit-for-bit comparisons.
pub fn bits(t: &Tensor) -> Vec<u32> {
    values(t).iter().map(|v| v.to_bits()).collect()
}

/// A tensor's raw little-endian bytes (`u32` tensors as they are, others as `f32`), for
/// bit-for-bit comparisons.
pub fn bytes(t: &Tensor) -> Vec<u8> {
    match t.dtype() {
        DType::U32 => t
            .flatten_all()
            .unwrap()
            .to_vec1::<u32>()
            .unwrap()
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        _ => values(t).iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// The largest absolute difference between two tensors of the same shape.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    max_abs(&a.sub(b).unwrap())
}

/// The largest absolute value of `t` (f32).
pub fn max_abs(t: &Tensor) -> f32 {
    t.abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}
