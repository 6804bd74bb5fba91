//! What paywait consumes, as the worker sees it: a kind of message, its
//! body and what the transport says about it — and the verdict it answers.

use chrono::{DateTime, TimeDelta, Utc};

use super::{IntegerHeader, Rejection};

/// The queues paywait consumes, each holding kinds of message whose order
/// matters among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inbox {
    /// `order.placed`, from the order service.
    Placed,
    /// `payment.succeeded` from the payment service, and what must be
    /// handled in the order it reached the broker beside payments:
    /// `order.deadline_changed` (a close waits for both, see
    /// `worker::barrier`).
    Payments,
    /// `order.cancelled`, from the order service.
    Cancellations,
    /// Timers that expired.
    Checks,
}

/// Where the messages of an inbox come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The inbound exchange, under the routing keys of its [`Kind`]s.
    Inbound,
    /// paywait's own timers, dead-lettered when their wait is over.
    ExpiredTimers,
}

/// The kinds of message other services publish to the inbound exchange,
/// each under its own routing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    OrderPlaced,
    PaymentSucceeded,
    OrderCancelled,
    DeadlineChanged,
}

impl Kind {
    pub const ALL: [Self; 4] = [
        Self::OrderPlaced,
        Self::PaymentSucceeded,
        Self::OrderCancelled,
        Self::DeadlineChanged,
    ];

    pub fn routing_key(self) -> &'static str {
        match self {
            Self::OrderPlaced => "order.placed",
            Self::PaymentSucceeded => "payment.succeeded",
            Self::OrderCancelled => "order.cancelled",
            Self::DeadlineChanged => "order.deadline_changed",
        }
    }

    /// The kind published under `routing_key`, if paywait knows it.
    pub fn of(routing_key: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.routing_key() == routing_key)
    }

    /// The queue it is consumed from.
    pub fn inbox(self) -> Inbox {
        match self {
            Self::OrderPlaced => Inbox::Placed,
            Self::PaymentSucceeded | Self::DeadlineChanged => Inbox::Payments,
            Self::OrderCancelled => Inbox::Cancellations,
        }
    }

    /// Whether it says money moved, so that only `payments.trusted_users`
    /// may publish it.
    pub fn is_about_money(self) -> bool {
        matches!(self, Self::PaymentSucceeded)
    }
}

impl Inbox {
    pub const ALL: [Self; 4] = [
        Self::Placed,
        Self::Payments,
        Self::Cancellations,
        Self::Checks,
    ];

    /// A short name, for queue names, consumer tags and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Payments => "payments",
            Self::Cancellations => "cancellations",
            Self::Checks => "checks",
        }
    }

    pub fn source(self) -> Source {
        match self {
            Self::Checks => Source::ExpiredTimers,
            Self::Placed | Self::Payments | Self::Cancellations => Source::Inbound,
        }
    }

    /// The kinds of message it holds; the first is the kind of a message
    /// that came to its queue without a known routing key (published to
    /// the queue itself).
    pub fn kinds(self) -> Vec<Kind> {
        Kind::ALL
            .into_iter()
            .filter(|kind| kind.inbox() == self)
            .collect()
    }

    /// The kind of a message of this inbox published under `routing_key`.
    pub fn kind_of(self, routing_key: &str) -> Option<Kind> {
        let kinds = self.kinds();
        Kind::of(routing_key)
            .filter(|kind| kinds.contains(kind))
            .or(kinds.first().copied())
    }
}

/// A message parked in the dead queue, as paywait keeps a record of it
/// until it is replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parked {
    /// Also in the parked message's `x-paywait-parked-id` header.
    pub parked_id: String,
    /// The refusal's short reason, as in `paywait_messages_dead_total`.
    pub reason: &'static str,
    pub source_queue: String,
    /// The refusal in words, as in the `x-paywait-error` header.
    pub error: String,
    /// The start of the body, printable on one line.
    pub preview: String,
}

