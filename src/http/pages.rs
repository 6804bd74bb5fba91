//! The status page and an order's page, as HTML for people: server-rendered,
//! one small stylesheet, nothing to build, nothing that changes anything.
//! Every value printed goes through maud, which escapes it.

use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::{
    domain::{
        OrderStory, ParkedSample, Status,
        status::{COUNT_CAP, at_least},
    },
    metrics::RecentEvent,
};

/// How often the status page reloads itself, in seconds.
const REFRESH_SECONDS: u32 = 5;

const STYLE: &str = r#"
body { font: 15px/1.4 system-ui, sans-serif; margin: 0 auto; max-width: 72rem; padding: 1rem 1.5rem; color: #1d2125; }
h1 { font-size: 1.4rem; margin: 0 0 .5rem; } h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
a { color: #0b5cad; }
.verdict { padding: .6rem .9rem; border-radius: 6px; font-weight: 600; }
.healthy { background: #e3f4e6; color: #175c27; } .unhealthy { background: #fbe4e4; color: #8a1c1c; }
.verdict ul { margin: .3rem 0 0; font-weight: 400; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(10rem, 1fr)); gap: .6rem; margin: 1rem 0; }
.figure { border: 1px solid #d5dade; border-radius: 6px; padding: .5rem .7rem; }
.figure .n { font-size: 1.6rem; font-weight: 600; display: block; }
.figure.bad .n { color: #b42318; } .figure small { color: #5c656e; }
table { border-collapse: collapse; width: 100%; font-size: .9rem; }
th, td { text-align: left; padding: .25rem .5rem; border-bottom: 1px solid #e4e7ea; vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, .mono { font-family: ui-monospace, monospace; font-size: .85rem; }
form { margin: .8rem 0; } input[type=search] { padding: .3rem .5rem; width: 16rem; }
header { display: flex; justify-content: space-between; align-items: baseline; flex-wrap: wrap; }
.muted { color: #5c656e; font-size: .85rem; }
svg text { font: 11px system-ui, sans-serif; fill: #5c656e; }
"#;

fn page(title: &str, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh {
                    meta http-equiv="refresh" content=(REFRESH_SECONDS);
                }
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body { (body) }
        }
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn search_box() -> Markup {
    html! {
        form action="/orders" method="get" role="search" {
            input type="search" name="order_id" id="order-search" placeholder="Order id, e.g. A-1001"
                required maxlength="64" aria-label="Order id";
            " "
            button type="submit" { "Find order" }
        }
    }
}

fn figure(id: &str, label: &str, value: String, bad: bool, note: Option<String>) -> Markup {
    html! {
        div class=(if bad { "figure bad" } else { "figure" }) {
            span class="n" id=(id) { (value) }
            (label)
            @if let Some(note) = note { br; small { (note) } }
        }
    }
}

/// `/`: the status, what is parked, close lateness, the last events.
/// How this daemon's closes wait for the payments that reached the broker
/// before them.
pub struct PaymentsWait {
    /// Closes that waited, since the daemon started.
    pub closes: u64,
    /// How long they waited on average.
    pub mean: Option<std::time::Duration>,
    /// How long closes have been waiting with no barrier passing, if they are.
    pub waiting_for: Option<std::time::Duration>,
}

pub fn status_page(
    status: &Status,
    parked: &[ParkedSample],
    lateness: &[(f64, u64)],
    recent: &[RecentEvent],
    payments: &PaymentsWait,
) -> Markup {
    let orders = &status.orders;
    let closed_note = (!orders.closed_by_reason.is_empty()).then(|| {
        orders
            .closed_by_reason
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    });
    page(
        "paywait",
        true,
        html! {
            header {
                h1 { "paywait" }
                span class="muted" {
                    "as of " (time(status.as_of)) " · refreshes every " (REFRESH_SECONDS) " s · "
                    a href="/api/status" { "JSON" } " · " a href="/metrics" { "metrics" }
                }
            }
            @if status.healthy {
                div class="verdict healthy" id="verdict" { "Healthy" }
            } @else {
                div class="verdict unhealthy" id="verdict" {
                    "Not healthy"
                    ul { @for problem in &status.problems { li { (problem) } } }
                }
            }
            (search_box())
            div class="figures" {
                (figure("overdue", "overdue checks", at_least(status.overdue), status.overdue > 0, None))
                (figure("events-owed", "events owed", status.events_owed.to_string(),
                    orders.events_owed_late > 0,
                    Some(format!("{} for over a minute", at_least(orders.events_owed_late)))))
                (figure("pending", "orders pending", status.pending.to_string(), false, None))
                (figure("due-minute", "due in the next minute", at_least(orders.due_next_minute), false, None))
                (figure("due-hour", "due in the next hour", at_least(orders.due_next_hour), false, None))
                (figure("paid", "orders paid", orders.paid.to_string(), false, None))
                (figure("closed", "orders closed", orders.closed.to_string(), false, closed_note))
                (figure("parked", "messages parked", status.parked_total().to_string(),
                    false, None))
            }
            h2 { "Close lateness" }
            p class="muted" { "How long after its deadline each close was committed, since this daemon started." }
            (lateness_chart(lateness))
            h2 { "Parked messages" }
            @if status.parked.is_empty() {
                p id="parked-none" { "Nothing is parked." }
            } @else {
                table id="parked-table" {
                    thead { tr { th { "reason" } th class="num" { "count" } th { "newest" } } }
                    tbody {
                        @for (reason, count) in &status.parked {
                            tr {
                                td { code class="reason" { (reason) } }
                                td class="num" { (count) }
                                td {
                                    @for sample in parked.iter().filter(|p| &p.reason == reason) {
                                        div {
                                            span class="muted" { (time(sample.parked_at)) " from " (sample.source_queue) }
                                            br;
                                            (sample.error) br;
                                            code { (sample.preview) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
                p class="muted" { code { "paywait replay" } " moves them back to the queue they came from once what failed is fixed." }
            }
            h2 { "Queues" }
            @let (timers, ttl_queues) = status.timers_waiting();
            table id="queues" {
                thead { tr { th { "queue" } th class="num" { "messages" } th class="num" { "consumers" } } }
                tbody {
                    @for queue in status.queues.iter().filter(|q| !q.timers) {
                        tr {
                            td { code { (queue.name) } }
                            td class="num" { (queue.messages) }
                            td class="num" { (queue.consumers) }
                        }
                    }
                    tr {
                        td { "timers waiting, in " (ttl_queues) " TTL queues" }
                        td class="num" id="timers" { (timers) }
                        td class="num" { "–" }
                    }
                }
            }
            details {
                summary class="muted" { "each TTL queue" }
                table id="ttl-queues" {
                    tbody {
                        @for queue in status.queues.iter().filter(|q| q.timers) {
                            tr {
                                td { code { (queue.name) } }
                                td class="num" { (queue.messages) }
                            }
                        }
                    }
                }
            }
            p class="muted" {
                "Daemon at " (status.daemon.address) ": "
                @match status.daemon.ready {
                    Some(true) => { "ready" }
                    Some(false) => { "not ready" }
                    None => { "not answering" }
                }
            }
            p class="muted" id="close-wait" {
                "Closes wait for the payments that reached the broker before them: "
                @match payments.mean {
                    Some(mean) => { (payments.closes) " closes so far, " (format!("{:.1} ms", mean.as_secs_f64() * 1000.0)) " on average" }
                    None => { "no close yet" }
                }
                @if let Some(age) = payments.waiting_for {
                    "; closes waiting now, for " (format!("{:.1} s", age.as_secs_f64()))
                }
                "."
            }
            h2 { "Last events published" }
            @if recent.is_empty() {
                p { "No event published since this daemon started." }
            } @else {
                table id="events" {
                    thead { tr { th { "published" } th { "event" } th { "order" } th { "message id" } } }
                    tbody {
                        @for event in recent {
                            tr {
                                td class="mono" { (time(event.published_at)) }
                                td { (event.event) }
                                td { a href=(format!("/orders/{}", event.order_id)) { (event.order_id) } }
                                td class="mono" { (event.message_id) }
                            }
                        }
                    }
                }
            }
            p class="muted" { "Counts of due, overdue and long-owed orders stop at " (COUNT_CAP) "." }
        },
    )
}

/// The close lateness histogram as bars, one per bucket.
fn lateness_chart(buckets: &[(f64, u64)]) -> Markup {
    const WIDTH: f64 = 1020.0;
    const TOP: f64 = 16.0;
    const HEIGHT: f64 = 140.0;
    const BOTTOM: f64 = 24.0;
    let most = buckets.iter().map(|(_, n)| *n).max().unwrap_or(0);
    let total: u64 = buckets.iter().map(|(_, n)| *n).sum();
    if total == 0 {
        return html! { p id="lateness-none" { "No order closed at its deadline yet." } };
    }
    let slot = WIDTH / buckets.len().max(1) as f64;
    html! {
        svg id="lateness-chart" width="100%"
            viewBox=(format!("0 0 {WIDTH} {}", TOP + HEIGHT + BOTTOM)) role="img"
            aria-label=(format!("close lateness of {total} closes")) {
            @for (i, (bound, n)) in buckets.iter().enumerate() {
                @let height = if most == 0 { 0.0 } else { HEIGHT * *n as f64 / most as f64 };
                @let x = i as f64 * slot;
                rect x=(x + 2.0) y=(TOP + HEIGHT - height) width=(slot - 4.0) height=(height) fill="#4c7fb8" {
                    title { (bucket_label(*bound)) ": " (n) }
                }
                text x=(x + slot / 2.0) y=(TOP + HEIGHT + 15.0) text-anchor="middle" { (bucket_label(*bound)) }
                @if *n > 0 {
                    text x=(x + slot / 2.0) y=(TOP + HEIGHT - height - 4.0) text-anchor="middle" { (n) }
                }
            }
        }
    }
}

/// `≤5ms`, `≤1s`, `>5m`.
fn bucket_label(bound: f64) -> String {
    if bound.is_infinite() {
        return "more".to_owned();
    }
    if bound < 1.0 {
        format!("≤{}ms", (bound * 1000.0 * 10.0).round() / 10.0)
    } else if bound < 60.0 {
        format!("≤{bound}s")
    } else {
        format!("≤{}m", bound / 60.0)
    }
}

/// `/orders/{order_id}`: the row, its payments, checks and events.
pub fn order_page(story: &OrderStory) -> Markup {
    let order = &story.order;
    let optional = |at: Option<DateTime<Utc>>| at.map_or_else(|| "—".to_owned(), time);
    page(
        &format!("paywait: {}", order.order_id),
        false,
        html! {
            header {
                h1 { "Order " span id="order-id" { (order.order_id) } }
                span class="muted" { a href="/" { "status" } " · "
                    a href=(format!("/api/orders/{}", order.order_id)) { "JSON" } }
            }
            (search_box())
            table id="order" {
                tbody {
                    tr { th { "status" } td id="order-status" { (order.status.as_str())
                        @if let Some(reason) = order.close_reason { " (" (reason.as_str()) ")" } } }
                    tr { th { "amount" } td {
                        @match (order.amount_cents, &order.currency) {
                            (Some(cents), Some(currency)) => { (cents) " cents " (currency) }
                            (Some(cents), None) => { (cents) " cents" }
                            (None, _) => { "—" }
                        }
                    } }
                    tr { th { "placed" } td class="mono" { (time(order.placed_at)) } }
                    tr { th { "deadline" } td class="mono" { (time(order.expires_at)) } }
                    tr { th { "paid" } td class="mono" { (optional(order.paid_at)) } }
                    tr { th { "closed" } td class="mono" { (optional(order.closed_at)) } }
                    tr { th { "checks made" } td id="checks-made" { (order.attempts) } }
                    tr { th { "next check due" } td class="mono" { (optional(order.next_check_at)) } }
                    tr { th { "payment gateway" } td id="gateway" {
                        @if story.gateway_asked { "asked " (order.gateway_asks) " times" } @else { "not asked" }
                    } }
                }
            }
            h2 { "Payments" }
            @if story.payments.is_empty() {
                p { "No payment recorded." }
            } @else {
                table id="payments" {
                    thead { tr { th { "payment" } th class="num" { "amount" } th { "received" } th { "outcome" } } }
                    tbody {
                        @for payment in &story.payments {
                            tr {
                                td class="mono" { (payment.payment_id) }
                                td class="num" {
                                    (payment.amount_cents.map_or_else(|| "—".to_owned(), |c| c.to_string()))
                                    @if let Some(currency) = &payment.currency { " " (currency) }
                                }
                                td class="mono" { (time(payment.received_at)) }
                                td { (payment.outcome.map_or("waiting for its order", |o| o.as_str())) }
                            }
                        }
                    }
                }
            }
            @if !story.deadline_changes.is_empty() {
                h2 { "Deadline changes" }
                table id="deadline-changes" {
                    thead { tr { th { "new deadline" } th { "received" } th { "applied" } } }
                    tbody {
                        @for change in &story.deadline_changes {
                            tr {
                                td class="mono" { (time(change.expires_at)) }
                                td class="mono" { (time(change.received_at)) }
                                td class="mono" {
                                    @match change.applied_at {
                                        Some(at) => { (time(at)) }
                                        None => { "not applied" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "Events" }
            @if story.events.is_empty() {
                p { "None yet: an event is published when the order is paid or closed." }
            } @else {
                table id="order-events" {
                    thead { tr { th { "event" } th { "message id" } th { "published" } } }
                    tbody {
                        @for event in &story.events {
                            tr {
                                td { (event.event) }
                                td class="mono" { (event.message_id) }
                                td class="mono" {
                                    @match event.published_at {
                                        Some(at) => { (time(at)) }
                                        None => { "owed: not yet confirmed by the broker" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    )
}

/// The page for an order paywait does not know (or an id no order can
/// have).
pub fn order_not_found(asked: &str) -> Markup {
    page(
        "paywait: no such order",
        false,
        html! {
            header {
                h1 { "No such order" }
                span class="muted" { a href="/" { "status" } }
            }
            p id="not-found" { "paywait knows no order " code { (asked) } "." }
            (search_box())
        },
    )
}

/// A page for when the database or the broker did not answer.
pub fn unavailable(what: &str) -> Markup {
    page(
        "paywait: unavailable",
        true,
        html! {
            h1 { "paywait cannot say right now" }
            p { (what) }
            p class="muted" { "This page tries again every " (REFRESH_SECONDS) " s." }
        },
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{DaemonFigures, OrderFigures};

    #[test]
    fn everything_printed_is_escaped() {
        let status = Status::assess(
            Utc::now(),
            OrderFigures::default(),
            BTreeMap::from([("not_json".to_owned(), 1)]),
            vec![],
            DaemonFigures {
                address: "127.0.0.1:9464".into(),
                ready: Some(true),
            },
        );
        let parked = [ParkedSample {
            parked_at: Utc::now(),
            reason: "not_json".into(),
            source_queue: "paywait.intake.placed".into(),
            error: "body is not JSON".into(),
            preview: "<script>alert(1)</script>".into(),
        }];
        let waiting = PaymentsWait {
            closes: 12,
            mean: Some(std::time::Duration::from_micros(2500)),
            waiting_for: Some(std::time::Duration::from_secs(75)),
        };
        let html = status_page(&status, &parked, &[], &[], &waiting).into_string();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(
            html.contains("12 closes so far, 2.5 ms on average; closes waiting now, for 75.0 s."),
            "{html}"
        );

        let html = order_not_found("<b>x</b>").into_string();
        assert!(html.contains("&lt;b&gt;x&lt;/b&gt;") && !html.contains("<b>x"));
    }

    #[test]
    fn the_chart_draws_a_bar_per_bucket() {
        let svg = lateness_chart(&[(0.005, 3), (0.01, 1), (f64::INFINITY, 0)]).into_string();
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("≤5ms") && svg.contains("≤10ms") && svg.contains("more"));
        assert!(
            lateness_chart(&[(0.005, 0)])
                .into_string()
                .contains("No order closed")
        );
    }
}
