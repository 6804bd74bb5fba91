//! The PostgreSQL shell: the pool, migrations, and every statement paywait runs.

mod schema;

use chrono::{DateTime, Utc};
use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
    pg::Pg,
    prelude::{Insertable, Queryable, QueryableByName, Selectable},
    sql_types::{BigInt, Int4, Text, Timestamptz},
};
use diesel_async::{
    AsyncConnection, AsyncPgConnection, RunQueryDsl,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool::Pool,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{
    configuration::{DatabaseSettings, SecretUrl},
    domain::{Order, OrderId, OrderPlaced, OrderStatus, PaymentSucceeded},
    error::{Error, Result},
};
use schema::{orders, payments};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

diesel::define_sql_function!(fn greatest(a: Int4, b: Int4) -> Int4);

/// The sweeper's claim: `$1` the new `next_check_at`, `$2` the cutoff, `$3`
/// the batch size. The inner select walks the partial index
/// `orders_unsettled_next_check_at`, which holds only orders whose event is
/// still owed, from the most overdue on.
pub const CLAIM_OVERDUE: &str = "UPDATE orders SET next_check_at = $1 WHERE order_id IN ( \
        SELECT order_id FROM orders \
        WHERE event_published_at IS NULL AND next_check_at < $2 \
        ORDER BY next_check_at LIMIT $3 \
        FOR UPDATE SKIP LOCKED) \
    RETURNING order_id, attempts";

/// The database paywait keeps its orders in.
#[derive(Clone)]
pub struct Database {
    pool: Pool<AsyncPgConnection>,
    address: String,
}

/// A new order, ready to be stored.
#[derive(Debug, Clone)]
pub struct NewOrder<'a> {
    pub placed: &'a OrderPlaced,
    pub placed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub next_check_at: DateTime<Utc>,
}

/// What storing an `order.placed` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// A new pending order: its first timer must be armed.
    Created(Order),
    /// A new order whose payment had arrived first: it is paid already.
    CreatedPaid(Order),
    /// The order was known already; nothing changed.
    Known(Order),
}

/// A recorded payment message and what it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    /// False when this payment id had been recorded before.
    pub first_time: bool,
    pub effect: PaymentEffect,
}

/// What recording a `payment.succeeded` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEffect {
    /// The payment moved the order from pending to paid.
    Paid(Order),
    /// The order was paid already (by this payment, another, or SQL).
    AlreadyPaid(Order),
    /// The order had been closed: the payment is kept and must be announced.
    AfterClose { order: Order, payment: Payment },
    /// The order is not known yet; the payment waits for it.
    Early,
    /// This payment id was recorded before for another order.
    Conflict { recorded_for: String },
}

/// A recorded payment.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, serde::Serialize)]
#[diesel(table_name = payments, check_for_backend(Pg))]
pub struct Payment {
    pub payment_id: String,
    pub order_id: String,
    pub amount_cents: Option<i64>,
    pub paid_at: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub after_close: bool,
    pub event_published_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Text)]
    order_id: String,
    #[diesel(sql_type = Int4)]
    attempts: i32,
}

#[derive(Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = orders, check_for_backend(Pg))]
struct OrderRow {
    order_id: String,
    status: String,
    amount_cents: Option<i64>,
    currency: Option<String>,
    placed_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    paid_at: Option<DateTime<Utc>>,
    closed_at: Option<DateTime<Utc>>,
    attempts: i32,
    payment_id: Option<String>,
    event_published_at: Option<DateTime<Utc>>,
    next_check_at: Option<DateTime<Utc>>,
}

impl TryFrom<OrderRow> for Order {
    type Error = Error;

    fn try_from(row: OrderRow) -> Result<Self> {
        Ok(Order {
            status: OrderStatus::parse(&row.status).ok_or_else(|| {
                Error::CorruptRow(format!(
                    "order {} has status {:?}",
                    row.order_id, row.status
                ))
            })?,
            order_id: OrderId::parse(row.order_id.as_str())
                .map_err(|error| Error::CorruptRow(error.to_string()))?,
            amount_cents: row.amount_cents,
            currency: row.currency,
            placed_at: row.placed_at,
            expires_at: row.expires_at,
            paid_at: row.paid_at,
            closed_at: row.closed_at,
            attempts: row.attempts.max(0) as u32,
            payment_id: row.payment_id,
            event_published_at: row.event_published_at,
            next_check_at: row.next_check_at,
        })
    }
}

