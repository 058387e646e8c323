//! Augmentation: Keras reference outputs, identity, flips, marked pixels under shift, zoom and
//! rotation, fill modes at the borders, and seed determinism.

mod common;

use candle_core::Tensor;
use common::pattern;
use image::RgbImage;
use imagedata::transform::{AffineMap, Fill, warp_rgb_planes};
use imagedata::{
    AugmentConfig, FillMode, FlowOptions, ImageDataGenerator, Preprocessing, Transform, ZoomRange,
};

fn generator(augment: AugmentConfig) -> ImageDataGenerator {
    ImageDataGenerator::new(augment, Preprocessing::rescale(1.0 / 255.0)).unwrap()
}

fn flat(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn matches_keras_apply_affine_transform() {
    // Reference outputs of Keras' apply_affine_transform (scipy ndimage, order 1), made by
    // tests/fixtures/make_keras_affine_reference.py.
    let text = include_str!("fixtures/keras_affine_reference.json");
    let doc: serde_json::Value = serde_json::from_str(text).unwrap();
    let h = doc["height"].as_u64().unwrap() as usize;
    let w = doc["width"].as_u64().unwrap() as usize;
    let src: Vec<u8> = doc["source"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u8)
        .collect();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 10);
    for case in cases {
        let f = |k: &str| case[k].as_f64().unwrap();
        let t = Transform {
            theta: f("theta"),
            tx: f("tx"),
            ty: f("ty"),
            shear: f("shear"),
            zx: f("zx"),
            zy: f("zy"),
            ..Transform::identity()
        };
        let mode = match case["fill_mode"].as_str().unwrap() {
            "nearest" => FillMode::Nearest,
            "constant" => FillMode::Constant,
            "reflect" => FillMode::Reflect,
            "wrap" => FillMode::Wrap,
            other => panic!("unknown mode {other}"),
        };
        let mut planes = vec![0f32; 3 * h * w];
        warp_rgb_planes(
            &src,
            h,
            w,
            &t.sampling_map(h as u32, w as u32),
            Fill::new(mode, f("cval") as f32),
            [(1.0, 0.0); 3],
            &mut planes,
        );
        let expected: Vec<f64> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        // Expected is HWC, planes are CHW.
        let mut worst = 0f64;
        for r in 0..h {
            for c in 0..w {
                for ch in 0..3 {
                    let want = expected[(r * w + c) * 3 + ch];
                    let got = f64::from(planes[ch * h * w + r * w + c]);
                    worst = worst.max((want - got).abs());
                }
            }
        }
        assert!(worst < 0.02, "{case}: max abs difference {worst}");
    }
}

#[test]
fn identity_parameters_give_the_identity_image() {
    let img = pattern(37, 23, 5);
    let identity = AugmentConfig {
        fill_mode: FillMode::Reflect,
        zoom_range: ZoomRange::Range([1.0, 1.0]),
        ..AugmentConfig::default()
    };
    assert!(identity.is_identity());
    let g = generator(identity);
    let mut rng = imagedata::rng::stream(3, "augment");
    assert_eq!(g.augment_image(&img, &mut rng), img);
    assert_eq!(g.apply_transform(&img, &Transform::identity()), img);
    // Through a flow: the batch is exactly the preprocessed source.
    let flow = g
        .flow(
            vec![img.clone()],
            None,
            FlowOptions {
                batch_size: 1,
                ..Default::default()
            },
        )
        .unwrap();
    let batch = flow.batch(4, 0).unwrap();
    let back = imagedata::batch_to_images(&batch.images, &g.preprocessing).unwrap();
    assert_eq!(back, vec![img.clone()]);
    let values = flat(&batch.images);
    let want = f32::from(img.get_pixel(3, 0)[0]) / 255.0;
    assert!(want > 0.0 && (values[3] - want).abs() < 1e-6);
}

#[test]
fn horizontal_flip_mirrors_exactly() {
    let img = pattern(16, 9, 2);
    let mirrored = RgbImage::from_fn(16, 9, |x, y| *img.get_pixel(15 - x, y));
    let g = generator(AugmentConfig {
        horizontal_flip: true,
        ..AugmentConfig::default()
    });
    let t = Transform {
        flip_horizontal: true,
        ..Transform::identity()
    };
    assert_eq!(g.apply_transform(&img, &t), mirrored);
    let (mut flipped, mut kept) = (0, 0);
    let mut rng = imagedata::rng::stream(11, "augment");
    for _ in 0..64 {
        let out = g.augment_image(&img, &mut rng);
        if out == mirrored {
            flipped += 1;
        } else {
            assert_eq!(out, img);
            kept += 1;
        }
    }
    assert!(flipped > 10 && kept > 10, "{flipped} flipped, {kept} kept");
    let v = Transform {
        flip_vertical: true,
        ..Transform::identity()
    };
    let upside_down = RgbImage::from_fn(16, 9, |x, y| *img.get_pixel(x, 8 - y));
    assert_eq!(g.apply_transform(&img, &v), upside_down);
}

