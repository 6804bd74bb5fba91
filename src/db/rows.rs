//! Rows as diesel reads and writes them, and their domain values.

use chrono::{DateTime, Utc};
use diesel::{
    pg::Pg,
    prelude::{Insertable, Queryable, QueryableByName, Selectable},
};

use super::error::{DbError, Result};
use super::schema::{orders, payments};
use crate::domain::{
    CloseReason, Currency, Order, OrderId, OrderStatus, PaymentId, PaymentOutcome, RecordedPayment,
    Waiting, WaitingCancellation, WaitingChange,
};

/// A row of `orders`.
#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = orders, check_for_backend(Pg))]
pub(super) struct OrderRow {
    pub order_id: String,
    status: String,
    amount_cents: Option<i64>,
    currency: Option<String>,
    placed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    close_reason: Option<String>,
    attempts: i32,
    gateway_asks: i32,
    payment_id: Option<String>,
    event_published_at: Option<DateTime<Utc>>,
    next_check_at: Option<DateTime<Utc>>,
    adopted_payment_id: Option<String>,
    deadline_changed_at: Option<DateTime<Utc>>,
}

/// A payment id as PostgreSQL holds it, read back as paywait wrote it.
fn payment_id(text: &str) -> Result<PaymentId> {
    PaymentId::parse(text).map_err(|why| DbError::CorruptRow(format!("payment id {text:?}: {why}")))
}

/// A currency as PostgreSQL holds it, read back as paywait wrote it.
fn currency(text: Option<&str>) -> Result<Option<Currency>> {
    text.map(|text| {
        Currency::parse(text).map_err(|why| DbError::CorruptRow(format!("currency: {why}")))
    })
    .transpose()
}

/// An order id as PostgreSQL holds it, read back as paywait wrote it.
fn order_id(text: &str) -> Result<OrderId> {
    OrderId::parse(text).map_err(|error| DbError::CorruptRow(error.to_string()))
}

impl TryFrom<OrderRow> for Order {
    type Error = DbError;

    fn try_from(row: OrderRow) -> Result<Self> {
        let corrupt = |what: String| DbError::CorruptRow(format!("order {}: {what}", row.order_id));
        Ok(Order {
            status: OrderStatus::parse(&row.status)
                .ok_or_else(|| corrupt(format!("status {:?}", row.status)))?,
            close_reason: row
                .close_reason
                .as_deref()
                .map(|reason| {
                    CloseReason::parse(reason).ok_or_else(|| corrupt(format!("reason {reason:?}")))
                })
                .transpose()?,
            order_id: order_id(&row.order_id)?,
            amount_cents: row.amount_cents,
            currency: currency(row.currency.as_deref())?,
            placed_at: row.placed_at,
            expires_at: row.expires_at,
            paid_at: row.paid_at,
            closed_at: row.closed_at,
            attempts: row.attempts.max(0) as u32,
            gateway_asks: row.gateway_asks.max(0) as u32,
            payment_id: row.payment_id.as_deref().map(payment_id).transpose()?,
            event_published_at: row.event_published_at,
            next_check_at: row.next_check_at,
            adopted_payment_id: row
                .adopted_payment_id
                .as_deref()
                .map(payment_id)
                .transpose()?,
            deadline_changed_at: row.deadline_changed_at,
        })
    }
}

/// A row of `payments`.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable, Insertable)]
#[diesel(table_name = payments, check_for_backend(Pg))]
pub(super) struct PaymentRow {
    pub payment_id: String,
    pub order_id: String,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub outcome: Option<String>,
    pub event_published_at: Option<DateTime<Utc>>,
    pub decided_attempts: Option<i32>,
}

impl TryFrom<PaymentRow> for RecordedPayment {
    type Error = DbError;

    fn try_from(row: PaymentRow) -> Result<Self> {
        Ok(Self {
            outcome: row
                .outcome
                .as_deref()
                .map(|outcome| {
                    PaymentOutcome::parse(outcome).ok_or_else(|| {
                        DbError::CorruptRow(format!(
                            "payment {} has outcome {outcome:?}",
                            row.payment_id
                        ))
                    })
                })
                .transpose()?,
            payment_id: payment_id(&row.payment_id)?,
            order_id: order_id(&row.order_id)?,
            amount_cents: row.amount_cents,
            currency: currency(row.currency.as_deref())?,
            paid_at: row.paid_at,
            received_at: row.received_at,
            event_published_at: row.event_published_at,
            decided_attempts: row.decided_attempts.map(|n| n.max(0) as u32),
        })
    }
}

/// What waited for an order: a payment or a cancellation.
#[derive(Debug, QueryableByName)]
pub(super) struct WaitingRow {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub order_id: String,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub payment_id: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Int8>)]
    pub amount_cents: Option<i64>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub currency: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub paid_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    pub received_at: DateTime<Utc>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    pub expires_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Bool>)]
    pub applied: Option<bool>,
}

impl WaitingRow {
    /// Adds what this row holds to what waited for its order.
    pub(super) fn add_to(self, waiting: &mut Waiting) -> Result<()> {
        let row = self;
        match row.payment_id {
            Some(id) => waiting.payments.push(RecordedPayment {
                payment_id: payment_id(&id)?,
                order_id: order_id(&row.order_id)?,
                amount_cents: row.amount_cents,
                currency: currency(row.currency.as_deref())?,
                paid_at: row.paid_at,
                received_at: row.received_at,
                outcome: None,
                event_published_at: None,
                decided_attempts: None,
            }),
            None => match row.expires_at {
                // The last received, as rows come in that order.
                Some(expires_at) => {
                    waiting.deadline_change = Some(WaitingChange {
                        expires_at,
                        received_at: row.received_at,
                        applied: row.applied.unwrap_or(false),
                    })
                }
                None => {
                    waiting.cancellation = Some(WaitingCancellation {
                        reason: row.reason,
                        received_at: row.received_at,
                    })
                }
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment_row(currency: Option<&str>) -> PaymentRow {
        PaymentRow {
            payment_id: "PAY-1".into(),
            order_id: "A-1".into(),
            amount_cents: Some(100),
            currency: currency.map(str::to_owned),
            paid_at: None,
            received_at: "2026-12-08T10:00:00Z".parse().unwrap(),
            outcome: Some("settled".into()),
            event_published_at: None,
            decided_attempts: Some(1),
        }
    }

    #[test]
    fn a_row_is_read_back_into_typed_values() {
        let payment = RecordedPayment::try_from(payment_row(Some("CNY"))).unwrap();
        assert_eq!(payment.currency, Some(Currency::parse("CNY").unwrap()));
        assert_eq!(payment.payment_id.as_str(), "PAY-1");
        assert_eq!(payment.order_id.as_str(), "A-1");
        assert_eq!(payment.outcome, Some(PaymentOutcome::Settled));
        assert_eq!(
            RecordedPayment::try_from(payment_row(None))
                .unwrap()
                .currency,
            None
        );
    }

    #[test]
    fn a_row_paywait_could_not_have_written_is_corrupt() {
        for (row, words) in [
            (payment_row(Some("cny")), "currency"),
            (
                PaymentRow {
                    outcome: Some("maybe".into()),
                    ..payment_row(None)
                },
                "outcome",
            ),
            (
                PaymentRow {
                    payment_id: String::new(),
                    ..payment_row(None)
                },
                "payment id",
            ),
        ] {
            match RecordedPayment::try_from(row) {
                Err(DbError::CorruptRow(why)) => assert!(why.contains(words), "{why}"),
                other => panic!("{words}: {other:?}"),
            }
        }
    }
}
