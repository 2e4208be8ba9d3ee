//! Headless Chromium driven over the Chrome DevTools Protocol, with the
//! tungstenite client the crate already has: navigate, evaluate JavaScript
//! in the page, take screenshots.
//!
//! Every wait is bounded, and the browser is killed when the handle drops,
//! also when a test panics.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// The Debian package's binary.
const CHROMIUM: &str = "chromium";
/// How long one DevTools command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// A running headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
}

impl Browser {
    /// Starts Chromium; when it is not installed, skips or fails as
    /// [`external_tool`](super::external_tool) decides.
    pub fn launch_or_skip(test: &str) -> Option<Browser> {
        super::external_tool(CHROMIUM, test)?;
        Some(Browser::launch())
    }

    fn launch() -> Browser {
        let profile = std::env::temp_dir().join(format!(
            "agentgate-obs-chromium-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&profile).expect("a fresh profile directory");
        let mut child = Command::new(CHROMIUM)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                "--disable-sync",
                "--disable-extensions",
                "--hide-scrollbars",
                "--force-device-scale-factor=1",
                "--window-size=1600,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Keeps reading stderr for the browser's whole life, so it never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not print its DevTools URL within 30 s");
            }
        };
        let (ws, _) = tungstenite::connect(url.as_str()).expect("DevTools WebSocket");
        if let MaybeTlsStream::Plain(s) = ws.get_ref() {
            s.set_read_timeout(Some(COMMAND_TIMEOUT)).unwrap();
        }
        let mut browser = Browser {
            child,
            profile,
            ws,
            session: String::new(),
            next_id: 0,
        };
        let target = browser.command("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = browser.command(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        browser.page("Page.enable", json!({}));
        browser.page("Runtime.enable", json!({}));
        // Runs before any script of every page (and outside its CSP):
        // records uncaught errors, failed loads and rejected promises.
        browser.page(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__pageErrors = []; \
                addEventListener('error', e => __pageErrors.push(String(e.message || \
                  (e.target && (e.target.src || e.target.href)) || e.type)), true); \
                addEventListener('unhandledrejection', e => __pageErrors.push(String(e.reason)));"}),
        );
        browser
    }

    /// Sends a browser-level command and returns its result.
    fn command(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// Sends a command to the page and returns its result.
    pub fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        self.ws
            .send(Message::Text(message.to_string().into()))
            .expect("DevTools accepts a command");
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer in time");
            let text = match self.ws.read().expect("a DevTools message") {
                Message::Text(text) => text,
                _ => continue,
            };
            let reply: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or another session's traffic
            }
            if let Some(error) = reply.get("error") {
                panic!("{method} failed: {error}");
            }
            return reply["result"].clone();
        }
    }

    /// Loads `url` and waits until its document has loaded.
    pub fn navigate(&mut self, url: &str) {
        let result = self.page("Page.navigate", json!({"url": url}));
        assert!(
            result.get("errorText").is_none(),
            "navigating to {url}: {result}"
        );
        self.wait_for(
            Duration::from_secs(20),
            "the document loaded",
            "document.readyState === 'complete'",
        );
    }

    /// Evaluates `expression` in the page and returns its value as JSON.
    pub fn eval(&mut self, expression: &str) -> Value {
        let result = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = result.get("exceptionDetails") {
            panic!("evaluating `{expression}` threw: {exception}");
        }
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until it is truthy and returns that value;
    /// fails the test after `limit`, showing the last value.
    pub fn wait_for(&mut self, limit: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {limit:?} (last value {value})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Fails the test if the page threw, failed to load a resource, or
    /// left a promise rejection unhandled.
    pub fn assert_no_page_errors(&mut self) {
        let errors = self.eval("window.__pageErrors || ['the error recorder is missing']");
        assert_eq!(errors, json!([]), "errors in the page");
    }

    /// Saves a PNG of the page's viewport to `path`.
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let data = shot["data"].as_str().expect("base64 PNG data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG"), "a PNG image");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshot's directory");
        }
        std::fs::write(path, png).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// `target/NAME` in the crate's directory, where the README takes its
/// screenshot from.
pub fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join(name)
}
