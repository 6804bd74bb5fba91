//! What `paywait status`, `/api/status` and the status page report, and
//! whether it is healthy: the figures are gathered by the shells, judged
//! here.

use std::{collections::BTreeMap, fmt::Write as _};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long past its due time a check counts as overdue, and an event as
/// owed for too long: longer than any healthy daemon takes.
pub const OVERDUE_AFTER: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// Where the counts that could run long (due, overdue, owed for long)
/// stop: the figure is then "at least this many".
pub const COUNT_CAP: u64 = 10_000;

/// The orders, as the database counts them. The counts by status are
/// exact; the others stop at [`COUNT_CAP`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderFigures {
    pub pending: u64,
    pub paid: u64,
    pub closed: u64,
    /// Closed orders by reason (`expired`, `cancelled`, `unverified`).
    pub closed_by_reason: BTreeMap<String, u64>,
    /// Pending orders whose deadline falls in the next minute.
    pub due_next_minute: u64,
    /// Pending orders whose deadline falls in the next hour (those of the
    /// next minute included).
    pub due_next_hour: u64,
    /// Pending orders whose check is more than [`OVERDUE_AFTER`] late: a
    /// timer that should have fired and did not.
    pub overdue: u64,
    /// Paid or closed orders whose event the broker has not yet confirmed.
    pub events_owed: u64,
    /// Of those, the ones owed for more than [`OVERDUE_AFTER`].
    pub events_owed_late: u64,
}

/// One of paywait's queues, as the broker counts it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueFigures {
    pub name: String,
    /// Messages ready in the queue.
    pub messages: u64,
    pub consumers: u64,
    /// Whether the daemon consumes it (TTL queues have no consumer).
    pub consumed: bool,
    /// A TTL queue: its messages are timers waiting.
    pub timers: bool,
}

/// A message parked in the dead queue, as the status page lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParkedSample {
    pub parked_at: DateTime<Utc>,
    pub reason: String,
    pub source_queue: String,
    pub error: String,
    pub preview: String,
}

/// The daemon at `http.listen`, as its `/readyz` answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonFigures {
    pub address: String,
    /// `None` when nothing answered there.
    pub ready: Option<bool>,
}

/// The whole report: `paywait status --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub as_of: DateTime<Utc>,
    /// True when nothing below needs a person now.
    pub healthy: bool,
    /// What makes it unhealthy, most urgent first.
    pub problems: Vec<String>,
    pub pending: u64,
    pub overdue: u64,
    pub events_owed: u64,
    /// Parked messages by reason.
    pub parked: BTreeMap<String, u64>,
    pub orders: OrderFigures,
    pub queues: Vec<QueueFigures>,
    pub daemon: DaemonFigures,
}

impl Status {
    /// Judges the figures gathered at `as_of`.
    pub fn assess(
        as_of: DateTime<Utc>,
        orders: OrderFigures,
        parked: BTreeMap<String, u64>,
        queues: Vec<QueueFigures>,
        daemon: DaemonFigures,
    ) -> Self {
        let mut problems = Vec::new();
        match daemon.ready {
            None => problems.push(format!("no daemon answers at {}", daemon.address)),
            Some(false) => problems.push(format!("the daemon at {} is not ready", daemon.address)),
            Some(true) => {}
        }
        if orders.overdue > 0 {
            problems.push(format!(
                "{} overdue {} (a timer that should have fired did not)",
                orders.overdue,
                plural(orders.overdue, "check", "checks")
            ));
        }
        if orders.events_owed_late > 0 {
            problems.push(format!(
                "{} {} owed for over a minute",
                orders.events_owed_late,
                plural(orders.events_owed_late, "event", "events")
            ));
        }
        for queue in queues.iter().filter(|q| q.consumed && q.consumers == 0) {
            problems.push(format!("nothing consumes {}", queue.name));
        }
        Self {
            as_of,
            healthy: problems.is_empty(),
            problems,
            pending: orders.pending,
            overdue: orders.overdue,
            events_owed: orders.events_owed,
            parked,
            orders,
            queues,
            daemon,
        }
    }

    /// Parked messages of every reason.
    pub fn parked_total(&self) -> u64 {
        self.parked.values().sum()
    }

    /// Timers waiting in the TTL queues, and how many TTL queues there are.
    pub fn timers_waiting(&self) -> (u64, usize) {
        let ttl_queues = self.queues.iter().filter(|q| q.timers);
        (
            ttl_queues.clone().map(|q| q.messages).sum(),
            ttl_queues.count(),
        )
    }

