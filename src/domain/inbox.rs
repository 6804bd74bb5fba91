//! What paywait consumes, as the worker sees it: a kind of message, its
//! body and what the transport says about it — and the verdict it answers.

use super::{IntegerHeader, Rejection};

/// The kinds of message paywait consumes, each from a queue of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Inbox {
    /// `order.placed`, from the order service.
    Placed,
    /// `payment.succeeded`, from the payment service.
    Payments,
    /// `order.cancelled`, from the order service.
    Cancellations,
    /// Timers that expired.
    Checks,
}

/// Where the messages of an inbox come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The inbound exchange, under this routing key.
    Inbound { routing_key: &'static str },
    /// paywait's own timers, dead-lettered when their wait is over.
    ExpiredTimers,
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
            Self::Placed => Source::Inbound {
                routing_key: "order.placed",
            },
            Self::Payments => Source::Inbound {
                routing_key: "payment.succeeded",
            },
            Self::Cancellations => Source::Inbound {
                routing_key: "order.cancelled",
            },
            Self::Checks => Source::ExpiredTimers,
        }
    }

    /// The routing key of its messages on the inbound exchange, if they come
    /// from there.
    pub fn routing_key(self) -> Option<&'static str> {
        match self.source() {
            Source::Inbound { routing_key } => Some(routing_key),
            Source::ExpiredTimers => None,
        }
    }
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
    /// It may have been handled part-way before: the broker delivered it
    /// again, or this process is trying it again after a failure.
    pub seen_before: bool,
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
    fn each_inbox_has_a_name_and_a_source() {
        let described: Vec<_> = Inbox::ALL
            .iter()
            .map(|inbox| (inbox.name(), inbox.routing_key()))
            .collect();
        assert_eq!(
            described,
            [
                ("placed", Some("order.placed")),
                ("payments", Some("payment.succeeded")),
                ("cancellations", Some("order.cancelled")),
                ("checks", None),
            ]
        );
        assert_eq!(Inbox::Checks.source(), Source::ExpiredTimers);
    }
}
