//! Picks the convolution algorithm by shape and CPU features.

use crate::isa::Isa;
use crate::scratch::with_pooled;
use crate::shape::ConvShape;
use crate::{direct, wgrad_gemm, wgrad_winograd, winograd, winograd3};
use rayon::prelude::*;

/// A forward-convolution algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Implicit GEMM over padded-width columns ([`crate::direct`]).
    Direct,
    /// Winograd F(4×4, 3×3) ([`crate::winograd`]).
    Winograd,
    /// Winograd F(3×3, 3×3) for small maps ([`crate::winograd3`]).
    Winograd3,
}

impl Algorithm {
    /// A short name for reports: `winograd F4`, `winograd F3` or `direct`.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Direct => "direct",
            Algorithm::Winograd => "winograd F4",
            Algorithm::Winograd3 => "winograd F3",
        }
    }

    /// The algorithm the dispatch uses for `s` on this CPU.
    pub fn choose(s: &ConvShape) -> Algorithm {
        Self::choose_for(Isa::detect(), s)
    }

    /// The algorithm the dispatch would use for `s` with instruction set `isa` (which need not
    /// be the detected one: the tests and benchmarks compare every level).
    pub fn choose_for(isa: Isa, s: &ConvShape) -> Algorithm {
        // Winograd pays once the GEMMs dominate its transforms: enough input and output
        // channels to amortise them, and tiles that are not mostly padding.
        if winograd3::preferred(s) {
            Algorithm::Winograd3
        } else if winograd::supports(isa, s) && s.c >= 16 && s.o >= 16 && s.ho() >= 4 && s.wo() >= 4
        {
            Algorithm::Winograd
        } else {
            Algorithm::Direct
        }
    }
}

/// Forward convolution with the chosen algorithm: `x` [n, c, h, w], `weight` [o, c, kh, kw],
/// optional `bias` [o], optional fused ReLU; returns [n, o, ho, wo].
pub fn conv_forward(
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    conv_forward_with(Algorithm::choose(s), s, x, weight, bias, relu)
}

/// Forward convolution with a given algorithm (falls back to [`Algorithm::Direct`] when the
/// requested one cannot run `s` on this CPU).
pub fn conv_forward_with(
    algo: Algorithm,
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    conv_forward_isa(Isa::detect(), algo, s, x, weight, bias, relu)
}

/// [`conv_forward_with`] with an explicit instruction set instead of the detected one, so that
/// tests and benchmarks can run every level the CPU has in one process
/// (`LITTLEDATA_KERNELS_ISA` is read once per process).
///
/// # Panics
/// When the running CPU does not support `isa`.
pub fn conv_forward_isa(
    isa: Isa,
    algo: Algorithm,
    s: &ConvShape,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
) -> Vec<f32> {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    match algo {
        Algorithm::Winograd if winograd::supports(isa, s) => {
            winograd::forward(isa, s, x, weight, bias, relu)
        }
        Algorithm::Winograd3 if winograd3::supports(s) => {
            winograd3::forward(isa, s, x, weight, bias, relu)
        }
        _ => direct::forward(isa, s, x, weight, bias, relu),
    }
}

/// Input gradient of a square-kernel convolution with `pad < kh`: the convolution of the output
/// gradient `gy` [n, o, ho, wo] with the transposed, 180°-rotated kernel; returns [n, c, h, w].
pub fn conv_input_grad(s: &ConvShape, gy: &[f32], weight: &[f32]) -> Vec<f32> {
    let isa = Isa::detect();
    conv_input_grad_isa(
        isa,
        Algorithm::choose_for(isa, &s.transposed()),
        s,
        gy,
        weight,
    )
}

