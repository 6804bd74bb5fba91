//! The batched statements behind [`super::Database`]: one statement (and one
//! commit) for a whole batch of requests.
//!
//! Statements that move pending orders lock their rows in `order_id` order
//! first, so two batches touching the same orders never deadlock; those
//! that decide payments lock them in `payment_id` order, and inserts write
//! their rows in key order, for the same reason. Where one batch names an
//! order twice, the first request wins and is answered with the row.

use std::{
    collections::{HashMap, HashSet},
    sync::LazyLock,
};

use chrono::{DateTime, Utc};
use diesel::{
    ExpressionMethods, QueryDsl, SelectableHelper,
    prelude::{Insertable, QueryableByName},
    sql_types::{Array, Bool, Int4, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::error::{DbError, Result};
use super::{
    prepared::{Bind, prepared},
    rows::{OrderRow, PaymentRow, WaitingRow},
    schema::{orders, payments},
};
use crate::domain::{
    CloseReason, Currency, NewOrder, Order, OrderId, OrderStatus, PaymentId, PaymentOutcome,
    Placement, RecordedPayment, Waiting,
};

pub(super) use super::bounded::Conn;

#[derive(Insertable)]
#[diesel(table_name = orders)]
struct OrderInsert<'a> {
    order_id: &'a str,
    status: &'static str,
    amount_cents: Option<i64>,
    currency: Option<&'a str>,
    placed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    next_check_at: Option<DateTime<Utc>>,
}

/// An `UPDATE` of the orders a batch names, written so that concurrent
/// batches never deadlock: the rows are locked in `order_id` order first.
struct LockedUpdate {
    /// A query giving one row per order to update, with its `order_id` and
    /// the values the update reads, as `src.<column>`.
    source: &'static str,
    /// Whether only pending orders are locked and updated.
    pending_only: bool,
    /// The `SET` list.
    set: &'static str,
    /// A further condition on `orders` and `src`, if any.
    condition: Option<&'static str>,
    /// Whether the updated rows are returned.
    returning: bool,
    /// A statement run on the updated rows (`moved`) in the same commit.
    then: Option<&'static str>,
}

impl LockedUpdate {
    fn sql(&self) -> String {
        let pending = if self.pending_only {
            " AND orders.status = 'pending'"
        } else {
            ""
        };
        let condition = self
            .condition
            .map_or(String::new(), |condition| format!(" AND ({condition})"));
        let update = format!(
            "UPDATE orders SET {set} FROM src \
             WHERE orders.order_id = src.order_id \
               AND orders.order_id IN (SELECT order_id FROM locked){pending}{condition}",
            set = self.set,
        );
        let prelude = format!(
            "WITH src AS ({source}), \
                  locked AS (SELECT order_id FROM orders \
                             WHERE order_id IN (SELECT order_id FROM src){pending} \
                             ORDER BY order_id FOR UPDATE)",
            source = self.source,
        );
        match (self.then, self.returning) {
            (Some(then), _) => format!(
                "{prelude}, moved AS ({update} RETURNING orders.*), followed AS ({then}) \
                 SELECT * FROM moved"
            ),
            (None, true) => format!("{prelude} {update} RETURNING orders.*"),
            (None, false) => format!("{prelude} {update}"),
        }
    }
}

/// Pays pending orders with the given payments, if those are still
/// undecided, and records that they settled their orders. `$1`: order ids,
/// `$2`: the payment for each, `$3`: the check that paid it (the gateway's
/// answer; 0 for none), counted among the order's checks.
static SETTLE: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (v.order_id) v.order_id, p.payment_id, p.paid_at, p.received_at, \
                        v.attempt \
                 FROM unnest($1::text[], $2::text[], $3::int4[]) AS v(order_id, payment_id, attempt) \
                 JOIN payments p ON p.payment_id = v.payment_id AND p.order_id = v.order_id \
                 WHERE p.outcome IS NULL \
                 ORDER BY v.order_id, p.received_at, p.payment_id",
        pending_only: true,
        set: "status = 'paid', paid_at = COALESCE(src.paid_at, src.received_at), \
              payment_id = src.payment_id, next_check_at = NULL, event_published_at = NULL, \
              attempts = GREATEST(orders.attempts, src.attempt), announce_claimed_at = now()",
        condition: None,
        returning: true,
        then: Some(
            "UPDATE payments SET outcome = 'settled' FROM moved \
             WHERE payments.payment_id = moved.payment_id",
        ),
    }
    .sql()
});

