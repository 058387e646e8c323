//! Prints images per second for the two stages of the data pipeline:
//!
//! 1. first pass: decode + resize to 150×150 of N real photos (parallel, all cores);
//! 2. augmented 150×150 batches from the in-memory cache, with the post's settings
//!    (rescale 1/255, shear 0.2 rad, zoom 0.2, horizontal flips), batch size 16.
//!
//! Usage: `cargo run --release -p imagedata --example throughput -- [DIR] [N]`
//! (DIR defaults to `$LITTLEDATA_SHARED/data/dogs-vs-cats/train`, N to 1000).

use std::path::PathBuf;
use std::time::Instant;

use imagedata::{
    AugmentConfig, FlowOptions, ImageDataGenerator, ImageSet, Interpolation, LoadOptions, OnError,
    Preprocessing, TargetSize,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = match args.next() {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("LITTLEDATA_SHARED")
            .map(|s| PathBuf::from(s).join("data/dogs-vs-cats/train"))
            .ok_or("give a folder of photos, or set LITTLEDATA_SHARED")?,
    };
    let n: usize = match args.next() {
        Some(v) => v
            .parse()
            .map_err(|_| format!("N must be a number, got {v}"))?,
        None => 1000,
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| imagedata::decode::has_image_extension(p))
        .collect();
    files.sort();
    files.truncate(n);
    if files.is_empty() {
        return Err(format!("{}: no JPEG or PNG files", dir.display()).into());
    }
    println!(
        "{} photos from {}, {} rayon threads",
        files.len(),
        dir.display(),
        rayon::current_num_threads()
    );

    let target = TargetSize::new(150, 150);
    let mut cache = None;
    for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
        let options = LoadOptions {
            target_size: target,
            interpolation,
            on_error: OnError::Skip,
            ..LoadOptions::default()
        };
        let start = Instant::now();
        let (set, report) = ImageSet::load(&files, None, &options, None)?;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "first pass (decode + resize to 150x150, {interpolation:?}): {:.0} images/s \
             ({} images in {secs:.2} s, {} skipped)",
            set.len() as f64 / secs,
            set.len(),
            report.skipped.len()
        );
        for e in report.skipped.iter().take(5) {
            println!("  skipped: {e}");
        }
        if interpolation == Interpolation::Nearest {
            cache = Some(set);
        }
    }
    let set = cache.ok_or("no images decoded")?;
    let images: Vec<_> = (0..set.len()).map(|i| set.image(i)).collect();

    let generator =
        ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::rescale(1.0 / 255.0))?;
    for prefetch in [0, 2] {
        let flow = generator.flow(
            images.clone(),
            None,
            FlowOptions {
                batch_size: 16,
                seed: 7,
                prefetch,
                ..FlowOptions::default()
            },
        )?;
        let epochs = (3000 / flow.samples()).max(1);
        let start = Instant::now();
        let mut count = 0;
        for epoch in 0..epochs {
            for batch in flow.epoch(epoch) {
                count += batch?.len();
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "augmented batches (blog augmentation, 150x150, batch 16, prefetch {prefetch}): \
             {:.0} images/s ({count} images in {secs:.2} s)",
            count as f64 / secs
        );
    }
    Ok(())
}