/// An 11×11 black image with one white pixel at (row, col). Keras' centre is (6, 6).
fn marked(row: u32, col: u32) -> RgbImage {
    let mut img = RgbImage::new(11, 11);
    img.put_pixel(col, row, image::Rgb([255, 255, 255]));
    img
}

fn white_pixels(img: &RgbImage) -> Vec<(u32, u32, u8)> {
    img.enumerate_pixels()
        .filter(|(_, _, p)| p[0] > 0)
        .map(|(x, y, p)| (y, x, p[0]))
        .collect()
}

#[test]
fn shift_moves_a_marked_pixel() {
    let g = generator(AugmentConfig {
        fill_mode: FillMode::Constant,
        ..AugmentConfig::default()
    });
    // Output (r, c) samples input (r + tx, c + ty): the content moves by (-tx, -ty).
    let t = Transform {
        tx: 2.0,
        ty: -3.0,
        ..Transform::identity()
    };
    let out = g.apply_transform(&marked(5, 4), &t);
    assert_eq!(white_pixels(&out), vec![(3, 7, 255)]);
    // A half-pixel shift splits the pixel between two neighbours.
    let t = Transform {
        ty: 0.5,
        ..Transform::identity()
    };
    let out = g.apply_transform(&marked(5, 4), &t);
    assert_eq!(white_pixels(&out), vec![(5, 3, 128), (5, 4, 128)]);
}

#[test]
fn zoom_and_rotation_move_a_marked_pixel() {
    let g = generator(AugmentConfig {
        fill_mode: FillMode::Constant,
        ..AugmentConfig::default()
    });
    // Zoom 2 samples input C + 2 (o - C) with C = (6, 6): input (8, 8) lands on output (7, 7).
    let out = g.apply_transform(
        &marked(8, 8),
        &Transform {
            zx: 2.0,
            zy: 2.0,
            ..Transform::identity()
        },
    );
    assert_eq!(white_pixels(&out), vec![(7, 7, 255)]);
    // Zoom 0.5 magnifies: input (7, 7) lands on output (8, 8), and its neighbours at half
    // distance get half (or a quarter of) the value.
    let out = g.apply_transform(
        &marked(7, 7),
        &Transform {
            zx: 0.5,
            zy: 0.5,
            ..Transform::identity()
        },
    );
    let px = |r: u32, c: u32| out.get_pixel(c, r)[0];
    assert_eq!(px(8, 8), 255);
    assert_eq!(px(8, 9), 128);
    assert_eq!(px(7, 8), 128);
    assert_eq!(px(9, 9), 64);
    assert_eq!(px(6, 6), 0);
    assert_eq!(white_pixels(&out).len(), 9);
    // Rotation by 90°: input = C + [[0, -1], [1, 0]] (o - C), so input (7, 9) comes from
    // output (9, 5).
    let out = g.apply_transform(
        &marked(7, 9),
        &Transform {
            theta: 90.0,
            ..Transform::identity()
        },
    );
    assert_eq!(white_pixels(&out), vec![(9, 5, 255)]);
}

#[test]
fn fill_modes_at_the_borders() {
    // Rows are 10 20 30 40 50 (all channels); shift the content two pixels left and one down.
    let img = RgbImage::from_fn(5, 3, |x, y| {
        let v = (x as u8 + 1) * 10 + y as u8;
        image::Rgb([v, v, v])
    });
    let t = Transform {
        tx: -1.0,
        ty: 2.0,
        ..Transform::identity()
    };
    let rows = |mode: FillMode, cval: f32| -> Vec<Vec<u8>> {
        let g = generator(AugmentConfig {
            fill_mode: mode,
            cval,
            ..AugmentConfig::default()
        });
        let out = g.apply_transform(&img, &t);
        (0..3)
            .map(|y| (0..5).map(|x| out.get_pixel(x, y)[0]).collect())
            .collect()
    };
    // Output (r, c) samples input (r - 1, c + 2); input row -1 and columns 5, 6 are outside.
    assert_eq!(
        rows(FillMode::Nearest, 0.0),
        vec![
            vec![30, 40, 50, 50, 50],
            vec![30, 40, 50, 50, 50],
            vec![31, 41, 51, 51, 51]
        ]
    );
    assert_eq!(
        rows(FillMode::Constant, 7.0),
        vec![
            vec![7, 7, 7, 7, 7],
            vec![30, 40, 50, 7, 7],
            vec![31, 41, 51, 7, 7]
        ]
    );
    // Reflect (d c b a | a b c d | d c b a): row -1 -> 0, column 5 -> 4, column 6 -> 3.
    assert_eq!(
        rows(FillMode::Reflect, 0.0),
        vec![
            vec![30, 40, 50, 50, 40],
            vec![30, 40, 50, 50, 40],
            vec![31, 41, 51, 51, 41]
        ]
    );
    // scipy wrap (period n - 1): row -1 -> 1, column 5 -> 1, column 6 -> 2.
    assert_eq!(
        rows(FillMode::Wrap, 0.0),
        vec![
            vec![31, 41, 51, 21, 31],
            vec![30, 40, 50, 20, 30],
            vec![31, 41, 51, 21, 31]
        ]
    );
}

