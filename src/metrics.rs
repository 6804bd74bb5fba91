//! The Prometheus metrics paywait exports on `/metrics`, and the last
//! events it published, which the status page shows.

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use std::{collections::VecDeque, sync::Mutex};

use crate::domain::{
    CheckOutcome, EventKind, OrderEvent, OrderFigures, Rejection, gateway::GatewayAnswer,
};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnswerLabels {
    pub answer: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub write: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// Every metric, registered under the `paywait_` prefix.
/// Declares every series once, in a table — its field, its type, how it
/// is made, its name and its help — and registers them all, in that order.
macro_rules! series {
    ($( $field:ident : $kind:ty = $make:expr => $name:literal, $help:literal; )*) => {
        /// Every series paywait exports, as registered.
        struct Series {
            $( $field: $kind, )*
        }

        impl Series {
            fn register(registry: &mut Registry) -> Self {
                $(
                    let $field: $kind = $make;
                    registry.register($name, $help, $field.clone());
                )*
                Self { $( $field, )* }
            }
        }
    };
}

series! {
    orders_placed: Counter = Default::default()
        => "orders_placed", "Orders accepted by intake (repeats of a known order are not counted)";
    payments: Counter = Default::default()
        => "payments", "Payments recorded (repeats of a known payment id are not counted)";
    checks: Family<OutcomeLabels, Counter> = Default::default()
        => "checks", "Checks made when a timer fired, by outcome";
    events_published: Family<EventLabels, Counter> = Default::default()
        => "events_published", "Events confirmed by the broker, by event";
    messages_dead: Family<ReasonLabels, Counter> = Default::default()
        => "messages_dead", "Messages parked in the dead queue, by reason";
    close_lateness: Histogram = Histogram::new([0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0])
        => "close_lateness_seconds", "How long after its deadline an order's close was committed";
    timers_rearmed: Counter = Default::default()
        => "sweeper_rearmed", "Lost timers re-armed by the sweeper";
    reconnects: Counter = Default::default()
        => "reconnects", "Times the daemon reconnected to RabbitMQ after losing it";
    check_duration: Histogram = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0])
        => "check_duration_seconds", "How long a check took, from its timer's delivery to its acknowledgement";
    close_wait: Histogram = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
        => "close_wait_seconds", "How long a close waited for every payment that reached the broker before it to be handled";
    queue_messages: Family<QueueLabels, Gauge> = Default::default()
        => "queue_messages", "Messages ready in each of paywait's queues, as last polled";
    messages_handled: Family<QueueLabels, Counter> = Default::default()
        => "messages_handled", "Messages acknowledged once processed or parked, by the queue they came from";
    message_retries: Family<QueueLabels, Counter> = Default::default()
        => "message_retries", "Times a message failed part-way (database or broker trouble) and was tried again, by queue";
    clock_skew: Counter = Default::default()
        => "clock_skew", "Orders whose placed_at was further ahead of paywait's clock than checks.max_clock_skew, taken as now";
    timer_hops: Counter = Default::default()
        => "timer_hops", "Timers sent on through another TTL queue because they were not due yet";
    timer_arrival: Histogram = Histogram::new([-0.1, -0.05, -0.025, -0.01, -0.005, -0.001, 0.0, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0])
        => "timer_arrival_seconds", "When timers arrived for their last time, relative to their due time (negative: early, then held in process)";
    ready: Gauge = Default::default()
        => "ready", "1 while connected to RabbitMQ and PostgreSQL and consuming (what /readyz answers), else 0";
    payments_wait: Gauge<f64, std::sync::atomic::AtomicU64> = Default::default()
        => "closes_waiting_for_payments_seconds", "How long this daemon's closes have been waiting for the payments queue with no barrier passing (0: none waiting)";
    orders_pending: Gauge = Default::default()
        => "orders_pending", "Orders waiting for payment, as the database counted them at this scrape";
    checks_overdue: Gauge = Default::default()
        => "checks_overdue", "Pending orders whose check is more than a minute late: timers that should have fired and did not";
    events_owed: Gauge = Default::default()
        => "events_owed", "Paid or closed orders whose event the broker has not confirmed yet";
    orders_cancelled: Counter = Default::default()
        => "orders_cancelled", "Pending orders closed because the customer cancelled them";
    gateway_requests: Family<AnswerLabels, Counter> = Default::default()
        => "gateway_requests", "Questions to the payment gateway, by answer (paid, unpaid, pending, unusable)";
    gateway_duration: Histogram = Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
        => "gateway_request_duration_seconds", "How long the payment gateway took to answer";
    races_lost: Family<WriteLabels, Counter> = Default::default()
        => "races_lost", "Conditional writes that found the order moved by another first: a close that lost to a payment (or another close), a settle that lost to a close (or another payment), a deadline change that lost to a payment, a close or a later change";
    deadline_changes: Family<OutcomeLabels, Counter> = Default::default()
        => "deadline_changes", "order.deadline_changed messages handled, by what they did: applied, same (the order had that deadline), settled (paid or closed: ignored), superseded (a later change held), waiting (order not seen yet), refused (parked)";
}

