//! How a binary under test ended.

use std::fmt::Debug;
use std::path::PathBuf;
use std::process::Output;

/// The workspace binary `name` of the build running the tests (`target/<profile>/<name>`, next
/// to the test executable's `deps/` folder). `cargo test --workspace` builds every stage
/// binary before it runs any test; a test run of one package alone may not, and then this
/// panics saying how to build it.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test executable lies in target/<profile>/deps");
    let path = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "{} is not built; run the tests with `cargo test --workspace` (or `cargo build --bin \
         {name}` first)",
        path.display()
    );
    path
}

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
