//! A real browser for the page and storefront tests: Debian's headless
//! Chromium driven over WebDriver (chromedriver) with fantoccini.
//!
//! Where no Chromium or chromedriver is found, the browser tests print
//! `SKIPPED: browser tests …` and pass, unless `PAYBIND_REQUIRE_BROWSER=1`
//! (set by `.ci/run`) makes that a failure. One chromedriver serves the
//! whole test process; each test has its own browser session, and at most
//! two browsers run at once (the machine has two cores).
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::Duration,
};

use anyhow::Context;
use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use tokio::sync::{Semaphore, SemaphorePermit};

const CHROMIUM: &[&str] = &[
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
];
const CHROMEDRIVER: &[&str] = &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"];

/// A desktop window; `Browser::phone` makes it 360 px wide.
pub const DESKTOP: (u32, u32) = (1200, 1000);
pub const PHONE: (u32, u32) = (360, 800);

fn browser_required() -> bool {
    std::env::var("PAYBIND_REQUIRE_BROWSER").is_ok_and(|v| v == "1")
}

fn find(candidates: &[&str], name: &str) -> Option<PathBuf> {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// The chromedriver of this test process (started once, killed when the
/// process ends).
struct Driver {
    url: String,
    chromium: PathBuf,
    _child: std::process::Child,
}

fn driver() -> anyhow::Result<Option<&'static Driver>> {
    static DRIVER: OnceLock<Result<Option<Driver>, String>> = OnceLock::new();
    let started = DRIVER.get_or_init(|| start_driver().map_err(|e| format!("{e:#}")));
    match started {
        Ok(driver) => Ok(driver.as_ref()),
        Err(e) => Err(anyhow::anyhow!("{e}")),
    }
}

fn start_driver() -> anyhow::Result<Option<Driver>> {
    let (Some(chromium), Some(chromedriver)) = (
        find(CHROMIUM, "chromium"),
        find(CHROMEDRIVER, "chromedriver"),
    ) else {
        if browser_required() {
            anyhow::bail!(
                "browser tests are required (PAYBIND_REQUIRE_BROWSER=1) but chromium or chromedriver is missing \
                 (Debian: apt-get install chromium chromium-driver)"
            );
        }
        eprintln!(
            "SKIPPED: browser tests: no chromium and chromedriver found \
             (Debian: apt-get install chromium chromium-driver; PAYBIND_REQUIRE_BROWSER=1 to fail instead)"
        );
        return Ok(None);
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", chromedriver.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if std::time::Instant::now() > deadline {
            anyhow::bail!("chromedriver did not listen on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Some(Driver {
        url: format!("http://127.0.0.1:{port}"),
        chromium,
        _child: child,
    }))
}

fn slots() -> &'static Semaphore {
    static SLOTS: Semaphore = Semaphore::const_new(2);
    &SLOTS
}

/// One browser session (a fresh profile: no cookies, no history).
pub struct Browser {
    pub client: Client,
    artifacts: PathBuf,
    shots: std::sync::atomic::AtomicU32,
    _slot: SemaphorePermit<'static>,
}

/// Where a test's screenshots go: `target/browser-artifacts/<test>/`.
pub fn artifacts_dir(test: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("browser-artifacts").join(test)
}

impl Browser {
    /// A headless Chromium window of `size`; `None` when browser tests are
    /// skipped on this machine (already said).
    pub async fn open(test: &str, size: (u32, u32)) -> anyhow::Result<Option<Self>> {
        Self::open_with(test, size, &[]).await
    }

