//! Convolution geometry shared by the algorithms.

/// The geometry of a stride-1, dilation-1 2-D convolution over NCHW data with an OIHW weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvShape {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Symmetric zero padding on every side.
    pub pad: usize,
}

impl ConvShape {
    /// Padded input height.
    pub fn hp(&self) -> usize {
        self.h + 2 * self.pad
    }

    /// Padded input width.
    pub fn wp(&self) -> usize {
        self.w + 2 * self.pad
    }

    /// Output height (`hp - kh + 1`).
    pub fn ho(&self) -> usize {
        self.hp() + 1 - self.kh
    }

    /// Output width (`wp - kw + 1`).
    pub fn wo(&self) -> usize {
        self.wp() + 1 - self.kw
    }

    /// Whether the shape produces a non-empty output.
    pub fn is_valid(&self) -> bool {
        self.n > 0
            && self.c > 0
            && self.o > 0
            && self.kh > 0
            && self.kw > 0
            && self.hp() >= self.kh
            && self.wp() >= self.kw
    }

    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> u64 {
        (self.n * self.o * self.ho() * self.wo()) as u64 * (self.c * self.kh * self.kw) as u64
    }

    /// The shape of the input-gradient convolution: the output gradient `[n, o, ho, wo]`
    /// convolved with the transposed, rotated kernel and padding `kh - 1 - pad`.
    ///
    /// Only meaningful for square kernels with `pad < kh`.
    pub fn transposed(&self) -> ConvShape {
        ConvShape {
            n: self.n,
            c: self.o,
            h: self.ho(),
            w: self.wo(),
            o: self.c,
            kh: self.kh,
            kw: self.kw,
            pad: self.kh - 1 - self.pad,
        }
    }
}

/// A raw pointer that may be shared across the threads of a parallel loop whose iterations write
/// disjoint elements.
#[derive(Clone, Copy)]
pub(crate) struct SharedMut(pub(crate) *mut f32);

// SAFETY: only used by parallel loops whose iterations write disjoint ranges.
unsafe impl Send for SharedMut {}
// SAFETY: as above.
unsafe impl Sync for SharedMut {}

impl SharedMut {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}