/// Every metric, registered under the `paywait_` prefix.
pub struct Metrics {
    registry: Registry,
    series: Series,
    /// Closes that waited for the payments ahead of them, and how long in
    /// all (microseconds), for the status page.
    close_waits: std::sync::atomic::AtomicU64,
    close_waited_micros: std::sync::atomic::AtomicU64,
    recent_events: Mutex<VecDeque<RecentEvent>>,
}

/// How many of the last published events the status page shows.
const RECENT_EVENTS: usize = 20;

/// An event this daemon published, for the status page.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RecentEvent {
    pub event: &'static str,
    pub order_id: String,
    pub message_id: String,
    pub published_at: chrono::DateTime<chrono::Utc>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("paywait");
        let series = Series::register(&mut registry);
        // Zero series exist from the start, so rates and alerts work at once.
        for outcome in [
            CheckOutcome::Paid,
            CheckOutcome::Rescheduled,
            CheckOutcome::Closed,
        ] {
            let _ = series.checks.get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            });
        }
        for reason in Rejection::REASONS {
            let _ = series.messages_dead.get_or_create(&ReasonLabels { reason });
        }
        for outcome in crate::domain::deadline::OUTCOMES {
            let _ = series
                .deadline_changes
                .get_or_create(&OutcomeLabels { outcome });
        }
        for write in Self::RACED_WRITES {
            let _ = series.races_lost.get_or_create(&WriteLabels { write });
        }
        for answer in GatewayAnswer::LABELS {
            let _ = series
                .gateway_requests
                .get_or_create(&AnswerLabels { answer });
        }
        for event in EventKind::ALL {
            let _ = series.events_published.get_or_create(&EventLabels {
                event: event.name(),
            });
        }

        Self {
            registry,
            series,
            close_waits: Default::default(),
            close_waited_micros: Default::default(),
            recent_events: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
        }
    }

    /// The conditional writes that can lose a race, as labelled.
    pub const RACED_WRITES: [&'static str; 3] = ["close", "settle", "deadline_change"];

    /// A conditional write (`close` or `settle`) found the order already
    /// moved by another.
    pub fn race_lost(&self, write: &'static str) {
        self.series
            .races_lost
            .get_or_create(&WriteLabels { write })
            .inc();
    }

    /// What `/readyz` would answer now.
    pub fn set_ready(&self, ready: bool) {
        self.series.ready.set(i64::from(ready));
    }

    /// The orders as the database counted them now.
    pub fn set_order_figures(&self, figures: &OrderFigures) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.series.orders_pending.set(gauge(figures.pending));
        self.series.checks_overdue.set(gauge(figures.overdue));
        self.series.events_owed.set(gauge(figures.events_owed));
    }

    pub fn clock_skewed(&self) {
        self.series.clock_skew.inc();
    }

    pub fn timer_hopped(&self) {
        self.series.timer_hops.inc();
    }

    /// A timer arrived for its last hop `offset` after its due time
    /// (negative: early).
    pub fn timer_arrived(&self, offset: chrono::TimeDelta) {
        self.series
            .timer_arrival
            .observe(offset.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
    }

    /// A deadline change did what `outcome` says (see
    /// `domain::deadline::OUTCOMES`).
    pub fn deadline_change(&self, outcome: &'static str) {
        self.series
            .deadline_changes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    pub fn order_cancelled(&self) {
        self.series.orders_cancelled.inc();
    }

    /// The gateway gave `answer` after `took`.
    pub fn gateway_asked(&self, answer: &'static str, took: std::time::Duration) {
        self.series
            .gateway_requests
            .get_or_create(&AnswerLabels { answer })
            .inc();
        self.series.gateway_duration.observe(took.as_secs_f64());
    }

    /// A message from `queue` failed part-way and will be tried again.
    pub fn message_retried(&self, queue: &str) {
        self.series
            .message_retries
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .inc();
    }

    /// A message from `queue` was acknowledged: processed, or parked.
    pub fn message_handled(&self, queue: &str) {
        self.series
            .messages_handled
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .inc();
    }

    /// A close waited `took` for the payments ahead of it.
    pub fn close_waited(&self, took: std::time::Duration) {
        use std::sync::atomic::Ordering;
        self.series.close_wait.observe(took.as_secs_f64());
        self.close_waits.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.close_waited_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// How many closes waited for the payments ahead of them since the
    /// daemon started, and how long on average.
    pub fn close_waits(&self) -> (u64, Option<std::time::Duration>) {
        use std::sync::atomic::Ordering;
        let count = self.close_waits.load(Ordering::Relaxed);
        let micros = self.close_waited_micros.load(Ordering::Relaxed);
        let mean = (count > 0).then(|| std::time::Duration::from_micros(micros / count));
        (count, mean)
    }

    /// How long the oldest barrier closes wait for has been on its way.
    pub fn set_payments_wait(&self, oldest: Option<std::time::Duration>) {
        self.series
            .payments_wait
            .set(oldest.map_or(0.0, |oldest| oldest.as_secs_f64()));
    }

    pub fn check_finished(&self, took: std::time::Duration) {
        self.series.check_duration.observe(took.as_secs_f64());
    }

    pub fn queue_depth(&self, queue: &str, messages: u32) {
        self.series
            .queue_messages
            .get_or_create(&QueueLabels {
                queue: queue.to_owned(),
            })
            .set(messages.into());
    }

    pub fn timer_rearmed(&self) {
        self.series.timers_rearmed.inc();
    }

    pub fn reconnected(&self) {
        self.series.reconnects.inc();
    }

    pub fn order_placed(&self) {
        self.series.orders_placed.inc();
    }

    pub fn payment_recorded(&self) {
        self.series.payments.inc();
    }

    pub fn check_made(&self, outcome: CheckOutcome) {
        self.series
            .checks
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// The broker confirmed `event`.
    pub fn event_published(&self, event: &OrderEvent) {
        self.series
            .events_published
            .get_or_create(&EventLabels {
                event: event.event.name(),
            })
            .inc();
        let mut recent = self.recent_events.lock().expect("recent events lock");
        recent.push_front(RecentEvent {
            event: event.event.name(),
            order_id: event.order_id.to_string(),
            message_id: event.message_id(),
            published_at: chrono::Utc::now(),
        });
        recent.truncate(RECENT_EVENTS);
    }

    /// The last events this daemon published, newest first.
    pub fn recent_events(&self) -> Vec<RecentEvent> {
        self.recent_events
            .lock()
            .expect("recent events lock")
            .iter()
            .cloned()
            .collect()
    }

    /// `paywait_close_lateness_seconds` as it stands: each bucket's upper
    /// bound (the last is infinite) and the closes that fell in it (not
    /// cumulative).
    pub fn close_lateness_buckets(&self) -> Vec<(f64, u64)> {
        let mut cumulative = Vec::new();
        for line in self.encode().lines() {
            let Some(rest) = line.strip_prefix("paywait_close_lateness_seconds_bucket{le=\"")
            else {
                continue;
            };
            let Some((bound, count)) = rest.split_once("\"} ") else {
                continue;
            };
            let bound = if bound == "+Inf" {
                f64::INFINITY
            } else {
                bound.parse().unwrap_or(f64::NAN)
            };
            cumulative.push((bound, count.trim().parse::<u64>().unwrap_or(0)));
        }
        let mut below = 0;
        cumulative
            .into_iter()
            .map(|(bound, total)| {
                let in_bucket = total.saturating_sub(below);
                below = total;
                (bound, in_bucket)
            })
            .collect()
    }

    pub fn message_parked(&self, reason: &'static str) {
        self.series
            .messages_dead
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    pub fn order_closed(&self, lateness: chrono::TimeDelta) {
        self.series
            .close_lateness
            .observe(lateness.num_microseconds().unwrap_or(i64::MAX) as f64 / 1e6);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_lateness_buckets_count_each_close_once() {
        let metrics = Metrics::new();
        for millis in [2, 3, 40, 40, 7_000] {
            metrics.order_closed(chrono::TimeDelta::milliseconds(millis));
        }
        let buckets = metrics.close_lateness_buckets();
        assert_eq!(buckets.iter().map(|(_, n)| n).sum::<u64>(), 5);
        assert_eq!(buckets.last().unwrap().0, f64::INFINITY);
        let holding = |millis: f64| {
            buckets
                .iter()
                .find(|(bound, _)| millis / 1e3 <= *bound)
                .map(|(_, n)| *n)
                .unwrap()
        };
        assert_eq!(holding(40.0), 2);
        assert!(holding(3.0) >= 1);
    }
}
