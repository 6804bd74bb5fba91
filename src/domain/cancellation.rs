//! What happens when a customer cancels an order.
//!
//! A pending order is closed at once (reason `cancelled`) by one
//! conditional write; a paid or closed one is left as it is; one paywait
//! has not seen yet keeps the cancellation until it arrives. A payment after
//! the cancellation is a payment after the close.

use super::{
    CloseReason, Delivery, Order, OrderCancelled, OrderStatus,
    plan::{Claim, Plan, Step},
};

/// What an `order.cancelled` does to its order, as the order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelDecision {
    /// Close it, reason `cancelled`: one conditional write; if the order
    /// left `pending` meanwhile, decide again.
    Close,
    /// Keep the cancellation for when the order arrives.
    KeepForArrival,
    /// Paid or closed already: leave it, but announce its status if that is
    /// still owed.
    LeaveAsItIs,
}

pub fn decide(order: Option<&Order>) -> CancelDecision {
    match order.map(|order| order.status) {
        None => CancelDecision::KeepForArrival,
        Some(OrderStatus::Pending) => CancelDecision::Close,
        Some(OrderStatus::Paid | OrderStatus::Closed) => CancelDecision::LeaveAsItIs,
    }
}

/// The plan of `cancelled` for its order, as it stands (`None`: not seen
/// yet), on its `delivery`.
pub fn plan(order: Option<&Order>, cancelled: &OrderCancelled, delivery: Delivery) -> Plan {
    match decide(order) {
        CancelDecision::Close => Plan::close(None, CloseReason::Cancelled),
        CancelDecision::LeaveAsItIs => {
            Plan::steps([Step::AnnounceOwed(Claim::for_delivery(delivery))])
                .noting("a cancellation of a settled order ignored")
        }
        // What came before an order is played in the order it was received;
        // a payment that reached the broker before this cancellation came
        // before it, however far behind the payments are: they are handled
        // first, and the cancellation is kept as received once they are.
        CancelDecision::KeepForArrival => Plan::steps([
            Step::WaitForPayments,
            Step::KeepCancellation(cancelled.clone()),
        ]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::test_order;

    #[test]
    fn only_a_pending_order_is_closed() {
        let cases = [
            (Some(OrderStatus::Pending), CancelDecision::Close),
            (Some(OrderStatus::Paid), CancelDecision::LeaveAsItIs),
            (Some(OrderStatus::Closed), CancelDecision::LeaveAsItIs),
            (None, CancelDecision::KeepForArrival),
        ];
        for (status, expected) in cases {
            let order = status.map(test_order);
            assert_eq!(decide(order.as_ref()), expected, "{status:?}");
        }
    }

    #[test]
    fn a_cancellation_closes_after_the_payments_before_it_or_waits_for_its_order() {
        let cancelled = OrderCancelled {
            order_id: crate::domain::OrderId::parse("A-1001").unwrap(),
            reason: Some("changed my mind".into()),
        };
        let pending = test_order(OrderStatus::Pending);
        assert_eq!(
            plan(Some(&pending), &cancelled, Delivery::First),
            Plan::close(None, CloseReason::Cancelled)
        );
        assert_eq!(
            plan(None, &cancelled, Delivery::First).steps,
            [
                Step::WaitForPayments,
                Step::KeepCancellation(cancelled.clone())
            ]
        );
        let closed = test_order(OrderStatus::Closed);
        assert_eq!(
            plan(Some(&closed), &cancelled, Delivery::Again).steps,
            [Step::AnnounceOwed(Claim::Skip)]
        );
    }
}
