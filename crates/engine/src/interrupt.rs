//! Stopping a run cleanly: a flag the training loop checks after every batch, set by Ctrl-C or
//! by the caller.

use crate::error::{EngineError, Result};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request to stop training after the current batch (the run then saves a checkpoint and
/// returns [`crate::FitStatus::Interrupted`]). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// A flag of its own, triggered only through [`Interrupt::trigger`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The process-wide flag set by Ctrl-C (SIGINT, and SIGTERM where the platform delivers it
    /// the same way). The handler is installed on the first call only, so this may be called
    /// any number of times. A second Ctrl-C while the first is being handled exits at once
    /// with status 130 (files are written atomically, so none is left half-written).
    pub fn ctrl_c() -> Result<Self> {
        static HANDLER: OnceLock<std::result::Result<Interrupt, String>> = OnceLock::new();
        HANDLER
            .get_or_init(|| {
                let flag = Interrupt::new();
                let shared = flag.clone();
                ctrlc::set_handler(move || {
                    if shared.0.swap(true, Ordering::SeqCst) {
                        eprintln!("\nInterrupted again: exiting now.");
                        std::process::exit(130);
                    }
                    eprintln!(
                        "\nInterrupt received: finishing the current batch, then saving a \
                         checkpoint (press Ctrl-C again to quit at once)."
                    );
                })
                .map(|()| flag)
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(EngineError::Signal)
    }

    /// Requests a stop.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was requested.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Clears the request (before starting another run in the same process).
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_the_flag_and_ctrl_c_installs_once() {
        let a = Interrupt::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        a.trigger();
        assert!(b.is_triggered());
        b.reset();
        assert!(!a.is_triggered());

        let first = Interrupt::ctrl_c().unwrap();
        let second = Interrupt::ctrl_c().unwrap();
        first.trigger();
        assert!(second.is_triggered());
        first.reset();
    }
}
