//! A RabbitMQ node of the test's own with a TLS listener, beside the
//! machine's broker (its own name, ports, data directory and Erlang
//! cookie), and the private certificate authority that signed its
//! certificate, made with `openssl` for the test. Stopped when dropped.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

const BIN: &str = "/usr/lib/rabbitmq/bin";

/// The node, and the files a client needs to trust it and be trusted.
pub struct TlsBroker {
    dir: PathBuf,
    node: String,
    /// The port of the TLS listener.
    pub port: u16,
    /// The port of its plain AMQP listener.
    pub amqp_port: u16,
}

impl TlsBroker {
    /// Starts a node whose TLS listener asks every client for a certificate
    /// signed by the test's authority.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("paywait-tls-node-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "mnesia", "log"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
        }
        make_certificates(&dir);
        let (tcp, port, dist) = (crate::free_port(), crate::free_port(), crate::free_port());
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = {tcp}\n\
                 listeners.ssl.default = {port}\n\
                 ssl_options.cacertfile = {ca}\n\
                 ssl_options.certfile = {cert}\n\
                 ssl_options.keyfile = {key}\n\
                 ssl_options.verify = verify_peer\n\
                 ssl_options.fail_if_no_peer_cert = true\n\
                 loopback_users = none\n",
                ca = dir.join("ca.pem").display(),
                cert = dir.join("server.pem").display(),
                key = dir.join("server.key").display(),
            ),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let cookie = dir.join("home/.erlang.cookie");
        std::fs::write(&cookie, format!("PAYWAITTLS{}", std::process::id())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o400)).unwrap();

        let broker = Self {
            node: format!("paywait-tls-{}@localhost", std::process::id()),
            port,
            amqp_port: tcp,
            dir,
        };
        let status = broker
            .command("rabbitmq-server")
            .arg("-detached")
            .env("RABBITMQ_NODE_PORT", tcp.to_string())
            .env("RABBITMQ_DIST_PORT", dist.to_string())
            .env("RABBITMQ_MNESIA_BASE", broker.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", broker.dir.join("log"))
            .env("RABBITMQ_CONFIG_FILE", broker.dir.join("rabbitmq.conf"))
            .env(
                "RABBITMQ_ENABLED_PLUGINS_FILE",
                broker.dir.join("enabled_plugins"),
            )
            .status()
            .unwrap();
        assert!(status.success(), "starting the TLS node");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = broker
                .command("rabbitmqctl")
                .args(["-q", "-n", &broker.node, "await_startup"])
                .output()
                .unwrap();
            if ready.status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the TLS node did not start: {:?}",
                ready
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        broker
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(Path::new(BIN).join(program));
        command
            .env("HOME", self.dir.join("home"))
            .env("RABBITMQ_NODENAME", &self.node);
        command
    }

    /// The authority that signed the node's and the client's certificates.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A client certificate the node accepts, and its key.
    pub fn client_identity(&self) -> (PathBuf, PathBuf) {
        (self.dir.join("client.pem"), self.dir.join("client.key"))
    }

    /// How many client connections the node has.
    pub fn connections(&self) -> usize {
        let listed = self
            .command("rabbitmqctl")
            .args(["-q", "-n", &self.node, "list_connections", "name"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter(|line| !line.trim().is_empty() && *line != "name")
            .count()
    }

    /// Stops the node, as a node that went away.
    pub fn stop(&self) {
        let stopped = self
            .command("rabbitmqctl")
            .args(["-q", "-n", &self.node, "stop"])
            .output()
            .unwrap();
        assert!(stopped.status.success(), "stopping the node: {stopped:?}");
    }

    /// A directory for the test's own files, removed with the node.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        let _ = self
            .command("rabbitmqctl")
            .args(["-q", "-n", &self.node, "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A certificate authority, and certificates it signed for the node
/// (`localhost`) and for a client.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=paywait test authority",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    // Version 3 certificates (with extensions): webpki refuses older ones.
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    for (name, subject) in [("server", "/CN=localhost"), ("client", "/CN=paywait")] {
        let (key, csr, pem) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
        );
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        let extensions = format!("{name}.ext");
        openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &pem,
            "-extfile",
            &extensions,
        ]);
    }
}
