//! The PostgreSQL shell: the pool, migrations, and every statement paywait runs.

mod batch;
mod bounded;
mod deadlines;
mod error;
mod figures;
mod reminders;
pub use figures::{DUE, OVERDUE, OWED_LATE};
mod prepared;
mod rows;
mod schema;
mod statements;
mod tls;

use chrono::{DateTime, Utc};
use diesel::{
    ExpressionMethods, OptionalExtension, QueryDsl, SelectableHelper,
    sql_types::{BigInt, Text, Timestamptz},
};
use diesel_async::{
    AsyncPgConnection, RunQueryDsl,
    async_connection_wrapper::AsyncConnectionWrapper,
    pooled_connection::{
        AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod, deadpool::Pool,
    },
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::{
    configuration::{DatabaseSettings, SecretUrl, Target},
    domain::{
        Attempt, CheckKind, CloseReason, NewOrder, Order, OrderCancelled, OrderId, OrderStatus,
        PaymentId, PaymentOutcome, PaymentSucceeded, Placement, RecordedPayment, Sweep, Waiting,
    },
};
use batch::Batcher;
use bounded::Connections;
pub use error::DbError;
use error::Result;
use prepared::{Bind, prepared};
use rows::PaymentRow;
use schema::{cancellations, payments};
use statements::{Announced, CheckMade, Claimed, Closing, Settling};

/// The most requests one batched statement serves.
const MAX_BATCH: usize = 256;

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

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

/// Payments whose own event is owed since before `$1`, oldest first, at
/// most `$2`: a range scan of the partial index `payments_event_owed`.
pub const OWED_PAYMENT_EVENTS: &str = "SELECT * FROM payments \
    WHERE event_published_at IS NULL AND outcome IN ('mismatch', 'twice', 'after_close') \
      AND received_at < $1 \
    ORDER BY received_at LIMIT $2";

/// The database paywait keeps its orders in.
#[derive(Clone)]
pub struct Database {
    connections: Connections,
    batches: Batches,
}

/// One batcher per kind of statement, each running one batch at a time.
#[derive(Clone)]
struct Batches {
    place: Batcher<NewOrder, Placement>,
    waiting: Batcher<OrderId, Waiting>,
    record_payment: Batcher<PaymentRow, (bool, RecordedPayment)>,
    decide_payment: Batcher<(String, PaymentOutcome, u32), (bool, RecordedPayment)>,
    claim_announcement: Batcher<OrderId, Option<Order>>,
    find: Batcher<OrderId, Option<Order>>,
    settle: Batcher<Settling, Option<Order>>,
    close: Batcher<Closing, Option<Order>>,
    record_check: Batcher<CheckMade, ()>,
    mark_announced: Batcher<Announced, ()>,
}

/// Connections of the pool that does not wait for WAL flushes.
const RELAXED_POOL_SIZE: usize = 2;

fn connection_pool(
    url: &SecretUrl,
    size: usize,
    settings: &DatabaseSettings,
) -> Result<Pool<AsyncPgConnection>> {
    let target = target(url, settings)?;
    // A closed connection or a broken transaction is still caught when a
    // connection returns to the pool; a test query on every checkout would
    // add a round trip to every statement.
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |_| {
        let target = target.clone();
        futures_util::FutureExt::boxed(async move { tls::connect(&target).await })
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url.expose(), config);
    Pool::builder(manager)
        .max_size(size)
        .runtime(deadpool::Runtime::Tokio1)
        .create_timeout(Some(settings.connect_timeout))
        .wait_timeout(Some(settings.statement_timeout))
        .build()
        .map_err(DbError::Pool)
}

/// The server of `url`, with the TLS its `sslmode` asks for, reached
/// within `settings.connect_timeout` and watched by TCP keepalives.
fn target(url: &SecretUrl, settings: &DatabaseSettings) -> Result<Target> {
    Target::new(url)
        .map(|target| target.bounded(settings.connect_timeout, settings.statement_timeout))
        .map_err(DbError::InvalidTarget)
}

/// Opens one session to the server of `url`, for `address` in errors.
async fn connect(url: &SecretUrl, settings: &DatabaseSettings) -> Result<AsyncPgConnection> {
    tls::connect(&target(url, settings)?)
        .await
        .map_err(|source| DbError::Connect {
            address: url.address(),
            source,
        })
}

/// The server's own limit on a statement: the same as paywait's, so that a
/// statement paywait gave up on (a lock wait, say) does not run on.
fn server_statement_timeout(limit: std::time::Duration) -> String {
    format!("-c statement_timeout={}", limit.as_millis())
}

/// Every session: each statement paywait runs finds orders by key (or
/// walks a partial index), and a plan made from statistics gathered while
/// the table was small (minutes after a deployment, or after a burst)
/// would read the whole table for every batch instead.
const SESSION: &str = "-c enable_seqscan=off";
/// Sessions whose commits do not wait for the WAL flush.
const WITHOUT_FLUSH_WAIT: &str = "-c enable_seqscan=off -c synchronous_commit=off";

/// The same URL, its sessions started with `settings` (server options, as
/// in libpq's `options`) after any the URL gives.
fn with_session_settings(url: &SecretUrl, settings: &str) -> SecretUrl {
    url.edited(|url| {
        let mut options = None;
        let mut pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter_map(|(key, value)| {
                if key == "options" {
                    options = Some(format!("{value} {settings}"));
                    None
                } else {
                    Some((key.into_owned(), value.into_owned()))
                }
            })
            .collect();
        pairs.push((
            "options".to_owned(),
            options.unwrap_or_else(|| settings.to_owned()),
        ));
        crate::configuration::set_query(url, &pairs);
    })
}

/// A batcher whose batches run `statement` on a connection of
/// `connections`, each within its limit; a request waits no longer than
/// that for its answer either.
fn batcher<I, O, F, Fut>(connections: &Connections, statement: F) -> Batcher<I, O>
where
    I: Clone + Send + 'static,
    O: Send + 'static,
    F: Fn(statements::Conn, Vec<I>) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Result<Vec<O>>> + Send,
{
    let timed_out = {
        let connections = connections.clone();
        move || connections.timed_out()
    };
    let connections = connections.clone();
    Batcher::spawn(MAX_BATCH, connections.limit(), timed_out, move |items| {
        let connections = connections.clone();
        async move { connections.call(|conn| statement(conn, items)).await }
    })
}

impl Database {
    /// A pool of connections; none is opened until one is needed.
    pub fn new(settings: &DatabaseSettings) -> Result<Self> {
        let address = settings.url.address();
        let limit = settings.statement_timeout;
        let session = format!("{SESSION} {}", server_statement_timeout(limit));
        let pool = connection_pool(
            &with_session_settings(&settings.url, &session),
            settings.pool_size.get(),
            settings,
        )?;
        let pool = Connections::new(pool, address.clone(), limit);
        // That a check was made commits without waiting for the WAL flush:
        // after a crash of the database, a lost record only means the next
        // timer (armed before the record) finds a lower count. That an event
        // was published waits for the flush: nothing would repair a lost one,
        // and the order would look as if its event were still owed.
        let relaxed = connection_pool(
            &with_session_settings(
                &settings.url,
                &format!("{WITHOUT_FLUSH_WAIT} {}", server_statement_timeout(limit)),
            ),
            RELAXED_POOL_SIZE,
            settings,
        )?;
        let relaxed = Connections::new(relaxed, address, limit);
        let batches = Batches {
            place: batcher(&pool, statements::place),
            waiting: batcher(&pool, statements::waiting),
            record_payment: batcher(&pool, statements::record_payments),
            decide_payment: batcher(&pool, statements::decide_payments),
            claim_announcement: batcher(&pool, statements::claim_announcements),
            find: batcher(&pool, statements::find),
            settle: batcher(&pool, statements::settle),
            close: batcher(&pool, statements::close),
            record_check: batcher(&relaxed, statements::record_checks),
            mark_announced: batcher(&pool, statements::mark_announced),
        };
        Ok(Self {
            connections: pool,
            batches,
        })
    }

    /// Runs `work` on a pooled connection, within `database.statement_timeout`.
    async fn call<T, F, Fut>(&self, work: F) -> Result<T>
    where
        F: FnOnce(statements::Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        self.connections.call(work).await
    }

    /// Answers whether the database takes queries now.
    pub async fn ping(&self) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1"))
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Stores a placed order, unless it is known already.
    ///
    /// No lock holds an order and the payments or cancellation that race
    /// it: the order is written first, then what waited for it is looked for
    /// ([`Database::waiting_for`]); a payment or a cancellation is written
    /// first, then its order is looked for. Each statement commits on its
    /// own, so whichever side commits its write second finds the other's.
    pub async fn place(&self, new: NewOrder) -> Result<Placement> {
        self.batches.place.run(new).await
    }

    /// The payments not decided yet and the cancellation recorded for an
    /// order, in the order they came.
    pub async fn waiting_for(&self, order_id: &OrderId) -> Result<Waiting> {
        self.batches.waiting.run(order_id.clone()).await
    }

    /// Records a payment received at `received_at`, unless its id was
    /// recorded before; returns it as recorded, and whether this was the
    /// first time.
    pub async fn record_payment(
        &self,
        payment: &PaymentSucceeded,
        received_at: DateTime<Utc>,
    ) -> Result<(bool, RecordedPayment)> {
        let row = PaymentRow {
            payment_id: payment.payment_id.as_str().to_owned(),
            order_id: payment.order_id.as_str().to_owned(),
            amount_cents: payment.amount_cents,
            currency: payment.currency.map(|c| c.to_string()),
            paid_at: payment.paid_at,
            received_at,
            outcome: None,
            event_published_at: None,
            decided_attempts: None,
        };
        self.batches.record_payment.run(row).await
    }

    /// Keeps `outcome` as what a payment did, decided when its order had
    /// had `attempts` checks, unless something was decided about it before;
    /// returns the payment as it stands, and whether this call decided it
    /// (and so owes its event).
    pub async fn decide_payment(
        &self,
        payment_id: &PaymentId,
        outcome: PaymentOutcome,
        attempts: u32,
    ) -> Result<(bool, RecordedPayment)> {
        self.batches
            .decide_payment
            .run((payment_id.as_str().to_owned(), outcome, attempts))
            .await
    }

    /// Takes an undecided payment as the one that paid an order marked paid
    /// in SQL, unless another was taken first; whether it was.
    pub async fn adopt(&self, order_id: &OrderId, payment_id: &PaymentId) -> Result<bool> {
        self.call(|mut conn| async move {
            let adopted = prepared(statements::ADOPT)
                .bind::<Text, _>(order_id.as_str())
                .bind::<Text, _>(payment_id.as_str())
                .execute(&mut conn)
                .await?;
            Ok(adopted == 1)
        })
        .await
    }

    /// Claims the announcement of a terminal order whose event is owed, when
    /// nobody else is announcing it (no claim, or one older than the lease);
    /// returns the order when this call claimed it.
    pub async fn claim_announcement(&self, order_id: &OrderId) -> Result<Option<Order>> {
        self.batches.claim_announcement.run(order_id.clone()).await
    }

    pub async fn find(&self, order_id: &OrderId) -> Result<Option<Order>> {
        self.batches.find.run(order_id.clone()).await
    }

    /// The payment recorded under `payment_id`, if any.
    pub async fn payment(&self, payment_id: &PaymentId) -> Result<Option<RecordedPayment>> {
        self.call(|mut conn| async move {
            let row: Option<PaymentRow> = payments::table
                .find(payment_id.as_str())
                .select(PaymentRow::as_select())
                .first(&mut conn)
                .await
                .optional()?;
            row.map(RecordedPayment::try_from).transpose()
        })
        .await
    }

    /// Every payment recorded for an order, oldest first.
    pub async fn payments_of(&self, order_id: &OrderId) -> Result<Vec<RecordedPayment>> {
        self.call(|mut conn| async move {
            let rows: Vec<PaymentRow> = payments::table
                .filter(payments::order_id.eq(order_id.as_str()))
                .order((payments::received_at.asc(), payments::payment_id.asc()))
                .select(PaymentRow::as_select())
                .load(&mut conn)
                .await?;
            rows.into_iter().map(RecordedPayment::try_from).collect()
        })
        .await
    }

    /// Pays a pending order with a recorded, undecided payment, and records
    /// that the payment settled it — by check number `by_check`, counted
    /// among its checks, when a check's question to the gateway brought it;
    /// `None` when the order was no longer pending or the payment was
    /// decided otherwise meanwhile.
    pub async fn settle(
        &self,
        order_id: &OrderId,
        payment_id: &PaymentId,
        by_check: Option<Attempt>,
    ) -> Result<Option<Order>> {
        self.batches
            .settle
            .run(Settling {
                order_id: order_id.clone(),
                payment_id: payment_id.as_str().to_owned(),
                attempt: by_check.map_or(0, Attempt::get),
            })
            .await
    }

    /// Closes a pending order for `reason` — by check number `by_check`,
    /// counted among its checks, when a check closes it; `None` when the
    /// order was no longer pending (a payment or another close committed
    /// first), or, but for a cancellation, its deadline had moved past `now`.
    pub async fn close(
        &self,
        order_id: &OrderId,
        by_check: Option<Attempt>,
        now: DateTime<Utc>,
        reason: CloseReason,
    ) -> Result<Option<Order>> {
        self.batches
            .close
            .run(Closing {
                order_id: order_id.clone(),
                attempt: by_check.map_or(0, Attempt::get),
                at: now,
                reason,
            })
            .await
    }

    /// Keeps a cancellation of an order not known yet, for when it arrives.
    pub async fn record_cancellation(
        &self,
        cancelled: &OrderCancelled,
        received_at: DateTime<Utc>,
    ) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::insert_into(cancellations::table)
                .values((
                    cancellations::order_id.eq(cancelled.order_id.as_str()),
                    cancellations::reason.eq(cancelled.reason.as_deref()),
                    cancellations::received_at.eq(received_at),
                ))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Records that check number `check` of a pending order was made, as
    /// `kind` says (asking the payment gateway counts its asks), and that
    /// the next one is due at `next_check_at`.
    pub async fn record_check(
        &self,
        order_id: &OrderId,
        check: Attempt,
        next_check_at: DateTime<Utc>,
        kind: CheckKind,
    ) -> Result<()> {
        self.batches
            .record_check
            .run(CheckMade {
                order_id: order_id.clone(),
                attempt: check.get(),
                next_check_at,
                asked_gateway: kind == CheckKind::AskedGateway,
            })
            .await
    }

    /// Records that the event of the order's terminal `status` was confirmed,
    /// and that `attempts` checks were made.
    pub async fn mark_announced(
        &self,
        order_id: &OrderId,
        status: OrderStatus,
        attempts: u32,
    ) -> Result<()> {
        self.batches
            .mark_announced
            .run(Announced {
                order_id: order_id.clone(),
                status,
                attempts,
            })
            .await
    }

    /// Claims up to `batch` orders whose check was due before the sweep's
    /// cutoff and whose event is still owed, moving their next check to the
    /// sweep's `due_at`. Returns each claimed order with the number
    /// of checks made so far.
    ///
    /// Claiming and moving is one statement, and rows another sweeper holds
    /// are skipped, so two daemons never claim the same order at once; a
    /// claim whose timer is then not armed comes due again by itself.
    pub async fn claim_overdue(
        &self,
        sweep: &Sweep,
        batch: std::num::NonZeroU32,
    ) -> Result<Vec<(OrderId, u32)>> {
        self.call(|mut conn| async move {
            let claimed: Vec<Claimed> = prepared(CLAIM_OVERDUE)
                .bind::<Timestamptz, _>(sweep.due_at)
                .bind::<Timestamptz, _>(sweep.cutoff)
                .bind::<BigInt, _>(i64::from(batch.get()))
                .get_results(&mut conn)
                .await?;
            claimed
                .into_iter()
                .map(|claimed| {
                    let order_id = OrderId::parse(claimed.order_id)
                        .map_err(|error| DbError::CorruptRow(error.to_string()))?;
                    Ok((order_id, claimed.attempts.max(0) as u32))
                })
                .collect()
        })
        .await
    }

    /// Up to `batch` payments whose own event (a refund, a mismatch) is owed
    /// and that were received before `cutoff`.
    pub async fn owed_payment_events(
        &self,
        cutoff: DateTime<Utc>,
        batch: std::num::NonZeroU32,
    ) -> Result<Vec<RecordedPayment>> {
        self.call(|mut conn| async move {
            let rows: Vec<PaymentRow> = prepared(OWED_PAYMENT_EVENTS)
                .bind::<Timestamptz, _>(cutoff)
                .bind::<BigInt, _>(i64::from(batch.get()))
                .load(&mut conn)
                .await?;
            rows.into_iter().map(RecordedPayment::try_from).collect()
        })
        .await
    }

    /// Records that a barrier published by another daemon passed this
    /// daemon's payments consumer.
    pub async fn record_barrier_passed(&self, token: &str) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::sql_query(
                "INSERT INTO payment_barriers (token) VALUES ($1) ON CONFLICT (token) DO NOTHING",
            )
            .bind::<Text, _>(token)
            .execute(&mut conn)
            .await?;
            Ok(())
        })
        .await
    }

    /// Which of `tokens` another daemon recorded as passed, taking their
    /// records away.
    pub async fn take_passed_barriers(&self, tokens: &[String]) -> Result<Vec<String>> {
        #[derive(diesel::QueryableByName)]
        struct Token {
            #[diesel(sql_type = Text)]
            token: String,
        }
        self.call(|mut conn| async move {
            let taken: Vec<Token> = diesel::sql_query(
                "DELETE FROM payment_barriers WHERE token = ANY($1) RETURNING token",
            )
            .bind::<diesel::sql_types::Array<Text>, _>(tokens)
            .load(&mut conn)
            .await?;
            Ok(taken.into_iter().map(|taken| taken.token).collect())
        })
        .await
    }

    /// Forgets barrier records older than `age`: their publisher is gone.
    pub async fn forget_old_barriers(&self, age: std::time::Duration) -> Result<()> {
        let cutoff =
            Utc::now() - chrono::TimeDelta::from_std(age).unwrap_or(chrono::TimeDelta::MAX);
        self.call(|mut conn| async move {
            diesel::sql_query("DELETE FROM payment_barriers WHERE passed_at < $1")
                .bind::<Timestamptz, _>(cutoff)
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }

    /// Records that the event of one payment was confirmed.
    pub async fn mark_payment_announced(&self, payment_id: &PaymentId) -> Result<()> {
        self.call(|mut conn| async move {
            diesel::update(payments::table.find(payment_id.as_str()))
                .set(payments::event_published_at.eq(diesel::dsl::now))
                .execute(&mut conn)
                .await?;
            Ok(())
        })
        .await
    }
}

/// Creates the database named by `settings.url` unless it exists, then
/// applies the pending migrations. Returns the names of the migrations
/// applied.
pub async fn migrate(settings: &DatabaseSettings) -> Result<Vec<String>> {
    create_database_if_missing(settings).await?;
    with_migration_harness(settings, |conn| {
        // Daemons started together take turns: the first applies what is
        // pending, the others then find nothing left to do.
        let lock = |call: &str, conn: &mut AsyncConnectionWrapper<AsyncPgConnection>| {
            diesel::RunQueryDsl::execute(
                diesel::sql_query(format!("SELECT {call}({MIGRATION_LOCK})")),
                conn,
            )
        };
        lock("pg_advisory_lock", conn)?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|applied| applied.iter().map(ToString::to_string).collect());
        lock("pg_advisory_unlock", conn)?;
        applied
    })
    .await
}

