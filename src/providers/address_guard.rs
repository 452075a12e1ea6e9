//! Where verification requests may go.
//!
//! Refused always: link-local addresses (169.254.0.0/16, fe80::/10, where cloud metadata
//! endpoints live), the deprecated IPv6 site-local range fec0::/10, and the metadata endpoints
//! outside them (AWS fd00:ec2::254, Alibaba 100.100.100.200, Azure WireServer 168.63.129.16).
//! An operator adds ranges to refuse (`--deny-cidr`) and may restrict verification to some
//! ranges (`--allow-cidr`). An IPv6 address that embeds an IPv4 one (IPv4-mapped, -compatible,
//! -translated, NAT64 64:ff9b::/96, 6to4 2002::/16) is judged as that IPv4 address too. The
//! judgement applies to literal hosts before anything else, to every address a name resolves to,
//! and, when a proxy is configured, to the name resolved locally before the proxy is asked.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

/// An address range, `ADDRESS/PREFIX` (a bare address is a single host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

/// A CIDR that cannot be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address range (expected ADDRESS/PREFIX, e.g. 10.0.0.0/8 or fd00::/8)")]
pub struct InvalidCidr(String);

impl FromStr for Cidr {
    type Err = InvalidCidr;

    fn from_str(text: &str) -> Result<Cidr, InvalidCidr> {
        let invalid = || InvalidCidr(text.to_owned());
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(invalid)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl Cidr {
    const fn v4(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Cidr {
        Cidr {
            network: IpAddr::V4(Ipv4Addr::new(a, b, c, d)),
            prefix,
        }
    }

    const fn v6(segments: [u16; 8], prefix: u8) -> Cidr {
        let [a, b, c, d, e, f, g, h] = segments;
        Cidr {
            network: IpAddr::V6(Ipv6Addr::new(a, b, c, d, e, f, g, h)),
            prefix,
        }
    }

    /// Whether `ip` lies in this range (an IPv4 range never holds an IPv6 address: embedded
    /// IPv4 addresses are extracted by the caller).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

pub const LINK_LOCAL: &str = "link-local address";
const METADATA: &str = "cloud metadata endpoint";

/// Ranges refused whatever the configuration.
const ALWAYS_REFUSED: [(Cidr, &str); 6] = [
    (Cidr::v4(169, 254, 0, 0, 16), LINK_LOCAL),
    (Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), LINK_LOCAL),
    (Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local address"),
    (Cidr::v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254], 128), METADATA),
    (Cidr::v4(100, 100, 100, 200, 32), METADATA),
    (Cidr::v4(168, 63, 129, 16, 32), METADATA),
];

/// The IPv4 address an IPv6 address carries, in any of the forms that route to it.
pub fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // IPv4-mapped ::ffff:a.b.c.d
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(low),
        // IPv4-translated ::ffff:0:a.b.c.d
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(low),
        // IPv4-compatible ::a.b.c.d (not :: nor ::1)
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        // NAT64, the well-known prefix 64:ff9b::/96 and the local-use 64:ff9b:1::/48 with /96
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] | [0x64, 0xff9b, 1, _, _, _, _, _] => Some(low),
        // 6to4 2002:a.b.c.d::/48
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{ip} is a {kind}, which the operator never contacts")]
    Always { ip: IpAddr, kind: &'static str },
    #[error("{ip} is in {cidr}, refused by --deny-cidr")]
    Denied { ip: IpAddr, cidr: Cidr },
    #[error("{ip} is outside the ranges allowed by --allow-cidr")]
    NotAllowed { ip: IpAddr },
}

/// The ranges an operator refuses or allows on top of [`ALWAYS_REFUSED`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub deny: Vec<Cidr>,
    /// When not empty, only addresses in these ranges may be contacted.
    pub allow: Vec<Cidr>,
}

impl AddressPolicy {
    /// Judges `ip`, and the IPv4 address it embeds, if any.
    pub fn judge(&self, ip: IpAddr) -> Result<(), Refusal> {
        let embedded = match ip {
            IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
            IpAddr::V4(_) => None,
        };
        let forms = [Some(ip), embedded];
        for form in forms.into_iter().flatten() {
            if let Some((_, kind)) = ALWAYS_REFUSED.iter().find(|(cidr, _)| cidr.contains(form)) {
                return Err(Refusal::Always { ip, kind });
            }
            if let Some(cidr) = self.deny.iter().find(|cidr| cidr.contains(form)) {
                return Err(Refusal::Denied { ip, cidr: *cidr });
            }
        }
        if !self.allow.is_empty()
            && !forms
                .into_iter()
                .flatten()
                .any(|f| self.allow.iter().any(|c| c.contains(f)))
        {
            return Err(Refusal::NotAllowed { ip });
        }
        Ok(())
    }

