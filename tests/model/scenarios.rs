//! Hand-written sequences the core and the contract agree on: the rules of
//! SPEC.md one at a time, as readable examples of what the random sequences
//! are made of.

use crate::{
    Setup, agree,
    steps::{Answer, HOUR, MINUTE, Message, Step, cancel, deliver, paid_in_sql, pay, place, timer},
};

/// The deadline of an order placed at the epoch without one of its own.
const DEADLINE: i64 = 5 * MINUTE;

#[test]
fn a_matching_payment_pays_and_a_second_one_is_paid_twice() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), Some("CNY")),
            pay("A-1", 1, Some(100), None),
            pay("A-1", 1, Some(100), None),
            pay("A-1", 2, Some(100), Some("CNY")),
            timer("A-1", DEADLINE, Answer::Unpaid),
        ],
    );
}

#[test]
fn a_mismatch_leaves_the_order_to_close_at_its_deadline() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), Some("CNY")),
            pay("A-1", 1, Some(100), Some("USD")),
            timer("A-1", DEADLINE - 1, Answer::Unpaid),
            timer("A-1", DEADLINE, Answer::Unpaid),
            pay("A-1", 2, Some(100), Some("CNY")),
        ],
    );
}

#[test]
fn a_payment_before_its_order_pays_it_on_arrival() {
    agree(
        Setup::PLAIN,
        &[
            pay("A-1", 1, Some(i64::MAX), None),
            place("A-1", Some(i64::MAX), Some("CNY")),
        ],
    );
}

#[test]
fn a_cancellation_before_its_order_closes_it_on_arrival() {
    agree(
        Setup::PLAIN,
        &[
            cancel("A-1"),
            pay("A-1", 1, None, None),
            place("A-1", Some(0), None),
            cancel("A-1"),
        ],
    );
}

#[test]
fn an_order_with_a_deadline_out_of_bounds_is_refused() {
    let placed = |expires_in| {
        deliver(Message::Placed {
            order: "A-1",
            amount_cents: None,
            currency: None,
            placed_at: -HOUR,
            expires_in: Some(expires_in),
        })
    };
    agree(
        Setup::PLAIN,
        &[
            placed(0),
            placed(30 * 24 * HOUR + 1),
            pay("A-1", 1, None, None),
        ],
    );
}

#[test]
fn the_gateway_is_asked_again_then_the_order_closes_unverified() {
    agree(
        Setup::with_gateway(2),
        &[
            place("A-1", Some(100), Some("CNY")),
            timer("A-1", DEADLINE, Answer::Pending),
            timer("A-1", DEADLINE + 30_000, Answer::Unusable),
            timer("A-1", DEADLINE + 60_000, Answer::Pending),
        ],
    );
}

#[test]
fn pending_then_unpaid_closes_expired() {
    agree(
        Setup::with_gateway(3),
        &[
            place("A-1", None, None),
            timer("A-1", DEADLINE, Answer::Pending),
            timer("A-1", DEADLINE + HOUR, Answer::Unpaid),
        ],
    );
}

#[test]
fn the_gateways_payment_must_match_too() {
    let paid = |amount_cents| Answer::Paid {
        n: 1,
        amount_cents,
        currency: None,
    };
    agree(
        Setup::with_gateway(1),
        &[
            place("A-1", Some(100), None),
            place("A-2", Some(100), None),
            timer("A-1", DEADLINE, paid(Some(1))),
            timer("A-2", DEADLINE, paid(Some(100))),
        ],
    );
}

#[test]
fn a_check_made_again_changes_nothing() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", None, None),
            timer("A-1", DEADLINE - 4 * MINUTE, Answer::Unpaid),
            Step::TimerAgain {
                order: "A-1",
                at: DEADLINE + HOUR,
                redelivered: true,
            },
            pay("A-1", 1, None, None),
        ],
    );
}

#[test]
fn a_close_that_loses_to_a_payment_announces_the_payment() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", Some(100), None),
            Step::RacedClose {
                order: "A-1",
                at: DEADLINE,
                payment: crate::steps::Pay {
                    order: "A-1",
                    n: 1,
                    amount_cents: Some(100),
                    currency: None,
                },
            },
        ],
    );
}

#[test]
fn a_worker_that_dies_half_way_loses_nothing() {
    for dies_after in 1..=6 {
        let dying = |message| Step::Deliver {
            message,
            redelivered: false,
            dies_after: Some(dies_after),
        };
        agree(
            Setup::with_gateway(0),
            &[
                dying(Message::Payment(crate::steps::Pay {
                    order: "A-1",
                    n: 1,
                    amount_cents: Some(1),
                    currency: None,
                })),
                dying(Message::Placed {
                    order: "A-1",
                    amount_cents: Some(100),
                    currency: None,
                    placed_at: 0,
                    expires_in: None,
                }),
                Step::Timer {
                    order: "A-1",
                    at: DEADLINE,
                    answer: Answer::Unusable,
                    dies_after: Some(dies_after),
                },
                pay("A-1", 2, Some(100), None),
            ],
        );
    }
}

#[test]
fn an_order_paid_in_sql_is_announced_by_its_next_check() {
    agree(
        Setup::PLAIN,
        &[
            place("A-1", None, None),
            paid_in_sql("A-1"),
            timer("A-1", DEADLINE, Answer::Unpaid),
            cancel("A-1"),
        ],
    );
}
