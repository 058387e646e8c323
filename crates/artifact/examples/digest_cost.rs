//! What the data digest costs: hashing speed, `verify` on a large file, and `save`/`load` of a
//! 100 MB artifact against reading it without the check.
//!
//! `cargo run -p artifact --release --example digest_cost -- [DIR] [VERIFY_MB]`
//! (DIR defaults to a temp folder, VERIFY_MB to 2048).

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Tensor};
use std::time::Instant;

/// CPU time of this thread so far (Linux; 0 elsewhere), to tell the cost apart from waiting
/// on a busy machine.
fn thread_cpu_s() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |ns| ns / 1e9)
}

/// Best wall time and mean CPU time (of this thread) of `runs` calls, and the last result.
fn best_of<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64, T) {
    let mut best = f64::INFINITY;
    let mut out = None;
    let c = thread_cpu_s();
    for _ in 0..runs {
        let t = Instant::now();
        let v = f();
        best = best.min(t.elapsed().as_secs_f64());
        out = Some(v);
    }
    let cpu = (thread_cpu_s() - c) / runs as f64;
    (best, cpu, out.expect("runs > 0"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let verify_mb: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2048);
    std::fs::create_dir_all(&dir)?;

    let rate = |bytes: f64, s: f64| bytes / s / 1e9;

    // Hashing alone, in memory.
    let buf: Vec<u8> = (0..(1usize << 30)).map(|i| (i * 31 % 251) as u8).collect();
    let gb = buf.len() as f64;
    let (s, cpu, _) = best_of(3, || xxhash_rust::xxh3::xxh3_128(&buf));
    println!(
        "xxh3-128 in memory: {:.2} GB/s wall (best of 3), {:.2} GB per CPU-second",
        rate(gb, s),
        rate(gb, cpu)
    );
    drop(buf);

    // save / load of a 100 MB artifact.
    let n = 100_000_000 / 4;
    let t = Tensor::arange(0u32, n as u32, &Device::Cpu)?.to_dtype(DType::F32)?;
    let p = dir.join("bench-100mb.safetensors");
    let meta = artifact::Provenance::new("bench", "cfg").to_metadata();
    let (save, save_cpu, r) = best_of(3, || artifact::save(&p, [("x", &t)], &meta));
    r?;
    let bytes = std::fs::read(&p)?;
    let (hash, hash_cpu, _) = best_of(7, || xxhash_rust::xxh3::xxh3_128(&bytes));
    drop(bytes);
    let (load, load_cpu, r) = best_of(7, || artifact::load(&p, &Device::Cpu));
    r?;
    // What `load` did before: read, parse, make tensors; no digest.
    let (plain, plain_cpu, r) = best_of(7, || -> Result<usize, Box<dyn std::error::Error>> {
        let bytes = std::fs::read(&p)?;
        let st = safetensors::SafeTensors::deserialize(&bytes)?;
        let mut k = 0;
        for (_, v) in st.tensors() {
            k += v.load(&Device::Cpu)?.elem_count();
        }
        Ok(k)
    });
    r?;
    let (ver, ver_cpu, r) = best_of(7, || artifact::verify(&p));
    r?;
    let (sha, sha_cpu, r) = best_of(3, || artifact::sha256_file(&p));
    r?;
    let ms = |s: f64| s * 1e3;
    println!("100 MB artifact, ms (best wall / mean CPU):");
    println!(
        "  save {:.0} / {:.0}, of which hashing {:.1} / {:.1}",
        ms(save),
        ms(save_cpu),
        ms(hash),
        ms(hash_cpu)
    );
    println!(
        "  load {:.0} / {:.0}; unchecked as before {:.0} / {:.0}",
        ms(load),
        ms(load_cpu),
        ms(plain),
        ms(plain_cpu)
    );
    println!(
        "  verify {:.0} / {:.0}; sha256_file {:.0} / {:.0}",
        ms(ver),
        ms(ver_cpu),
        ms(sha),
        ms(sha_cpu)
    );
    std::fs::remove_file(&p)?;

    // verify on a large streamed file (in the page cache: it was just written).
    let big = dir.join("bench-verify.safetensors");
    let rows = verify_mb * 1024 * 1024 / (4 * 1024);
    let chunk_rows = 4096;
    let chunk = Tensor::ones((chunk_rows, 1024), DType::F32, &Device::Cpu)?;
    let mut w =
        artifact::StreamWriter::create(&big, &[("x", DType::F32, vec![rows, 1024])], &meta)?;
    let mut done = 0;
    while done < rows {
        let k = chunk_rows.min(rows - done);
        w.append("x", &chunk.narrow(0, 0, k)?)?;
        done += k;
    }
    w.finish()?;
    let len = std::fs::metadata(&big)?.len() as f64;
    for _ in 0..3 {
        let (s, cpu, r) = best_of(1, || artifact::verify(&big));
        r?;
        println!(
            "verify {:.2} GB: {:.2} s, {:.2} GB/s wall; {:.2} GB per CPU-second",
            len / 1e9,
            s,
            rate(len, s),
            rate(len, cpu)
        );
    }
    std::fs::remove_file(&big)?;
    Ok(())
}