    /// The report for a terminal: the verdict first, then the figures.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let o = &self.orders;
        if self.healthy {
            out.push_str("paywait: healthy\n");
        } else {
            let _ = writeln!(out, "paywait: NOT HEALTHY: {}", self.problems.join("; "));
        }
        let _ = writeln!(out, "overdue     {} checks", at_least(self.overdue));
        let _ = writeln!(
            out,
            "owed        {} events ({} for over a minute)",
            self.events_owed,
            at_least(o.events_owed_late)
        );
        let _ = writeln!(
            out,
            "pending     {} orders: {} due in the next minute, {} in the next hour",
            self.pending,
            at_least(o.due_next_minute),
            at_least(o.due_next_hour)
        );
        let _ = writeln!(
            out,
            "settled     {} paid, {} closed{}",
            o.paid,
            o.closed,
            by_reason(&o.closed_by_reason)
        );
        let _ = writeln!(
            out,
            "parked      {} messages{}",
            self.parked_total(),
            by_reason(&self.parked)
        );
        let readiness = match self.daemon.ready {
            None => "does not answer",
            Some(true) => "ready",
            Some(false) => "NOT READY",
        };
        let _ = writeln!(out, "daemon      {} {readiness}", self.daemon.address);
        let (timers, ttl_queues) = self.timers_waiting();
        let _ = writeln!(
            out,
            "timers      {timers} waiting in {ttl_queues} TTL queues"
        );
        let others: Vec<&QueueFigures> = self.queues.iter().filter(|q| !q.timers).collect();
        let width = others.iter().map(|q| q.name.len()).max().unwrap_or(0);
        let _ = writeln!(out, "queues      {:width$}  messages  consumers", "");
        for queue in others {
            let _ = writeln!(
                out,
                "            {:width$}  {:>8}  {:>9}",
                queue.name, queue.messages, queue.consumers
            );
        }
        out
    }
}

/// A count that stopped at [`COUNT_CAP`] reads "10000+".
pub fn at_least(n: u64) -> String {
    if n >= COUNT_CAP {
        format!("{COUNT_CAP}+")
    } else {
        n.to_string()
    }
}

/// ` (expired 3, cancelled 1)`, or nothing when there is nothing.
fn by_reason(counts: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(name: &str, consumers: u64, consumed: bool) -> QueueFigures {
        QueueFigures {
            name: name.to_owned(),
            messages: 0,
            consumers,
            consumed,
            timers: name.contains(".timer."),
        }
    }

    fn ready_daemon() -> DaemonFigures {
        DaemonFigures {
            address: "127.0.0.1:9464".into(),
            ready: Some(true),
        }
    }

    fn assess(orders: OrderFigures, queues: Vec<QueueFigures>, daemon: DaemonFigures) -> Status {
        Status::assess(Utc::now(), orders, BTreeMap::new(), queues, daemon)
    }

    #[test]
    fn healthy_when_ready_consumed_and_nothing_late() {
        let status = assess(
            OrderFigures {
                pending: 5,
                events_owed: 3,
                ..OrderFigures::default()
            },
            vec![
                queue("paywait.checks", 1, true),
                queue("paywait.timer.64ms", 0, false),
            ],
            ready_daemon(),
        );
        assert!(status.healthy, "{:?}", status.problems);
        let shown = status.render();
        assert!(shown.starts_with("paywait: healthy\n"));
        // TTL queues are summed up in one line, the others listed.
        assert!(
            shown.contains("timers      0 waiting in 1 TTL queues"),
            "{shown}"
        );
        assert!(shown.contains("paywait.checks") && !shown.contains("paywait.timer.64ms"));
    }

    #[test]
    fn each_problem_is_named_most_urgent_first() {
        let status = assess(
            OrderFigures {
                overdue: 2,
                events_owed: 4,
                events_owed_late: 1,
                ..OrderFigures::default()
            },
            vec![queue("paywait.checks", 0, true)],
            DaemonFigures {
                address: "127.0.0.1:9464".into(),
                ready: Some(false),
            },
        );
        assert!(!status.healthy);
        assert_eq!(
            status.problems,
            [
                "the daemon at 127.0.0.1:9464 is not ready",
                "2 overdue checks (a timer that should have fired did not)",
                "1 event owed for over a minute",
                "nothing consumes paywait.checks",
            ]
        );
        assert!(
            status
                .render()
                .starts_with("paywait: NOT HEALTHY: the daemon")
        );
    }

    #[test]
    fn a_daemon_that_does_not_answer_is_unhealthy() {
        let status = assess(
            OrderFigures::default(),
            vec![],
            DaemonFigures {
                address: "127.0.0.1:9464".into(),
                ready: None,
            },
        );
        assert_eq!(status.problems, ["no daemon answers at 127.0.0.1:9464"]);
    }

    #[test]
    fn parked_messages_are_shown_but_do_not_make_it_unhealthy() {
        let status = Status::assess(
            Utc::now(),
            OrderFigures::default(),
            BTreeMap::from([("not_json".to_owned(), 2), ("unknown_order".to_owned(), 1)]),
            vec![],
            ready_daemon(),
        );
        assert!(status.healthy);
        assert_eq!(status.parked_total(), 3);
        assert!(
            status
                .render()
                .contains("parked      3 messages (not_json 2, unknown_order 1)"),
            "{}",
            status.render()
        );
    }

    #[test]
    fn a_count_that_stopped_at_the_cap_reads_at_least() {
        assert_eq!(at_least(COUNT_CAP - 1), "9999");
        assert_eq!(at_least(COUNT_CAP), "10000+");
    }

    #[test]
    fn the_document_has_the_keys_scripts_read() {
        let status = assess(OrderFigures::default(), vec![], ready_daemon());
        let document = serde_json::to_value(&status).unwrap();
        for key in ["pending", "overdue", "events_owed", "parked", "healthy"] {
            assert!(document.get(key).is_some(), "{key} missing: {document}");
        }
        let back: Status = serde_json::from_value(document).unwrap();
        assert_eq!(back, status);
    }
}
