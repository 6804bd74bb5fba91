//! The payment gateway's shell: one HTTP POST per question, bounded in time
//! and in how many are in flight at once, so that a slow or dead gateway
//! never holds up the rest of the daemon.

use std::{sync::Arc, time::Instant};

use tokio::sync::Semaphore;

use crate::{
    configuration::{GatewaySettings, SecretUrl},
    domain::{
        Order,
        gateway::{AskPolicy, GatewayAnswer, question},
    },
    metrics::Metrics,
};

/// The largest answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Asks the payment gateway about orders at their deadline.
pub struct Gateway {
    client: reqwest::Client,
    url: SecretUrl,
    policy: AskPolicy,
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Gateway {
    /// The gateway of `settings`, or `None` when no `gateway.url` is set.
    pub fn from_settings(
        settings: &GatewaySettings,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Self>, GatewayError> {
        let Some(url) = &settings.url else {
            return Ok(None);
        };
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .build()
            .map_err(|error| GatewayError(error.without_url()))?;
        Ok(Some(Self {
            client,
            url: url.clone(),
            policy: AskPolicy {
                retry: settings.retry,
                max_retries: settings.max_retries,
            },
            permits: Arc::new(Semaphore::new(settings.concurrency.get())),
            metrics,
        }))
    }

    pub fn policy(&self) -> &AskPolicy {
        &self.policy
    }

    /// The wait before asking about an order again: the policy's, spread
    /// at random.
    pub fn wait_before_asking_again(&self) -> std::time::Duration {
        self.policy.wait_before_asking_again(fastrand::f64())
    }

    /// Asks about `order`. Never fails, and once asked never waits longer
    /// than the time-out: every trouble is an unusable answer. A question
    /// that finds `gateway.concurrency` others in flight waits for one of
    /// them to end first; it has not been asked yet, so that is no answer
    /// of the gateway's. (The wait is bounded: every question in flight
    /// ends within the time-out, and at most a prefetch of checks wait.)
    pub async fn ask(&self, order: &Order) -> GatewayAnswer {
        let Ok(_permit) = self.permits.acquire().await else {
            return GatewayAnswer::Unusable("the gateway's client is shutting down".into());
        };
        let started = Instant::now();
        let answer = self.post(order).await;
        self.metrics
            .gateway_asked(answer.label(), started.elapsed());
        answer
    }

    async fn post(&self, order: &Order) -> GatewayAnswer {
        let response = match self
            .client
            .post(self.url.expose())
            .json(&question(order))
            .send()
            .await
        {
            Ok(response) => response,
            Err(error) => return GatewayAnswer::Unusable(describe(&error)),
        };
        let status = response.status().as_u16();
        match response.bytes().await {
            Ok(body) if body.len() <= MAX_ANSWER_BYTES => GatewayAnswer::parse(status, &body),
            Ok(body) => GatewayAnswer::Unusable(format!("an answer of {} bytes", body.len())),
            Err(error) => GatewayAnswer::Unusable(describe(&error)),
        }
    }
}

/// The payment gateway's HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the payment gateway's HTTP client: {0}")]
pub struct GatewayError(#[source] reqwest::Error);

/// What went wrong, without the URL (which may hold a password).
fn describe(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        let mut text = error.to_string();
        if let Some(url) = error.url() {
            text = text.replace(url.as_str(), "the gateway");
        }
        text
    }
}
