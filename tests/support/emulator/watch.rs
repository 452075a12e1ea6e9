//! Watch streams: newline-delimited `{"type": ..., "object": ...}` events over a chunked
//! response, with periodic and pre-timeout BOOKMARKs and 410 `ERROR` events.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::error::ApiError;
use super::http::{PartialMetadataRef, View};
use super::registry::ResourceDef;
use super::store::{EventType, Store, WatchRecord};

/// How long a watch lasts when the client sends no `timeoutSeconds` (kube always does).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often watches with `allowWatchBookmarks=true` get a BOOKMARK (the real server: about a
/// minute; a second keeps the clients' resourceVersions fresh).
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// How one watch presents events.
pub struct WatchSpec {
    pub def: Arc<ResourceDef>,
    pub view: View,
    pub bookmarks: bool,
    pub timeout: Duration,
}

impl WatchSpec {
    /// One event line, `{"type":..,"object":..}`, serialised from the borrowed view.
    fn line(&self, ty: &str, view: &Value) -> Bytes {
        let mut buf = Vec::with_capacity(512);
        buf.extend_from_slice(b"{\"type\":");
        let written = serde_json::to_writer(&mut buf, ty).and_then(|()| {
            buf.extend_from_slice(b",\"object\":");
            match self.view {
                View::Full => serde_json::to_writer(&mut buf, view),
                View::Metadata => serde_json::to_writer(&mut buf, &PartialMetadataRef(view)),
            }
        });
        if written.is_err() {
            return Bytes::new();
        }
        buf.extend_from_slice(b"}\n");
        Bytes::from(buf)
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let (kind, api_version) = match self.view {
            View::Full => (self.def.kind.clone(), self.def.api_version()),
            View::Metadata => ("PartialObjectMetadata".to_owned(), "meta.k8s.io/v1".to_owned()),
        };
        let meta = json!({"resourceVersion": rv.to_string(), "creationTimestamp": null});
        let mut text = serde_json::to_string(&json!({
            "type": "BOOKMARK",
            "object": {"kind": kind, "apiVersion": api_version, "metadata": meta},
        }))
        .unwrap_or_default();
        text.push('\n');
        Bytes::from(text)
    }

    /// The event a write is to this watcher.
    fn translate(&self, rec: &WatchRecord) -> Bytes {
        let ty = match rec.kind {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
        };
        self.line(ty, &rec.object)
    }
}

/// Where a watch starts.
pub enum Start {
    /// Synthetic ADDED events for these (stored) objects, then changes after `rv`.
    Snapshot { objects: Vec<Arc<Value>>, rv: u64 },
    /// Replay of these history records (all after `rv`), then live changes.
    Resume { records: Vec<Arc<WatchRecord>>, rv: u64 },
}

/// A stream holding just one `ERROR` event (how a watch learns its resourceVersion is gone).
pub fn error_stream(err: &ApiError) -> Body {
    let mut text = serde_json::to_string(&json!({"type": "ERROR", "object": err.to_status()})).unwrap_or_default();
    text.push('\n');
    Body::from(text)
}

/// Runs a registered watcher until timeout, client disconnect or server-side drop.
pub fn stream(
    store: Arc<Store>,
    spec: WatchSpec,
    start: Start,
    watcher_id: u64,
    mut rx: mpsc::UnboundedReceiver<Arc<WatchRecord>>,
) -> Body {
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let mut sent_rv;
        let mut first: Vec<Bytes> = Vec::new();
        match start {
            Start::Snapshot { objects, rv } => {
                for o in objects {
                    first.push(spec.line("ADDED", &o));
                }
                sent_rv = rv;
            }
            Start::Resume { records, rv } => {
                sent_rv = rv;
                for r in records {
                    sent_rv = sent_rv.max(r.rv);
                    first.push(spec.translate(&r));
                }
            }
        }
        let floor = sent_rv;
        let mut ok = true;
        for b in first {
            if out_tx.send(b).await.is_err() {
                ok = false;
                break;
            }
        }
        let deadline = tokio::time::sleep(spec.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await; // the first tick is immediate
        while ok {
            tokio::select! {
                () = &mut deadline => {
                    // A bookmark right before the timeout lets the client resume precisely.
                    if spec.bookmarks {
                        for b in drain_with_bookmark(&store, &spec, &mut rx, &mut sent_rv, floor) {
                            if out_tx.send(b).await.is_err() { break; }
                        }
                    }
                    break;
                }
                () = out_tx.closed() => break,
                _ = ticker.tick(), if spec.bookmarks => {
                    for b in drain_with_bookmark(&store, &spec, &mut rx, &mut sent_rv, floor) {
                        if out_tx.send(b).await.is_err() { ok = false; break; }
                    }
                }
                msg = rx.recv() => match msg {
                    None => break, // dropped by the server (fault injection, shutdown)
                    Some(rec) => {
                        if rec.rv <= floor { continue; }
                        sent_rv = sent_rv.max(rec.rv);
                        if out_tx.send(spec.translate(&rec)).await.is_err() {
                            break;
                        }
                    }
                }
            }
        }
        store.lock().unregister_watcher(watcher_id);
    });
    let body_stream =
        futures::stream::poll_fn(move |cx| out_rx.poll_recv(cx).map(|o| o.map(Ok::<_, std::convert::Infallible>)));
    Body::from_stream(body_stream)
}

/// Under the store lock (so no write can slip in between), flushes queued events and adds a
/// bookmark at the current resourceVersion, which then truly covers everything sent.
fn drain_with_bookmark(
    store: &Store,
    spec: &WatchSpec,
    rx: &mut mpsc::UnboundedReceiver<Arc<WatchRecord>>,
    sent_rv: &mut u64,
    floor: u64,
) -> Vec<Bytes> {
    let st = store.lock();
    let mut out = Vec::new();
    while let Ok(rec) = rx.try_recv() {
        if rec.rv <= floor {
            continue;
        }
        *sent_rv = (*sent_rv).max(rec.rv);
        out.push(spec.translate(&rec));
    }
    let rv = st.current_rv().max(*sent_rv);
    drop(st);
    *sent_rv = rv;
    out.push(spec.bookmark(rv));
    out
}
