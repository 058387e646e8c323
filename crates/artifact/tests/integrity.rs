//! Damage to a saved or streamed artifact is caught by every reader, and files without a digest
//! behave as documented.

use artifact::fresh::{KEY_DATA_DIGEST, KEY_STAGE};
use artifact::{
    ArtifactError, Freshness, Metadata, Provenance, StreamWriter, check_fresh, load, load_tensors,
    read_metadata, save, verify,
};
use candle_core::{DType, Device, Tensor};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

fn provenance() -> Provenance {
    Provenance::new("extract", "cfg").input("data", "d1")
}

fn saved(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("saved.safetensors");
    let a = Tensor::arange(0f32, 24., &Device::Cpu)
        .unwrap()
        .reshape((2, 3, 4))
        .unwrap();
    let b = Tensor::new(&[1u32, 0], &Device::Cpu).unwrap();
    save(
        &p,
        [("features", &a), ("labels", &b)],
        &provenance().to_metadata(),
    )
    .unwrap();
    p
}

fn streamed(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("streamed.safetensors");
    let feats = Tensor::arange(0f32, 30., &Device::Cpu)
        .unwrap()
        .reshape((5, 6))
        .unwrap();
    let mut w = StreamWriter::create(
        &p,
        &[
            ("features", DType::F16, vec![5, 6]),
            ("labels", DType::U32, vec![5]),
        ],
        &provenance().to_metadata(),
    )
    .unwrap();
    for lo in 0..5 {
        w.append("features", &feats.narrow(0, lo, 1).unwrap())
            .unwrap();
    }
    w.append(
        "labels",
        &Tensor::new(&[0u32, 1, 0, 1, 1], &Device::Cpu).unwrap(),
    )
    .unwrap();
    w.finish().unwrap();
    p
}

/// Offset where the tensor data starts.
fn data_start(bytes: &[u8]) -> usize {
    8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize
}

fn is_damaged(e: &ArtifactError) -> bool {
    matches!(e, ArtifactError::Damaged { .. })
}

/// Every single-bit flip anywhere in the file — length prefix, tensor table, metadata (digest
/// included), padding, data — is caught by `load`, `load_tensors`, `verify` and `check_fresh`.
fn every_bit_flip_is_caught(path: &Path) {
    let good = std::fs::read(path).unwrap();
    assert!(verify(path).is_ok());
    assert_eq!(
        check_fresh(path, &provenance()).unwrap(),
        Freshness::UpToDate
    );
    let start = data_start(&good);
    let mut flipped = good.clone();
    for i in 0..good.len() {
        for bit in [0u8, 3, 5, 7] {
            flipped[i] ^= 1 << bit;
            std::fs::write(path, &flipped).unwrap();
            let at = format!("byte {i} bit {bit}");
            let e = load(path, &Device::Cpu).unwrap_err();
            assert!(is_damaged(&e), "{at}: load: {e}");
            let e = load_tensors(path, &["labels"], &Device::Cpu).unwrap_err();
            assert!(is_damaged(&e), "{at}: load_tensors: {e}");
            let e = verify(path).unwrap_err();
            assert!(is_damaged(&e), "{at}: verify: {e}");
            match check_fresh(path, &provenance()).unwrap() {
                Freshness::Stale(reason) => {
                    // A flip in a provenance value or key reads as changed provenance (stale
                    // all the same); everywhere else it is damage.
                    let meta = read_metadata(path).ok();
                    let provenance_intact = meta
                        .as_ref()
                        .and_then(Provenance::from_metadata)
                        .is_some_and(|p| p.difference(&provenance()).is_none());
                    if i >= start || provenance_intact {
                        assert!(reason.starts_with("damaged: "), "{at}: {reason}");
                    }
                }
                other => panic!("{at}: check_fresh said {other:?}"),
            }
            flipped[i] ^= 1 << bit;
        }
    }
    std::fs::write(path, &good).unwrap();
    assert!(load(path, &Device::Cpu).is_ok());
}

#[test]
fn flipped_bits_in_a_saved_artifact_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    every_bit_flip_is_caught(&saved(dir.path()));
}

#[test]
fn flipped_bits_in_a_streamed_artifact_are_caught() {
    let dir = tempfile::tempdir().unwrap();
    every_bit_flip_is_caught(&streamed(dir.path()));
}

