//! The paywait daemon as a child process, with its CPU time and memory read
//! from /proc.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Linux reports CPU time in clock ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

pub struct Daemon {
    child: Child,
    port: u16,
}

impl Daemon {
    pub async fn start(binary: &Path, environment: &[(String, String)]) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(binary)
            .arg("run")
            .env_clear()
            .envs(environment.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PAYWAIT_HTTP__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut daemon = Self { child, port };
        daemon.wait_ready().await?;
        Ok(daemon)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            if self.ready().await {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("paywait exited with {status} before it was ready");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("paywait was not ready within a minute");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn ready(&self) -> bool {
        let Ok(mut stream) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream
            .write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .is_err()
        {
            return false;
        }
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response).await;
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200")
    }

    /// User plus system CPU time so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        // Fields after the command name, which is in parentheses.
        let after = stat.rsplit_once(')').context("malformed stat")?.1;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let utime: f64 = fields[11].parse()?;
        let stime: f64 = fields[12].parse()?;
        Ok((utime + stime) / TICKS_PER_SECOND)
    }

    /// The largest resident set size so far (VmHWM), in MiB.
    pub fn peak_rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        let kib: f64 = status
            .lines()
            .find(|line| line.starts_with("VmHWM:"))
            .and_then(|line| line.split_whitespace().nth(1))
            .context("no VmHWM")?
            .parse()?;
        Ok(kib / 1024.0)
    }

    /// SIGTERM, then waits for the exit.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        let started = Instant::now();
        while self.child.try_wait()?.is_none() {
            if started.elapsed() > Duration::from_secs(30) {
                self.child.kill()?;
                bail!("paywait did not stop on SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
