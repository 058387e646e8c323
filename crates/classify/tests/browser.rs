//! The page of `classify serve` in a real headless Chromium, driven through chromedriver with
//! the W3C WebDriver protocol (plain HTTP JSON over `ureq`).
//!
//! The test serves the hand-set brightness model, opens `GET /` in the browser, chooses a
//! shared Kaggle photo in `#file` and waits for the page to answer (`data-state="done"`). It
//! checks that the class on the page is the one `POST /predict` of the same bytes and
//! `classify predict` of the same file give, that the probability and the one `.bar` per
//! class agree with the JSON answer, that the `#model` line names the classes and that the
//! photo is previewed at its size. Then it chooses a text file named `.png` and checks the
//! page shows the server's error (`data-state="error"`, the result hidden). Screenshots of
//! both go to `<target>/browser/serve-page.png` and `serve-page-error.png`. Finally the
//! session is deleted, chromedriver stopped, and the server must exit 0 on SIGTERM.
//!
//! Needs `/usr/bin/chromium` and `chromedriver` (Debian: `chromium chromium-driver`) and the
//! shared data folder (`LITTLEDATA_SHARED`). Without them it skips with a note, or fails when
//! `CI` is set (`.ci/run` installs both packages).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::write_brightness_model;
use serde_json::{Value, json};

/// The Chromium binary the session asks chromedriver to start.
const CHROMIUM: &str = "/usr/bin/chromium";
/// The key of a web element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long the page may take to answer a chosen file.
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
/// The photo the page classifies.
const PHOTO: &str = "cat.0.jpg";

/// A child process killed (and reaped) when dropped, unless it already exited.
struct Guard {
    name: &'static str,
    child: Option<Child>,
}

impl Guard {
    fn new(name: &'static str, child: Child) -> Self {
        Self {
            name,
            child: Some(child),
        }
    }

    fn id(&self) -> u32 {
        self.child.as_ref().expect("the child is running").id()
    }

