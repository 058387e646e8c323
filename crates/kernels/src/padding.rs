//! Asymmetric zero padding and TensorFlow's "SAME" rule.

/// Zero padding on each side of a feature map, possibly different on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Padding {
    /// Rows of zeros above the map.
    pub top: usize,
    /// Rows of zeros below the map.
    pub bottom: usize,
    /// Columns of zeros left of the map.
    pub left: usize,
    /// Columns of zeros right of the map.
    pub right: usize,
}

impl Padding {
    /// The same padding `p` on every side.
    pub fn uniform(p: usize) -> Padding {
        Padding {
            top: p,
            bottom: p,
            left: p,
            right: p,
        }
    }

    /// TensorFlow's "SAME" padding of a `k` × `k` window with stride `stride` over an
    /// `h` × `w` map: per axis, `total = max((ceil(n / s) - 1) · s + k - n, 0)`, with the
    /// smaller half before (top, left) and the larger after.
    pub fn same(h: usize, w: usize, k: usize, stride: usize) -> Padding {
        let (top, bottom) = same_axis(h, k, stride);
        let (left, right) = same_axis(w, k, stride);
        Padding {
            top,
            bottom,
            left,
            right,
        }
    }

    /// The output size `(ho, wo)` of a `k` × `k` window with stride `stride` over an `h` × `w`
    /// map padded by `self`, or `None` when the padded map is smaller than the window or the
    /// stride is zero.
    pub fn output_size(
        &self,
        h: usize,
        w: usize,
        k: usize,
        stride: usize,
    ) -> Option<(usize, usize)> {
        let (hp, wp) = (h + self.top + self.bottom, w + self.left + self.right);
        if stride == 0 || k == 0 || hp < k || wp < k {
            return None;
        }
        Some(((hp - k) / stride + 1, (wp - k) / stride + 1))
    }
}

/// `(before, after)` of TensorFlow "SAME" padding along one axis of length `n`.
fn same_axis(n: usize, k: usize, stride: usize) -> (usize, usize) {
    let s = stride.max(1);
    let out = n.div_ceil(s);
    let total = ((out.max(1) - 1) * s + k).saturating_sub(n);
    (total / 2, total - total / 2)
}

/// How a frozen layer pads its input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PadRule {
    /// TensorFlow "SAME" padding, worked out for each input size ([`Padding::same`]).
    Same,
    /// The same padding for every input size.
    Fixed(Padding),
}

impl PadRule {
    /// The padding for an `h` × `w` input of a `k` × `k` window with stride `stride`.
    pub fn resolve(&self, h: usize, w: usize, k: usize, stride: usize) -> Padding {
        match *self {
            PadRule::Same => Padding::same(h, w, k, stride),
            PadRule::Fixed(p) => p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_matches_tensorflow() {
        // 224, k3, s2: out 112, total = 111·2 + 3 - 224 = 1 → (0, 1).
        assert_eq!(same_axis(224, 3, 2), (0, 1));
        assert_eq!(same_axis(112, 3, 1), (1, 1));
        assert_eq!(same_axis(56, 5, 2), (1, 2));
        assert_eq!(same_axis(28, 5, 1), (2, 2));
        assert_eq!(same_axis(7, 3, 2), (1, 1));
        assert_eq!(same_axis(1, 5, 1), (2, 2));
        let p = Padding::same(224, 224, 3, 2);
        assert_eq!(p.output_size(224, 224, 3, 2), Some((112, 112)));
        assert_eq!(Padding::default().output_size(2, 2, 3, 1), None);
    }
}
