//! Per-thread scratch memory, reused across calls so the hot loops never allocate (and never
//! page-fault on fresh memory).

use std::cell::RefCell;

thread_local! {
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with this thread's scratch buffer grown to at least `len` floats (contents
/// unspecified). `f` must not call back into `with_scratch` on the same thread.
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0.0);
            }
            f(&mut buf[..len])
        }
        // Re-entered (cannot happen with the crate's loops): fall back to a fresh buffer.
        Err(_) => f(&mut vec![0.0f32; len]),
    })
}
