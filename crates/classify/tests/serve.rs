//! `classify serve` over real HTTP: answers for good images (raw and multipart, one at a time
//! and many at once), a 4xx JSON error naming the problem for every kind of bad input while
//! the server keeps serving, the model's metadata, the page, and a clean exit on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// A running `classify serve`, stopped (SIGKILL) if a test fails before stopping it.
struct Server {
    child: Option<Child>,
    url: String,
}

impl Server {
    /// Starts the server on a free loopback port over the model folder `model` with `extra`
    /// flags, and waits for its `listening on` line.
    fn start(model: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_classify"))
            .args(["serve", "--model", model.to_str().unwrap()])
            .args(["--addr", "127.0.0.1:0", "--device", "cpu"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the server starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child: Some(child),
            url,
        }
    }

    fn post(&self, content_type: &str, body: &[u8]) -> (u16, Value) {
        let response = ureq::post(&format!("{}/predict", self.url))
            .set("Content-Type", content_type)
            .send_bytes(body);
        read(response)
    }

    fn get(&self, path: &str) -> (u16, String) {
        match ureq::get(&format!("{}{path}", self.url)).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap()),
            Err(e) => panic!("GET {path}: {e}"),
        }
    }

    fn alive(&self) {
        let (status, body) = self.get("/healthz");
        assert_eq!(status, 200, "{body}");
    }

    /// Sends SIGTERM and returns the exit status's code.
    fn terminate(&mut self) -> Option<i32> {
        let mut child = self.child.take().unwrap();
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "the server did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read(response: Result<ureq::Response, ureq::Error>) -> (u16, Value) {
    let (status, r) = match response {
        Ok(r) => (r.status(), r),
        Err(ureq::Error::Status(code, r)) => (code, r),
        Err(e) => panic!("request failed: {e}"),
    };
    assert_eq!(r.content_type(), "application/json");
    let mut text = String::new();
    r.into_reader().read_to_string(&mut text).unwrap();
    (status, serde_json::from_str(&text).unwrap())
}

/// A PNG of a uniform grey level `v`, `w` × `h`.
fn png(v: u8, w: u32, h: u32) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(w, h, image::Rgb([v; 3]))
        .write_to(&mut out, image::ImageFormat::Png)
        .unwrap();
    out.into_inner()
}