    /// Refuses a URL whose host is a literal address the policy refuses (names are judged once
    /// resolved).
    pub fn judge_literal(&self, url: &Url) -> Result<(), Refusal> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.judge(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.judge(IpAddr::V6(v6)),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }

    /// Resolves `host` with the system resolver and keeps the addresses the policy accepts; an
    /// error when none is left (naming the first refusal) or the name does not resolve.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, GuardError> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
            .await
            .map_err(|e| GuardError::Dns(DnsFailure(e.to_string())))?
            .collect();
        let mut first_refusal = None;
        let allowed: Vec<SocketAddr> = resolved
            .iter()
            .copied()
            .filter(|a| match self.judge(a.ip()) {
                Ok(()) => true,
                Err(refusal) => {
                    first_refusal.get_or_insert(refusal);
                    false
                }
            })
            .collect();
        if allowed.is_empty() {
            return Err(match first_refusal {
                Some(refusal) => GuardError::Refused(Refused(format!("{host}: {refusal}"))),
                None => GuardError::Dns(DnsFailure(format!("{host} has no addresses"))),
            });
        }
        Ok(allowed)
    }
}

/// What an address the operator never contacts is (a "link-local address", ...), whatever the
/// configuration; `None` for any other address.
pub fn always_refused(ip: IpAddr) -> Option<&'static str> {
    match AddressPolicy::default().judge(ip) {
        Err(Refusal::Always { kind, .. }) => Some(kind),
        _ => None,
    }
}

/// A refused destination, as the resolver reports it to reqwest.
#[derive(Debug, thiserror::Error)]
#[error("refusing {0}")]
pub struct Refused(pub String);

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DnsFailure(pub String);

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error(transparent)]
    Refused(Refused),
    #[error(transparent)]
    Dns(DnsFailure),
}

/// Resolves names with the system resolver and drops refused answers, so a name that points at
/// a metadata endpoint is refused before any connection is attempted.
pub(super) struct GuardedResolver(pub(super) Arc<AddressPolicy>);

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let allowed =
                policy
                    .resolve(name.as_str())
                    .await
                    .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> {
                        match e {
                            GuardError::Refused(refused) => Box::new(refused),
                            GuardError::Dns(dns) => Box::new(dns),
                        }
                    })?;
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(ip: &str) -> bool {
        AddressPolicy::default().judge(ip.parse().unwrap()).is_err()
    }

    #[test]
    fn every_notation_of_a_metadata_address_is_refused() {
        for ip in [
            "169.254.169.254",
            "fe80::1",
            "::ffff:169.254.1.1",
            "::ffff:a9fe:a9fe",
            "::a9fe:a9fe",
            "::ffff:0:a9fe:a9fe",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "fec0::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:100.100.100.200",
            "64:ff9b::6464:64c8",
            "168.63.129.16",
            "::ffff:0:a83f:8110",
        ] {
            assert!(refused(ip), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fd00:ec2::253",
            "100.100.100.201",
            "2001:db8::1",
        ] {
            assert!(!refused(ip), "{ip}");
        }
    }

    #[test]
    fn deny_and_allow_ranges() {
        let policy = AddressPolicy {
            deny: vec!["10.0.0.0/8".parse().unwrap(), "fd12::/16".parse().unwrap()],
            allow: vec![],
        };
        assert!(matches!(
            policy.judge("10.1.2.3".parse().unwrap()),
            Err(Refusal::Denied { .. })
        ));
        assert!(
            policy.judge("::ffff:10.1.2.3".parse().unwrap()).is_err(),
            "the mapped form too"
        );
        assert!(policy.judge("fd12::5".parse().unwrap()).is_err());
        assert!(policy.judge("192.0.2.1".parse().unwrap()).is_ok());
        let policy = AddressPolicy {
            deny: vec![],
            allow: vec!["192.0.2.0/24".parse().unwrap()],
        };
        assert!(policy.judge("192.0.2.7".parse().unwrap()).is_ok());
        assert!(policy.judge("::ffff:192.0.2.7".parse().unwrap()).is_ok());
        assert!(matches!(
            policy.judge("192.0.3.1".parse().unwrap()),
            Err(Refusal::NotAllowed { .. })
        ));
        // the built-in refusals hold even inside an allowed range
        let policy = AddressPolicy {
            deny: vec![],
            allow: vec!["0.0.0.0/0".parse().unwrap()],
        };
        assert!(policy.judge("169.254.169.254".parse().unwrap()).is_err());
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!("10.0.0.0/8".parse::<Cidr>().unwrap().to_string(), "10.0.0.0/8");
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().to_string(), "fd00::1/128");
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().to_string(), "0.0.0.0/0");
        for bad in ["", "10.0.0.0/33", "fd00::/129", "example.com/8", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