#[test]
fn the_digest_is_recorded_and_replaced_on_resave() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    let meta = read_metadata(&p).unwrap();
    let value = &meta[KEY_DATA_DIGEST];
    assert!(
        value.starts_with("xxh3-128:") && value.len() == 9 + 32,
        "{value}"
    );
    assert_ne!(&value[9..], "0".repeat(32));
    // Metadata read back from one artifact and saved with other tensors gets a fresh digest.
    let (t, meta) = load(&p, &Device::Cpu).unwrap();
    let q = dir.path().join("resaved.safetensors");
    let labels = t["labels"].affine(1., 1.).unwrap();
    save(&q, [("labels", &labels)], &meta).unwrap();
    verify(&q).unwrap();
    assert_ne!(read_metadata(&q).unwrap()[KEY_DATA_DIGEST], *value);
    // Metadata without the digest key is what was given plus the digest.
    let mut given = Metadata::new();
    given.insert("k".into(), "v".into());
    save(&q, [("labels", &labels)], &given).unwrap();
    let back = read_metadata(&q).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back["k"], "v");
    // An artifact with no tensors at all has a digest too.
    let e = dir.path().join("empty.safetensors");
    save(&e, std::iter::empty::<(&str, &Tensor)>(), &Metadata::new()).unwrap();
    verify(&e).unwrap();
}

#[test]
fn damage_names_the_file_the_problem_and_the_stage() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    let mut bytes = std::fs::read(&p).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x10;
    std::fs::write(&p, &bytes).unwrap();
    let msg = load(&p, &Device::Cpu).unwrap_err().to_string();
    assert!(msg.contains("saved.safetensors"), "{msg}");
    assert!(msg.contains("damaged (data digest mismatch"), "{msg}");
    assert!(
        msg.contains("remove it and rerun the `extract` stage, which wrote it, to rebuild it"),
        "{msg}"
    );
    // Without a readable stage, the message still says how to rebuild.
    let q = dir.path().join("nostage.safetensors");
    let t = Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap();
    save(&q, [("x", &t)], &Metadata::new()).unwrap();
    let mut bytes = std::fs::read(&q).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&q, &bytes).unwrap();
    let msg = verify(&q).unwrap_err().to_string();
    assert!(
        msg.contains("remove it and rerun the stage that wrote it to rebuild it"),
        "{msg}"
    );
    // A header broken beyond parsing still names the stage when its text is readable.
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[8] = b'[';
    std::fs::write(&p, &bytes).unwrap();
    let e = load(&p, &Device::Cpu).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("bad header"), "{msg}");
    assert!(
        matches!(&e, ArtifactError::Damaged { stage: Some(s), .. } if s == "extract"),
        "{e:?}"
    );
}

#[test]
fn truncated_and_extended_files_are_damaged() {
    let dir = tempfile::tempdir().unwrap();
    for path in [saved(dir.path()), streamed(dir.path())] {
        let good = std::fs::read(&path).unwrap();
        let start = data_start(&good);
        let cuts = [9, 20, start - 1, start, start + 1, good.len() - 1];
        for cut in cuts {
            std::fs::write(&path, &good[..cut]).unwrap();
            for e in [
                load(&path, &Device::Cpu).unwrap_err(),
                verify(&path).unwrap_err(),
                read_metadata(&path).unwrap_err(),
            ] {
                assert!(is_damaged(&e), "cut at {cut}: {e}");
                assert!(e.to_string().contains("truncated"), "cut at {cut}: {e}");
            }
            assert!(
                matches!(check_fresh(&path, &provenance()).unwrap(),
                    Freshness::Stale(r) if r.starts_with("damaged: ") && r.contains("truncated")),
                "cut at {cut}"
            );
        }
        // Cut inside the header: damaged, and not a valid safetensors file either.
        std::fs::write(&path, &good[..20]).unwrap();
        let msg = read_metadata(&path).unwrap_err().to_string();
        assert!(msg.contains("not a valid safetensors file"), "{msg}");
        // Fewer bytes than a length prefix: not a safetensors file at all.
        std::fs::write(&path, &good[..5]).unwrap();
        let e = load(&path, &Device::Cpu).unwrap_err();
        assert!(matches!(e, ArtifactError::Format { .. }), "{e}");
        assert!(matches!(
            check_fresh(&path, &provenance()).unwrap(),
            Freshness::Stale(_)
        ));
        // Bytes after the last tensor.
        let mut longer = good.clone();
        longer.extend_from_slice(b"tail");
        std::fs::write(&path, &longer).unwrap();
        let e = load(&path, &Device::Cpu).unwrap_err();
        assert!(
            is_damaged(&e) && e.to_string().contains("4 bytes follow"),
            "{e}"
        );
        assert!(matches!(
            check_fresh(&path, &provenance()).unwrap(),
            Freshness::Stale(r) if r.starts_with("damaged: ")
        ));
    }
}

