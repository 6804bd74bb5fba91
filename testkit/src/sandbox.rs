//! A vhost and a database that exist for one test.

use paywait::{
    configuration::{Settings, Sources},
    db,
};

use crate::services::{BROKER, POSTGRES, create_vhost, delete_vhost};

/// A RabbitMQ vhost and a PostgreSQL database, created for one test (the
/// database migrated) and dropped when it ends, even when it fails.
pub struct Sandbox {
    pub vhost: String,
    pub database: String,
    /// The PostgreSQL server, as a URL without a database.
    pub postgres: String,
}

impl Sandbox {
    /// A sandbox on the machine's broker and PostgreSQL.
    pub async fn create() -> Self {
        Self::create_on(POSTGRES).await
    }

    /// A sandbox on the machine's broker and the PostgreSQL at `postgres`.
    pub async fn create_on(postgres: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let sandbox = Self {
            vhost: format!("paywait-test-{}", &id[..12]),
            database: format!("paywait_test_{}", &id[..12]),
            postgres: postgres.to_owned(),
        };
        let vhost = sandbox.vhost.clone();
        tokio::task::spawn_blocking(move || create_vhost(&vhost))
            .await
            .expect("creating the vhost");
        db::migrate(&sandbox.settings_for("1s").database)
            .await
            .expect("migrating the test database");
        sandbox
    }

    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{BROKER}/{}", self.vhost)
    }

    pub fn database_url(&self) -> String {
        format!("{}/{}", self.postgres, self.database)
    }

    /// Counts read straight from the tables, to hold what paywait reports
    /// to: `query` selects a text column `key` and a bigint column `n`.
    pub async fn count_by(&self, query: &str) -> Vec<(String, i64)> {
        use diesel::{
            QueryableByName,
            sql_types::{BigInt, Text},
        };
        use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

        #[derive(QueryableByName)]
        struct Counted {
            #[diesel(sql_type = Text)]
            key: String,
            #[diesel(sql_type = BigInt)]
            n: i64,
        }

        let mut conn = AsyncPgConnection::establish(&self.database_url())
            .await
            .expect("connecting to the sandbox's database");
        let rows: Vec<Counted> = diesel::sql_query(query)
            .load(&mut conn)
            .await
            .unwrap_or_else(|error| panic!("{query}: {error}"));
        rows.into_iter().map(|row| (row.key, row.n)).collect()
    }

    /// The environment a daemon of this sandbox runs with: its broker and
    /// database, `schedule` (e.g. "200ms,200ms"), any free HTTP port.
    pub fn environment(&self, schedule: &str) -> Vec<(String, String)> {
        [
            ("PAYWAIT_AMQP__URL", self.amqp_url()),
            ("PAYWAIT_DATABASE__URL", self.database_url()),
            ("PAYWAIT_CHECKS__SCHEDULE", schedule.to_owned()),
            ("PAYWAIT_HTTP__LISTEN", "127.0.0.1:0".to_owned()),
            ("PAYWAIT_SHUTDOWN__TIMEOUT", "5s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    pub fn settings_for(&self, schedule: &str) -> Settings {
        Settings::load(&Sources {
            file: None,
            environment: self.environment(schedule),
        })
        .expect("test settings are valid")
    }

    /// Runs `statements` on the sandbox's database, as an operator (or a
    /// service sharing it) would.
    pub async fn execute(&self, statements: &[&str]) {
        let statements: Vec<String> = statements.iter().map(|s| s.to_string()).collect();
        execute_on(&self.database_url(), &statements)
            .await
            .unwrap_or_else(|error| panic!("{statements:?}: {error}"));
    }

    /// Lets clients connect to the sandbox's database again, or refuses new
    /// sessions and ends every open one, as a database that went away would.
    pub async fn set_database_reachable(&self, reachable: bool) {
        let database = &self.database;
        let mut statements = vec![format!(
            "ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS {reachable}"
        )];
        if !reachable {
            statements.push(format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"
            ));
        }
        execute_on_server(&self.postgres, &statements)
            .await
            .expect("changing the database's reachability");
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let vhost = self.vhost.clone();
        let database = self.database.clone();
        let postgres = self.postgres.clone();
        // Drop runs outside any async context it could await in.
        std::thread::spawn(move || {
            delete_vhost(&vhost);
            drop_database(&postgres, &database);
        })
        .join()
        .ok();
    }
}

/// Drops another database of the machine's server when dropped.
pub struct DropDatabase(pub String);

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let database = self.0.clone();
        std::thread::spawn(move || drop_database(POSTGRES, &database))
            .join()
            .ok();
    }
}

/// Runs `statements` on the server's `postgres` database.
async fn execute_on_server(postgres: &str, statements: &[String]) -> Result<(), String> {
    execute_on(&format!("{postgres}/postgres"), statements).await
}

/// Runs `statements` on the database at `url`.
async fn execute_on(url: &str, statements: &[String]) -> Result<(), String> {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    let mut conn = AsyncPgConnection::establish(url)
        .await
        .map_err(|error| error.to_string())?;
    for statement in statements {
        diesel::sql_query(statement)
            .execute(&mut conn)
            .await
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

fn drop_database(postgres: &str, database: &str) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime to drop the database with");
    let _ = runtime.block_on(execute_on_server(
        postgres,
        &[format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        )],
    ));
}
