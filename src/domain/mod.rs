//! The pure core: order states, inbound messages, the check schedule and what
//! a check decides. Nothing in here does I/O.

pub mod check;
mod event;
mod message;
mod order;
mod order_id;
mod schedule;

pub use check::{CheckDecision, CheckOutcome, decide};
pub use event::{EventKind, OrderEvent};
pub use message::{
    ATTEMPT_HEADER, Attempt, CheckDue, Currency, MAX_BODY_BYTES, OrderPlaced, PaymentId,
    PaymentSucceeded, Rejection, TimerBody,
};
pub use order::{Order, OrderStatus};
pub use order_id::{InvalidOrderId, OrderId};
pub use schedule::{InvalidSchedule, Schedule, format_duration, parse_duration, time_delta};
