//! The batched statements behind [`super::Database`]: one statement (and one
//! commit) for a whole batch of orders.
//!
//! Statements that move pending orders lock their rows in `order_id` order
//! first, so two batches touching the same orders never deadlock.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
    prelude::Insertable,
    sql_types::{Array, Int4, Text, Timestamptz},
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// A pooled connection, held for one batch.
pub(super) type Conn = diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>;

use super::{
    OrderRow, Payment, PaymentRecord,
    schema::{orders, payments},
    to_order,
};
use crate::{
    domain::{NewOrder, Order, OrderId, OrderStatus, PaymentEffect, Placement},
    error::{Error, Result},
};

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
            .map_or(String::new(), |condition| format!(" AND {condition}"));
        let returning = if self.returning {
            " RETURNING orders.*"
        } else {
            ""
        };
        format!(
            "WITH src AS ({source}), \
                  locked AS (SELECT order_id FROM orders \
                             WHERE order_id IN (SELECT order_id FROM src){pending} \
                             ORDER BY order_id FOR UPDATE) \
             UPDATE orders SET {set} FROM src \
             WHERE orders.order_id = src.order_id \
               AND orders.order_id IN (SELECT order_id FROM locked){pending}{condition}{returning}",
            source = self.source,
            set = self.set,
        )
    }
}

/// What paying an order with a payment (`src`) writes.
const PAY: &str = "status = 'paid', paid_at = COALESCE(src.paid_at, src.received_at), \
    payment_id = src.payment_id, next_check_at = NULL, event_published_at = NULL";

/// Pays pending orders with their earliest recorded payment, if they have
/// one. `$1`: the order ids. Only orders with a payment are locked, so in
/// the usual case (no payment yet) the statement writes nothing and its
/// commit waits for no flush.
static PAY_WITH_RECORDED_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) order_id, payment_id, paid_at, received_at \
                 FROM payments WHERE order_id = ANY($1) \
                 ORDER BY order_id, received_at, payment_id",
        pending_only: true,
        set: PAY,
        condition: None,
        returning: true,
    }
    .sql()
});

/// Pays pending orders with the given payments. `$1`: payment ids, `$2`:
/// the order each was sent for; a payment recorded for another order pays
/// nothing.
static PAY_WITH_PAYMENTS: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (p.order_id) p.order_id, p.payment_id, p.paid_at, p.received_at \
                 FROM payments p JOIN unnest($1::text[], $2::text[]) AS v(payment_id, order_id) \
                   ON p.payment_id = v.payment_id AND p.order_id = v.order_id \
                 ORDER BY p.order_id, p.received_at, p.payment_id",
        pending_only: true,
        set: PAY,
        condition: None,
        returning: true,
    }
    .sql()
});

/// Closes pending orders. `$1`: order ids, `$2`: the check closing each,
/// `$3`: when.
static CLOSE: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) * \
                 FROM unnest($1::text[], $2::int4[], $3::timestamptz[]) AS v(order_id, attempt, closed_at) \
                 ORDER BY order_id",
        pending_only: true,
        set: "status = 'closed', closed_at = src.closed_at, \
              attempts = GREATEST(orders.attempts, src.attempt), \
              next_check_at = NULL, event_published_at = NULL",
        condition: None,
        returning: true,
    }
    .sql()
});

/// Records checks made on pending orders. `$1`: order ids, `$2`: the check
/// made, `$3`: when the next one is due.
static RECORD_CHECKS: LazyLock<String> = LazyLock::new(|| {
    LockedUpdate {
        source: "SELECT DISTINCT ON (order_id) * \
                 FROM unnest($1::text[], $2::int4[], $3::timestamptz[]) AS v(order_id, attempt, next_check_at) \
                 ORDER BY order_id, attempt DESC",
        pending_only: true,
        set: "attempts = src.attempt, next_check_at = src.next_check_at",
        condition: Some("orders.attempts < src.attempt"),
        returning: false,
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
    }
    .sql()
});

fn ids(orders: impl Iterator<Item = impl AsRef<str>>) -> Vec<String> {
    orders.map(|id| id.as_ref().to_owned()).collect()
}

