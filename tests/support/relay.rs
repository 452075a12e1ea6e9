//! A fault-injecting TCP relay between a client (the operator process) and a server (the real
//! kube-apiserver): what a test needs to break the API connection on demand, which a real
//! server does not do by itself.
//!
//! The relay passes bytes through untouched (TLS goes end to end: the client still verifies the
//! server's certificate, valid for 127.0.0.1). A test can hold it closed (new connections are
//! accepted and closed at once, before a byte of TLS), open it again, and cut every open
//! connection at once (both sockets closed, mid-stream). kube-rs opens each watch on an HTTP/1.1 connection of its own, so
//! [`Relay::open_connections`] counts the watches (plus the odd connection of a request).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A running relay; stops accepting and cuts every connection when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: AbortHandle,
}

struct Shared {
    upstream: SocketAddr,
    open: AtomicBool,
    next_id: AtomicU64,
    /// The relaying task of each open connection.
    connections: Mutex<HashMap<u64, AbortHandle>>,
}

impl Shared {
    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.connections.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Relay {
    /// Listens on a free port of 127.0.0.1 and relays to `upstream`; open.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("the relay listens");
        let addr = listener.local_addr().expect("the relay's address");
        let shared = Arc::new(Shared {
            upstream,
            open: AtomicBool::new(true),
            next_id: AtomicU64::new(0),
            connections: Mutex::new(HashMap::new()),
        });
        let acceptor = tokio::spawn(accept(listener, shared.clone())).abort_handle();
        Relay { addr, shared, acceptor }
    }

    /// `https://127.0.0.1:PORT`: what a kubeconfig names as the server.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// From now on, new connections are closed as soon as they are accepted.
    pub fn close(&self) {
        self.shared.open.store(false, Ordering::SeqCst);
    }

    /// From now on, new connections are relayed.
    pub fn open(&self) {
        self.shared.open.store(true, Ordering::SeqCst);
    }

    /// How many connections are being relayed now.
    pub fn open_connections(&self) -> usize {
        self.shared.connections().len()
    }

    /// Cuts every open connection at once (both sockets closed); returns how many.
    pub fn cut_all(&self) -> usize {
        let cut: Vec<AbortHandle> = self.shared.connections().drain().map(|(_, task)| task).collect();
        for task in &cut {
            task.abort();
        }
        cut.len()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.cut_all();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            // e.g. too many open files for a moment: try again shortly.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if !shared.open.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let id = shared.next_id.fetch_add(1, Ordering::SeqCst);
        // Registered under the lock before it can run (and remove itself), so a cut never
        // misses it.
        let mut connections = shared.connections();
        let task = tokio::spawn(relay(client, shared.clone(), id));
        connections.insert(id, task.abort_handle());
    }
}

async fn relay(mut client: TcpStream, shared: Arc<Shared>, id: u64) {
    if let Ok(mut server) = TcpStream::connect(shared.upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
    shared.connections().remove(&id);
}
