//! Connection hygiene, seen from the client's side of the socket: a
//! connection that does nothing is closed by the server, and a flood of
//! them never locks out a new client.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use paybind_tests::{pb, Backend, Stack, SHOP_A};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

type R = anyhow::Result<()>;

const HANDSHAKE: Duration = Duration::from_millis(500);
const IDLE: Duration = Duration::from_millis(1_500);
const MAX_CONNECTIONS: usize = 32;

async fn stack() -> anyhow::Result<Stack> {
    let stack = Stack::start_tuned(Backend::Sqlite, |s| {
        s.server.handshake_timeout_ms = HANDSHAKE.as_millis() as u64;
        s.server.idle_timeout_ms = IDLE.as_millis() as u64;
        s.server.max_connections = MAX_CONNECTIONS;
    })
    .await?;
    stack.ok_or_else(|| anyhow::anyhow!("SQLite always starts"))
}

/// Waits for the server to close `conn`: a read that ends (EOF or reset).
async fn closed_within(mut conn: TcpStream, limit: Duration) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(started.elapsed()), conn.read(&mut buf))
            .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(started.elapsed()),
            Ok(Ok(_)) => continue, // e.g. a TLS alert before the close
            Err(_) => anyhow::bail!("still open after {limit:?}"),
        }
    }
}

/// Server-side connections on `port` that are established, from
/// /proc/net/tcp{,6} (the server is in this process, on loopback).
fn established_on(port: u16) -> usize {
    let port_hex = format!("{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|text| text.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.len() > 3
                && cols[1].rsplit(':').next() == Some(port_hex.as_str())
                && cols[3] == "01"
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_do_nothing_are_closed() -> R {
    let stack = stack().await?;
    let limit = HANDSHAKE + Duration::from_secs(2);
    // Silent TCP.
    let silent = TcpStream::connect(stack.addr).await?;
    closed_within(silent, limit).await?;
    // A TLS handshake begun and never finished: a record header, no more.
    let mut half = TcpStream::connect(stack.addr).await?;
    half.write_all(&[0x16, 0x03, 0x01, 0x00]).await?;
    closed_within(half, limit).await?;

    // A connection that was used, then idles.
    let mut client = stack.client(SHOP_A).await?;
    client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "nobody".into(),
            ..Default::default()
        })
        .await?;
    assert!(
        established_on(stack.addr.port()) >= 1,
        "the client's connection"
    );
    let deadline = Instant::now() + IDLE + Duration::from_secs(3);
    while established_on(stack.addr.port()) > 0 {
        assert!(Instant::now() < deadline, "an idle connection stayed open");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stack.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_never_locks_out_a_new_client() -> R {
    let stack = stack().await?;
    let mut flood = Vec::new();
    for _ in 0..(MAX_CONNECTIONS * 3) {
        flood.push(TcpStream::connect(stack.addr).await?);
    }
    // Well before the flood times out, a real client gets in.
    let started = Instant::now();
    let mut client = stack.client(SHOP_A).await?;
    client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "nobody".into(),
            ..Default::default()
        })
        .await?;
    assert!(
        started.elapsed() < HANDSHAKE,
        "admitted at once: {:?}",
        started.elapsed()
    );
    // The connections that made room close at their next check.
    let deadline = Instant::now() + Duration::from_secs(3);
    while established_on(stack.addr.port()) > MAX_CONNECTIONS {
        assert!(
            Instant::now() < deadline,
            "the cap holds: {} open",
            established_on(stack.addr.port())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and the new client's connection is not among them.
    client
        .list_bindings(pb::ListBindingsRequest {
            merchant_user_id: "nobody".into(),
            ..Default::default()
        })
        .await?;
    drop(flood);
    stack.stop().await
}

/// The binding page's listener has the same hygiene: a browser-side
/// slow-loris (headers a byte at a time, never finished) and a silent
/// connection are closed; a kept-alive connection serves its next request
/// and is closed once idle; meanwhile a new visitor is served at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_close_connections_that_do_nothing() -> R {
    let stack = stack().await?;
    let pages = url::Url::parse(&stack.pages())?;
    let addr = format!("127.0.0.1:{}", pages.port().unwrap_or(80));

    let silent = TcpStream::connect(&addr).await?;
    let mut loris = TcpStream::connect(&addr).await?;
    loris
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let trickle = tokio::spawn(async move {
        for _ in 0..40 {
            if loris.write_all(b"X").await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let closed = closed_within(silent, HANDSHAKE * 4).await?;
    assert!(
        closed >= HANDSHAKE / 2,
        "closed for doing nothing, not at once: {closed:?}"
    );
    assert!(
        trickle.await?,
        "a request that never ends its headers is cut off"
    );

    // A real request on a kept-alive connection, then idleness.
    let mut visitor = TcpStream::connect(&addr).await?;
    visitor
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await?;
    let mut answer = [0u8; 512];
    let n = visitor.read(&mut answer).await?;
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 200"));
    closed_within(visitor, IDLE + HANDSHAKE * 4).await?;
    stack.stop().await
}
