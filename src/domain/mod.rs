//! The pure core: order states, inbound messages, the check schedule, and
//! every rule — what an order, a payment or a timer does. Nothing in here
//! does I/O; the worker carries the decisions out.

pub mod cancellation;
pub mod check;
pub mod deadline;
mod event;
pub mod gateway;
mod inbox;
pub mod intake;
mod message;
mod order;
mod order_id;
pub mod payment;
pub mod plan;
pub mod reminder;
mod schedule;
pub mod status;
mod story;
pub mod sweep;
pub mod timer;

pub use check::{
    CheckDecision, CheckFacts, CheckKind, CheckOutcome, CheckPlan, Stage, after_lost_close, decide,
    decide_early_as_of, decide_redelivered, number_of_unnumbered,
};
pub use event::{EventKind, OrderEvent, PaymentStated, describe_event};
pub use inbox::{Arrivals, Delivery, Inbound, Inbox, Kind, Parked, Source, Verdict};
pub use intake::{
    Arrival, Limits, NewOrder, Placement, Transition, Waiting, WaitingCancellation, WaitingChange,
};
pub use message::{
    ATTEMPT_HEADER, Attempt, CheckDue, Currency, DUE_AT_HEADER, DeadlineChanged, IntegerHeader,
    MAX_BODY_BYTES, Message, OrderCancelled, OrderPlaced, PaymentId, PaymentSucceeded, Rejection,
    ReminderDue, due_at_header, to_the_microsecond,
};
pub use order::{CloseReason, Order, OrderStatus};
#[cfg(test)]
pub(crate) use order::{pay_id, test_order};
pub use order_id::{InvalidOrderId, OrderId};
pub use payment::{PaymentDecision, PaymentOutcome, RecordedPayment};
pub use plan::{Claim, Plan, Step};
pub use schedule::{InvalidSchedule, Schedule, format_duration, parse_duration, time_delta};
pub use status::{DaemonFigures, OrderFigures, ParkedSample, QueueFigures, Status};
pub use story::{EventRecord, OrderStory};
pub use sweep::Sweep;
pub use timer::{Route, Timers};
