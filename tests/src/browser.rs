//! A real headless Chromium (Debian's `chromium`), driven over WebDriver by
//! Debian's `chromedriver`, for the console's tests. Calls block, like the
//! rest of the harness; each waits for what a person would wait for (a text
//! to appear), never for a fixed time.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Longest wait for a page to show something.
const PATIENCE: Duration = Duration::from_secs(30);

pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Client,
    driver: Child,
    screenshots: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// A new headless browser of `width`×`height`; screenshots go to
    /// `target/console-screenshots/`.
    pub fn open(width: u32, height: u32) -> Browser {
        for needed in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(needed).exists(),
                "{needed} is missing: install Debian's chromium and chromium-driver (cargo xtask test does)"
            );
        }
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let profile = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        // The flags keep Chromium off the network this machine does not have
        // (it would try Google's hosts at every start) and inside a container.
        let size = format!("--window-size={width},{height}");
        let profile_dir = format!("--user-data-dir={}", profile.path().display());
        let capabilities = json!({ "goog:chromeOptions": { "binary": CHROMIUM, "args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            size, profile_dir,
        ] } });
        let serde_json::Value::Object(capabilities) = capabilities else { unreachable!() };
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + PATIENCE;
        let client = loop {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(capabilities.clone());
            match runtime.block_on(builder.connect(&url)) {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    let _ = e; // chromedriver is still starting
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("no browser session from chromedriver: {e}"),
            }
        };
        let screenshots = crate::target_dir().join("console-screenshots");
        std::fs::create_dir_all(&screenshots).unwrap();
        Browser { runtime, client, driver, screenshots, _profile: profile }
    }

    pub fn goto(&self, url: &str) {
        self.runtime.block_on(self.client.goto(url)).unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.runtime.block_on(self.client.set_window_size(width, height)).expect("window resized");
    }

    /// The text of the first element `css` matches, once there is one.
    pub fn text(&self, css: &str) -> String {
        self.wait_text(css, |_| true)
    }

    /// The text of `css`, once `ready` holds for it; panics (with a
    /// screenshot `failed.png`) with the last text seen.
    #[track_caller]
    pub fn wait_text(&self, css: &str, mut ready: impl FnMut(&str) -> bool) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = None;
        loop {
            let text = self.runtime.block_on(async {
                let element = self.client.find(Locator::Css(css)).await.ok()?;
                element.text().await.ok()
            });
            if let Some(text) = &text
                && ready(text)
            {
                return text.clone();
            }
            last = text.or(last);
            if Instant::now() > deadline {
                self.screenshot("failed");
                panic!("the page never showed what was awaited in {css:?}; last text: {last:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The texts of every element `css` matches, read in one go (again if
    /// the page re-rendered one of them meanwhile).
    pub fn texts(&self, css: &str) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let read = self.runtime.block_on(async {
                let mut texts = Vec::new();
                for element in self.client.find_all(Locator::Css(css)).await? {
                    texts.push(element.text().await?);
                }
                Ok::<_, fantoccini::error::CmdError>(texts)
            });
            match read {
                Ok(texts) => return texts,
                Err(e) if Instant::now() > deadline => panic!("cannot read {css:?}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Runs `script` in the page and answers what it returns.
    pub fn eval(&self, script: &str) -> serde_json::Value {
        self.runtime.block_on(self.client.execute(script, Vec::new())).unwrap_or_else(|e| panic!("script failed: {e}"))
    }

    pub fn click(&self, css: &str) {
        self.text(css);
        self.runtime.block_on(async { self.client.find(Locator::Css(css)).await?.click().await }).unwrap_or_else(|e| panic!("cannot click {css}: {e}"));
    }

    /// Replaces the value of the input `css` with `keys`, as typed.
    pub fn type_into(&self, css: &str, keys: &str) {
        self.text(css);
        self.runtime
            .block_on(async {
                let input = self.client.find(Locator::Css(css)).await?;
                input.clear().await?;
                input.send_keys(keys).await
            })
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Sends keys to whatever has the focus (e.g. "\u{E00C}", Escape).
    pub fn press(&self, keys: &str) {
        self.runtime.block_on(async { self.client.active_element().await?.send_keys(keys).await }).expect("keys sent");
    }

    pub fn is_displayed(&self, css: &str) -> bool {
        self.runtime.block_on(async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.is_displayed().await.unwrap_or(false),
                Err(_) => false,
            }
        })
    }

    /// Saves what the page shows now as `target/console-screenshots/NAME.png`.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.runtime.block_on(self.client.screenshot()).expect("screenshot");
        let path = self.screenshots.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.runtime.block_on(self.client.clone().close());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