/// Closes pending orders. `$1`: order ids, `$2`: the check closing each (0
/// for none), `$3`: when, `$4`: why. An order named twice is closed as its
/// first request says, which [`first_claim`] answers.
static CLOSE: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) * \
                 FROM unnest($1::text[], $2::int4[], $3::timestamptz[], $4::text[]) \
                   WITH ORDINALITY AS v(order_id, attempt, closed_at, reason, nth) \
                 ORDER BY order_id, nth",
        pending_only: true,
        set: "status = 'closed', closed_at = src.closed_at, close_reason = src.reason, \
              attempts = GREATEST(orders.attempts, src.attempt), \
              next_check_at = NULL, event_published_at = NULL, announce_claimed_at = now()",
        // A deadline moved later meanwhile (its change reached the broker
        // before the close was decided) keeps the order open.
        condition: Some("src.reason = 'cancelled' OR orders.expires_at <= src.closed_at"),
        returning: true,
        then: None,
    }
    .sql()
});

/// Records checks made on pending orders. `$1`: order ids, `$2`: the check
/// made, `$3`: when the next one is due, `$4`: whether the check asked the
/// payment gateway.
static RECORD_CHECKS: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) * \
                 FROM unnest($1::text[], $2::int4[], $3::timestamptz[], $4::bool[]) \
                   AS v(order_id, attempt, next_check_at, asked) \
                 ORDER BY order_id, attempt DESC",
        pending_only: true,
        set: "attempts = src.attempt, next_check_at = src.next_check_at, \
              gateway_asks = orders.gateway_asks + src.asked::int",
        condition: Some("orders.attempts < src.attempt"),
        returning: false,
        then: None,
    }
    .sql()
});

/// Records that terminal orders were announced. `$1`: order ids, `$2`: the
/// status announced, `$3`: the checks made so far.
static MARK_ANNOUNCED: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) * \
                 FROM unnest($1::text[], $2::text[], $3::int4[]) AS v(order_id, status, attempts) \
                 ORDER BY order_id, attempts DESC",
        pending_only: false,
        set: "event_published_at = now(), attempts = GREATEST(orders.attempts, src.attempts)",
        condition: Some("orders.status = src.status"),
        returning: false,
        then: None,
    }
    .sql()
});

/// Claims the announcement of terminal orders whose event is owed and
/// that nobody announces now. `$1`: order ids, `$2`: how old a claim must
/// be to count as abandoned.
static CLAIM_ANNOUNCEMENTS: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT order_id FROM unnest($1::text[]) AS v(order_id)",
        pending_only: false,
        set: "announce_claimed_at = now()",
        condition: Some(
            "orders.status <> 'pending' AND orders.event_published_at IS NULL \
             AND (orders.announce_claimed_at IS NULL \
                  OR orders.announce_claimed_at < now() - $2::interval)",
        ),
        returning: true,
        then: None,
    }
    .sql()
});

/// Takes a payment as the one that paid an order marked paid in SQL, if no
/// other was and it is undecided. `$1`: the order, `$2`: the payment.
pub(super) const ADOPT: &str = "\
    WITH v AS (SELECT $1::text AS order_id, $2::text AS payment_id), \
         adopted AS (UPDATE orders SET adopted_payment_id = v.payment_id FROM v \
                      WHERE orders.order_id = v.order_id AND orders.status = 'paid' \
                        AND orders.payment_id IS NULL AND orders.adopted_payment_id IS NULL \
                        AND EXISTS (SELECT 1 FROM payments p \
                                    WHERE p.payment_id = v.payment_id \
                                      AND p.order_id = v.order_id AND p.outcome IS NULL) \
                      RETURNING orders.order_id, orders.adopted_payment_id) \
    UPDATE payments SET outcome = 'settled' FROM adopted \
    WHERE payments.payment_id = adopted.adopted_payment_id \
      AND payments.order_id = adopted.order_id";

/// Keeps the first decision about each payment. `$1`: payment ids, `$2`:
/// the outcome decided now, `$3`: the order's checks when decided. Returns
/// every payment as it stands after.
const DECIDE_PAYMENTS: &str = "\
    WITH v AS (SELECT DISTINCT ON (payment_id) * \
               FROM unnest($1::text[], $2::text[], $3::int4[]) AS v(payment_id, outcome, attempts) \
               ORDER BY payment_id), \
         locked AS (SELECT payment_id FROM payments \
                    WHERE payment_id IN (SELECT payment_id FROM v) AND outcome IS NULL \
                    ORDER BY payment_id FOR UPDATE), \
         decided AS (UPDATE payments SET outcome = v.outcome, decided_attempts = v.attempts FROM v \
                     WHERE payments.payment_id = v.payment_id \
                       AND payments.payment_id IN (SELECT payment_id FROM locked) \
                       AND payments.outcome IS NULL \
                     RETURNING payments.payment_id, payments.outcome, payments.decided_attempts) \
    SELECT p.payment_id, p.order_id, p.amount_cents, p.currency, p.paid_at, p.received_at, \
           COALESCE(d.outcome, p.outcome) AS outcome, p.event_published_at, \
           COALESCE(d.decided_attempts, p.decided_attempts) AS decided_attempts, \
           d.payment_id IS NOT NULL AS decided_now \
    FROM payments p LEFT JOIN decided d ON d.payment_id = p.payment_id \
    WHERE p.payment_id IN (SELECT payment_id FROM v)";

