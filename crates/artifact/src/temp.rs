//! Temp files that say whose they are, and the cleanup of those whose writer is gone.
//!
//! Every atomic write goes through a temp file in the destination folder named
//! `.tmp-<target>~<host>~<pid namespace>~<pid>~<process start>~<random>.partial`: the target
//! file's name (at most 96 bytes of it), the host name, and on Linux the pid namespace and the
//! start time (clock ticks since boot) of the writing process, so a reused pid is not mistaken
//! for the writer (elsewhere those two are 0). A writer killed with `kill -9` cannot remove its
//! temp; [`remove_stale_temps`] does, later, when its owner is provably gone.

use crate::{ArtifactError, Result};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// How long a temp file of another host (or of a writer this host cannot check) must have gone
/// unmodified before [`remove_stale_temps`] takes it for abandoned. A live writer modifies its
/// temp with every write.
pub const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(12 * 3600);

const PREFIX: &str = ".tmp-";
const SUFFIX: &str = ".partial";
const RAND_LEN: usize = 6;
const TAG_MAX: usize = 96;
const HOST_MAX: usize = 64;

/// Who writes a temp file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Owner {
    /// Host name (sanitized); `None` when it cannot be read.
    host: Option<String>,
    /// Pid namespace (inode of `/proc/self/ns/pid`), 0 when unknown.
    ns: u64,
    /// Process id.
    pid: u32,
    /// Process start time in clock ticks since boot, 0 when unknown.
    start: u64,
}