    /// Waits up to `limit` for the child to exit by itself; `None` if it did not.
    fn wait_for(&mut self, limit: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + limit;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(None) => return None,
                Err(e) => panic!("waiting for {}: {e}", self.name),
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A WebDriver session on a chromedriver; deletes the session, then stops chromedriver, when
/// dropped (so Chromium never outlives the test).
struct Browser {
    agent: ureq::Agent,
    /// `http://127.0.0.1:PORT` of chromedriver.
    driver_url: String,
    session: Option<String>,
    // Dropped after `Drop::drop` has deleted the session.
    _driver: Guard,
}

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session on it, its profile
    /// in `profile`, chromedriver's log in `log`.
    fn start(chromedriver: &Path, profile: &Path, log: &Path) -> Self {
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", chromedriver.display()));
        let mut browser = Self {
            agent: agent(),
            driver_url: format!("http://127.0.0.1:{port}"),
            session: None,
            _driver: Guard::new("chromedriver", driver),
        };
        browser.wait_ready(log);
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:loggingPrefs": { "browser": "ALL" },
                "goog:chromeOptions": {
                    "binary": CHROMIUM,
                    "args": [
                        "--headless=new",
                        "--no-sandbox",
                        "--disable-gpu",
                        "--disable-dev-shm-usage",
                        "--disable-quic",
                        "--no-first-run",
                        "--disable-background-networking",
                        "--disable-component-update",
                        "--disable-sync",
                        "--window-size=1000,800",
                        format!("--user-data-dir={}", profile.display()),
                    ],
                },
            }},
        });
        let value = browser.call("POST", "/session", Some(capabilities));
        let id = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no sessionId in the new session's answer: {value}"));
        browser.session = Some(id.to_string());
        browser
    }

    /// Waits (up to 20 s) for chromedriver's `GET /status` to say it is ready.
    fn wait_ready(&self, log: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = self
                .agent
                .get(&format!("{}/status", self.driver_url))
                .call()
                .ok()
                .and_then(|r| r.into_json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == json!(true));
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready within 20 s; its log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One WebDriver command: `method` on chromedriver's `path` with the JSON `body`;
    /// returns the answer's `value`, panicking with the WebDriver error if it failed.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    fn try_call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.driver_url));
        let answer = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        let response = match answer {
            Ok(r) => r,
            Err(ureq::Error::Status(code, r)) => {
                let text = r.into_string().unwrap_or_default();
                let detail = serde_json::from_str::<Value>(&text)
                    .ok()
                    .map(|v| {
                        format!(
                            "{}: {}",
                            v["value"]["error"].as_str().unwrap_or("?"),
                            v["value"]["message"].as_str().unwrap_or(&text)
                        )
                    })
                    .unwrap_or(text);
                return Err(format!("status {code}: {detail}"));
            }
            Err(e) => return Err(e.to_string()),
        };
        let mut v: Value = response.into_json().map_err(|e| e.to_string())?;
        Ok(v["value"].take())
    }

    /// `/session/{id}` followed by `rest`.
    fn session_path(&self, rest: &str) -> String {
        format!(
            "/session/{}{rest}",
            self.session.as_deref().expect("a session")
        )
    }

    fn navigate(&self, url: &str) {
        self.call(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        );
    }

    /// The element reference of the first element matching the CSS `selector`.
    fn find(&self, selector: &str) -> String {
        let v = self.call(
            "POST",
            &self.session_path("/element"),
            Some(json!({ "using": "css selector", "value": selector })),
        );
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("no element reference for {selector}: {v}"))
            .to_string()
    }

    /// Types `text` into `element` (for a file input: chooses the file at that path).
    fn send_keys(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &self.session_path(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        );
    }

    /// Runs the function body `script` in the page; returns what it returns.
    fn script(&self, script: &str) -> Value {
        self.call(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// Polls `script` until it returns something other than `null` or `false`, for up to
    /// `limit`; panics with `what` (and the page's state) past it.
    fn wait_until(&self, what: &str, limit: Duration, script: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.script(script);
            if !v.is_null() && v != json!(false) {
                return v;
            }
            if Instant::now() >= deadline {
                let state = self.script(
                    "return {state: document.body.dataset.state, \
                     status: document.getElementById('status').textContent, \
                     error: document.getElementById('error').textContent};",
                );
                panic!("{what}: not within {limit:?}; the page: {state}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The page as a PNG.
    fn screenshot(&self) -> Vec<u8> {
        let v = self.call("GET", &self.session_path("/screenshot"), None);
        let png = base64_decode(v.as_str().expect("the screenshot is a base64 string"));
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "the screenshot is not a PNG"
        );
        png
    }

    /// The browser console's entries since the last call (chromedriver's log extension);
    /// empty when it is not available.
    fn console(&self) -> Vec<Value> {
        self.try_call(
            "POST",
            &self.session_path("/se/log"),
            Some(json!({ "type": "browser" })),
        )
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
    }

    /// Deletes the session (closing Chromium).
    fn quit(&mut self) {
        if let Some(id) = self.session.take() {
            let path = format!("/session/{id}");
            if let Err(e) = self.try_call("DELETE", &path, None) {
                eprintln!("note: deleting the WebDriver session: {e}");
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.quit();
    }
}

/// A `ureq` agent that ignores proxies, with bounded waits.
fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .try_proxy_from_env(false)
        .timeout_connect(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        .build()
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().unwrap().port()
}

/// The first `name` on `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The workspace's target folder: `CARGO_TARGET_DIR`, else `<workspace>/target`.
fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
}

/// Standard base64 (with or without padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    let sextet = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("{:?} is not a base64 character", char::from(c)),
        }
    };
    let digits: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0;
        for (i, &c) in chunk.iter().enumerate() {
            n |= sextet(c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

/// Starts `classify serve` on a free port; returns the guard and `http://127.0.0.1:PORT`.
fn start_server(model: &Path, log: &Path) -> (Guard, String) {
    let stderr = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_classify"))
        .args(["serve", "--model"])
        .arg(model)
        .args(["--addr", "127.0.0.1:0", "--device", "cpu"])
        .env_remove("LITTLEDATA_VGG16_WEIGHTS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("starting classify serve");
    let mut guard = Guard::new("classify serve", child);
    let stdout = guard.child.as_mut().unwrap().stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let url = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| {
            panic!(
                "classify serve printed no `listening on` line within 30 s; its stderr:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
    (guard, url)
}

/// Whether a console entry is about the page (not the favicon the browser asks for itself).
fn page_problem(entry: &Value) -> bool {
    entry["level"] == json!("SEVERE")
        && !entry["message"]
            .as_str()
            .unwrap_or_default()
            .contains("favicon.ico")
}

/// A page percentage (`"12.3 %"`) as a fraction.
fn parse_percent(text: &str) -> f64 {
    text.trim()
        .trim_end_matches('%')
        .trim()
        .parse::<f64>()
        .unwrap_or_else(|e| panic!("{text:?} is not a percentage: {e}"))
        / 100.0
}

/// What the page shows of its answer.
const READ_ANSWER: &str = r##"
const $ = (id) => document.getElementById(id);
const preview = $("preview");
return {
  state: document.body.dataset.state,
  model: $("model").textContent,
  cls: $("result-class").textContent,
  probability: $("result-probability").textContent,
  shown: $("result").classList.contains("shown"),
  error_shown: $("error").classList.contains("shown"),
  preview: [preview.naturalWidth, preview.naturalHeight],
  bars: Array.from(document.querySelectorAll("#bars .bar")).map((b) => ({
    cls: b.dataset.class,
    top: b.classList.contains("top"),
    label: b.querySelector(".label span:first-child").textContent,
    value: b.querySelector(".label span:last-child").textContent,
    width: b.querySelector(".fill").style.width,
    px: b.querySelector(".fill").getBoundingClientRect().width,
    track_px: b.querySelector(".track").getBoundingClientRect().width,
  })),
};
"##;

#[test]
fn the_page_classifies_a_chosen_photo_in_chromium() {
    let start = Instant::now();
    let Some(shared) = testkit::shared_dir("the_page_classifies_a_chosen_photo_in_chromium") else {
        return;
    };
    let chromedriver = find_in_path("chromedriver")
        .or_else(|| Some(PathBuf::from("/usr/bin/chromedriver")).filter(|p| p.is_file()));
    let chromedriver = match chromedriver {
        Some(d) if Path::new(CHROMIUM).is_file() => d,
        _ => {
            let missing = format!(
                "{CHROMIUM} or chromedriver is missing (Debian packages `chromium chromium-driver`)"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{missing}: .ci/run installs `chromium chromium-driver` when CI is set");
            }
            eprintln!("note: the browser test skipped: {missing}");
            return;
        }
    };
    let photo = testkit::kaggle_photos(&shared).join(PHOTO);
    let photo = photo
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", photo.display()));
    let photo_bytes = std::fs::read(&photo).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("model");
    write_brightness_model(&model_dir);
    let server_log = tmp.path().join("serve.log");
    let (mut server, url) = start_server(&model_dir, &server_log);
    let http = agent();

    // What the API and the command line say of the same photo.
    let info: Value = http
        .get(&format!("{url}/model"))
        .call()
        .expect("GET /model")
        .into_json()
        .unwrap();
    let classes: Vec<String> = info["classes"]
        .as_array()
        .expect("GET /model names the classes")
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    assert_eq!(classes, ["bright", "dark"], "{info}");
    let api: Value = http
        .post(&format!("{url}/predict"))
        .set("Content-Type", "image/jpeg")
        .send_bytes(&photo_bytes)
        .expect("POST /predict")
        .into_json()
        .unwrap();
    let api_class = api["class"]
        .as_str()
        .expect("the answer's class")
        .to_string();
    let model_dir_arg = model_dir.to_str().unwrap();
    let photo_arg = photo.to_str().unwrap();
    let cli = common::run_ok(&[
        "predict",
        "--model",
        model_dir_arg,
        "--device",
        "cpu",
        photo_arg,
    ]);
    let line = cli
        .lines()
        .find(|l| l.starts_with(photo_arg))
        .unwrap_or_else(|| panic!("no line for {photo_arg} in:\n{cli}"));
    let (cli_class, cli_p) = line[photo_arg.len()..]
        .trim_start_matches(": ")
        .trim_end_matches(')')
        .split_once(" (")
        .unwrap_or_else(|| panic!("{line:?} is not `PATH: CLASS (P)`"));
    let cli_p: f64 = cli_p.parse().unwrap();
    assert_eq!(
        cli_class, api_class,
        "classify predict: {line}; POST /predict: {api}"
    );
    let api_p = api["probability"].as_f64().unwrap();
    assert!((cli_p - api_p).abs() < 1e-4, "{line} against {api}");

    // The page, in Chromium.
    let profile = tmp.path().join("chromium-profile");
    let mut browser = Browser::start(
        &chromedriver,
        &profile,
        &tmp.path().join("chromedriver.log"),
    );
    browser.navigate(&format!("{url}/"));
    browser.wait_until(
        "the page's #model line",
        PAGE_TIMEOUT,
        r#"const t = document.getElementById("model").textContent;
           return t.startsWith("Loading") ? null : t;"#,
    );
    let input = browser.find("#file");
    let chosen = Instant::now();
    browser.send_keys(&input, photo_arg);
    let state = browser.wait_until(
        "the page's answer to the photo",
        PAGE_TIMEOUT,
        r#"const s = document.body.dataset.state;
           return s === "done" || s === "error" ? s : null;"#,
    );
    assert_eq!(
        state,
        json!("done"),
        "the page failed on the photo: {}",
        browser.script("return document.getElementById('error').textContent;")
    );
    let answered = chosen.elapsed();
    // The preview is a blob URL decoded after the answer may be shown.
    browser.wait_until(
        "the preview of the photo",
        PAGE_TIMEOUT,
        r#"const p = document.getElementById("preview");
           return p.complete && p.naturalWidth > 0;"#,
    );
    let page = browser.script(READ_ANSWER);
    eprintln!("the page after choosing {PHOTO} (answered in {answered:?}): {page:#}");

    assert_eq!(page["state"], json!("done"), "{page}");
    assert_eq!(page["shown"], json!(true), "#result is not shown: {page}");
    assert_eq!(page["error_shown"], json!(false), "#error is shown: {page}");
    assert_eq!(
        page["cls"],
        json!(api_class),
        "page against POST /predict {api}"
    );
    let shown_p = parse_percent(
        page["probability"]
            .as_str()
            .unwrap()
            .trim_start_matches("probability"),
    );
    assert!(
        (shown_p - api_p).abs() <= 0.0005 + 1e-9,
        "the page shows {} for {api_p}",
        page["probability"]
    );
    let model_line = page["model"].as_str().unwrap();
    for class in &classes {
        assert!(
            model_line.contains(class.as_str()),
            "#model {model_line:?} does not mention {class}"
        );
    }
    assert!(model_line.contains("2 classes"), "#model {model_line:?}");
    let (w, h) = image::image_dimensions(&photo).unwrap();
    assert_eq!(
        page["preview"],
        json!([w, h]),
        "the preview is not the photo"
    );

    let bars = page["bars"].as_array().unwrap();
    assert_eq!(bars.len(), classes.len(), "one .bar per class: {page}");
    let mut widths = 0.0;
    for (bar, class) in bars.iter().zip(&classes) {
        assert_eq!(
            bar["cls"],
            json!(class),
            "bars in the model's class order: {bar}"
        );
        assert_eq!(bar["label"], json!(class), "{bar}");
        assert_eq!(
            bar["top"],
            json!(*class == api_class),
            "only the answer's bar is top: {bar}"
        );
        let p = api["probabilities"][class.as_str()].as_f64().unwrap();
        let shown = parse_percent(bar["value"].as_str().unwrap());
        assert!((shown - p).abs() <= 0.0005 + 1e-9, "{bar} against {p}");
        let width = parse_percent(bar["width"].as_str().unwrap());
        assert!((width - p).abs() <= 0.00005 + 1e-9, "{bar} against {p}");
        let (px, track) = (
            bar["px"].as_f64().unwrap(),
            bar["track_px"].as_f64().unwrap(),
        );
        assert!(track > 50.0, "the bar's track is {track} px wide: {bar}");
        assert!(
            (px - p * track).abs() <= 1.5,
            "{bar}: drawn {px} of {track} px for {p}"
        );
        widths += width;
    }
    assert!((widths - 1.0).abs() < 1e-3, "the bars add to {widths}");

    let problems: Vec<Value> = browser.console().into_iter().filter(page_problem).collect();
    assert!(problems.is_empty(), "the console: {problems:#?}");

    let shots = target_dir().join("browser");
    std::fs::create_dir_all(&shots).unwrap();
    let shots = shots.canonicalize().unwrap();
    let shot = shots.join("serve-page.png");
    std::fs::write(&shot, browser.screenshot()).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // A file that is not an image, named as one.
    let fake = tmp.path().join("notes.png");
    std::fs::write(&fake, "these are notes, not a photo\n").unwrap();
    browser.send_keys(&input, fake.to_str().unwrap());
    let state = browser.wait_until(
        "the page's answer to a text file",
        PAGE_TIMEOUT,
        r#"const s = document.body.dataset.state;
           return s === "error" ? s : null;"#,
    );
    assert_eq!(state, json!("error"));
    let page = browser.script(READ_ANSWER);
    let error = browser.script("return document.getElementById('error').textContent;");
    eprintln!("the page after choosing notes.png: error {error}");
    let error = error.as_str().unwrap();
    assert!(error.contains("not a JPEG or PNG"), "#error: {error:?}");
    assert_eq!(
        page["error_shown"],
        json!(true),
        "#error is not shown: {page}"
    );
    assert_eq!(
        page["shown"],
        json!(false),
        "the old result is still shown: {page}"
    );
    std::fs::write(shots.join("serve-page-error.png"), browser.screenshot()).unwrap();
    // The failed request is logged, so the console check above reads a working log.
    let console = browser.console();
    assert!(
        console.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("/predict") && m.contains("415"))),
        "the console does not show the refused request: {console:#?}"
    );

    browser.quit();
    drop(browser);

    let pid = server.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("running kill");
    assert!(kill.success(), "kill -TERM {pid}: {kill}");
    let status = server
        .wait_for(Duration::from_secs(10))
        .expect("classify serve did not exit within 10 s of SIGTERM");
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    assert!(
        status.success(),
        "classify serve exited with {status}; stderr:\n{log}"
    );
    assert!(log.contains("stopped"), "stderr:\n{log}");
    eprintln!("the browser test took {:?}", start.elapsed());
}