/// What waited for orders: undecided payments and cancellations. `$1`: the
/// order ids.
const WAITING: &str = "\
    WITH ids AS (SELECT $1::text[] AS ids) \
    SELECT order_id, payment_id, amount_cents, currency, paid_at, received_at, \
        NULL::text AS reason, NULL::timestamptz AS expires_at, NULL::bool AS applied \
    FROM payments, ids WHERE order_id = ANY(ids.ids) AND outcome IS NULL \
    UNION ALL \
    SELECT order_id, NULL, NULL, NULL, NULL, received_at, reason, NULL, NULL \
    FROM cancellations, ids WHERE order_id = ANY(ids.ids) \
    UNION ALL \
    SELECT order_id, NULL, NULL, NULL, NULL, received_at, NULL, expires_at, \
        applied_at IS NOT NULL \
    FROM deadline_changes, ids WHERE order_id = ANY(ids.ids) \
        AND (applied_at IS NULL OR event_published_at IS NULL) \
    ORDER BY received_at";

fn ids(items: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
    items.map(|id| id.as_ref().to_owned()).collect()
}

/// Rows as orders, by order id.
fn by_order_id(rows: Vec<OrderRow>) -> Result<HashMap<String, Order>> {
    rows.into_iter()
        .map(|row| Ok((row.order_id.clone(), Order::try_from(row)?)))
        .collect()
}

async fn find_orders(
    conn: &mut AsyncPgConnection,
    order_ids: &[String],
) -> Result<HashMap<String, Order>> {
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::order_id.eq_any(order_ids))
        .select(OrderRow::as_select())
        .load(conn)
        .await?;
    by_order_id(rows)
}

/// Hands each returned row to the first item with its order id; later
/// duplicates in the batch get `None`, as if another daemon had been first.
fn first_claim(
    rows: Vec<OrderRow>,
    keys: impl Iterator<Item = String>,
) -> Result<Vec<Option<Order>>> {
    let mut by_id = by_order_id(rows)?;
    Ok(keys.map(|key| by_id.remove(&key)).collect())
}

/// Stores placed orders, unless they are known already.
pub(super) async fn place(mut conn: Conn, batch: Vec<NewOrder>) -> Result<Vec<Placement>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let mut rows: Vec<OrderInsert<'_>> = batch
        .iter()
        .map(|new| OrderInsert {
            order_id: new.order_id.as_str(),
            status: OrderStatus::Pending.as_str(),
            amount_cents: new.amount_cents,
            currency: new.currency.as_ref().map(Currency::as_str),
            placed_at: new.placed_at,
            expires_at: new.expires_at,
            next_check_at: Some(new.next_check_at),
        })
        .collect();
    // In key order, as every batch writes them: two never wait on each other.
    rows.sort_by_key(|row| row.order_id);
    let inserted: Vec<OrderRow> = diesel::insert_into(orders::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(OrderRow::as_returning())
        .get_results(conn)
        .await?;
    let all_ids = ids(batch.iter().map(|new| &new.order_id));
    let inserted = by_order_id(inserted)?;
    let known_ids: Vec<String> = all_ids
        .iter()
        .filter(|id| !inserted.contains_key(*id))
        .cloned()
        .collect();
    let known = if known_ids.is_empty() {
        HashMap::new()
    } else {
        find_orders(conn, &known_ids).await?
    };
    let mut created = HashSet::new();
    all_ids
        .into_iter()
        .map(|id| {
            // Only the first item of an order id in the batch created it.
            let first = created.insert(id.clone());
            match (inserted.get(&id), known.get(&id)) {
                (Some(order), _) if first => Ok(Placement::Created(order.clone())),
                (Some(order), _) | (None, Some(order)) => Ok(Placement::Known(order.clone())),
                (None, None) => Err(DbError::CorruptRow(format!("order {id} vanished"))),
            }
        })
        .collect()
}

