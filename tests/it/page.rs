//! The operator's page in a real browser (issue 12 item 4): Debian's `chromium`, headless,
//! driven through `chromedriver` (WebDriver) from the test. A real peer process serves the page;
//! the test reads what the page shows, changes the node through its API and watches the page
//! follow through `GET /api/events`, checks that a hostile register name is shown as text, and
//! saves a screenshot (`<target>/tmp/herald-page.png`). `scripts/install-test-deps` installs
//! the browser.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use reqwest::StatusCode;
use serde_json::{Map, json};
use tokio::net::TcpStream;

use crate::support::process::{RoleProcess, expect};
use crate::support::{eventually, free_port, path_arg, temp_dir};

const DEADLINE: Duration = Duration::from_secs(20);
const HOSTILE: &str = "<img src=x onerror=\"document.title='owned'\">";

/// `chromedriver` on a free port, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    async fn start() -> Driver {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot run chromedriver ({err}): run scripts/install-test-deps")
            });
        let started = tokio::time::Instant::now();
        while TcpStream::connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))
            .await
            .is_err()
        {
            assert!(started.elapsed() < DEADLINE, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Driver { child, port }
    }

    async fn browser(&self) -> Client {
        let mut capabilities = Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1400,1000"]
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a chromium session through chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The text of the element `css` (empty when absent).
async fn text_of(browser: &Client, css: &str) -> String {
    match browser.find(Locator::Css(css)).await {
        Ok(element) => element.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The register ids in the page's table.
async fn shown_ids(browser: &Client) -> Vec<String> {
    let mut ids = Vec::new();
    for row in browser
        .find_all(Locator::Css("#registers tbody tr"))
        .await
        .unwrap_or_default()
    {
        if let Ok(Some(id)) = row.attr("data-register-id").await {
            ids.push(id);
        }
    }
    ids.sort();
    ids
}

fn register_id(n: u32) -> String {
    format!("{n:032x}")
}

async fn advertise(peer: &RoleProcess, n: u32, name: &str, public: bool) {
    expect(
        peer.post_json(
            &format!("/api/registers/{}/advertise", register_id(n)),
            json!({"isPublic": public, "name": name, "latestVersion": n}),
        )
        .await,
        StatusCode::OK,
    );
}

#[tokio::test]
async fn the_page_shows_the_nodes_state_follows_its_events_and_escapes_names() {
    let data = temp_dir("herald-page-");
    let peer = RoleProcess::peer_on_free_port(&[
        "--node-id",
        "page-peer",
        "--data-dir",
        &path_arg(data.path()),
    ])
    .await;
    advertise(&peer, 1, "first register", true).await;
    advertise(&peer, 2, HOSTILE, true).await;

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.goto(peer.base_url()).await.unwrap();

    // The node's real values.
    eventually("the page to show the node", DEADLINE, || async {
        let (node, health) = (
            text_of(&browser, "#node-id").await,
            text_of(&browser, "#health").await,
        );
        match (node.as_str(), health.as_str()) {
            ("page-peer", "healthy") => Ok(()),
            _ => Err(format!("node {node:?}, health {health:?}")),
        }
    })
    .await;
    eventually("both registers in the table", DEADLINE, || async {
        let ids = shown_ids(&browser).await;
        if ids == [register_id(1), register_id(2)] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    let pool = text_of(&browser, "#pool").await;
    assert!(
        pool.contains("local ads\n2") || pool.contains("local ads 2"),
        "{pool}"
    );

    // The hostile name is text: shown as typed, no element made of it, no script run.
    let hostile = browser
        .find(Locator::Css(&format!(
            "#registers tr[data-register-id='{}'] td.name",
            register_id(2)
        )))
        .await
        .unwrap();
    assert_eq!(hostile.text().await.unwrap(), HOSTILE);
    assert!(
        browser
            .find_all(Locator::Css("#registers img"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(browser.title().await.unwrap(), "herald");

    // Live: the page follows the events stream (not polling), as changes are made.
    eventually("the page to follow the events", DEADLINE, || async {
        let live = text_of(&browser, "#live").await;
        if live == "live" { Ok(()) } else { Err(live) }
    })
    .await;
    advertise(&peer, 3, "third register", true).await;
    advertise(&peer, 1, "first register", false).await;
    eventually("the page to show the change", DEADLINE, || async {
        let ids = shown_ids(&browser).await;
        if ids == [register_id(2), register_id(3)] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    assert_eq!(
        text_of(&browser, "#live").await,
        "live",
        "it did not fall back to polling"
    );

    // Filtering by name.
    browser
        .find(Locator::Css("#filter"))
        .await
        .unwrap()
        .send_keys("third")
        .await
        .unwrap();
    eventually("the filter to apply", DEADLINE, || async {
        let ids = shown_ids(&browser).await;
        if ids == [register_id(3)] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;

    let png = browser.screenshot().await.unwrap();
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("herald-page.png");
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
    let headers = reqwest::get(peer.base_url()).await.unwrap();
    let policy = headers.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    browser.close().await.unwrap();
}