/// A JPEG of a uniform grey level `v`.
fn jpeg(v: u8) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_pixel(64, 64, image::Rgb([v; 3]))
        .write_to(&mut out, image::ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

/// The probability of `dark` the hand-set model gives a uniform grey level `v`.
fn p_dark(v: u8) -> f64 {
    sigmoid(logit(v))
}

/// A multipart/form-data body of `files` (field name, file name, bytes) and its content type.
fn multipart(files: &[(&str, &str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "littledata-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (field, name, bytes) in files {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend(*bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[test]
fn good_images_are_classified_raw_and_multipart_and_concurrently() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_brightness_model(&dir.path().join("bright"));
    let server = Server::start(model.parent().unwrap(), &[]);
    let sha = artifact::sha256_file(&model).unwrap();

    for (v, content_type, bytes) in [
        (40u8, "image/png", png(40, 32, 32)),
        (220, "image/png", png(220, 50, 20)),
        (200, "application/octet-stream", png(200, 32, 32)),
    ] {
        let (status, body) = server.post(content_type, &bytes);
        assert_eq!(status, 200, "{body}");
        let dark = p_dark(v);
        let class = if dark > 0.5 { "dark" } else { "bright" };
        assert_eq!(body["class"], class, "{body}");
        let p = body["probabilities"]["dark"].as_f64().unwrap();
        assert!((p - dark).abs() < 1e-5, "{p} vs {dark}");
        assert!((body["probabilities"]["bright"].as_f64().unwrap() - (1.0 - dark)).abs() < 1e-5);
        assert!((body["probability"].as_f64().unwrap() - dark.max(1.0 - dark)).abs() < 1e-5);
        assert_eq!(body["model"]["sha256"], sha.as_str());
        assert!(
            body["model"]["name"]
                .as_str()
                .unwrap()
                .starts_with("bright")
        );
    }
    // A JPEG too (its grey level survives compression to within a level or two).
    let (status, body) = server.post("image/jpeg", &jpeg(30));
    assert_eq!(
        (status, body["class"].as_str()),
        (200, Some("dark")),
        "{body}"
    );

    // Several files in one multipart request: one answer each, in order, a bad one included.
    let (a, b, c) = (png(20, 32, 32), b"not an image".to_vec(), png(250, 32, 32));
    let (content_type, body) = multipart(&[
        ("file", "a.png", &a),
        ("file", "b.png", &b),
        ("file", "c.png", &c),
    ]);
    let (status, answer) = server.post(&content_type, &body);
    assert_eq!(status, 200, "{answer}");
    let predictions = answer["predictions"].as_array().unwrap();
    assert_eq!(predictions.len(), 3);
    assert_eq!(predictions[0]["file"], "a.png");
    assert_eq!(predictions[0]["class"], "dark");
    assert_eq!(predictions[1]["file"], "b.png");
    assert_eq!(predictions[1]["status"], 415);
    assert!(
        predictions[1]["error"]
            .as_str()
            .unwrap()
            .contains("not a JPEG or PNG"),
        "{answer}"
    );
    assert_eq!(predictions[2]["class"], "bright");
    assert_eq!(answer["model"]["sha256"], sha.as_str());

    // Many at once: every answer right (they are batched together by the worker).
    let url = server.url.clone();
    let threads: Vec<_> = (0..24u8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                let v = i * 10;
                let response = ureq::post(&format!("{url}/predict"))
                    .set("Content-Type", "image/png")
                    .send_bytes(&png(v, 32, 32));
                let (status, body) = read(response);
                assert_eq!(status, 200);
                let p = body["probabilities"]["dark"].as_f64().unwrap();
                assert!((p - p_dark(v)).abs() < 1e-5, "{v}: {p}");
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    server.alive();
}

#[test]
fn every_kind_of_bad_input_is_a_4xx_naming_the_problem_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_brightness_model(dir.path());
    let server = Server::start(model.parent().unwrap(), &["--max-body", "64KiB"]);
    let good = png(10, 32, 32);
    let jpeg = jpeg(100);
    let truncated = &jpeg[..jpeg.len() / 2];
    let mut huge_jpeg = jpeg.clone();
    // Patch the frame header's height and width to 30,000 × 30,000.
    let sof = huge_jpeg
        .windows(2)
        .position(|w| w[0] == 0xff && (w[1] == 0xc0 || w[1] == 0xc2))
        .unwrap();
    huge_jpeg[sof + 5..sof + 7].copy_from_slice(&30_000u16.to_be_bytes());
    huge_jpeg[sof + 7..sof + 9].copy_from_slice(&30_000u16.to_be_bytes());
    let over = vec![0u8; 64 * 1024 + 1];
    // (what, content type, body, status, kind, a word of the message)
    type Case<'a> = (&'a str, &'a str, &'a [u8], u16, &'a str, &'a str);
    let cases: [Case; 8] = [
        ("empty body", "image/png", b"", 400, "empty", "empty"),
        (
            "truncated JPEG",
            "image/jpeg",
            truncated,
            422,
            "truncated",
            "truncated",
        ),
        (
            "text file",
            "image/jpeg",
            b"hello, this is text\n",
            415,
            "not_an_image",
            "not a JPEG or PNG",
        ),
        (
            "wrong content type",
            "text/plain",
            &good,
            415,
            "wrong_content_type",
            "text/plain",
        ),
        (
            "JSON content type",
            "application/json",
            b"{}",
            415,
            "wrong_content_type",
            "application/json",
        ),
        (
            "body over --max-body",
            "image/png",
            &over,
            413,
            "body_too_large",
            "too large",
        ),
        (
            "PNG claiming 30000 x 30000",
            "image/png",
            &testkit::images::png_claiming(30_000, 30_000),
            413,
            "too_many_pixels",
            "30000",
        ),
        (
            "JPEG claiming 30000 x 30000",
            "image/jpeg",
            &huge_jpeg,
            413,
            "too_many_pixels",
            "30000",
        ),
    ];
    for (what, content_type, body, status, kind, says) in cases {
        let (got, answer) = server.post(content_type, body);
        assert_eq!(got, status, "{what}: {answer}");
        assert_eq!(answer["kind"], kind, "{what}: {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(message.contains(says), "{what}: {message}");
        // Still serving, and still right.
        let (ok, answer) = server.post("image/png", &good);
        assert_eq!(
            (ok, answer["class"].as_str()),
            (200, Some("dark")),
            "after {what}"
        );
    }
    // A multipart request of bad files only is an error too; so is one without files.
    let (content_type, body) = multipart(&[("file", "x.png", b"")]);
    let (status, answer) = server.post(&content_type, &body);
    assert_eq!(status, 400, "{answer}");
    let (content_type, _) = multipart(&[]);
    let (status, answer) = server.post(&content_type, format!("--{}--\r\n", "x").as_bytes());
    assert!((400..500).contains(&status), "{answer}");
    // Unknown endpoints and methods.
    let (status, body) = server.get("/nope");
    assert_eq!(status, 404, "{body}");
    let (status, _) = server.get("/predict");
    assert_eq!(status, 405);
    server.alive();
}

/// Sends `requests` (content type, body) one after the other on one kept-alive connection
/// and returns each answer's status and whether it said `Connection: close`; stops after an
/// answer that closes.
fn on_one_connection(url: &str, requests: &[(&str, &[u8])]) -> Vec<(u16, bool)> {
    use std::io::Write;
    let addr = url.strip_prefix("http://").unwrap();
    let stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut out = Vec::new();
    for (content_type, body) in requests {
        let head = format!(
            "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        );
        writer.write_all(head.as_bytes()).unwrap();
        // A server that answers before reading may reset a large body; the answer counts.
        let _ = writer.write_all(body);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
        let (mut length, mut close) = (0usize, false);
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let line = line.trim_end().to_ascii_lowercase();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            close |= line == "connection: close";
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        out.push((status, close));
        if close {
            break;
        }
    }
    out
}

#[test]
fn a_kept_alive_connection_carries_on_after_a_refusal_or_says_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_brightness_model(dir.path());
    let server = Server::start(model.parent().unwrap(), &["--max-body", "64KiB"]);
    let good = png(10, 32, 32);
    let answers = on_one_connection(
        &server.url,
        &[
            ("text/plain", &good),
            ("image/png", &good),
            ("image/png", b""),
            ("image/jpeg", b"text"),
            ("image/png", &good),
        ],
    );
    assert_eq!(
        answers,
        [
            (415, false),
            (200, false),
            (400, false),
            (415, false),
            (200, false)
        ]
    );
    // Over the limit, the body is not read: the answer closes the connection, and says so.
    let over = vec![0u8; 64 * 1024 + 1];
    for content_type in ["image/png", "text/plain"] {
        let answers =
            on_one_connection(&server.url, &[(content_type, &over), ("image/png", &good)]);
        assert_eq!(answers, [(413, true)], "{content_type}");
    }
    server.alive();
}

#[test]
fn the_model_metadata_the_page_and_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_brightness_model(dir.path());
    let mut server = Server::start(model.parent().unwrap(), &[]);

    let (status, body) = server.get("/model");
    assert_eq!(status, 200);
    let info: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(info["classes"], serde_json::json!(["bright", "dark"]));
    assert_eq!(info["input_size"], serde_json::json!([SIDE, SIDE]));
    assert_eq!(info["architecture"], "small_cnn");
    assert_eq!(
        info["sha256"],
        artifact::sha256_file(&model).unwrap().as_str()
    );
    assert_eq!(info["interpolation"], "nearest");
    assert!(info["calibration"].is_null());

    let (status, page) = server.get("/");
    assert_eq!(status, 200);
    assert!(page.contains("<input id=\"file\" type=\"file\""));
    // Self-contained: no external scripts, styles or fonts.
    for external in ["src=\"http", "href=\"http", "@import", "url(http"] {
        assert!(!page.contains(external), "the page loads {external}…");
    }

    // SIGTERM while requests are in flight: they are answered, then it exits 0.
    let url = server.url.clone();
    let in_flight: Vec<_> = (0..4u8)
        .map(|i| {
            let url = url.clone();
            std::thread::spawn(move || {
                ureq::post(&format!("{url}/predict"))
                    .set("Content-Type", "image/png")
                    .send_bytes(&png(i * 60, 500, 500))
                    .map(|r| r.status())
                    .map_err(Box::new)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(server.terminate(), Some(0));
    for t in in_flight {
        // Each request either completed (200) or was never accepted (connection refused):
        // none is cut off half-answered.
        match t.join().unwrap() {
            Ok(status) => assert_eq!(status, 200),
            Err(e) if matches!(*e, ureq::Error::Transport(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}
