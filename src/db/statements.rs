//! The batched statements behind [`super::Database`]: one statement (and one
//! commit) for a whole batch of orders.
//!
//! Statements that move pending orders lock their rows in `order_id` order
//! first, so two batches touching the same orders never deadlock.

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
    OrderRow, Payment, PaymentEffect, PaymentRecord, Placement,
    schema::{orders, payments},
    to_order,
};
use crate::{
    domain::{Order, OrderId, OrderStatus},
    error::{Error, Result},
};

/// A new order, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub next_check_at: DateTime<Utc>,
}

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

/// Pays pending orders with their earliest recorded payment, if they have
/// one. `$1`: the order ids. Only orders with a payment are locked, so in
/// the usual case (no payment yet) the statement writes nothing and its
/// commit waits for no flush.
const PAY_WITH_RECORDED_PAYMENTS: &str = "\
    WITH earliest AS (SELECT DISTINCT ON (order_id) order_id, payment_id, paid_at, received_at \
                      FROM payments WHERE order_id = ANY($1) \
                      ORDER BY order_id, received_at, payment_id), \
         locked AS (SELECT order_id FROM orders \
                    WHERE order_id IN (SELECT order_id FROM earliest) AND status = 'pending' \
                    ORDER BY order_id FOR UPDATE) \
    UPDATE orders SET status = 'paid', paid_at = COALESCE(p.paid_at, p.received_at), \
        payment_id = p.payment_id, next_check_at = NULL, event_published_at = NULL \
    FROM earliest p \
    WHERE orders.order_id = p.order_id AND orders.order_id IN (SELECT order_id FROM locked) \
      AND orders.status = 'pending' \
    RETURNING orders.*";

/// Pays pending orders with the given payments. `$1`: payment ids, `$2`:
/// the order each was sent for; a payment recorded for another order pays
/// nothing.
const PAY_WITH_PAYMENTS: &str = "\
    WITH claimed AS (SELECT DISTINCT ON (p.order_id) p.order_id, p.payment_id, p.paid_at, p.received_at \
                     FROM payments p JOIN unnest($1::text[], $2::text[]) AS v(payment_id, order_id) \
                       ON p.payment_id = v.payment_id AND p.order_id = v.order_id \
                     ORDER BY p.order_id, p.received_at, p.payment_id), \
         locked AS (SELECT order_id FROM orders \
                    WHERE order_id IN (SELECT order_id FROM claimed) AND status = 'pending' \
                    ORDER BY order_id FOR UPDATE) \
    UPDATE orders SET status = 'paid', paid_at = COALESCE(c.paid_at, c.received_at), \
        payment_id = c.payment_id, next_check_at = NULL, event_published_at = NULL \
    FROM claimed c \
    WHERE orders.order_id = c.order_id AND orders.order_id IN (SELECT order_id FROM locked) \
      AND orders.status = 'pending' \
    RETURNING orders.*";

/// Closes pending orders. `$1`: order ids, `$2`: the check closing each,
/// `$3`: when.
const CLOSE: &str = "\
    WITH v AS (SELECT DISTINCT ON (order_id) * \
               FROM unnest($1::text[], $2::int4[], $3::timestamptz[]) AS v(order_id, attempt, closed_at) \
               ORDER BY order_id), \
         locked AS (SELECT order_id FROM orders \
                    WHERE order_id IN (SELECT order_id FROM v) AND status = 'pending' \
                    ORDER BY order_id FOR UPDATE) \
    UPDATE orders SET status = 'closed', closed_at = v.closed_at, \
        attempts = GREATEST(orders.attempts, v.attempt), next_check_at = NULL, event_published_at = NULL \
    FROM v \
    WHERE orders.order_id = v.order_id AND orders.order_id IN (SELECT order_id FROM locked) \
      AND orders.status = 'pending' \
    RETURNING orders.*";