/// A safetensors file as written before digests (or by another program).
fn undigested(path: &Path, meta: Option<Metadata>) {
    let data: Vec<u8> = [1.5f32, -2.0, 3.25]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &data).unwrap();
    let meta = meta.map(|m| m.into_iter().collect());
    let bytes = safetensors::serialize([("w", view)], meta).unwrap();
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn files_without_a_digest_load_but_are_not_fresh() {
    let dir = tempfile::tempdir().unwrap();
    // Written by this project before digests: loads; not up to date, so a run rebuilds it.
    let old = dir.path().join("old.safetensors");
    undigested(&old, Some(provenance().to_metadata()));
    let (t, meta) = load(&old, &Device::Cpu).unwrap();
    assert_eq!(t["w"].to_vec1::<f32>().unwrap(), vec![1.5, -2.0, 3.25]);
    assert_eq!(meta[KEY_STAGE], "extract");
    assert!(!meta.contains_key(KEY_DATA_DIGEST));
    let e = verify(&old).unwrap_err();
    assert!(matches!(e, ArtifactError::NoDigest { .. }), "{e}");
    assert!(e.to_string().contains("old.safetensors"), "{e}");
    assert_eq!(
        check_fresh(&old, &provenance()).unwrap(),
        Freshness::Stale(
            "no data digest (written before artifacts recorded one); rebuilding adds it".into()
        )
    );
    // Foreign (no metadata at all): loads.
    let foreign = dir.path().join("foreign.safetensors");
    undigested(&foreign, None);
    let (t, meta) = load_tensors(&foreign, &["w"], &Device::Cpu).unwrap();
    assert_eq!(t["w"].dims(), &[3]);
    assert!(meta.is_empty());
    // Structural damage is still caught without a digest.
    let mut bytes = std::fs::read(&foreign).unwrap();
    bytes.pop();
    std::fs::write(&foreign, &bytes).unwrap();
    let e = load(&foreign, &Device::Cpu).unwrap_err();
    assert!(is_damaged(&e) && e.to_string().contains("truncated"), "{e}");
}

#[test]
fn a_malformed_or_unknown_digest_is_damage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("odd.safetensors");
    for (value, says) in [
        ("blake3:00", "unknown algorithm `blake3`"),
        ("xxh3-128:xyz", "malformed data digest"),
        ("nonsense", "malformed data digest"),
    ] {
        let mut meta = provenance().to_metadata();
        meta.insert(KEY_DATA_DIGEST.into(), value.into());
        undigested(&p, Some(meta));
        for e in [load(&p, &Device::Cpu).unwrap_err(), verify(&p).unwrap_err()] {
            assert!(
                is_damaged(&e) && e.to_string().contains(says),
                "{value}: {e}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn a_remembered_verification_does_not_hide_a_later_change() {
    let dir = tempfile::tempdir().unwrap();
    let p = saved(dir.path());
    // Old enough for check_fresh to remember that it verified it.
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&p)
        .unwrap()
        .set_modified(old)
        .unwrap();
    assert_eq!(check_fresh(&p, &provenance()).unwrap(), Freshness::UpToDate);
    assert_eq!(check_fresh(&p, &provenance()).unwrap(), Freshness::UpToDate);
    // Damage it in place and put its modification time back: the change time still differs.
    let len = std::fs::metadata(&p).unwrap().len();
    let mut f = std::fs::File::options()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.seek(SeekFrom::Start(len - 2)).unwrap();
    f.write_all(&[0xAB]).unwrap();
    f.set_modified(old).unwrap();
    drop(f);
    assert!(matches!(
        check_fresh(&p, &provenance()).unwrap(),
        Freshness::Stale(r) if r.starts_with("damaged: data digest mismatch")
    ));
}