/// What waited for each order.
pub(super) async fn waiting(mut conn: Conn, batch: Vec<OrderId>) -> Result<Vec<Waiting>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let all_ids = ids(batch.iter());
    let rows: Vec<WaitingRow> = prepared(WAITING)
        .bind::<Array<Text>, _>(&all_ids)
        .load(conn)
        .await?;
    let mut by_id: HashMap<String, Waiting> = HashMap::new();
    for row in rows {
        let order_id = row.order_id.clone();
        row.add_to(by_id.entry(order_id).or_default())?;
    }
    Ok(all_ids
        .iter()
        .map(|id| by_id.get(id).cloned().unwrap_or_default())
        .collect())
}

/// Records payments (a payment id seen before is kept as it was); returns
/// each as recorded, and whether this write recorded it.
pub(super) async fn record_payments(
    mut conn: Conn,
    batch: Vec<PaymentRow>,
) -> Result<Vec<(bool, RecordedPayment)>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let mut rows: Vec<&PaymentRow> = batch.iter().collect();
    // In key order, as every batch writes them: two never wait on each other.
    rows.sort_by_key(|row| row.payment_id.as_str());
    let inserted: Vec<PaymentRow> = diesel::insert_into(payments::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(PaymentRow::as_returning())
        .get_results(conn)
        .await?;
    let mut first_time: HashMap<String, PaymentRow> = inserted
        .into_iter()
        .map(|row| (row.payment_id.clone(), row))
        .collect();
    let seen_ids: Vec<&str> = batch
        .iter()
        .map(|row| row.payment_id.as_str())
        .filter(|id| !first_time.contains_key(*id))
        .collect();
    let seen: HashMap<String, PaymentRow> = if seen_ids.is_empty() {
        HashMap::new()
    } else {
        payments::table
            .filter(payments::payment_id.eq_any(&seen_ids))
            .select(PaymentRow::as_select())
            .load::<PaymentRow>(conn)
            .await?
            .into_iter()
            .map(|row| (row.payment_id.clone(), row))
            .collect()
    };
    batch
        .into_iter()
        .map(|item| {
            let (first, row) = match first_time.remove(&item.payment_id) {
                Some(row) => (true, row),
                None => (false, seen.get(&item.payment_id).cloned().unwrap_or(item)),
            };
            Ok((first, RecordedPayment::try_from(row)?))
        })
        .collect()
}

/// A payment as it stands after a decision, and whether that decision was
/// this statement's.
#[derive(QueryableByName)]
struct Decided {
    #[diesel(embed)]
    payment: PaymentRow,
    #[diesel(sql_type = Bool)]
    decided_now: bool,
}

/// Keeps the first decision about each payment; returns each payment as it
/// stands after, and whether this batch decided it.
pub(super) async fn decide_payments(
    mut conn: Conn,
    batch: Vec<(String, PaymentOutcome, u32)>,
) -> Result<Vec<(bool, RecordedPayment)>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let rows: Vec<Decided> = prepared(DECIDE_PAYMENTS)
        .bind::<Array<Text>, _>(ids(batch.iter().map(|(id, _, _)| id)))
        .bind::<Array<Text>, _>(
            batch
                .iter()
                .map(|(_, outcome, _)| outcome.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int4>, _>(
            batch
                .iter()
                .map(|(_, _, attempts)| i32::try_from(*attempts).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .load(conn)
        .await?;
    let by_id: HashMap<String, Decided> = rows
        .into_iter()
        .map(|row| (row.payment.payment_id.clone(), row))
        .collect();
    let mut answered = HashSet::new();
    batch
        .iter()
        .map(|(id, _, _)| {
            let row = by_id
                .get(id)
                .ok_or_else(|| DbError::CorruptRow(format!("payment {id} vanished")))?;
            // A payment twice in the batch was decided by its first item.
            let decided_now = row.decided_now && answered.insert(id.clone());
            Ok((decided_now, RecordedPayment::try_from(row.payment.clone())?))
        })
        .collect()
}

/// Claims the announcement of each order, when it is owed and unclaimed
/// (or its claim is older than `lease`); returns the orders claimed.
pub(super) async fn claim_announcements(
    mut conn: Conn,
    batch: Vec<OrderId>,
) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let claimed: Vec<OrderRow> = prepared(CLAIM_ANNOUNCEMENTS.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter()))
        .bind::<diesel::sql_types::Interval, _>(diesel::data_types::PgInterval::from_microseconds(
            ANNOUNCE_LEASE.as_micros() as i64,
        ))
        .get_results(conn)
        .await?;
    first_claim(claimed, batch.iter().map(|id| id.as_str().to_owned()))
}

/// How long a claim to announce an order is honoured: a claimer that has
/// not announced by then is taken to be gone.
pub const ANNOUNCE_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

pub(super) async fn find(mut conn: Conn, batch: Vec<OrderId>) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let all_ids = ids(batch.iter());
    let found = find_orders(conn, &all_ids).await?;
    Ok(all_ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// A pending order to pay with a recorded payment, by check number
/// `attempt` (0 for none).
#[derive(Debug, Clone)]
pub struct Settling {
    pub order_id: OrderId,
    pub payment_id: String,
    pub attempt: u32,
}

pub(super) async fn settle(mut conn: Conn, batch: Vec<Settling>) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let paid: Vec<OrderRow> = prepared(SETTLE.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|s| &s.order_id)))
        .bind::<Array<Text>, _>(ids(batch.iter().map(|s| &s.payment_id)))
        .bind::<Array<Int4>, _>(batch.iter().map(|s| s.attempt as i32).collect::<Vec<_>>())
        .get_results(conn)
        .await?;
    // Only the item whose payment paid the order gets it.
    let mut rows: HashMap<String, Order> = by_order_id(paid)?;
    Ok(batch
        .iter()
        .map(|s| {
            let paid_by_it = rows.get(s.order_id.as_str()).is_some_and(|order| {
                order.payment_id.as_ref().map(PaymentId::as_str) == Some(s.payment_id.as_str())
            });
            if paid_by_it {
                rows.remove(s.order_id.as_str())
            } else {
                None
            }
        })
        .collect())
}

