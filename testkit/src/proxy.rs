//! A userspace TCP proxy that a test puts between the daemon and a server
//! and tells how the network misbehaves: pass; stall and resume (a
//! partition that heals); go silent for good on the connections open now
//! while new ones pass (a half-open link, as after a NAT or a firewall
//! forgets it); reset every connection and refuse new ones for a while;
//! add latency. Nothing here knows the protocol it carries.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{
        TcpListener, TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    sync::watch,
    task::JoinHandle,
    time::Instant,
};

/// How long the proxy tries to reach its upstream for a new connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the network does now.
#[derive(Debug, Clone, Default)]
struct Faults {
    /// No byte moves, on any connection, until resumed.
    stalled: bool,
    /// Connections numbered below this move no byte ever again.
    silent_below: u64,
    /// Each chunk waits this long before it is passed on.
    latency: Duration,
    /// New connections are reset at once until then.
    refuse_until: Option<Instant>,
    /// Bumped to reset every connection open.
    resets: u64,
}

/// A TCP proxy on a port of its own in front of `upstream`; stopped when
/// dropped.
pub struct FaultProxy {
    address: SocketAddr,
    faults: watch::Sender<Faults>,
    connections: Arc<AtomicU64>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1 in front of `upstream`, passing
    /// everything.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let address = listener.local_addr().expect("a bound address");
        let (faults, _) = watch::channel(Faults::default());
        let connections = Arc::new(AtomicU64::new(0));
        let accept = tokio::spawn(accept(
            listener,
            upstream,
            faults.clone(),
            connections.clone(),
        ));
        Self {
            address,
            faults,
            connections,
            accept,
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Everything passes again: no stall, no latency, no refusal (a
    /// connection silenced for good stays silent).
    pub fn pass(&self) {
        self.faults.send_modify(|faults| {
            faults.stalled = false;
            faults.latency = Duration::ZERO;
            faults.refuse_until = None;
        });
    }

    /// No byte moves on any connection, old or new, until [`Self::pass`]:
    /// a partition. Connections stay open; what was sent waits.
    pub fn stall(&self) {
        self.faults.send_modify(|faults| faults.stalled = true);
    }

    /// Every connection open now goes silent for good, with no FIN and no
    /// RST; new connections pass.
    pub fn silence_open_connections(&self) {
        let opened = self.connections.load(Ordering::SeqCst);
        self.faults
            .send_modify(|faults| faults.silent_below = faults.silent_below.max(opened));
    }

    /// Resets every connection open now (RST), and resets new ones at once
    /// for `refuse_for`.
    pub fn reset_and_refuse(&self, refuse_for: Duration) {
        self.faults.send_modify(|faults| {
            faults.resets += 1;
            faults.refuse_until = Some(Instant::now() + refuse_for);
        });
    }

    /// Each chunk of bytes, either way, waits `latency` before it passes.
    pub fn set_latency(&self, latency: Duration) {
        self.faults.send_modify(|faults| faults.latency = latency);
    }

    /// How many connections the proxy has taken.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        // Every relay ends with the sender: the last resets them.
        self.faults.send_modify(|faults| faults.resets += 1);
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    faults: watch::Sender<Faults>,
    connections: Arc<AtomicU64>,
) {
    while let Ok((client, _)) = listener.accept().await {
        let refusing = faults
            .borrow()
            .refuse_until
            .is_some_and(|until| Instant::now() < until);
        if refusing {
            reset(&client);
            continue;
        }
        let number = connections.fetch_add(1, Ordering::SeqCst);
        let faults = faults.subscribe();
        tokio::spawn(async move {
            let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream));
            if let Ok(Ok(server)) = connected.await {
                relay(client, server, number, faults).await;
            }
        });
    }
}

/// Closes `stream` with a RST rather than a FIN, once dropped.
fn reset(stream: &TcpStream) {
    let _ = stream.set_zero_linger();
}

/// Moves bytes both ways between a client and the server until both sides
/// are done, or the connection is reset.
async fn relay(client: TcpStream, server: TcpStream, number: u64, faults: watch::Receiver<Faults>) {
    let resets = faults.borrow().resets;
    let (mut client_in, mut client_out) = client.into_split();
    let (mut server_in, mut server_out) = server.into_split();
    let mut watching = faults.clone();
    tokio::select! {
        _ = async {
            tokio::join!(
                pump(&mut client_in, &mut server_out, number, resets, faults.clone()),
                pump(&mut server_in, &mut client_out, number, resets, faults.clone()),
            )
        } => {}
        _ = watching.wait_for(|faults| faults.resets != resets) => {
            reset(client_in.as_ref());
            reset(server_in.as_ref());
        }
    }
}

/// Copies from `from` to `to`, each chunk passing only when the faults let
/// it; at the end of `from`, ends `to` too. Once the connection is to be
/// reset (`resets` moved on) no chunk passes, even one read just before.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    number: u64,
    resets: u64,
    mut faults: watch::Receiver<Faults>,
) {
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        let latency = match faults
            .wait_for(|faults| {
                faults.resets != resets || (!faults.stalled && number >= faults.silent_below)
            })
            .await
        {
            Ok(faults) if faults.resets == resets => faults.latency,
            _ => return,
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if faults.borrow().resets != resets || to.write_all(&chunk[..read]).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}