fn sanitize(s: &str, max: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '/' | '\\') {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

fn sanitize_host(s: &str) -> String {
    s.trim()
        .chars()
        .take(HOST_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The temp-name tag of a target file: its (sanitized, shortened) file name.
fn tag(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    sanitize(&name, TAG_MAX)
}

#[cfg(target_os = "linux")]
fn host_name() -> Option<String> {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let h = sanitize_host(&raw);
    (!h.is_empty()).then_some(h)
}

#[cfg(not(target_os = "linux"))]
fn host_name() -> Option<String> {
    let raw = std::env::var("HOSTNAME")
        .or_else(|_| std::env::var("COMPUTERNAME"))
        .ok()?;
    let h = sanitize_host(&raw);
    (!h.is_empty()).then_some(h)
}

#[cfg(target_os = "linux")]
fn pid_namespace() -> u64 {
    // "pid:[4026531836]"
    std::fs::read_link("/proc/self/ns/pid")
        .ok()
        .and_then(|l| {
            let s = l.to_string_lossy().into_owned();
            s.strip_prefix("pid:[")?.strip_suffix(']')?.parse().ok()
        })
        .unwrap_or(0)
}

#[cfg(not(target_os = "linux"))]
fn pid_namespace() -> u64 {
    0
}

/// State and start time of process `pid`, from `/proc/<pid>/stat`; `Ok(None)` when there is
/// no such process.
#[cfg(target_os = "linux")]
fn proc_stat(pid: u32) -> std::io::Result<Option<(char, u64)>> {
    let text = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // The command name (field 2) is in parentheses and may hold anything; fields 3.. follow
    // the last ')'. Field 3 is the state, field 22 the start time.
    let bad = || std::io::Error::other(format!("unexpected /proc/{pid}/stat"));
    let rest = text.rsplit_once(')').ok_or_else(bad)?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields
        .first()
        .and_then(|s| s.chars().next())
        .ok_or_else(bad)?;
    let start = fields
        .get(19)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok(Some((state, start)))
}

impl Owner {
    /// This process.
    fn current() -> &'static Owner {
        static OWNER: OnceLock<Owner> = OnceLock::new();
        OWNER.get_or_init(|| {
            let pid = std::process::id();
            #[cfg(target_os = "linux")]
            let start = proc_stat(pid).ok().flatten().map_or(0, |(_, s)| s);
            #[cfg(not(target_os = "linux"))]
            let start = 0;
            Owner {
                host: host_name(),
                ns: pid_namespace(),
                pid,
                start,
            }
        })
    }

    fn host_field(&self) -> &str {
        self.host.as_deref().unwrap_or("unknown-host")
    }

    /// Whether this process can tell if `self` still runs: same host and pid namespace, on a
    /// system with `/proc`.
    fn checkable_here(&self) -> bool {
        let me = Owner::current();
        cfg!(target_os = "linux") && me.host.is_some() && self.host == me.host && self.ns == me.ns
    }

    /// Whether the writing process still runs (only meaningful when [`Self::checkable_here`]).
    /// A zombie has exited; a process of that pid started at another time is another process.
    /// When the answer cannot be read, the writer is taken to be alive.
    #[cfg(target_os = "linux")]
    fn alive(&self) -> bool {
        match proc_stat(self.pid) {
            Ok(None) => false,
            Ok(Some((state, start))) => {
                !matches!(state, 'Z' | 'X') && (self.start == 0 || start == self.start)
            }
            Err(_) => true,
        }
    }

    #[cfg(not(target_os = "linux"))]
    fn alive(&self) -> bool {
        true
    }
}

/// The name prefix of this process's temp files for `target` (the random part and the suffix
/// follow).
fn prefix_for(target: &Path) -> String {
    let me = Owner::current();
    format!(
        "{PREFIX}{}~{}~{}~{}~{}~",
        tag(target),
        me.host_field(),
        me.ns,
        me.pid,
        me.start
    )
}

/// Creates the temp file for an atomic write of `target` in `dir`: a hidden `.tmp-….partial`
/// name that names the target and the writer (see the module docs), and on Unix the mode of
/// any file a program creates (0666 less the umask) rather than temp files' owner-only 0600.
pub(crate) fn create_temp(dir: &Path, target: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let prefix = prefix_for(target);
    let mut b = tempfile::Builder::new();
    b.prefix(&prefix).suffix(SUFFIX).rand_bytes(RAND_LEN);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// A temp file's name, parsed.
#[derive(Debug, PartialEq, Eq)]
enum TempName {
    /// Named by this crate: the target's tag and the writer.
    Owned { tag: String, owner: Owner },
    /// Named before temp files said whose they were (`.tmp-XXXXXX.partial`).
    Anonymous,
}

fn parse(name: &str) -> Option<TempName> {
    let middle = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    let alnum = |s: &str| s.len() == RAND_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric());
    if alnum(middle) {
        return Some(TempName::Anonymous);
    }
    let mut parts = middle.rsplitn(6, '~');
    let rand = parts.next()?;
    let start = parts.next()?.parse().ok()?;
    let pid = parts.next()?.parse().ok()?;
    let ns = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    let tag = parts.next()?;
    if !alnum(rand) || host.is_empty() {
        return None;
    }
    Some(TempName::Owned {
        tag: tag.to_string(),
        owner: Owner {
            host: (host != "unknown-host").then(|| host.to_string()),
            ns,
            pid,
            start,
        },
    })
}

/// Removes the temp files in `dir` that abandoned atomic writes left behind (a writer killed
/// with `kill -9`, a machine that lost power), and returns the paths removed. With `target`,
/// only the temps of that file (matched by its file name) are considered; without, every temp
/// in `dir`. A stage calls it for its outputs when it starts; [`crate::StreamWriter::create`]
/// calls it for its own target.
///
/// A temp is removed when its writer is provably gone:
/// - made on this host (and pid namespace) by a process that no longer runs, or whose pid now
///   belongs to a process started at another time;
/// - made on another host, on a system where this cannot be checked, or named before temps
///   said whose they were (only when `target` is `None`): unmodified for
///   [`FOREIGN_TEMP_AGE`].
///
/// A temp whose writer runs is never removed, so several processes (shards) may write into
/// one folder and clean it up at once. A missing `dir` holds nothing to remove.
pub fn remove_stale_temps(dir: &Path, target: Option<&Path>) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ArtifactError::io(dir, e)),
    };
    let wanted = target.map(tag);
    let now = SystemTime::now();
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ArtifactError::io(dir, e))?;
        let name = entry.file_name();
        let Some(parsed) = name.to_str().and_then(parse) else {
            continue;
        };
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(ArtifactError::io(&path, e)),
        };
        if !meta.is_file() {
            continue;
        }
        let idle = || {
            meta.modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > FOREIGN_TEMP_AGE)
        };
        let stale = match &parsed {
            TempName::Owned { tag, owner } => {
                if wanted.as_ref().is_some_and(|w| w != tag) {
                    continue;
                }
                if owner.checkable_here() {
                    !owner.alive()
                } else {
                    idle()
                }
            }
            TempName::Anonymous => wanted.is_none() && idle(),
        };
        if !stale {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Another cleaner (or the writer, renaming it) got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io(&path, e)),
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_roundtrip() {
        let target = Path::new("/x/features~odd.v1.safetensors");
        let name = format!("{}aB3xYz{SUFFIX}", prefix_for(target));
        assert!(
            name.starts_with(".tmp-features~odd.v1.safetensors~"),
            "{name}"
        );
        match parse(&name) {
            Some(TempName::Owned { tag: t, owner }) => {
                assert_eq!(t, tag(target));
                assert_eq!(&owner, Owner::current());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse(".tmp-Ab12Cd.partial"), Some(TempName::Anonymous));
        assert_eq!(parse("model.safetensors"), None);
        assert_eq!(parse(".tmp-a~h~x~1~2~abcdef.partial"), None, "bad ns");
        assert_eq!(
            parse(".tmp-a~h~1~1~2~abc.partial"),
            None,
            "short random part"
        );
    }

    #[test]
    fn long_and_odd_target_names_are_shortened() {
        let long = "é".repeat(200);
        let t = tag(Path::new(&long));
        assert!(t.len() <= TAG_MAX && t.starts_with('é'));
        assert_eq!(tag(Path::new("a\nb")), "a_b");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn same_host_temps_go_when_their_writer_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let me = Owner::current();
        let name = |o: &Owner, rand: &str| {
            format!(
                "{PREFIX}t.safetensors~{}~{}~{}~{}~{rand}{SUFFIX}",
                o.host_field(),
                o.ns,
                o.pid,
                o.start
            )
        };
        // Above any pid_max: no such process.
        let dead = Owner {
            pid: 4_000_000_000,
            ..me.clone()
        };
        let reused = Owner {
            start: me.start + 1,
            ..me.clone()
        };
        let other_ns = Owner {
            ns: me.ns + 1,
            ..dead.clone()
        };
        for (o, r) in [
            (me, "aaaaaa"),
            (&dead, "bbbbbb"),
            (&reused, "cccccc"),
            (&other_ns, "dddddd"),
        ] {
            std::fs::write(dir.path().join(name(o, r)), b"partial").unwrap();
        }
        let removed = remove_stale_temps(dir.path(), Some(Path::new("t.safetensors"))).unwrap();
        let mut expected = vec![
            dir.path().join(name(&dead, "bbbbbb")),
            dir.path().join(name(&reused, "cccccc")),
        ];
        expected.sort();
        assert_eq!(removed, expected);
        // Its own and another pid namespace's (recent: the age rule) stay.
        let mut left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec![name(me, "aaaaaa"), name(&other_ns, "dddddd")]);
    }

    #[test]
    fn this_process_is_alive() {
        let me = Owner::current();
        assert!(me.pid > 0);
        if cfg!(target_os = "linux") {
            assert!(me.checkable_here());
            assert!(me.alive());
            assert_ne!(me.start, 0);
            let reused = Owner {
                start: me.start + 1,
                ..me.clone()
            };
            assert!(
                !reused.alive(),
                "same pid, other start time: another process"
            );
        }
    }
}