/// An order to close, as check number `attempt` (0 for none), at `at`.
#[derive(Debug, Clone)]
pub struct Closing {
    pub order_id: OrderId,
    pub attempt: u32,
    pub at: DateTime<Utc>,
    pub reason: CloseReason,
}

pub(super) async fn close(mut conn: Conn, batch: Vec<Closing>) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let closed: Vec<OrderRow> = prepared(CLOSE.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|c| &c.order_id)))
        .bind::<Array<Int4>, _>(batch.iter().map(|c| c.attempt as i32).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(batch.iter().map(|c| c.at).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(batch.iter().map(|c| c.reason.as_str()).collect::<Vec<_>>())
        .get_results(conn)
        .await?;
    first_claim(closed, batch.iter().map(|c| c.order_id.as_str().to_owned()))
}

/// A check made on a pending order, with when the next is due.
#[derive(Debug, Clone)]
pub struct CheckMade {
    pub order_id: OrderId,
    pub attempt: u32,
    pub next_check_at: DateTime<Utc>,
    /// The check asked the payment gateway.
    pub asked_gateway: bool,
}

pub(super) async fn record_checks(mut conn: Conn, batch: Vec<CheckMade>) -> Result<Vec<()>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    prepared(RECORD_CHECKS.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|c| &c.order_id)))
        .bind::<Array<Int4>, _>(batch.iter().map(|c| c.attempt as i32).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(batch.iter().map(|c| c.next_check_at).collect::<Vec<_>>())
        .bind::<Array<Bool>, _>(batch.iter().map(|c| c.asked_gateway).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(vec![(); batch.len()])
}

/// A terminal order whose event the broker confirmed.
#[derive(Debug, Clone)]
pub struct Announced {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub attempts: u32,
}

pub(super) async fn mark_announced(mut conn: Conn, batch: Vec<Announced>) -> Result<Vec<()>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    prepared(MARK_ANNOUNCED.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|a| &a.order_id)))
        .bind::<Array<Text>, _>(batch.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(batch.iter().map(|a| a.attempts as i32).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(vec![(); batch.len()])
}

/// One claimed overdue order: its id and the checks made so far.
#[derive(QueryableByName)]
pub(super) struct Claimed {
    #[diesel(sql_type = Text)]
    pub order_id: String,
    #[diesel(sql_type = Int4)]
    pub attempts: i32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::prepared::placeholders_in_order;

    #[test]
    fn every_statement_names_its_parameters_once_in_order() {
        for sql in [
            SETTLE.as_str(),
            CLOSE.as_str(),
            RECORD_CHECKS.as_str(),
            MARK_ANNOUNCED.as_str(),
            CLAIM_ANNOUNCEMENTS.as_str(),
            DECIDE_PAYMENTS,
            ADOPT,
            WAITING,
            crate::db::CLAIM_OVERDUE,
        ] {
            assert!(placeholders_in_order(sql), "{sql}");
        }
    }
}