/// The advisory lock held while migrations run (`paywait` in ASCII).
const MIGRATION_LOCK: i64 = 0x0070_6179_7761_6974;

/// Runs `work` with diesel's (blocking) migration harness on a thread where
/// blocking is allowed.
async fn with_migration_harness<T: Send + 'static>(
    settings: &DatabaseSettings,
    work: impl FnOnce(&mut AsyncConnectionWrapper<AsyncPgConnection>) -> diesel::migration::Result<T>
    + Send
    + 'static,
) -> Result<T> {
    let conn = connect(&settings.url, settings).await?;
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        work(&mut conn).map_err(DbError::Migration)
    })
    .await
    .map_err(DbError::MigrationHarness)?
}

async fn create_database_if_missing(settings: &DatabaseSettings) -> Result<()> {
    let name = settings.name();
    let name = name.as_str();
    let mut conn = connect(&settings.url.with_path("/postgres"), settings).await?;
    // Held until this session ends: daemons started together create the
    // database once, one after another.
    diesel::sql_query(format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .execute(&mut conn)
        .await?;
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
pub async fn ensure_migrated(settings: &DatabaseSettings) -> Result<()> {
    let pending =
        with_migration_harness(settings, |conn| conn.has_pending_migration(MIGRATIONS)).await?;
    if pending {
        return Err(DbError::MigrationsMissing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{SESSION, SecretUrl, WITHOUT_FLUSH_WAIT, with_session_settings};
    use crate::configuration::{Settings, Sources};

    fn database_url(text: &str) -> SecretUrl {
        Settings::load(&Sources {
            file: None,
            environment: vec![("PAYWAIT_DATABASE__URL".into(), text.into())],
        })
        .unwrap()
        .database
        .url
    }

    #[test]
    fn session_settings_are_added_to_any_options() {
        let plain = database_url("postgres://u:p@db:5432/paywait");
        assert_eq!(
            with_session_settings(&plain, SESSION).expose(),
            "postgres://u:p@db:5432/paywait?options=-c%20enable_seqscan%3Doff"
        );
        let with_options =
            database_url("postgres://db/paywait?sslmode=disable&options=-c%20work_mem%3D4MB");
        let relaxed = with_session_settings(&with_options, WITHOUT_FLUSH_WAIT);
        let pairs: Vec<(String, String)> = relaxed.url().query_pairs().into_owned().collect();
        assert_eq!(
            pairs,
            [
                ("sslmode".to_owned(), "disable".to_owned()),
                (
                    "options".to_owned(),
                    "-c work_mem=4MB -c enable_seqscan=off -c synchronous_commit=off".to_owned()
                )
            ]
        );
    }

    #[test]
    fn every_host_of_a_url_is_kept() {
        let url = database_url(
            "postgres://u:secret@db-1:5432,db-2:5433,db-3/paywait?target_session_attrs=read-write",
        );
        assert_eq!(url.address(), "db-1:5432, db-2:5433, db-3");
        assert_eq!(
            with_session_settings(&url, SESSION).expose(),
            "postgres://u:secret@db-1:5432,db-2:5433,db-3/paywait\
             ?target_session_attrs=read-write&options=-c%20enable_seqscan%3Doff"
        );
        assert_eq!(
            url.to_string(),
            "postgres://u:***@db-1:5432,db-2:5433,db-3/paywait?target_session_attrs=read-write"
        );
        assert_eq!(
            url.with_path("/postgres").expose(),
            "postgres://u:secret@db-1:5432,db-2:5433,db-3/postgres?target_session_attrs=read-write"
        );
    }
}
