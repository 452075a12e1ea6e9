//! Where verification requests may go: link-local addresses (cloud metadata endpoints) are
//! refused, for literal addresses and after DNS resolution.

use reqwest::Url;
use std::net::{IpAddr, SocketAddr};

/// Whether an address is link-local (cloud metadata endpoints live there).
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.is_link_local();
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Refuses a URL whose host is a literal link-local address (names are judged by
/// [`GuardedResolver`] once resolved).
pub(super) fn refuse_literal(url: &Url) -> Result<(), LinkLocalRefused> {
    let ip = match url.host() {
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(_)) | None => return Ok(()),
    };
    if is_link_local(ip) {
        return Err(LinkLocalRefused(ip.to_string()));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("refusing link-local address {0}")]
pub(super) struct LinkLocalRefused(pub(super) String);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct DnsFailure(pub(super) String);

/// Resolves names with the system resolver and drops link-local answers, so a name that points
/// at a metadata endpoint is refused before any connection is attempted.
pub(super) struct GuardedResolver;

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(DnsFailure(e.to_string())) })?
                .collect();
            let allowed: Vec<SocketAddr> = resolved.iter().copied().filter(|a| !is_link_local(a.ip())).collect();
            if allowed.is_empty() {
                return Err(match resolved.first() {
                    Some(addr) => Box::new(LinkLocalRefused(format!("{} ({host})", addr.ip()))) as _,
                    None => Box::new(DnsFailure(format!("{host} has no addresses"))) as _,
                });
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses() {
        for ip in ["169.254.169.254", "fe80::1", "::ffff:169.254.1.1"] {
            assert!(is_link_local(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["127.0.0.1", "10.0.0.1", "::1", "fd00::1"] {
            assert!(!is_link_local(ip.parse().unwrap()), "{ip}");
        }
    }
}