/// One message to handle, free of the transport it came by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub inbox: Inbox,
    pub body: Vec<u8>,
    /// The `x-attempt` header; only timers carry one.
    pub attempt: IntegerHeader,
    /// The `x-due-at` header; only timers carry one.
    pub due_at: IntegerHeader,
    /// The RabbitMQ user that published it, when the publisher set the
    /// `user_id` property (which the broker checks against the connection).
    pub user_id: Option<String>,
    /// The routing key it was published under (for a message replayed
    /// from the dead queue, the one it first had).
    pub routing_key: String,
    /// It may have been handled part-way before: the broker delivered it
    /// again, or this process is trying it again after a failure.
    pub seen_before: bool,
    /// When it was delivered, later than every earlier delivery of its
    /// inbox (see [`Arrivals`]).
    pub received_at: DateTime<Utc>,
}

/// Whether a message may have been handled part-way before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Its first delivery.
    First,
    /// The broker delivered it again, or this process is trying it again
    /// after a failure: a first try may have stopped part-way.
    Again,
}

impl Inbound {
    pub fn delivery(&self) -> Delivery {
        if self.seen_before {
            Delivery::Again
        } else {
            Delivery::First
        }
    }
}

/// Stamps the deliveries of one inbox with their time of arrival, strictly
/// increasing to the microsecond that PostgreSQL keeps. Messages are
/// handled concurrently, so the time a handler starts does not keep their
/// order; what came before an order (its payments) is played back in the
/// order of these stamps.
#[derive(Debug, Default)]
pub struct Arrivals {
    last: Option<DateTime<Utc>>,
}

impl Arrivals {
    /// The stamp of a delivery seen at `now`.
    pub fn stamp(&mut self, now: DateTime<Utc>) -> DateTime<Utc> {
        let micro = TimeDelta::microseconds(1);
        let now = now - TimeDelta::nanoseconds(i64::from(now.timestamp_subsec_nanos() % 1_000));
        let stamp = match self.last {
            Some(last) if now <= last => last + micro,
            _ => now,
        };
        self.last = Some(stamp);
        stamp
    }
}

/// How a message was dealt with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its effects are committed and every message it caused is confirmed:
    /// acknowledge it.
    Done,
    /// It cannot be processed: park it in the dead queue, saying why.
    Reject(Rejection),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_inbox_has_a_name_a_source_and_its_kinds() {
        let described: Vec<_> = Inbox::ALL
            .iter()
            .map(|inbox| {
                let keys: Vec<_> = inbox.kinds().into_iter().map(Kind::routing_key).collect();
                (inbox.name(), keys)
            })
            .collect();
        assert_eq!(
            described,
            [
                ("placed", vec!["order.placed"]),
                (
                    "payments",
                    vec!["payment.succeeded", "order.deadline_changed"]
                ),
                ("cancellations", vec!["order.cancelled"]),
                ("checks", vec![]),
            ]
        );
        assert_eq!(Inbox::Checks.source(), Source::ExpiredTimers);
        for kind in Kind::ALL {
            assert_eq!(Kind::of(kind.routing_key()), Some(kind));
            assert_eq!(kind.inbox().kind_of(kind.routing_key()), Some(kind));
        }
        // Published to the queue itself, or under a key of another inbox.
        assert_eq!(
            Inbox::Payments.kind_of("paywait.intake.payments"),
            Some(Kind::PaymentSucceeded)
        );
        assert_eq!(
            Inbox::Payments.kind_of("order.placed"),
            Some(Kind::PaymentSucceeded)
        );
        assert_eq!(Inbox::Checks.kind_of("order.placed"), None);
    }

    #[test]
    fn arrivals_are_stamped_in_order_to_the_microsecond() {
        let t0: DateTime<Utc> = "2026-11-30T08:00:00.000001500Z".parse().unwrap();
        let mut arrivals = Arrivals::default();
        let first = arrivals.stamp(t0);
        assert_eq!(
            first,
            "2026-11-30T08:00:00.000001Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        // The same microsecond, or a clock stepped back: still later.
        let second = arrivals.stamp(t0 + TimeDelta::nanoseconds(300));
        let third = arrivals.stamp(t0 - TimeDelta::seconds(1));
        assert_eq!(second - first, TimeDelta::microseconds(1));
        assert_eq!(third - second, TimeDelta::microseconds(1));
        // Time moving on is taken as it is.
        let later = t0 + TimeDelta::milliseconds(5);
        assert_eq!(
            arrivals.stamp(later),
            "2026-11-30T08:00:00.005001Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
    }
}