/// [`conv_input_grad`] with an explicit instruction set and forward algorithm (run on the
/// transposed problem [`ConvShape::transposed`]; falls back to [`Algorithm::Direct`] where
/// `algo` cannot run it).
///
/// # Panics
/// When the running CPU does not support `isa`.
pub fn conv_input_grad_isa(
    isa: Isa,
    algo: Algorithm,
    s: &ConvShape,
    gy: &[f32],
    weight: &[f32],
) -> Vec<f32> {
    let t = s.transposed();
    let (kh, kw) = (s.kh, s.kw);
    // The rotated kernel is working memory of every backward step: take it from the pool.
    with_pooled(s.c * s.o * kh * kw, |wt| {
        wt.par_chunks_mut(s.o * kh * kw)
            .enumerate()
            .for_each(|(c, row)| {
                for (o, dst) in row.chunks_exact_mut(kh * kw).enumerate() {
                    let src = &weight[(o * s.c + c) * kh * kw..][..kh * kw];
                    for (i, d) in dst.iter_mut().enumerate() {
                        *d = src[kh * kw - 1 - i];
                    }
                }
            });
        conv_forward_isa(isa, algo, &t, gy, wt, None, false)
    })
}

/// A weight-gradient algorithm for 3 × 3 convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightGradAlgorithm {
    /// Register-blocked dot products along output rows ([`crate::wgrad`]).
    RowDot,
    /// One packed GEMM of the gradient and the im2col matrix ([`crate::wgrad_gemm`]).
    Gemm,
    /// Winograd F(3×3, 3×3): 25 GEMMs over transformed tiles ([`crate::wgrad_winograd`]).
    Winograd,
}

impl WeightGradAlgorithm {
    /// A short name for reports: `row-dot`, `gemm` or `winograd F3`.
    pub fn name(self) -> &'static str {
        match self {
            WeightGradAlgorithm::RowDot => "row-dot",
            WeightGradAlgorithm::Gemm => "gemm",
            WeightGradAlgorithm::Winograd => "winograd F3",
        }
    }

    /// The algorithm the dispatch uses for `s`: Winograd for wide channel counts, the GEMM for
    /// short output rows, the row-dot kernel otherwise.
    pub fn choose(s: &ConvShape) -> WeightGradAlgorithm {
        if wgrad_winograd::preferred(s) {
            WeightGradAlgorithm::Winograd
        } else if wgrad_gemm::preferred(s) {
            WeightGradAlgorithm::Gemm
        } else {
            WeightGradAlgorithm::RowDot
        }
    }
}

/// Weight gradient of a 3 × 3 convolution from the input `x` and output gradient `gy`; with
/// `relu_out` (the output of a convolution with fused ReLU) the gradient is taken through the
/// ReLU. Returns [o, c, 3, 3].
pub fn conv_weight_grad(
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    conv_weight_grad_with(WeightGradAlgorithm::choose(s), s, x, gy, relu_out)
}

/// [`conv_weight_grad`] with a given algorithm.
pub fn conv_weight_grad_with(
    algo: WeightGradAlgorithm,
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    conv_weight_grad_isa(Isa::detect(), algo, s, x, gy, relu_out)
}

/// [`conv_weight_grad_with`] with an explicit instruction set instead of the detected one.
///
/// # Panics
/// When the running CPU does not support `isa`.
pub fn conv_weight_grad_isa(
    isa: Isa,
    algo: WeightGradAlgorithm,
    s: &ConvShape,
    x: &[f32],
    gy: &[f32],
    relu_out: Option<&[f32]>,
) -> Vec<f32> {
    assert!(isa.is_supported(), "{isa:?} is not supported by this CPU");
    match algo {
        WeightGradAlgorithm::RowDot => crate::wgrad::weight_grad(isa, s, x, gy, relu_out),
        WeightGradAlgorithm::Gemm => wgrad_gemm::weight_grad(isa, s, x, gy, relu_out),
        WeightGradAlgorithm::Winograd if wgrad_winograd::supports(s) => {
            wgrad_winograd::weight_grad(isa, s, x, gy, relu_out)
        }
        WeightGradAlgorithm::Winograd => crate::wgrad::weight_grad(isa, s, x, gy, relu_out),
    }
}
