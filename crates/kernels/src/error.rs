//! Errors raised by the kernels' custom ops.

/// Why a kernel refused its arguments.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// An operand was not laid out contiguously (the entry points make operands contiguous, so
    /// this only happens when an op is applied by hand).
    #[error("{op}: operand `{operand}` must be contiguous in memory")]
    NotContiguous {
        /// The op that refused the operand.
        op: &'static str,
        /// Which operand.
        operand: &'static str,
    },
    /// An operand had the wrong rank or dimensions.
    #[error("{op}: operand `{operand}` has shape {got:?}, expected {expected}")]
    Shape {
        /// The op that refused the operand.
        op: &'static str,
        /// Which operand.
        operand: &'static str,
        /// The dimensions it had.
        got: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// An operand was not `f32`.
    #[error("{op}: operand `{operand}` has dtype {got}, only f32 is supported")]
    DType {
        /// The op that refused the operand.
        op: &'static str,
        /// Which operand.
        operand: &'static str,
        /// Its dtype.
        got: String,
    },
}

impl From<KernelError> for candle_core::Error {
    fn from(e: KernelError) -> Self {
        candle_core::Error::wrap(e)
    }
}
