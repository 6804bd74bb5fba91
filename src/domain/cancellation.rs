//! What happens when a customer cancels an order.
//!
//! A pending order is closed at once (reason `cancelled`) by one
//! conditional write; a paid or closed one is left as it is; one paywait
//! has not seen yet keeps the cancellation until it arrives. A payment after
//! the cancellation is a payment after the close.

use super::{Order, OrderStatus};

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
}
