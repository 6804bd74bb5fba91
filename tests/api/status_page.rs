//! The status page, read in a real browser (Debian's Chromium, driven
//! through ChromeDriver), and its JSON twins.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use chrono::{SecondsFormat, Utc};
use fantoccini::{Client, ClientBuilder, Locator};
use paywait::domain::{Inbox, OrderStatus};
use paywait_testkit::{TestApp, free_port};
use serde_json::{Value, json};

/// ChromeDriver on a port of its own, stopped when dropped.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver: install Debian's chromium and chromium-driver");
        Self { child, port }
    }

    /// A headless Chromium session, once ChromeDriver answers.
    async fn browser(&self) -> Client {
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".to_owned(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1200,1500",
                ],
            }),
        );
        let started = Instant::now();
        loop {
            let connected =
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{}", self.port))
                    .await;
            match connected {
                Ok(client) => return client,
                Err(error) if started.elapsed() > Duration::from_secs(30) => {
                    panic!("no browser session: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Types `order_id` into the page's search box and submits it.
async fn search(browser: &Client, order_id: &str) {
    browser
        .form(Locator::Css("form[role=search]"))
        .await
        .unwrap()
        .set_by_name("order_id", order_id)
        .await
        .unwrap()
        .submit()
        .await
        .unwrap();
}

/// The text of the element `id`, waiting for it to appear: a submitted
/// form's page loads after `submit` returns.
async fn text_of(browser: &Client, id: &str) -> String {
    browser
        .wait()
        .at_most(Duration::from_secs(15))
        .for_element(Locator::Id(id))
        .await
        .unwrap_or_else(|error| panic!("#{id}: {error}"))
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_what_the_database_holds_in_a_real_browser() {
    let app = TestApp::spawn("1s").await;
    app.place("B-paid").await;
    app.pay("B-paid", "PAY-B").await;
    app.place("B-closed").await;
    let later =
        (Utc::now() + chrono::TimeDelta::minutes(30)).to_rfc3339_opts(SecondsFormat::Millis, true);
    app.publish(
        "order.placed",
        json!({"order_id": "B-pending", "expires_at": later})
            .to_string()
            .as_bytes(),
    )
    .await;
    app.publish("order.placed", b"{\"order_id\": \"<b>not an id</b>\"}")
        .await;
    app.wait_for_status("B-closed", OrderStatus::Closed, Duration::from_secs(10))
        .await;
    app.wait_until_announced("B-closed").await;
    app.wait_until_announced("B-paid").await;
    app.expect_handled(Inbox::Placed, 4).await;

    let driver = ChromeDriver::start();
    let browser = driver.browser().await;
    let home = format!("http://{}/", app.http);
    browser.goto(&home).await.unwrap();

    let counted = app
        .sandbox
        .count_by("SELECT status AS key, count(*) AS n FROM orders GROUP BY status")
        .await;
    for status in ["pending", "paid", "closed"] {
        let in_database = counted
            .iter()
            .find(|(key, _)| key == status)
            .map_or(0, |(_, n)| *n);
        assert_eq!(
            text_of(&browser, status).await,
            in_database.to_string(),
            "{status}"
        );
    }
    assert_eq!(text_of(&browser, "pending").await, "1");
    assert_eq!(text_of(&browser, "due-hour").await, "1");
    assert_eq!(text_of(&browser, "overdue").await, "0");
    assert_eq!(text_of(&browser, "parked").await, "1");
    assert_eq!(text_of(&browser, "verdict").await, "Healthy");
    let parked = text_of(&browser, "parked-table").await;
    assert!(parked.contains("invalid_order_id"), "{parked}");
    assert!(
        parked.contains("<b>not an id</b>"),
        "escaped, shown as text: {parked}"
    );
    assert!(
        browser.find(Locator::Id("lateness-chart")).await.is_ok(),
        "a close was made, so the chart is drawn"
    );
    if let Ok(path) = std::env::var("PAYWAIT_SCREENSHOT") {
        std::fs::write(path, browser.screenshot().await.unwrap()).unwrap();
    }

    // The search box finds an order, and says so when there is none.
    search(&browser, "B-paid").await;
    assert_eq!(text_of(&browser, "order-status").await, "paid");
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .as_str()
            .ends_with("/orders/B-paid")
    );
    let events = text_of(&browser, "order-events").await;
    assert!(events.contains("B-paid/order.paid"), "{events}");
    search(&browser, "B-unknown").await;
    assert!(text_of(&browser, "not-found").await.contains("B-unknown"));
    browser.close().await.unwrap();

    // The same as JSON.
    let (status, body) = app.get("/api/status").await;
    assert_eq!(status, 200);
    let document: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(document["pending"], 1);
    assert_eq!(document["parked"], json!({"invalid_order_id": 1}));
    let (status, body) = app.get("/api/orders/B-closed").await;
    assert_eq!(status, 200);
    let story: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(story["order"]["status"], "closed");
    assert_eq!(story["events"][0]["message_id"], "B-closed/order.closed");
    assert!(story["events"][0]["published_at"].is_string());
    assert_eq!(app.get("/api/orders/B-unknown").await.0, 404);
    assert_eq!(app.get("/orders/B-unknown").await.0, 404);
}
