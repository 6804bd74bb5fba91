//! The fault proxy the network tests put between the daemon and a server
//! does what it is told, tested against an echo server.

use std::{net::SocketAddr, time::Duration};

use paywait_testkit::FaultProxy;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// A server that sends back whatever it reads.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = [0u8; 1024];
                while let Ok(read) = stream.read(&mut buffer).await {
                    if read == 0 || stream.write_all(&buffer[..read]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    address
}

/// What comes back within `within` for `message`: the echo, or why not.
async fn round_trip(
    stream: &mut TcpStream,
    message: &[u8],
    within: Duration,
) -> Result<Vec<u8>, String> {
    stream
        .write_all(message)
        .await
        .map_err(|error| format!("write: {error}"))?;
    let mut echoed = vec![0u8; message.len()];
    match tokio::time::timeout(within, stream.read_exact(&mut echoed)).await {
        Err(_) => Err("silence".into()),
        Ok(Err(error)) => Err(format!("read: {:?}", error.kind())),
        Ok(Ok(_)) => Ok(echoed),
    }
}

const SOON: Duration = Duration::from_secs(5);
const QUIET: Duration = Duration::from_millis(500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_passes_stalls_and_resumes() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"one", SOON).await.unwrap(), b"one");

    proxy.stall();
    assert_eq!(
        round_trip(&mut stream, b"two", QUIET).await,
        Err("silence".into())
    );
    // A new connection during the partition is as stuck.
    let mut during = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(
        round_trip(&mut during, b"new", QUIET).await,
        Err("silence".into())
    );
    // Healed: what was sent arrives.
    proxy.pass();
    let mut echoed = [0u8; 3];
    stream.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"two");
    during.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"new");
    assert_eq!(round_trip(&mut stream, b"six", SOON).await.unwrap(), b"six");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_silences_open_connections_for_good_and_lets_new_ones_pass() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut old = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut old, b"one", SOON).await.unwrap(), b"one");

    proxy.silence_open_connections();
    let mut new = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut new, b"new", SOON).await.unwrap(), b"new");
    // Half-open: no byte, no FIN, no RST, however long one waits, and
    // `pass` does not bring it back.
    proxy.pass();
    assert_eq!(
        round_trip(&mut old, b"two", QUIET * 2).await,
        Err("silence".into())
    );
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_resets_every_connection_and_refuses_new_ones_for_a_while() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut stream, b"one", SOON).await.unwrap(), b"one");

    proxy.reset_and_refuse(Duration::from_secs(2));
    let reset = round_trip(&mut stream, b"two", SOON).await.unwrap_err();
    assert!(
        reset.contains("ConnectionReset")
            || reset.contains("UnexpectedEof")
            || reset.starts_with("write"),
        "{reset}"
    );
    // Refused: reset at once, as the connection is made or at its first
    // exchange.
    if let Ok(mut refused) = TcpStream::connect(proxy.address()).await {
        let refusal = round_trip(&mut refused, b"new", SOON).await.unwrap_err();
        assert_ne!(refusal, "silence");
    }
    // Then new connections pass again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut later = TcpStream::connect(proxy.address()).await.unwrap();
    assert_eq!(round_trip(&mut later, b"new", SOON).await.unwrap(), b"new");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_adds_latency_each_way() {
    let proxy = FaultProxy::start(echo_server().await).await;
    let mut stream = TcpStream::connect(proxy.address()).await.unwrap();
    proxy.set_latency(Duration::from_millis(200));
    let started = std::time::Instant::now();
    assert_eq!(round_trip(&mut stream, b"one", SOON).await.unwrap(), b"one");
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "a round trip took {:?}",
        started.elapsed()
    );
    proxy.pass();
    assert_eq!(round_trip(&mut stream, b"two", SOON).await.unwrap(), b"two");
}
