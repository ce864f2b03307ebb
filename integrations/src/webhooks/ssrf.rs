//! Where outbound webhooks may go.
//!
//! An admin-supplied URL must not become a way into Purser's own network: loopback, private,
//! link-local (cloud metadata services live at 169.254.169.254), carrier-grade NAT, unique-local,
//! multicast and unspecified addresses are refused unless the operator allows private targets
//! (`PURSER_WEBHOOK_ALLOW_PRIVATE`, for tests and all-internal setups). The check applies to
//! every address a host name resolves to, at registration and again before every delivery, and
//! the delivery connects to the address that was checked, so a name that resolves elsewhere
//! the second time (DNS rebinding) cannot slip past.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("the URL is not a valid http(s) URL: {0}")]
    Invalid(String),
    #[error("the host {0} does not resolve")]
    Unresolvable(String),
    #[error("the host {host} resolves to {addr}, a loopback, private or link-local address")]
    Private { host: String, addr: IpAddr },
}

/// A checked target: the URL and the address to connect to.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: reqwest::Url,
    pub host: String,
    pub addr: SocketAddr,
}

/// Whether `ip` is an address outbound calls must not reach by default.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        // 100.64.0.0/10, carrier-grade NAT; 198.18.0.0/15, benchmarking; 240/4, reserved.
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

/// Parses `raw` as an http(s) URL without credentials.
pub fn parse_url(raw: &str) -> Result<reqwest::Url, TargetError> {
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| TargetError::Invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(TargetError::Invalid(
            "the scheme must be http or https".into(),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(TargetError::Invalid(
            "credentials in the URL are not allowed".into(),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(TargetError::Invalid("the URL has no host".into()));
    }
    Ok(url)
}

/// Resolves `raw` and checks every address it gives.
pub async fn check(raw: &str, allow_private: bool) -> Result<Target, TargetError> {
    let url = parse_url(raw)?;
    let host = url
        .host_str()
        .expect("checked")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
        .await
        .map_err(|_| TargetError::Unresolvable(host.clone()))?
        .collect();
    let first = *addrs
        .first()
        .ok_or_else(|| TargetError::Unresolvable(host.clone()))?;
    if let Some(bad) = addrs.iter().find(|a| !allow_private && is_internal(a.ip())) {
        return Err(TargetError::Private {
            host,
            addr: bad.ip(),
        });
    }
    Ok(Target {
        url,
        host,
        addr: first,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "100.128.0.1"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "https://10.0.0.5/hook",
            "http://[::1]:80/",
        ] {
            assert!(
                matches!(check(url, false).await, Err(TargetError::Private { .. })),
                "{url}"
            );
        }
        assert!(check("http://127.0.0.1:9/x", true).await.is_ok());
        for url in [
            "ftp://example.com/",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(
                matches!(check(url, false).await, Err(TargetError::Invalid(_))),
                "{url}"
            );
        }
    }
}