fn to_order(row: Option<OrderRow>) -> Result<Option<Order>> {
    row.map(Order::try_from).transpose()
}

async fn find_order(
    conn: &mut AsyncPgConnection,
    order_id: &OrderId,
) -> diesel::QueryResult<Option<OrderRow>> {
    orders::table
        .find(order_id.as_str())
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Pays a pending order with its earliest recorded payment, if it has one.
/// `$1`: the order id.
const PAY_WITH_RECORDED_PAYMENT: &str = "UPDATE orders \
    SET status = 'paid', paid_at = COALESCE(p.paid_at, p.received_at), payment_id = p.payment_id, \
        next_check_at = NULL, event_published_at = NULL \
    FROM (SELECT payment_id, paid_at, received_at FROM payments WHERE order_id = $1 \
          ORDER BY received_at, payment_id LIMIT 1) p \
    WHERE orders.order_id = $1 AND orders.status = 'pending' \
    RETURNING orders.*";

/// Pays a pending order with one payment. `$1`: the payment id, `$2`: the
/// order id; nothing happens unless that payment was recorded for that order.
const PAY_WITH_PAYMENT: &str = "UPDATE orders \
    SET status = 'paid', paid_at = COALESCE(p.paid_at, p.received_at), payment_id = p.payment_id, \
        next_check_at = NULL, event_published_at = NULL \
    FROM payments p \
    WHERE p.payment_id = $1 AND p.order_id = $2 \
      AND orders.order_id = $2 AND orders.status = 'pending' \
    RETURNING orders.*";

/// Why a payment did not pay its order, once that is known.
async fn settle_unapplied_payment(
    conn: &mut AsyncPgConnection,
    order_id: &OrderId,
    recorded: Payment,
) -> Result<PaymentEffect> {
    if recorded.order_id != order_id.as_str() {
        return Ok(PaymentEffect::Conflict {
            recorded_for: recorded.order_id,
        });
    }
    let Some(order) = to_order(find_order(conn, order_id).await?)? else {
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

impl Database {
    /// A pool of connections; none is opened until one is needed.
    pub fn new(settings: &DatabaseSettings) -> Result<Self> {
        // A closed connection or a broken transaction is still caught when a
        // connection returns to the pool; a test query on every checkout
        // would add a round trip to every statement.
        let mut config = ManagerConfig::default();
        config.recycling_method = RecyclingMethod::Fast;
        let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
            settings.url.expose(),
            config,
        );
        let pool = Pool::builder(manager)
            .max_size(settings.pool_size)
            .runtime(deadpool::Runtime::Tokio1)
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .wait_timeout(Some(std::time::Duration::from_secs(30)))
            .build()
            .map_err(|error| Error::Other(anyhow::anyhow!("database pool: {error}")))?;
        Ok(Self {
            pool,
            address: settings.url.address(),
        })
    }

    async fn conn(
        &self,
    ) -> Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>> {
        self.pool
            .get()
            .await
            .map_err(|error| Error::DatabaseConnect {
                address: self.address.clone(),
                message: error.to_string(),
            })
    }

    /// Answers whether the database takes queries now.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Stores a placed order, unless it is known already. An order whose
    /// payment came first is stored as paid.
    ///
    /// No lock: the order is written first, then its recorded payments are
    /// looked for, each statement committing on its own; a payment is written
    /// first, then its order is looked for (see [`Database::record_payment`]).
    /// Whichever side commits its write second finds the other's, so a
    /// payment that races its order is never left unapplied. The order of
    /// the two statements is what makes this work: they are never reordered
    /// or merged into one (one statement sees one snapshot).
    pub async fn place(&self, new: &NewOrder<'_>) -> Result<Placement> {
        let mut conn = self.conn().await?;
        let order_id = new.placed.order_id.as_str();
        let insert = diesel::insert_into(orders::table)
            .values((
                orders::order_id.eq(order_id),
                orders::status.eq(OrderStatus::Pending.as_str()),
                orders::amount_cents.eq(new.placed.amount_cents),
                orders::currency.eq(new.placed.currency.as_ref().map(|c| c.as_str())),
                orders::placed_at.eq(new.placed_at),
                orders::expires_at.eq(new.expires_at),
                orders::next_check_at.eq(new.next_check_at),
            ))
            .on_conflict_do_nothing()
            .returning(OrderRow::as_returning());
        let inserted = insert.get_result::<OrderRow>(&mut conn).await.optional()?;
        let paid = diesel::sql_query(PAY_WITH_RECORDED_PAYMENT)
            .bind::<Text, _>(order_id)
            .get_result::<OrderRow>(&mut conn)
            .await
            .optional()?;
        Ok(match (inserted, to_order(paid)?) {
            (Some(_), Some(paid)) => Placement::CreatedPaid(paid),
            (None, Some(paid)) => Placement::Known(paid),
            (Some(created), None) => Placement::Created(created.try_into()?),
            (None, None) => {
                let known = find_order(&mut conn, &new.placed.order_id)
                    .await?
                    .ok_or_else(|| Error::CorruptRow(format!("order {order_id} vanished")))?;
                Placement::Known(known.try_into()?)
            }
        })
    }

    /// Records a payment and applies it to its order: the payment is written
    /// first, then its order is paid if it is pending (see [`Database::place`]
    /// for why in this order).
    pub async fn record_payment(
        &self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> Result<PaymentRecord> {
        let mut conn = self.conn().await?;
        let order_id = &payment.order_id;
        let inserted = diesel::insert_into(payments::table)
            .values(Payment {
                payment_id: payment.payment_id.as_str().to_owned(),
                order_id: order_id.as_str().to_owned(),
                amount_cents: payment.amount_cents,
                paid_at: payment.paid_at,
                received_at,
                after_close: false,
                event_published_at: None,
            })
            .on_conflict_do_nothing()
            .returning(Payment::as_returning())
            .get_result::<Payment>(&mut conn)
            .await
            .optional()?;
        let paid = diesel::sql_query(PAY_WITH_PAYMENT)
            .bind::<Text, _>(payment.payment_id.as_str())
            .bind::<Text, _>(order_id.as_str())
            .get_result::<OrderRow>(&mut conn)
            .await
            .optional()?;
        let first_time = inserted.is_some();
        let effect = match to_order(paid)? {
            Some(order) => PaymentEffect::Paid(order),
            None => {
                let recorded = match inserted {
                    Some(recorded) => recorded,
                    None => {
                        payments::table
                            .find(payment.payment_id.as_str())
                            .select(Payment::as_select())
                            .first(&mut conn)
                            .await?
                    }
                };
                settle_unapplied_payment(&mut conn, order_id, recorded).await?
            }
        };
        Ok(PaymentRecord { first_time, effect })
    }

    pub async fn find(&self, order_id: &OrderId) -> Result<Option<Order>> {
        let mut conn = self.conn().await?;
        to_order(find_order(&mut conn, order_id).await?)
    }

    /// The payments recorded for an order, oldest first.
    pub async fn payments_of(&self, order_id: &OrderId) -> Result<Vec<Payment>> {
        let mut conn = self.conn().await?;
        Ok(payments::table
            .filter(payments::order_id.eq(order_id.as_str()))
            .order(payments::received_at.asc())
            .select(Payment::as_select())
            .load(&mut conn)
            .await?)
    }

    /// Closes a pending order as check number `attempt`; `None` when the order
    /// was no longer pending (a payment committed first).
    pub async fn close(
        &self,
        order_id: &OrderId,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<Order>> {
        let mut conn = self.conn().await?;
        let row = diesel::update(orders::table)
            .filter(orders::order_id.eq(order_id.as_str()))
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .set((
                orders::status.eq(OrderStatus::Closed.as_str()),
                orders::closed_at.eq(now),
                orders::attempts.eq(greatest(orders::attempts, attempt as i32)),
                orders::next_check_at.eq(None::<DateTime<Utc>>),
                orders::event_published_at.eq(None::<DateTime<Utc>>),
            ))
            .returning(OrderRow::as_returning())
            .get_result(&mut conn)
            .await
            .optional()?;
        to_order(row)
    }

    /// Records that check number `attempt` of a pending order was made and
    /// the next one is due at `next_check_at`.
    pub async fn record_check(
        &self,
        order_id: &OrderId,
        attempt: u32,
        next_check_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::update(orders::table)
            .filter(orders::order_id.eq(order_id.as_str()))
            .filter(orders::status.eq(OrderStatus::Pending.as_str()))
            .filter(orders::attempts.lt(attempt as i32))
            .set((
                orders::attempts.eq(attempt as i32),
                orders::next_check_at.eq(next_check_at),
            ))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Records that the event of the order's terminal `status` was confirmed,
    /// and that `attempts` checks were made.
    pub async fn mark_announced(
        &self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
    ) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::update(orders::table)
            .filter(orders::order_id.eq(order_id.as_str()))
            .filter(orders::status.eq(status.as_str()))
            .set((
                orders::event_published_at.eq(diesel::dsl::now),
                orders::attempts.eq(greatest(orders::attempts, attempts as i32)),
            ))
            .execute(&mut conn)
            .await?;
        Ok(())
    }

    /// Claims up to `batch` orders whose check was due before `cutoff` and
    /// whose event is still owed, moving their next check to `next_check_at`.
    /// Returns each claimed order with the number of checks made so far.
    ///
    /// Claiming and moving is one statement, and rows another sweeper holds
    /// are skipped, so two daemons never claim the same order at once; a
    /// claim whose timer is then not armed comes due again by itself.
    pub async fn claim_overdue(
        &self,
        cutoff: DateTime<Utc>,
        batch: i64,
        next_check_at: DateTime<Utc>,
    ) -> Result<Vec<(OrderId, u32)>> {
        let mut conn = self.conn().await?;
        let claimed: Vec<Claimed> = diesel::sql_query(CLAIM_OVERDUE)
            .bind::<Timestamptz, _>(next_check_at)
            .bind::<Timestamptz, _>(cutoff)
            .bind::<BigInt, _>(batch)
            .get_results(&mut conn)
            .await?;
        claimed
            .into_iter()
            .map(|claimed| {
                let order_id = OrderId::parse(claimed.order_id)
                    .map_err(|error| Error::CorruptRow(error.to_string()))?;
                Ok((order_id, claimed.attempts.max(0) as u32))
            })
            .collect()
    }

    /// Records that `order.paid_after_close` for a payment was confirmed.
    pub async fn mark_payment_announced(&self, payment_id: &str) -> Result<()> {
        let mut conn = self.conn().await?;
        diesel::update(payments::table.find(payment_id))
            .set(payments::event_published_at.eq(diesel::dsl::now))
            .execute(&mut conn)
            .await?;
        Ok(())
    }
}

/// Creates the database named by `url` unless it exists, then applies the
/// pending migrations. Returns the names of the migrations applied.
pub async fn migrate(url: &SecretUrl, name: &str) -> Result<Vec<String>> {
    create_database_if_missing(url, name).await?;
    with_migration_harness(url, |conn| {
        let applied = conn.run_pending_migrations(MIGRATIONS)?;
        Ok(applied.iter().map(ToString::to_string).collect())
    })
    .await
}

/// Runs `work` with diesel's (blocking) migration harness on a thread where
/// blocking is allowed.
async fn with_migration_harness<T: Send + 'static>(
    url: &SecretUrl,
    work: impl FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> diesel::migration::Result<T>
    + Send
    + 'static,
) -> Result<T> {
    let address = url.address();
    let url = url.expose().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut conn =
            <AsyncConnectionWrapper<AsyncPgConnection> as diesel::Connection>::establish(&url)
                .map_err(|error| Error::DatabaseConnect {
                    address,
                    message: error.to_string(),
                })?;
        work(&mut conn).map_err(|error| Error::Migration(error.to_string()))
    })
    .await
    .map_err(|error| Error::Other(error.into()))?
}

async fn create_database_if_missing(url: &SecretUrl, name: &str) -> Result<()> {
    let maintenance = url.with_path("/postgres");
    let mut conn = AsyncPgConnection::establish(maintenance.expose())
        .await
        .map_err(|error| Error::DatabaseConnect {
            address: url.address(),
            message: error.to_string(),
        })?;
    let exists: bool = diesel::select(
        diesel::dsl::sql::<diesel::sql_types::Bool>(
            "EXISTS (SELECT 1 FROM pg_database WHERE datname = ",
        )
        .bind::<Text, _>(name)
        .sql(")"),
    )
    .get_result(&mut conn)
    .await?;
    if !exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match diesel::sql_query(format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            Ok(_) => tracing::info!(database = name, "created the database"),
            // Another migrate created it at the same moment.
            Err(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("already exists") => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(())
}

/// Refuses to run against a database that lacks migrations this binary has.
pub async fn ensure_migrated(url: &SecretUrl) -> Result<()> {
    let pending =
        with_migration_harness(url, |conn| conn.has_pending_migration(MIGRATIONS)).await?;
    if pending {
        return Err(Error::Migration(
            "the database lacks migrations: run `paywait migrate` first".into(),
        ));
    }
    Ok(())
}
