//! Names the Kubernetes API server in the log lines of requests that could not reach it: "cannot
//! reach the API server https://…: connection refused" says what to check, kube's "client error
//! (Connect)" alone does not.

use std::error::Error;
use std::sync::OnceLock;

/// The one API server this process talks to (set once, when `run` builds its client).
static API_SERVER: OnceLock<String> = OnceLock::new();

/// Records the API server's URL and returns it as it will be named.
pub fn set(url: &impl std::fmt::Display) -> &'static str {
    API_SERVER.get_or_init(|| url.to_string().trim_end_matches('/').to_owned())
}

/// The error and its causes, each once (kube's errors print their source in their own text and
/// expose it again as `source()`), prefixed with the API server when it could not be reached.
pub fn describe(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut unreachable = false;
    let mut cause = error.source();
    while let Some(current) = cause {
        unreachable |= is_connection_failure(current);
        let part = current.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        cause = current.source();
    }
    match (unreachable, API_SERVER.get()) {
        (true, Some(server)) => format!("cannot reach the API server {server}: {text}"),
        (true, None) => format!("cannot reach the API server: {text}"),
        _ => text,
    }
}

fn is_connection_failure(error: &(dyn Error + 'static)) -> bool {
    if let Some(client) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
        return client.is_connect();
    }
    if let Some(io) = error.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind::*;
        return matches!(
            io.kind(),
            ConnectionRefused
                | ConnectionReset
                | ConnectionAborted
                | NotConnected
                | TimedOut
                | HostUnreachable
                | NetworkUnreachable
        );
    }
    false
}
