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

/// Buffers larger than this are freed after use instead of being kept for the next call.
const POOL_MAX_FLOATS: usize = 64 << 20;

static POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// Runs `f` with a buffer of at least `len` floats (contents unspecified) taken from a
/// process-wide pool, for working memory that the threads of one parallel call share. Buffers of
/// up to 256 MiB go back to the pool afterwards, so repeated calls of the same shape neither
/// allocate nor fault in fresh pages.
pub(crate) fn with_pooled<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let taken = {
        let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
        // The smallest buffer that fits, else the largest (grown below).
        let fit = (0..pool.len())
            .filter(|&i| pool[i].len() >= len)
            .min_by_key(|&i| pool[i].len())
            .or_else(|| (0..pool.len()).max_by_key(|&i| pool[i].len()));
        fit.map(|i| pool.swap_remove(i))
    };
    let mut buf = taken.unwrap_or_default();
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let out = f(&mut buf[..len]);
    if buf.len() <= POOL_MAX_FLOATS {
        POOL.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    }
    out
}
