//! Runtime CPU feature detection.
//!
//! Every kernel has an AVX-512 variant, an AVX2 + FMA variant and a portable variant; the
//! dispatch picks the best one the running CPU supports. The environment variable
//! `LITTLEDATA_KERNELS_ISA` (`avx512`, `avx2` or `portable`) may lower the choice, e.g. to compare
//! implementations or to exercise the fallbacks; it can never select an instruction set the CPU
//! lacks.

use std::sync::OnceLock;

/// An instruction-set level the kernels are compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the baseline target.
    Portable,
    /// AVX2 with FMA (256-bit vectors).
    Avx2,
    /// AVX-512 F, VL, DQ and BW (512-bit vectors, 32 registers).
    Avx512,
}

impl Isa {
    /// Every level, from the most portable to the widest.
    pub const ALL: [Isa; 3] = [Isa::Portable, Isa::Avx2, Isa::Avx512];

    /// Whether the running CPU supports this level.
    pub fn is_supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                    && std::arch::is_x86_feature_detected!("avx512bw")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every level the running CPU supports, from the most portable to the widest (ignores
    /// `LITTLEDATA_KERNELS_ISA`: for tests and benchmarks that run each level in turn).
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_supported()).collect()
    }

    /// The widest supported level, lowered by `LITTLEDATA_KERNELS_ISA` when that names a
    /// narrower one. Detected once per process.
    pub fn detect() -> Isa {
        static DETECTED: OnceLock<Isa> = OnceLock::new();
        *DETECTED.get_or_init(|| {
            let best = Isa::ALL
                .into_iter()
                .rev()
                .find(|isa| isa.is_supported())
                .unwrap_or(Isa::Portable);
            let requested = std::env::var("LITTLEDATA_KERNELS_ISA")
                .ok()
                .and_then(|v| Isa::parse(&v));
            match requested {
                Some(r) if r < best => r,
                _ => best,
            }
        })
    }

    /// Parses `portable`, `avx2` or `avx512` (case-insensitive).
    pub fn parse(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The lower-case name (`portable`, `avx2`, `avx512`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }
}

/// Runs the lane-array kernel `$f(...)` compiled for the widest instruction set `$isa` allows,
/// so the compiler vectorises its array arithmetic accordingly.
macro_rules! dispatch_isa {
    ($isa:expr, $f:ident($($arg:expr),* $(,)?)) => {{
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx512bw")]
            unsafe fn wide(f: impl FnOnce()) {
                f()
            }
            #[target_feature(enable = "avx2,fma")]
            unsafe fn narrow(f: impl FnOnce()) {
                f()
            }
            match $isa {
                // SAFETY: the dispatch only selects instruction sets the CPU supports.
                $crate::isa::Isa::Avx512 => unsafe { wide(|| $f($($arg),*)) },
                // SAFETY: as above.
                $crate::isa::Isa::Avx2 => unsafe { narrow(|| $f($($arg),*)) },
                $crate::isa::Isa::Portable => $f($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = $isa;
            $f($($arg),*)
        }
    }};
}
pub(crate) use dispatch_isa;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips() {
        for isa in Isa::ALL {
            assert_eq!(Isa::parse(isa.name()), Some(isa));
        }
        assert_eq!(Isa::parse("sse9"), None);
    }

    #[test]
    fn detected_level_is_supported() {
        assert!(Isa::detect().is_supported());
        assert!(Isa::Portable.is_supported());
    }
}
