//! How a binary under test ended.

use std::fmt::Debug;
use std::process::Output;

/// stdout and stderr of a finished command, as text.
pub fn output_text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that the command `what` (its arguments, say) succeeded; returns its stdout.
pub fn expect_success(what: &impl Debug, out: &Output) -> String {
    let (stdout, stderr) = output_text(out);
    assert!(out.status.success(), "{what:?} failed:\n{stdout}\n{stderr}");
    stdout
}

/// Asserts that the command `what` failed cleanly: status 1, a line starting `error: ` on
/// stderr, and no panic; returns its stdout and stderr.
pub fn expect_failure(what: &impl Debug, out: &Output) -> (String, String) {
    let (stdout, stderr) = output_text(out);
    assert_eq!(out.status.code(), Some(1), "{what:?}:\n{stdout}\n{stderr}");
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "{what:?}: no error line:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what:?}:\n{stderr}");
    (stdout, stderr)
}
