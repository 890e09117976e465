//! A real headless Chromium driven over WebDriver (chromedriver + fantoccini), for the web
//! UI's tests. Debian's `chromium` and `chromium-driver` packages provide both (`.ci/run`
//! installs them). Without them, [`Browser::start`] says why and returns `None` (the test
//! passes), unless `SLUICE_REQUIRE_BROWSER=1`, which makes it a failure (CI sets it).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

/// How long a test waits for the page to show something.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// chromedriver and a browser session.
pub struct Browser {
    driver: Child,
    /// The WebDriver session.
    pub client: Client,
    profile: tempfile::TempDir,
    /// Where screenshots go (`target/tmp/ui-screenshots`).
    pub shots: PathBuf,
}

fn find(names: &[&str]) -> Option<PathBuf> {
    names.iter().map(PathBuf::from).find(|p| p.is_file())
}

impl Browser {
    /// Starts chromedriver and a headless Chromium, or `None` when they are not installed.
    pub async fn start() -> Option<Browser> {
        let chromium = find(&["/usr/bin/chromium", "/usr/bin/chromium-browser"]);
        let driver = find(&["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            let required = std::env::var("SLUICE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "SLUICE_REQUIRE_BROWSER=1 but chromium or chromedriver is missing: \
                 apt-get install chromium chromium-driver"
            );
            eprintln!(
                "SKIPPED: no chromium + chromedriver; apt-get install chromium chromium-driver"
            );
            return None;
        };
        // chromedriver takes no port 0: take a free port from the OS and hand it over.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("chromedriver did not listen on {port}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chromium,
                // As root in a container, without the network: no sandbox, no background
                // connections (refused here, and slow to give up on).
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&url)
            .await
            .expect("a browser session");
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser {
            driver: child,
            client,
            profile,
            shots,
        })
    }

    /// Saves a screenshot of the page as `NAME.png`.
    pub async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// The text of the first element matching `css`, waiting for it to exist.
    pub async fn text(&self, css: &str) -> String {
        let e = self
            .client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        e.text().await.unwrap_or_default()
    }

    /// Waits until `done` holds for the text of the first element matching `css` (the page
    /// changes by itself: live pages refresh without a reload).
    pub async fn wait_text(&self, css: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if done(&text) {
                return text;
            }
            if Instant::now() > deadline {
                let page = self.client.source().await.unwrap_or_default();
                panic!("{what}: {css} still reads {text:?} after {PATIENCE:?}:\n{page}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Where the profile lives (for messages).
    pub fn profile(&self) -> &Path {
        self.profile.path()
    }
}

impl Browser {
    /// Ends the session (the browser quits), then chromedriver.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A test that panicked never closed its session: its browser is found by its own
        // profile directory, which no other process names.
        let _ = Command::new("pkill")
            .arg("-KILL")
            .arg("-f")
            .arg(self.profile.path())
            .status();
    }
}
