//! A PostgreSQL server of the test's own, in a temporary directory, so that
//! the fault test can crash it without touching the machine's server.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

/// How a server is stopped.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// A clean shutdown with a checkpoint (`pg_ctl stop -m fast`).
    Fast,
    /// A crash: every process quits at once and the next start replays the
    /// WAL (`pg_ctl stop -m immediate`). Asynchronous commits not yet flushed
    /// are lost.
    Immediate,
}

/// A throwaway server: `initdb` into a temporary directory, started on a
/// free port with trust authentication, removed when dropped.
pub struct ThrowawayPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl ThrowawayPostgres {
    pub fn start() -> Self {
        let bin = server_binaries();
        let dir = std::env::temp_dir().join(format!("paywait-faults-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let server = Self {
            bin,
            port: crate::free_port(),
            dir,
        };
        if running_as_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(&server.dir));
        }
        run(server
            .as_server_user("initdb")
            .args(["--no-sync", "--auth=trust", "--username=postgres"])
            .arg("--pgdata")
            .arg(server.data()));
        server.resume();
        server
    }

    /// `postgres://postgres@127.0.0.1:<port>`, without a database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        run(self
            .as_server_user("pg_ctl")
            .args(["start", "--wait", "--timeout=60", "--silent"])
            .arg("--pgdata")
            .arg(self.data())
            .arg("--log")
            .arg(self.dir.join("server.log"))
            .args(["-o", &options]));
    }

    pub fn stop(&self, how: Stop) {
        let mode = match how {
            Stop::Fast => "fast",
            Stop::Immediate => "immediate",
        };
        run(self
            .as_server_user("pg_ctl")
            .args(["stop", "--wait", "--silent", "--mode", mode])
            .arg("--pgdata")
            .arg(self.data()));
    }

    /// The server's programs run as `postgres` when the test runs as root,
    /// which they refuse to be.
    fn as_server_user(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        }
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_server_user("pg_ctl")
            .args(["stop", "--silent", "--mode", "immediate"])
            .arg("--pgdata")
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(command: &mut Command) {
    let output = command.output().expect("running a PostgreSQL program");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.starts_with(b"0\n"))
}

/// Debian keeps `initdb` and `pg_ctl` in /usr/lib/postgresql/<version>/bin.
fn server_binaries() -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let newest = std::fs::read_dir(root)
        .expect("PostgreSQL's server programs under /usr/lib/postgresql")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .max()
        .expect("a PostgreSQL version under /usr/lib/postgresql");
    root.join(newest.to_string()).join("bin")
}
