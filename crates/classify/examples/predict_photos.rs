//! The library API in a few lines: classify the photos given on the command line.
//!
//! `cargo run --release -p classify --example predict_photos -- artifacts/efficientnet/top a.jpg b.jpg`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let model = args
        .next()
        .ok_or("usage: predict_photos MODEL_DIR PHOTO...")?;
    let classifier = classify::Classifier::load(&model)?;
    for photo in args {
        let scores = classifier.predict_file(photo.as_ref())?;
        println!("{photo}: {} ({:.3})", scores.class, scores.probability);
    }
    Ok(())
}