    /// As `open`, with more Chromium switches (e.g. blocking popups).
    pub async fn open_with(
        test: &str,
        size: (u32, u32),
        extra_args: &[&str],
    ) -> anyhow::Result<Option<Self>> {
        let Some(driver) = driver()? else {
            return Ok(None);
        };
        let slot = slots().acquire().await?;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--no-first-run".to_owned(),
            "--lang=en-US".to_owned(),
            format!("--window-size={},{}", size.0, size.1),
        ];
        args.extend(extra_args.iter().map(|a| (*a).to_owned()));
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), "chrome".into());
        let mut options = serde_json::json!({
            "binary": driver.chromium.display().to_string(),
            "args": args,
            "prefs": { "intl.accept_languages": "en-US,en" },
        });
        // A window is never narrower than about 500 px: a phone's viewport
        // is emulated instead.
        if size.0 < 500 {
            options["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": { "width": size.0, "height": size.1, "pixelRatio": 2.0, "touch": true },
            });
        }
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .context("a Chromium session over WebDriver")?;
        let artifacts = artifacts_dir(test);
        std::fs::create_dir_all(&artifacts)?;
        Ok(Some(Self {
            client,
            artifacts,
            shots: Default::default(),
            _slot: slot,
        }))
    }

    /// Saves a screenshot of the window as `NN-<step>.png`.
    pub async fn shot(&self, step: &str) -> anyhow::Result<PathBuf> {
        let n = self
            .shots
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let png = self.client.screenshot().await?;
        let path = self.artifacts.join(format!("{n:02}-{step}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        Ok(self.client.goto(url).await?)
    }

    /// Waits (up to 15 s) for an element.
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("waiting for {css}"))
    }

    pub async fn exists(&self, css: &str) -> anyhow::Result<bool> {
        Ok(!self.client.find_all(Locator::Css(css)).await?.is_empty())
    }

    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self.wait_for(css).await?.text().await?)
    }

    /// Types into a field, replacing what it held.
    pub async fn fill(&self, css: &str, value: &str) -> anyhow::Result<()> {
        let field = self.wait_for(css).await?;
        field.clear().await?;
        field.send_keys(value).await?;
        Ok(())
    }

    /// Fills the binding page's details form as the test cardholder Zhang
    /// San (README: Test cards) with `card`, expiry 12/31, CVV 123.
    pub async fn fill_details_as_zhang_san(&self, card: &str) -> anyhow::Result<()> {
        self.fill("#full_name", "Zhang San").await?;
        self.fill("#id_number", crate::fixtures::ID_NUMBER).await?;
        self.fill("#phone", "13800138000").await?;
        self.fill("#card_number", card).await?;
        self.fill("#expiry", "12/31").await?;
        self.fill("#cvv", "123").await
    }

    /// Clicks what sends the browser to another page (a form's button, a
    /// link) and waits until that page has loaded: the next step must not
    /// find the old page's elements while the new one is on its way. A
    /// window or frame that is gone by then (a popup that closed itself, a
    /// frame its page replaced) counts as arrived.
    pub async fn submit(&self, css: &str) -> anyhow::Result<()> {
        let _ = self
            .client
            .execute("window.__paybindLeaving = true;", vec![])
            .await;
        self.click(css).await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let still_here = self
                .client
                .execute(
                    "return window.__paybindLeaving === true || document.readyState !== 'complete';",
                    vec![],
                )
                .await;
            match still_here {
                Ok(serde_json::Value::Bool(true)) => {}
                _ => return Ok(()),
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("clicking {css} led nowhere");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.wait_for(css).await?.click().await?;
        Ok(())
    }

    /// Waits (up to 15 s) until `check` holds.
    pub async fn until<F, Fut>(&self, what: &str, mut check: F) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if check().await.unwrap_or(false) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("timed out waiting until {what}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The URL of the document in the current frame (WebDriver's current
    /// URL is always the top window's).
    pub async fn document_url(&self) -> anyhow::Result<String> {
        let href = self.client.execute("return location.href;", vec![]).await?;
        Ok(href.as_str().unwrap_or_default().to_owned())
    }

    pub async fn current_url(&self) -> anyhow::Result<String> {
        Ok(self.client.current_url().await?.to_string())
    }

    /// Every URL this window's documents loaded (the page's own and each
    /// resource), from the Performance API: what a history would show.
    pub async fn visited_urls(&self) -> anyhow::Result<Vec<String>> {
        let value = self
            .client
            .execute(
                "return [location.href].concat(performance.getEntries().map(e => e.name));",
                vec![],
            )
            .await?;
        Ok(value
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn close(self) -> anyhow::Result<()> {
        self.client.close().await?;
        Ok(())
    }
}
