//! `paywait run` as a child process, as an operator or systemd starts it.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::services::{free_port, http_get};

/// Where the daemon's log (stderr) goes.
#[derive(Debug, Clone)]
pub enum Log {
    File(PathBuf),
    Inherit,
    Discard,
}

/// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// The daemon as a child process, serving HTTP on a port of its own.
pub struct Daemon {
    child: Child,
    port: u16,
    log: Option<PathBuf>,
}

impl Daemon {
    /// Starts `binary run` with exactly `environment` (and a free
    /// `http.listen` port).
    pub fn start(binary: &Path, environment: &[(String, String)], log: Log) -> Self {
        let port = free_port();
        let (stderr, path) = match log {
            Log::File(path) => (
                Stdio::from(File::create(&path).expect("creating the daemon's log")),
                Some(path),
            ),
            Log::Inherit => (Stdio::inherit(), None),
            Log::Discard => (Stdio::null(), None),
        };
        let child = Command::new(binary)
            .arg("run")
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PAYWAIT_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("starting {}: {error}", binary.display()));
        Self {
            child,
            port,
            log: path,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file, when the log goes to one.
    pub fn log(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    pub fn log_text(&self) -> String {
        self.log
            .as_ref()
            .and_then(|path| std::fs::read_to_string(path).ok())
            .unwrap_or_default()
    }

    /// Where the log is, and how it ends, for a failure's message.
    fn log_hint(&self) -> String {
        let Some(path) = &self.log else {
            return String::new();
        };
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(8)..].join("\n");
        format!("; log: {}, ending:\n{tail}", path.display())
    }

    /// GET on the daemon's HTTP port: status (0 when nothing answers) and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        tokio::task::spawn_blocking(move || http_get(&url))
            .await
            .expect("the HTTP request's task")
    }

    pub async fn ready_status(&self) -> u16 {
        self.get("/readyz").await.0
    }

    /// Waits until `/readyz` answers 200; returns how long that took, or why
    /// it never did.
    pub async fn try_wait_ready(&mut self, within: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        loop {
            if self.ready_status().await == 200 {
                return Ok(started.elapsed());
            }
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                return Err(format!(
                    "paywait exited with {status} before it was ready{}",
                    self.log_hint()
                ));
            }
            if started.elapsed() > within {
                return Err(format!(
                    "paywait was not ready within {within:?}{}",
                    self.log_hint()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `/readyz` answers 200; returns how long that took.
    pub async fn wait_ready(&mut self, within: Duration) -> Duration {
        self.try_wait_ready(within)
            .await
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Waits until `/readyz` leaves 200 for want of `cause`, and checks the
    /// process lives on.
    pub async fn wait_unready(&mut self, within: Duration, cause: &str) {
        let started = Instant::now();
        while self.ready_status().await == 200 {
            assert!(
                started.elapsed() < within,
                "/readyz still 200 without {cause}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.child.try_wait().expect("the child's status").is_none(),
            "the daemon exited without {cause}{}",
            self.log_hint()
        );
    }

    /// Whether it has exited, and how.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("the child's status")
    }

    /// SIGKILL, and the exit reaped.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends `signal` (`TERM`, `INT`) and waits up to 30 s for the exit.
    pub async fn signal(&mut self, signal: &str) -> ExitStatus {
        let sent = Command::new("kill")
            .args([format!("-{signal}"), self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{signal} failed");
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "SIG{signal} did not stop paywait{}",
                self.log_hint()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, as systemd stops it; returns the exit status.
    pub async fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM").await
    }

    /// User plus system CPU time so far, from /proc.
    pub fn cpu_seconds(&self) -> Option<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).ok()?;
        // Fields after the command name, which is in parentheses.
        let after = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((utime + stime) / TICKS_PER_SECOND)
    }

    /// The largest resident set size so far (VmHWM), in MiB, from /proc.
    pub fn peak_rss_mib(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kib: f64 = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .and_then(|line| line.split_whitespace().nth(1))?
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
