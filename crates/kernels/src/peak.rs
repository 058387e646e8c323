//! The machine's measured single-precision peak.
//!
//! Each thread runs a register-only loop of independent fused multiply-adds (24 accumulator
//! chains, enough to cover the FMA latency on every current x86 core) at the widest supported
//! vector width; the peak is the total FLOP count (2 per lane per FMA) over the wall time.

use crate::isa::Isa;
use std::time::Instant;

/// Measured peak GFLOP/s of `threads` threads each running the FMA loop for about `seconds`.
pub fn peak_gflops(threads: usize, seconds: f64) -> f64 {
    let isa = Isa::detect();
    let threads = threads.max(1);
    // Calibrate the iteration count on one thread.
    let mut iters = 1u64 << 16;
    loop {
        let t = Instant::now();
        std::hint::black_box(fma_loop(isa, iters));
        let dt = t.elapsed().as_secs_f64();
        if dt > 0.05 {
            iters = ((iters as f64) * seconds / dt).max(1.0) as u64;
            break;
        }
        iters *= 4;
    }
    let start = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| std::hint::black_box(fma_loop(isa, iters)));
        }
    });
    let dt = start.elapsed().as_secs_f64();
    let flops_per_iter = 24.0 * lanes(isa) as f64 * 2.0;
    iters as f64 * flops_per_iter * threads as f64 / dt / 1e9
}

fn lanes(isa: Isa) -> usize {
    match isa {
        Isa::Avx512 => 16,
        Isa::Avx2 => 8,
        Isa::Portable => 4,
    }
}

fn fma_loop(isa: Isa, iters: u64) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the level was detected as supported.
        Isa::Avx512 => unsafe { x86::avx512(iters) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::avx2(iters) },
        _ => portable(iters),
    }
}

fn portable(iters: u64) -> f32 {
    let mut acc = [[0.0f32; 4]; 24];
    let a = std::hint::black_box(1.000_000_1f32);
    let b = std::hint::black_box(0.999_999_9f32);
    for _ in 0..iters {
        for r in acc.iter_mut() {
            for v in r.iter_mut() {
                *v = v.mul_add(a, b);
            }
        }
    }
    acc.iter().flatten().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
    pub(super) fn avx512(iters: u64) -> f32 {
        let mut acc = [_mm512_setzero_ps(); 24];
        let a = _mm512_set1_ps(std::hint::black_box(1.000_000_1));
        let b = _mm512_set1_ps(std::hint::black_box(0.999_999_9));
        for _ in 0..iters {
            for r in acc.iter_mut() {
                *r = _mm512_fmadd_ps(*r, a, b);
            }
        }
        let mut s = _mm512_setzero_ps();
        for r in acc {
            s = _mm512_add_ps(s, r);
        }
        _mm512_reduce_add_ps(s)
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn avx2(iters: u64) -> f32 {
        let mut acc = [_mm256_setzero_ps(); 12];
        let a = _mm256_set1_ps(std::hint::black_box(1.000_000_1));
        let b = _mm256_set1_ps(std::hint::black_box(0.999_999_9));
        for _ in 0..2 * iters {
            for r in acc.iter_mut() {
                *r = _mm256_fmadd_ps(*r, a, b);
            }
        }
        let mut s = _mm256_setzero_ps();
        for r in acc {
            s = _mm256_add_ps(s, r);
        }
        let mut out = [0.0f32; 8];
        // SAFETY: `out` holds 8 floats.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
        out.iter().sum()
    }
}
