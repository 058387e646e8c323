//! Where the report was made: the source commit and the machine.

use std::path::Path;
use std::process::Command;

/// The machine, as far as it can be told without special permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The CPU model (`/proc/cpuinfo`'s `model name`, or macOS' `machdep.cpu.brand_string`).
    pub cpu: String,
    /// Hardware threads available to this process.
    pub threads: usize,
    /// The GPU's name (from `nvidia-smi`), asked only when a stage recorded a CUDA device.
    pub gpu: Option<String>,
}

impl Machine {
    /// Describes this machine; `cuda_used` says whether any stage trained on a CUDA device.
    pub fn detect(cuda_used: bool) -> Self {
        Self {
            cpu: cpu_model().unwrap_or_else(|| "unknown CPU".into()),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            gpu: cuda_used.then(|| {
                command_line("nvidia-smi", &["--query-gpu=name", "--format=csv,noheader"])
                    .unwrap_or_else(|| {
                        "a CUDA GPU (name unknown: nvidia-smi did not answer)".into()
                    })
            }),
        }
    }

    /// `AMD EPYC 7B13, 2 threads; GPU: NVIDIA H100` (the GPU only when one was used).
    pub fn describe(&self) -> String {
        let mut s = format!("{}, {} threads", self.cpu, self.threads);
        if let Some(gpu) = &self.gpu {
            s.push_str("; GPU: ");
            s.push_str(gpu);
        }
        s
    }
}

/// The commit checked out in `dir` (`git rev-parse HEAD`), with `(uncommitted changes)` when
/// tracked files differ from it; `unknown` when git or the repository is unavailable.
pub fn git_commit(dir: &Path) -> String {
    let git = |args: &[&str]| {
        let mut full = vec!["-C", dir.to_str().unwrap_or(".")];
        full.extend_from_slice(args);
        command_output("git", &full)
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{commit} (uncommitted changes)")
            } else {
                commit
            }
        }
        _ => "unknown".into(),
    }
}

/// A command's trimmed standard output when it runs and succeeds.
fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The first non-empty line of a command's output.
fn command_line(program: &str, args: &[&str]) -> Option<String> {
    command_output(program, args)?
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

fn cpu_model() -> Option<String> {
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        let model = info.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            let key = key.trim();
            (key == "model name" || key == "Model" || key == "cpu model")
                .then(|| value.trim().to_string())
                .filter(|v| !v.is_empty())
        });
        if model.is_some() {
            return model;
        }
    }
    command_line("sysctl", &["-n", "machdep.cpu.brand_string"])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_the_machine() {
        let m = Machine {
            cpu: "Some CPU".into(),
            threads: 2,
            gpu: None,
        };
        assert_eq!(m.describe(), "Some CPU, 2 threads");
        let g = Machine {
            gpu: Some("NVIDIA H200".into()),
            ..m
        };
        assert_eq!(g.describe(), "Some CPU, 2 threads; GPU: NVIDIA H200");
        let here = Machine::detect(false);
        assert!(here.threads >= 1 && !here.cpu.is_empty() && here.gpu.is_none());
    }

    #[test]
    fn no_repository_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(&dir.path().join("absent")), "unknown");
    }
}
