//! Sequences where paywait's core (as `src/worker` drives it) once did not
//! do what SPEC.md says, each the shortest one found: they stay, so that
//! none comes back.

use crate::{
    Setup, agree,
    steps::{Answer, MINUTE, Message, Step, cancel, paid_in_sql, pay, place, timer},
};

const DEADLINE: i64 = 5 * MINUTE;

/// SPEC: for an order marked paid in SQL, "the first payment.succeeded that
/// matches it is taken as the payment that paid it (recorded, nothing
/// published); every other payment for it, of any amount, publishes
/// order.paid_twice".
#[test]
fn regression_sql_paid_order_takes_the_first_matching_payment_as_its_own() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), Some("CNY")),
            paid_in_sql("A-1"),
            pay("A-1", 1, Some(100), Some("CNY")),
        ],
    );
}

/// The same rule: a second matching payment is `order.paid_twice`.
#[test]
fn regression_sql_paid_order_second_payment_is_paid_twice() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), Some("CNY")),
            paid_in_sql("A-1"),
            pay("A-1", 1, Some(100), Some("CNY")),
            pay("A-1", 2, Some(100), Some("CNY")),
        ],
    );
}

/// The same rule: a payment that does not match an order paid in SQL is
/// `order.paid_twice` too (it is not a mismatch: the order is not pending).
#[test]
fn regression_sql_paid_order_mismatched_payment_is_paid_twice() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), Some("CNY")),
            paid_in_sql("A-1"),
            pay("A-1", 1, Some(1), None),
            timer("A-1", DEADLINE, Answer::Unpaid),
        ],
    );
}

/// SPEC: an event about a payment carries "the status it was decided with,
/// not the order's later one"; a mismatch is decided on a pending order.
#[test]
fn regression_mismatch_before_its_order_is_announced_as_pending_when_another_payment_settles_it() {
    agree(
        Setup::PLAIN,
        &[
            pay("A-1", 1, Some(1), None),
            pay("A-1", 2, Some(100), None),
            place("A-1", Some(100), None),
        ],
    );
}

/// The same with a cancellation that came after the mismatched payment.
#[test]
fn regression_mismatch_before_a_cancellation_before_its_order_is_announced_as_pending() {
    agree(
        Setup::PLAIN,
        &[
            pay("A-1", 1, Some(1), None),
            cancel("A-1"),
            place("A-1", Some(100), None),
        ],
    );
}

/// SPEC: what waited for an order is "played in the order they came", and
/// a worker killed at any instant loses no event. When the worker dies
/// after the arrival's close (of a cancellation that waited) is written but
/// before the payment that came before the cancellation is decided, the
/// redelivered `order.placed` decides that payment against the closed
/// order: `order.paid_after_close` instead of `order.payment_mismatch`.
#[test]
fn regression_worker_dying_on_arrival_decides_an_earlier_payment_after_the_close() {
    agree(
        Setup::PLAIN,
        &[
            pay("A-1", 1, Some(1), None),
            cancel("A-1"),
            Step::Deliver {
                message: Message::Placed {
                    order: "A-1",
                    amount_cents: Some(100),
                    currency: None,
                    placed_at: 0,
                    expires_in: None,
                },
                redelivered: false,
                dies_after: Some(2),
            },
        ],
    );
}

/// The same with a payment that settled on arrival: the earlier
/// mismatched payment turns into `order.paid_twice`.
#[test]
fn regression_worker_dying_on_arrival_decides_an_earlier_payment_after_the_settlement() {
    agree(
        Setup::PLAIN,
        &[
            pay("A-1", 1, Some(1), None),
            pay("A-1", 2, Some(100), None),
            Step::Deliver {
                message: Message::Placed {
                    order: "A-1",
                    amount_cents: Some(100),
                    currency: None,
                    placed_at: 0,
                    expires_in: None,
                },
                redelivered: false,
                dies_after: Some(2),
            },
        ],
    );
}

/// Order A-1 of 100 CNY; at its deadline the gateway says it was paid by
/// payment 1, of 100 in `currency`, and the worker dies after `dies_after`
/// of its effects.
fn gateway_pays_and_the_worker_dies(currency: &'static str, dies_after: u32) -> [Step; 2] {
    [
        place("A-1", Some(100), Some("CNY")),
        Step::Timer {
            order: "A-1",
            at: DEADLINE,
            answer: Answer::Paid {
                n: 1,
                amount_cents: Some(100),
                currency: Some(currency),
            },
            dies_after: Some(dies_after),
        },
    ]
}

/// SPEC: a worker killed at any instant loses no event. The gateway says
/// `paid` with a payment that does not match; the worker dies once the
/// mismatch is recorded, before its event is published. The redelivered
/// timer asks again, finds the payment decided, and (asking as if the
/// timer were new) does not publish it: `order.payment_mismatch` is lost.
#[test]
fn regression_worker_dying_after_a_gateway_mismatch_loses_its_event() {
    agree(
        Setup::with_gateway(0),
        &gateway_pays_and_the_worker_dies("USD", 2),
    );
}

/// SPEC: "A duplicate of an event is byte for byte the same body". The
/// gateway's payment settles the order and `order.paid` is published
/// without counting the check that asked (`attempts` 0); the worker dies
/// before recording it, and the redelivered check publishes it again
/// counting itself (`attempts` 1).
#[test]
fn regression_order_paid_through_the_gateway_is_published_again_with_other_attempts() {
    agree(
        Setup::with_gateway(0),
        &gateway_pays_and_the_worker_dies("CNY", 3),
    );
}

/// SPEC: "A duplicate of an event is byte for byte the same body". A
/// deadline given again (A, then B, then A) is the same event under the
/// same id: its first record stands.
#[test]
fn regression_a_deadline_given_again_is_announced_as_it_was_first() {
    let change = |expires_at| {
        crate::steps::deliver(Message::DeadlineChanged {
            order: "A-1",
            expires_at,
        })
    };
    agree(
        Setup::PLAIN,
        &[
            change(2 * MINUTE),
            place("A-1", Some(100), Some("CNY")),
            change(62 * MINUTE),
            change(2 * MINUTE),
        ],
    );
}

/// A change tried again after it was written (the worker died before its
/// event was confirmed) is the same change, not one superseded by itself:
/// its event is published.
#[test]
fn regression_a_change_tried_again_after_its_write_publishes_its_event() {
    agree(
        Setup::PLAIN,
        &[
            place("A-3", Some(100), Some("CNY")),
            Step::Deliver {
                message: Message::DeadlineChanged {
                    order: "A-3",
                    expires_at: 5 * MINUTE + 1,
                },
                redelivered: false,
                dies_after: Some(1),
            },
        ],
    );
}
