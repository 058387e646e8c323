//! Temp files of killed writers are recognised and removed; those of live writers never are.

use artifact::{FOREIGN_TEMP_AGE, Metadata, StreamWriter, remove_stale_temps};
use candle_core::{DType, Device, Tensor};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

const CHILD_DIR: &str = "LITTLEDATA_ARTIFACT_TEST_CHILD_DIR";

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn start_writer(target: &Path) -> StreamWriter {
    let mut w = StreamWriter::create(
        target,
        &[("x", DType::F32, vec![1000, 100])],
        &Metadata::new(),
    )
    .unwrap();
    let chunk = Tensor::ones((10, 100), DType::F32, &Device::Cpu).unwrap();
    w.append("x", &chunk).unwrap();
    w
}

/// Not a test on its own: the body of the child process that
/// `a_killed_writer_leaves_a_temp_that_cleanup_removes` starts: it starts a write, says so,
/// and waits to be killed (without its environment variable it does nothing).
#[test]
fn child_writer_waits_to_be_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let target = PathBuf::from(dir).join("big.safetensors");
    let _w = start_writer(&target);
    println!("child-writer-ready");
    loop {
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn kill_child_mid_write(dir: &Path) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_writer_waits_to_be_killed",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let ready = std::io::BufReader::new(out)
        .lines()
        .any(|l| l.unwrap().contains("child-writer-ready"));
    assert!(ready, "the child never started writing");
    child.kill().unwrap(); // SIGKILL: no destructor runs, the temp stays.
    child.wait().unwrap();
}

#[cfg(target_os = "linux")]
#[test]
fn a_killed_writer_leaves_a_temp_that_cleanup_removes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("big.safetensors");
    kill_child_mid_write(dir.path());
    let left = names(dir.path());
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(".tmp-big.safetensors~"), "{left:?}");
    assert!(left[0].ends_with(".partial"), "{left:?}");

    // Another file's live temp stays; the killed writer's goes.
    let other = start_writer(&dir.path().join("other.safetensors"));
    assert_eq!(names(dir.path()).len(), 2);
    let removed = remove_stale_temps(dir.path(), Some(&target)).unwrap();
    assert_eq!(removed, vec![dir.path().join(&left[0])]);
    assert_eq!(names(dir.path()).len(), 1);
    // Live writers' temps (this process's) are never removed, target or not.
    let live = start_writer(&target);
    assert_eq!(names(dir.path()).len(), 2);
    assert!(remove_stale_temps(dir.path(), None).unwrap().is_empty());
    assert!(
        remove_stale_temps(dir.path(), Some(&target))
            .unwrap()
            .is_empty()
    );
    assert_eq!(names(dir.path()).len(), 2);
    drop(other);
    drop(live);
    assert!(names(dir.path()).is_empty());

    // The next writer of the same target cleans up after a killed one by itself.
    kill_child_mid_write(dir.path());
    assert_eq!(names(dir.path()).len(), 1);
    let mut w =
        StreamWriter::create(&target, &[("y", DType::U8, vec![2])], &Metadata::new()).unwrap();
    w.append("y", &Tensor::new(&[1u8, 2], &Device::Cpu).unwrap())
        .unwrap();
    w.finish().unwrap();
    assert_eq!(names(dir.path()), vec!["big.safetensors".to_string()]);
}

fn touch(path: &Path, age: Duration) {
    let f = std::fs::File::create(path).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn other_hosts_temps_go_only_when_long_idle() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let old = FOREIGN_TEMP_AGE + Duration::from_secs(60);
    let recent = Duration::from_secs(60);
    let idle = ".tmp-a.safetensors~elsewhere.example~4026531836~4242~99~Ab12Cd.partial";
    let busy = ".tmp-a.safetensors~elsewhere.example~4026531836~4243~99~Ef34Gh.partial";
    let idle_b = ".tmp-b.safetensors~elsewhere.example~4026531836~4244~99~Ij56Kl.partial";
    let anonymous_old = ".tmp-Mn78Op.partial";
    let anonymous_new = ".tmp-Qr90St.partial";
    touch(&d.join(idle), old);
    touch(&d.join(busy), recent);
    touch(&d.join(idle_b), old);
    touch(&d.join(anonymous_old), old);
    touch(&d.join(anonymous_new), recent);
    // Never touched: not temp names, whatever their age.
    for other in [
        "a.safetensors",
        ".tmp-a.safetensors",
        "x.partial",
        ".tmp-~~~.partial",
    ] {
        touch(&d.join(other), old);
    }
    std::fs::create_dir(d.join(".tmp-Uv12Wx.partial")).unwrap();

    let removed = remove_stale_temps(d, Some(&d.join("a.safetensors"))).unwrap();
    assert_eq!(removed, vec![d.join(idle)]);
    let removed = remove_stale_temps(d, None).unwrap();
    assert_eq!(removed, vec![d.join(anonymous_old), d.join(idle_b)]);
    let mut left = names(d);
    left.retain(|n| n.starts_with(".tmp-") && n.ends_with(".partial"));
    let mut expected = vec![
        busy.to_string(),
        anonymous_new.to_string(),
        ".tmp-Uv12Wx.partial".to_string(),
        ".tmp-~~~.partial".to_string(),
    ];
    expected.sort();
    assert_eq!(left, expected);
    assert!(d.join("a.safetensors").exists());
    // A missing folder holds nothing to remove.
    assert!(
        remove_stale_temps(&d.join("nope"), None)
            .unwrap()
            .is_empty()
    );
}