/// Records checks made on pending orders. `$1`: order ids, `$2`: the check
/// made, `$3`: when the next one is due.
const RECORD_CHECKS: &str = "\
    WITH v AS (SELECT DISTINCT ON (order_id) * \
               FROM unnest($1::text[], $2::int4[], $3::timestamptz[]) AS v(order_id, attempt, next_check_at) \
               ORDER BY order_id, attempt DESC), \
         locked AS (SELECT order_id FROM orders \
                    WHERE order_id IN (SELECT order_id FROM v) AND status = 'pending' \
                    ORDER BY order_id FOR UPDATE) \
    UPDATE orders SET attempts = v.attempt, next_check_at = v.next_check_at \
    FROM v \
    WHERE orders.order_id = v.order_id AND orders.order_id IN (SELECT order_id FROM locked) \
      AND orders.status = 'pending' AND orders.attempts < v.attempt";

/// Records that terminal orders were announced. `$1`: order ids, `$2`: the
/// status announced, `$3`: the checks made so far.
const MARK_ANNOUNCED: &str = "\
    WITH v AS (SELECT DISTINCT ON (order_id) * \
               FROM unnest($1::text[], $2::text[], $3::int4[]) AS v(order_id, status, attempts) \
               ORDER BY order_id, attempts DESC), \
         locked AS (SELECT order_id FROM orders \
                    WHERE order_id IN (SELECT order_id FROM v) \
                    ORDER BY order_id FOR UPDATE) \
    UPDATE orders SET event_published_at = now(), attempts = GREATEST(orders.attempts, v.attempts) \
    FROM v \
    WHERE orders.order_id = v.order_id AND orders.order_id IN (SELECT order_id FROM locked) \
      AND orders.status = v.status";

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
    let paid: Vec<OrderRow> = diesel::sql_query(PAY_WITH_RECORDED_PAYMENTS)
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
        placements.push(
            match (first && created.contains(&id), paid.contains_key(&id)) {
                (true, true) => Placement::CreatedPaid(current),
                (true, false) => Placement::Created(current),
                (false, _) => Placement::Known(current),
            },
        );
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
    let paid: Vec<OrderRow> = diesel::sql_query(PAY_WITH_PAYMENTS)
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
    for payment in batch {
        let recorded = first_time.remove(&payment.payment_id);
        let first = recorded.is_some();
        let applied = paid
            .get(&payment.order_id)
            .is_some_and(|order| order.payment_id.as_deref() == Some(&payment.payment_id));
        let effect = if applied {
            PaymentEffect::Paid(paid.remove(&payment.order_id).expect("checked above"))
        } else {
            let recorded = match recorded {
                Some(recorded) => recorded,
                None => {
                    payments::table
                        .find(&payment.payment_id)
                        .select(Payment::as_select())
                        .first(conn)
                        .await?
                }
            };
            unapplied_payment(conn, recorded, &payment.order_id).await?
        };
        records.push(PaymentRecord {
            first_time: first,
            effect,
        });
    }
    Ok(records)
}

/// Why a payment did not pay its order, once that is known.
async fn unapplied_payment(
    conn: &mut AsyncPgConnection,
    recorded: Payment,
    order_id: &str,
) -> Result<PaymentEffect> {
    if recorded.order_id != order_id {
        return Ok(PaymentEffect::Conflict {
            recorded_for: recorded.order_id,
        });
    }
    let order: Option<OrderRow> = orders::table
        .find(order_id)
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()?;
    let Some(order) = to_order(order)? else {
        return Ok(PaymentEffect::Early);
    };
    if order.status != OrderStatus::Closed {
        return Ok(PaymentEffect::AlreadyPaid(order));
    }
    let payment = diesel::update(payments::table.find(&recorded.payment_id))
        .set(payments::after_close.eq(true))
        .returning(Payment::as_returning())
        .get_result(conn)
        .await?;
    Ok(PaymentEffect::AfterClose { order, payment })
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
    let closed: Vec<OrderRow> = diesel::sql_query(CLOSE)
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
    diesel::sql_query(RECORD_CHECKS)
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
    diesel::sql_query(MARK_ANNOUNCED)
        .bind::<Array<Text>, _>(ids(batch.iter().map(|a| &a.order_id)))
        .bind::<Array<Text>, _>(batch.iter().map(|a| a.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(batch.iter().map(|a| a.attempts as i32).collect::<Vec<_>>())
        .execute(conn)
        .await?;
    Ok(vec![(); batch.len()])
}
