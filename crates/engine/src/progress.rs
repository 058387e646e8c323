//! Keras-like console output: a progress bar per epoch, then one summary line.

use crate::history::EpochRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How much training prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Nothing (tests, embedding).
    Quiet,
    /// One summary line per epoch (Keras' `verbose=2`), for logs and non-terminals.
    Epochs,
    /// A progress bar with ETA, running loss and accuracy during each epoch (drawn on stderr
    /// when it is a terminal), then the summary line (Keras' `verbose=1`).
    #[default]
    Bar,
}

/// The console output of one epoch.
pub(crate) struct EpochProgress {
    verbosity: Verbosity,
    header: String,
    bar: Option<ProgressBar>,
}

impl EpochProgress {
    /// Starts epoch `epoch` of `epochs` (both 1-based) with `num_batches` batches, `done` of
    /// which are already done (a resumed epoch).
    pub(crate) fn start(
        verbosity: Verbosity,
        epoch: usize,
        epochs: usize,
        num_batches: usize,
        done: usize,
    ) -> Self {
        let header = format!("Epoch {epoch}/{epochs}");
        let bar = (verbosity == Verbosity::Bar).then(|| {
            let style = ProgressStyle::with_template(
                "{prefix} {pos:>5}/{len:5} [{bar:30}] - ETA: {eta:>4} - {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            let bar = ProgressBar::with_draw_target(
                Some(num_batches as u64),
                ProgressDrawTarget::stderr_with_hz(4),
            )
            .with_style(style)
            .with_prefix(header.clone())
            .with_position(done as u64);
            bar.reset_eta();
            bar
        });
        Self {
            verbosity,
            header,
            bar,
        }
    }

    /// Records that `done` batches are finished, with the running loss and accuracy.
    pub(crate) fn update(&self, done: usize, loss: f64, acc: f64) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("loss: {loss:.4} - acc: {acc:.4}"));
            bar.set_position(done as u64);
        }
    }

    /// Shows that validation is running.
    pub(crate) fn validating(&self) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} - validating", bar.message()));
        }
    }

    /// Clears the bar and prints the epoch's summary line:
    /// `Epoch 3/50 - 12.3s - loss: 0.5123 - acc: 0.7410 - val_loss: 0.4800 - val_acc: 0.7790`.
    pub(crate) fn finish(&self, record: &EpochRecord) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        if self.verbosity != Verbosity::Quiet {
            println!("{}", summary_line(&self.header, record));
        }
    }

    /// Clears the bar without a summary (interruption, error).
    pub(crate) fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// The summary line of an epoch.
pub(crate) fn summary_line(header: &str, record: &EpochRecord) -> String {
    format!(
        "{header} - {:.1}s - {}",
        record.seconds,
        record.metrics_line()
    )
}

/// Prints a note (keep-best, early stopping, interruption) unless quiet.
pub(crate) fn note(verbosity: Verbosity, text: &str) {
    if verbosity != Verbosity::Quiet {
        println!("{text}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_is_keras_like() {
        let r = EpochRecord {
            epoch: 3,
            loss: 0.51234,
            acc: 0.741,
            val_loss: Some(0.48),
            val_acc: Some(0.779),
            seconds: 12.34,
            val_seconds: None,
            lr: 1e-3,
        };
        assert_eq!(
            summary_line("Epoch 3/50", &r),
            "Epoch 3/50 - 12.3s - loss: 0.5123 - acc: 0.7410 - val_loss: 0.4800 - val_acc: 0.7790"
        );
    }
}