/// Hands each row to the first item with its order id; later duplicates in
/// the batch get `None`, as if another daemon had been first.
fn first_claim<T>(
    rows: Vec<OrderRow>,
    keys: impl Iterator<Item = String>,
    mut claim: impl FnMut(Option<Order>) -> T,
) -> Result<Vec<T>> {
    let mut by_id: std::collections::HashMap<String, Order> = by_order_id(rows)?;
    Ok(keys.map(|key| claim(by_id.remove(&key))).collect())
}

pub(super) async fn find_orders(
    conn: &mut AsyncPgConnection,
    order_ids: &[String],
) -> Result<std::collections::HashMap<String, Order>> {
    let rows: Vec<OrderRow> = orders::table
        .filter(orders::order_id.eq_any(order_ids))
        .select(OrderRow::as_select())
        .load(conn)
        .await?;
    by_order_id(rows)
}

/// Rows as orders, by order id.
fn by_order_id(rows: Vec<OrderRow>) -> Result<std::collections::HashMap<String, Order>> {
    rows.into_iter()
        .map(|row| Ok((row.order_id.clone(), Order::try_from(row)?)))
        .collect()
}

/// Stores placed orders: the orders first, then their recorded payments are
/// looked for, each statement committing on its own (see
/// [`super::Database::place`]).
pub(super) async fn place(mut conn: Conn, batch: Vec<NewOrder>) -> Result<Vec<Placement>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let rows: Vec<OrderInsert<'_>> = batch
        .iter()
        .map(|new| OrderInsert {
            order_id: new.order_id.as_str(),
            status: OrderStatus::Pending.as_str(),
            amount_cents: new.amount_cents,
            currency: new.currency.as_deref(),
            placed_at: new.placed_at,
            expires_at: new.expires_at,
            next_check_at: Some(new.next_check_at),
        })
        .collect();
    let inserted: Vec<OrderRow> = diesel::insert_into(orders::table)
        .values(&rows)
        .on_conflict_do_nothing()
        .returning(OrderRow::as_returning())
        .get_results(conn)
        .await?;
    let all_ids = ids(batch.iter().map(|new| &new.order_id));
    let paid: Vec<OrderRow> = diesel::sql_query(PAY_WITH_RECORDED_PAYMENTS.as_str())
        .bind::<Array<Text>, _>(&all_ids)
        .get_results(conn)
        .await?;

    let created: std::collections::HashSet<String> =
        inserted.iter().map(|row| row.order_id.clone()).collect();
    let paid: std::collections::HashMap<String, Order> = by_order_id(paid)?;
    let inserted: std::collections::HashMap<String, Order> = by_order_id(inserted)?;
    let unknown: Vec<String> = all_ids
        .iter()
        .filter(|id| !created.contains(*id) && !paid.contains_key(*id))
        .cloned()
        .collect();
    let known = if unknown.is_empty() {
        Default::default()
    } else {
        find_orders(conn, &unknown).await?
    };

    let mut placements = Vec::with_capacity(all_ids.len());
    let mut seen = std::collections::HashSet::new();
    for id in all_ids {
        let current = paid
            .get(&id)
            .or_else(|| inserted.get(&id))
            .or_else(|| known.get(&id))
            .cloned()
            .ok_or_else(|| Error::CorruptRow(format!("order {id} vanished")))?;
        // Only the first item of an order id in the batch created it.
        let first = seen.insert(id.clone());
        placements.push(Placement::of(
            current,
            first && created.contains(&id),
            paid.contains_key(&id),
        ));
    }
    Ok(placements)
}

