//! The bedside page in a real browser: `medseg serve` on loopback, headless Chromium driven
//! through chromedriver (W3C WebDriver over HTTP), a slice uploaded through the page's file
//! input, and the screenshot checked to contain the overlay the server drew.
//!
//! Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them and sets
//! MEDSEG_BROWSER_TESTS=1, which makes their absence a failure); elsewhere the test says it
//! was skipped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use medseg_e2e::binary;
use medseg_runtime::demo::SAMPLES;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Kills the process when the test ends, however it ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `medseg serve` on a free loopback port, and its address.
fn serve() -> (Killed, String) {
    let mut child = Command::new(binary("medseg"))
        .args(["serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting medseg serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("medseg serve printed no address: {line}"))
        .to_string();
    (Killed(child), url)
}

/// chromedriver on a free port, once it answers.
fn chromedriver() -> (Killed, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let base = format!("http://127.0.0.1:{port}");
    let started = Instant::now();
    while ureq::get(&format!("{base}/status")).call().is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "chromedriver did not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (Killed(child), base)
}

fn webdriver(method: &str, url: &str, body: Option<Value>) -> Value {
    let request = ureq::request(method, url);
    let response = match body {
        Some(b) => request.send_json(b),
        None => request.call(),
    };
    let response = match response {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            panic!(
                "{method} {url}: {code} {}",
                r.into_string().unwrap_or_default()
            )
        }
        Err(e) => panic!("{method} {url}: {e}"),
    };
    response.into_json::<Value>().unwrap()["value"].take()
}

#[test]
fn a_slice_uploaded_on_the_page_comes_back_with_its_overlay() {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("MEDSEG_BROWSER_TESTS").is_none(),
            "MEDSEG_BROWSER_TESTS is set but {CHROMEDRIVER} or {CHROMIUM} is missing \
             (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "skipped: no {CHROMIUM} / {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let slice = dir.path().join("slice.png");
    std::fs::write(&slice, SAMPLES[0].image).unwrap();
    let profile = dir.path().join("profile");

    let (_server, page) = serve();
    let (_driver, driver) = chromedriver();
    // Flags as this machine kind's notes give them: its closed network refuses Chromium's
    // background connections.
    let session = webdriver(
        "POST",
        &format!("{driver}/session"),
        Some(json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                         "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync",
                         "--disable-dev-shm-usage", "--window-size=1200,1100",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}})),
    );
    let id = session["sessionId"]
        .as_str()
        .expect("a session id")
        .to_string();
    let s = format!("{driver}/session/{id}");
    let outcome = std::panic::catch_unwind(|| {
        webdriver("POST", &format!("{s}/url"), Some(json!({"url": page})));
        let input = webdriver(
            "POST",
            &format!("{s}/element"),
            Some(json!({"using": "css selector", "value": "#file"})),
        );
        let input = input[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no file input on the page: {input}"))
            .to_string();
        // Typing a path into a file input is how WebDriver picks a file; the page's change
        // handler posts it.
        webdriver(
            "POST",
            &format!("{s}/element/{input}/value"),
            Some(json!({"text": slice.display().to_string()})),
        );
        let started = Instant::now();
        let state = loop {
            let state = webdriver(
                "POST",
                &format!("{s}/execute/sync"),
                Some(
                    json!({"script": "return [document.getElementById('result').style.display, \
                    document.getElementById('status').textContent, \
                    document.getElementById('areas').textContent, \
                    document.getElementById('overlay').naturalWidth, \
                    document.getElementById('status').className];", "args": []}),
                ),
            );
            if state[0] == "flex" || state[4] == "error" {
                break state;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the page showed no result: {state}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        assert_eq!(state[0], "flex", "the page reported: {state}");
        assert!(state[1].as_str().unwrap().ends_with("done"), "{state}");
        assert!(
            state[2].as_str().unwrap().contains("cancellous_bone"),
            "{state}"
        );
        assert_eq!(state[3], 512, "the overlay is at the slice's size: {state}");

        let shot = webdriver("GET", &format!("{s}/screenshot"), None);
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot.as_str().unwrap())
            .unwrap();
        let kept = std::env::temp_dir().join("medseg-serve-page.png");
        std::fs::write(&kept, &png).unwrap();
        let shot = image::load_from_memory(&png).unwrap().into_rgb8();
        // The overlay paints the vertebral body's outline in (255, 40, 40): nothing else on
        // the page is that red.
        let red = shot
            .pixels()
            .filter(|p| p[0] > 200 && p[1] < 90 && p[2] < 90)
            .count();
        assert!(
            red > 40,
            "the screenshot ({}) shows {red} overlay pixels",
            kept.display()
        );
    });
    webdriver("DELETE", &s, None);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