#[test]
fn same_seed_same_batch_different_seed_different_batch() {
    let images: Vec<RgbImage> = (0..10).map(|i| pattern(24, 20, i)).collect();
    let labels: Vec<u32> = (0..10).map(|i| i % 2).collect();
    let g = ImageDataGenerator::new(
        AugmentConfig {
            rotation_range: 30.0,
            width_shift_range: 0.1,
            height_shift_range: 0.1,
            shear_range: 10.0,
            zoom_range: ZoomRange::Symmetric(0.2),
            horizontal_flip: true,
            vertical_flip: false,
            fill_mode: FillMode::Reflect,
            cval: 0.0,
        },
        Preprocessing::imagenet(),
    )
    .unwrap();
    let make = |seed: u64, prefetch: usize| {
        g.flow(
            images.clone(),
            Some(labels.clone()),
            FlowOptions {
                batch_size: 4,
                seed,
                prefetch,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let collect = |flow: &imagedata::Flow, epoch: usize| -> Vec<(Vec<f32>, Vec<u32>, Vec<usize>)> {
        flow.epoch(epoch)
            .map(|b| {
                let b = b.unwrap();
                (
                    flat(&b.images),
                    b.labels.unwrap().to_vec1::<u32>().unwrap(),
                    b.indices,
                )
            })
            .collect()
    };
    let a = collect(&make(42, 2), 0);
    assert_eq!(a.len(), 3);
    assert_eq!(a[2].2.len(), 2, "last batch holds the remainder");
    // Same seed: identical, with or without background preparation.
    assert_eq!(a, collect(&make(42, 2), 0));
    assert_eq!(a, collect(&make(42, 0), 0));
    // Labels follow their images.
    for (_, l, idx) in &a {
        assert_eq!(l, &idx.iter().map(|&i| labels[i]).collect::<Vec<_>>());
    }
    // A different seed: different order and different augmentation.
    let b = collect(&make(43, 2), 0);
    assert_ne!(a, b);
    // Each epoch is a permutation of all samples, reshuffled per epoch.
    let flow = make(42, 1);
    let e0: Vec<usize> = flow.order(0);
    let e1: Vec<usize> = flow.order(1);
    assert_ne!(e0, e1);
    let mut sorted = e1.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    // Resuming at epoch 5 gives what an uninterrupted run sees at epoch 5.
    let fresh = make(42, 2);
    let resumed = collect(&fresh, 5);
    for e in 0..5 {
        collect(&flow, e);
    }
    assert_eq!(resumed, collect(&flow, 5));
    // And a single batch computed on demand matches.
    let one = flow.batch(5, 1).unwrap();
    assert_eq!(flat(&one.images), resumed[1].0);
}

#[test]
fn constant_fill_uses_cval_in_pixel_units() {
    let img = RgbImage::from_pixel(6, 6, image::Rgb([200, 200, 200]));
    let g = ImageDataGenerator::new(
        AugmentConfig {
            fill_mode: FillMode::Constant,
            cval: 51.0,
            ..AugmentConfig::default()
        },
        Preprocessing::rescale(1.0 / 255.0),
    )
    .unwrap();
    let t = Transform {
        ty: 3.0,
        ..Transform::identity()
    };
    let mut planes = vec![0f32; 3 * 36];
    g.transform_into(img.as_raw(), 6, 6, &t, &mut planes);
    assert!((planes[0] - 200.0 / 255.0).abs() < 1e-6);
    assert!((planes[5] - 51.0 / 255.0).abs() < 1e-6);
    // The same map through the public kernel.
    let mut direct = vec![0f32; 3 * 36];
    let map = AffineMap {
        matrix: [[1.0, 0.0], [0.0, 1.0]],
        offset: [0.0, 3.0],
    };
    warp_rgb_planes(
        img.as_raw(),
        6,
        6,
        &map,
        Fill::new(FillMode::Constant, 51.0),
        [(1.0 / 255.0, 0.0); 3],
        &mut direct,
    );
    assert_eq!(planes, direct);
}