/// Records payments, then pays their pending orders (see
/// [`super::Database::place`] for why in this order).
pub(super) async fn record_payments(
    mut conn: Conn,
    batch: Vec<Payment>,
) -> Result<Vec<PaymentRecord>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let inserted: Vec<Payment> = diesel::insert_into(payments::table)
        .values(&batch)
        .on_conflict_do_nothing()
        .returning(Payment::as_returning())
        .get_results(conn)
        .await?;
    let payment_ids = ids(batch.iter().map(|payment| &payment.payment_id));
    let order_ids = ids(batch.iter().map(|payment| &payment.order_id));
    let paid: Vec<OrderRow> = diesel::sql_query(PAY_WITH_PAYMENTS.as_str())
        .bind::<Array<Text>, _>(&payment_ids)
        .bind::<Array<Text>, _>(&order_ids)
        .get_results(conn)
        .await?;

    let mut first_time: std::collections::HashMap<String, Payment> = inserted
        .into_iter()
        .map(|payment| (payment.payment_id.clone(), payment))
        .collect();
    let mut paid: std::collections::HashMap<String, Order> = by_order_id(paid)?;
    let mut records = Vec::with_capacity(batch.len());
    for item in batch {
        let inserted = first_time.remove(&item.payment_id);
        let first_time = inserted.is_some();
        let paid_now = match paid.get(&item.order_id) {
            Some(order) if order.payment_id.as_deref() == Some(item.payment_id.as_str()) => {
                paid.remove(&item.order_id)
            }
            _ => None,
        };
        let (recorded, order) = if paid_now.is_some() {
            // It paid the order, so it is recorded for that order.
            (inserted.unwrap_or_else(|| item.clone()), None)
        } else {
            let recorded = match inserted {
                Some(recorded) => recorded,
                None => {
                    payments::table
                        .find(&item.payment_id)
                        .select(Payment::as_select())
                        .first(conn)
                        .await?
                }
            };
            let order = if recorded.order_id == item.order_id {
                let row: Option<OrderRow> = orders::table
                    .find(&item.order_id)
                    .select(OrderRow::as_select())
                    .first(conn)
                    .await
                    .optional()?;
                to_order(row)?
            } else {
                None
            };
            (recorded, order)
        };
        let was_after_close = recorded.after_close;
        let effect = PaymentEffect::of(&item.order_id, recorded.into(), paid_now, order);
        if let PaymentEffect::AfterClose { payment, .. } = &effect
            && !was_after_close
        {
            diesel::update(payments::table.find(&payment.payment_id))
                .set(payments::after_close.eq(true))
                .execute(conn)
                .await?;
        }
        records.push(PaymentRecord { first_time, effect });
    }
    Ok(records)
}

pub(super) async fn find(mut conn: Conn, batch: Vec<OrderId>) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let all_ids = ids(batch.iter());
    let found = find_orders(conn, &all_ids).await?;
    Ok(all_ids.iter().map(|id| found.get(id).cloned()).collect())
}

/// An order to close, as check number `attempt`, at `at`.
#[derive(Debug, Clone)]
pub struct Closing {
    pub order_id: OrderId,
    pub attempt: u32,
    pub at: DateTime<Utc>,
}

pub(super) async fn close(mut conn: Conn, batch: Vec<Closing>) -> Result<Vec<Option<Order>>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    let closed: Vec<OrderRow> = diesel::sql_query(CLOSE.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|c| &c.order_id)))
        .bind::<Array<Int4>, _>(batch.iter().map(|c| c.attempt as i32).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(batch.iter().map(|c| c.at).collect::<Vec<_>>())
        .get_results(conn)
        .await?;
    first_claim(
        closed,
        batch.iter().map(|c| c.order_id.as_str().to_owned()),
        |order| order,
    )
}

/// A check made on a pending order, with when the next is due.
#[derive(Debug, Clone)]
pub struct CheckMade {
    pub order_id: OrderId,
    pub attempt: u32,
    pub next_check_at: DateTime<Utc>,
}

pub(super) async fn record_checks(mut conn: Conn, batch: Vec<CheckMade>) -> Result<Vec<()>> {
    let conn: &mut AsyncPgConnection = &mut conn;
    diesel::sql_query(RECORD_CHECKS.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|c| &c.order_id)))
        .bind::<Array<Int4>, _>(batch.iter().map(|c| c.attempt as i32).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(batch.iter().map(|c| c.next_check_at).collect::<Vec<_>>())
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
    diesel::sql_query(MARK_ANNOUNCED.as_str())
        .bind::<Array<Text>, _>(ids(batch.iter().map(|a| &a.order_id)))
        .bind::<Array<Text>, _>(batch.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(batch.iter().map(|a| a.attempts as i32).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(vec![(); batch.len()])
}
