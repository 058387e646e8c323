//! Throughput of the two stages of the data pipeline: the first pass (decode + resize to
//! 150×150) and augmented batches from the in-memory cache (the post's augmentation).
//!
//! Uses real photos from `$LITTLEDATA_SHARED/data/dogs-vs-cats/train` when that folder exists,
//! synthetic JPEGs otherwise. `cargo bench -p imagedata`.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use image::RgbImage;
use imagedata::{
    AugmentConfig, FlowOptions, ImageDataGenerator, Interpolation, Limits, Preprocessing,
    TargetSize, decode_rgb, resize_rgb,
};

/// Up to `n` JPEG files as bytes: real photos when available, synthetic ones otherwise.
fn sample_jpegs(n: usize) -> Vec<(PathBuf, Vec<u8>)> {
    if let Some(dir) = std::env::var_os("LITTLEDATA_SHARED")
        .map(|d| PathBuf::from(d).join("data/dogs-vs-cats/train"))
        .filter(|d| d.is_dir())
    {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let found: Vec<(PathBuf, Vec<u8>)> = files
            .into_iter()
            .filter(|p| imagedata::decode::has_image_extension(p))
            .take(n)
            .filter_map(|p| std::fs::read(&p).ok().map(|b| (p, b)))
            .collect();
        if !found.is_empty() {
            return found;
        }
    }
    (0..n)
        .map(|i| {
            let img = RgbImage::from_fn(500, 375, |x, y| {
                image::Rgb([
                    ((x * 3 + y + i as u32 * 13) % 256) as u8,
                    ((x ^ y) % 256) as u8,
                    ((x * y / 50) % 256) as u8,
                ])
            });
            let mut bytes = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90)
                .encode_image(&img)
                .expect("encoding a synthetic JPEG");
            (PathBuf::from(format!("synthetic-{i}.jpg")), bytes)
        })
        .collect()
}

fn first_pass(c: &mut Criterion) {
    let files = sample_jpegs(16);
    let target = TargetSize::new(150, 150);
    let mut group = c.benchmark_group("first_pass");
    group.throughput(Throughput::Elements(files.len() as u64));
    for interpolation in [Interpolation::Nearest, Interpolation::Bilinear] {
        group.bench_function(format!("decode_resize_150_{interpolation:?}"), |b| {
            b.iter(|| {
                for (path, bytes) in &files {
                    let img = decode_rgb(bytes, path, &Limits::default()).expect("decodes");
                    black_box(resize_rgb(&img, target, interpolation, path).expect("resizes"));
                }
            })
        });
    }
    group.finish();
}

fn augmented_batches(c: &mut Criterion) {
    let target = TargetSize::new(150, 150);
    let images: Vec<RgbImage> = sample_jpegs(32)
        .iter()
        .map(|(path, bytes)| {
            let img = decode_rgb(bytes, path, &Limits::default()).expect("decodes");
            resize_rgb(&img, target, Interpolation::Nearest, path).expect("resizes")
        })
        .collect();
    let n = images.len();
    let blog = ImageDataGenerator::new(AugmentConfig::blog(), Preprocessing::rescale(1.0 / 255.0))
        .expect("valid configuration");
    let options = FlowOptions {
        batch_size: 16,
        prefetch: 0,
        ..FlowOptions::default()
    };
    let flow = blog
        .flow(images.clone(), None, options.clone())
        .expect("flow");
    let plain = ImageDataGenerator::preprocessing_only(Preprocessing::rescale(1.0 / 255.0))
        .flow(images, None, options)
        .expect("flow");
    let mut group = c.benchmark_group("augmented_batches");
    group.throughput(Throughput::Elements(n as u64));
    let mut epoch = 0;
    group.bench_function("blog_augmentation_150", |b| {
        b.iter(|| {
            epoch += 1;
            for batch in flow.epoch(epoch) {
                black_box(batch.expect("batch"));
            }
        })
    });
    group.bench_function("preprocessing_only_150", |b| {
        b.iter(|| {
            for batch in plain.epoch(0) {
                black_box(batch.expect("batch"));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = first_pass, augmented_batches
}
criterion_main!(benches);
