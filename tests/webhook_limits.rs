//! The webhook server against slow and greedy clients, over real TLS: idle connections are
//! closed (HTTP/1.1 and HTTP/2, before and after a request), a body that trickles in is cut off,
//! a body over the cap is refused before it is read, and connections beyond the limit wait.

mod common;

use common::{Server, TestPki, client_tls, review, spec};
use gitprovider_operator::admission::{IDLE_TIMEOUT, MAX_BODY, MAX_CONNECTIONS};
use gitprovider_operator::index::UniquenessScope;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Bounded wait for anything the server must do by itself.
const WAIT: Duration = Duration::from_secs(40);

async fn tls(addr: SocketAddr, ca_pem: &str, alpn: &[u8]) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca_pem, &[alpn])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    connector.connect(name, tcp).await.unwrap()
}

/// Reads until the server closes the connection; what it sent on the way.
async fn until_closed(stream: &mut (impl AsyncReadExt + Unpin)) -> Result<Vec<u8>, &'static str> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    };
    match tokio::time::timeout(WAIT, read).await {
        Ok(()) => Ok(seen),
        Err(_) => Err("the server kept the connection open"),
    }
}

#[tokio::test]
async fn an_http1_connection_that_never_sends_a_request_is_closed() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut stream = tls(server.addr, &pki.ca_pem, b"http/1.1").await;
    let opened = Instant::now();
    until_closed(&mut stream).await.unwrap();
    assert!(opened.elapsed() >= IDLE_TIMEOUT.min(Duration::from_secs(9)));
    server.stop().await;
}

#[tokio::test]
async fn an_http1_keep_alive_connection_is_closed_when_idle() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut stream = tls(server.addr, &pki.ca_pem, b"http/1.1").await;
    let body = serde_json::to_vec(&review(
        "u",
        "CREATE",
        "a",
        "x",
        Some(spec("GitLab", "x", "https://gitlab.example.com")),
        None,
        false,
    ))
    .unwrap();
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    let seen = until_closed(&mut stream).await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"allowed\":true"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_after_the_preface_is_closed_when_idle() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut stream = tls(server.addr, &pki.ca_pem, b"h2").await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    // the client preface and an empty SETTINGS frame, then silence
    stream.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
    stream.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).await.unwrap();
    let seen = until_closed(&mut stream).await.unwrap();
    // a GOAWAY frame (type 7) was sent before closing
    assert!(frames(&seen).contains(&7), "{seen:?}");
    server.stop().await;
}

/// The types of the HTTP/2 frames in `bytes`.
fn frames(mut bytes: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    while bytes.len() >= 9 {
        let len = (usize::from(bytes[0]) << 16) | (usize::from(bytes[1]) << 8) | usize::from(bytes[2]);
        types.push(bytes[3]);
        bytes = &bytes[(9 + len).min(bytes.len())..];
    }
    types
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut stream = tls(server.addr, &pki.ca_pem, b"http/1.1").await;
    stream
        .write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1000\r\n\r\n{")
        .await
        .unwrap();
    let (mut read, mut write) = tokio::io::split(stream);
    // one byte every second, far too slow to finish within the read deadline
    let trickle = tokio::spawn(async move {
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if write.write_all(b" ").await.is_err() {
                return;
            }
        }
    });
    let seen = until_closed(&mut read).await.unwrap();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    trickle.abort();
    server.stop().await;
}

#[tokio::test]
async fn a_body_announced_over_the_cap_is_refused_unread() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut stream = tls(server.addr, &pki.ca_pem, b"http/1.1").await;
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: {}\r\n\r\n",
        MAX_BODY + 1
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_wait_for_a_free_slot() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    // Holding every slot must take less than the idle time-out, or the server rightly closes the
    // first connections held (no request yet) and serves the extra one: on a machine too busy
    // for that, the holding is tried again.
    for attempt in 1..=3 {
        let started = Instant::now();
        let mut held = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            held.push(tls(server.addr, &pki.ca_pem, b"http/1.1").await);
        }
        // one more: TCP connects (the backlog), but the handshake is not served while all are held
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(&pki.ca_pem, &[b"http/1.1"])));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let handshake = tokio::spawn(connector.connect(name, tcp));
        tokio::time::sleep(Duration::from_secs(1)).await;
        if started.elapsed() + Duration::from_secs(1) >= IDLE_TIMEOUT {
            eprintln!(
                "attempt {attempt}: holding {MAX_CONNECTIONS} connections took {:?}, near the idle time-out; again",
                started.elapsed()
            );
            handshake.abort();
            continue;
        }
        assert!(!handshake.is_finished(), "served beyond the connection limit");
        // a slot frees up: the waiting connection is served
        drop(held.pop());
        let stream = tokio::time::timeout(WAIT, handshake).await.unwrap().unwrap();
        assert!(stream.is_ok(), "{stream:?}");
        drop(held);
        server.stop().await;
        return;
    }
    panic!("could not hold {MAX_CONNECTIONS} connections within the idle time-out in 3 attempts");
}
