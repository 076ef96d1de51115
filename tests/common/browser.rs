//! A headless Chromium driven over WebDriver (`chromedriver`), for the
//! dashboard's tests. A small client of the W3C WebDriver protocol over the
//! blocking HTTP client the tests already use (no async runtime, no extra
//! crate): a session, navigation, script execution, element clicks and keys,
//! window size and screenshots.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
}

/// `Some` with both programs there; otherwise a loud skip (a failure under CI=true).
pub fn browser() -> Option<Browser> {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if !missing.is_empty() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true, but {missing:?} is not installed (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "\n*** SKIPPED: {missing:?} not installed (apt-get install chromium chromium-driver) to test the dashboard in a browser; with CI=true this is a failure. ***\n"
        );
        return None;
    }
    Some(Browser::start())
}

/// Starts chromedriver on a port it picks; the port it says, or what it
/// printed instead when it exited (or said nothing) first.
fn start_driver() -> Result<(Driver, String), String> {
    let driver = Command::new(CHROMEDRIVER)
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("start chromedriver: {e}"))?;
    // Stopped however this ends, a failed start included.
    let mut driver = Driver(Some(driver));
    let child = driver.0.as_mut().unwrap();
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    for (reader, said) in [
        (Box::new(stdout) as Box<dyn std::io::Read + Send>, said.clone()),
        (Box::new(stderr), said.clone()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            // "ChromeDriver was started successfully on port N."
            for line in BufReader::new(reader).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("successfully on port ").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
                said.lock().unwrap().push(line);
            }
        });
    }
    drop(tx);
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(port) => Ok((driver, port)),
        Err(e) => Err(format!(
            "chromedriver did not say its port ({e}): {}",
            said.lock().unwrap().join("\n")
        )),
    }
}

impl Browser {
    fn start() -> Browser {
        // A start that fails (chromedriver exits at once, now and then, when
        // many start together) is tried again, twice.
        let mut failures = Vec::new();
        let (mut driver, port) = loop {
            match start_driver() {
                Ok(started) => break started,
                Err(e) if failures.len() < 2 => failures.push(e),
                Err(e) => panic!("{}\n{e}", failures.join("\n")),
            }
        };
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while call("GET", &format!("{base}/status"), None).map_or(true, |v| v["value"]["ready"] != true) {
            assert!(Instant::now() < deadline, "chromedriver is not ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--hide-scrollbars", "--no-first-run",
                         "--disable-extensions", "--lang=en-US"],
            },
        }}});
        let answer = call("POST", &format!("{base}/session"), Some(caps)).expect("a WebDriver session");
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_string();
        Browser {
            driver: driver.0.take().unwrap(),
            base,
            session,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        match call(method, &url, body) {
            Ok(v) => v["value"].clone(),
            Err(e) => panic!("WebDriver {method} {path}: {e}"),
        }
    }

    /// Opens `url` and waits for the page to have loaded.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub fn js(&self, script: &str, args: &[Value]) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": args })))
    }

    /// Polls `script` until it returns something truthy (not null, false, 0 or
    /// ""), within `limit`; returns that value.
    pub fn wait(&self, what: &str, limit: Duration, script: &str, args: &[Value]) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.js(script, args);
            let truthy = !(v.is_null() || v == Value::Bool(false) || v == json!(0) || v == json!(""));
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.js("return document.body ? document.body.innerText : ''", &[]);
                panic!(
                    "timed out after {limit:?} waiting for {what}; the page says:\n{}",
                    text.as_str().unwrap_or("")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The element `css` selects (panics when there is none).
    fn element(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", Some(json!({"using": "css selector", "value": css})));
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element `{css}`: {v}"))
            .to_string()
    }

    /// Clicks the element `css` selects, as a user would.
    pub fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/value"), Some(json!({ "text": text })));
    }

    /// Presses and releases `key` (a WebDriver key code, e.g. `\u{E015}` for
    /// ArrowDown) in whatever element has the focus, as a user would.
    pub fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.cmd("POST", "/actions", Some(actions));
    }

    /// Sets the window's outer size.
    pub fn size(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", Some(json!({"width": width, "height": height})));
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) {
        use base64::Engine;
        let v = self.cmd("GET", "/screenshot", None);
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 PNG"))
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}

/// chromedriver until the session is made.
struct Driver(Option<Child>);

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = call("DELETE", &format!("{}/session/{}", self.base, self.session), None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn call(method: &str, url: &str, body: Option<Value>) -> Result<Value, String> {
    let req = ureq::request(method, url).timeout(Duration::from_secs(60));
    let result = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match result {
        Ok(r) => r.into_json::<Value>().map_err(|e| e.to_string()),
        Err(ureq::Error::Status(code, r)) => Err(format!("{code}: {}", r.into_string().unwrap_or_default())),
        Err(e) => Err(e.to_string()),
    }
}
