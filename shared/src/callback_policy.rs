//! Where the OP may send a ping or push notification. The endpoint is the client's choice, and
//! the OP's own network position (inside AWS, next to the instance metadata service, maybe next
//! to private services) is not the client's to use: an endpoint may only reach public addresses.
//! Registration refuses what it can tell from the URL and the name's current answers; delivery
//! checks again the addresses it is about to connect to, since DNS answers change.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use url::{Host, Url};

use crate::ports::Resolver;

/// How long registration waits for the endpoint's name to resolve before accepting it unchecked
/// (delivery checks every time anyway); long enough for a cold DNS cache, short enough that a
/// registration never hangs on a slow authoritative server.
pub const REGISTRATION_LOOKUP: Duration = Duration::from_secs(2);

/// The addresses a notification may be delivered to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressPolicy {
    /// An OP serving the world: public unicast addresses only.
    PublicOnly,
    /// An OP on the developer's machine (`Config::runs_locally`), where the RP under development
    /// listens on loopback: public addresses and loopback.
    AllowLoopback,
}

impl AddressPolicy {
    /// The policy of an OP that runs locally (`Config::runs_locally`) or not. There is no other
    /// way to widen it: a deployed OP never calls private addresses.
    pub fn for_op(runs_locally: bool) -> Self {
        if runs_locally {
            Self::AllowLoopback
        } else {
            Self::PublicOnly
        }
    }

    pub fn admits(self, ip: IpAddr) -> bool {
        is_public(ip) || (self == Self::AllowLoopback && ip.to_canonical().is_loopback())
    }
}

/// IPv4 blocks that are not reachable public unicast (RFC 6890 and its updates).
const NOT_PUBLIC_V4: &[(Ipv4Addr, u32)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8),       // "this network"
    (Ipv4Addr::new(10, 0, 0, 0), 8),      // private
    (Ipv4Addr::new(100, 64, 0, 0), 10),   // shared address space (CGNAT)
    (Ipv4Addr::new(127, 0, 0, 0), 8),     // loopback
    (Ipv4Addr::new(169, 254, 0, 0), 16),  // link-local, instance metadata 169.254.169.254
    (Ipv4Addr::new(172, 16, 0, 0), 12),   // private
    (Ipv4Addr::new(192, 0, 0, 0), 24),    // IETF protocol assignments
    (Ipv4Addr::new(192, 0, 2, 0), 24),    // documentation
    (Ipv4Addr::new(192, 168, 0, 0), 16),  // private
    (Ipv4Addr::new(198, 18, 0, 0), 15),   // benchmarking
    (Ipv4Addr::new(198, 51, 100, 0), 24), // documentation
    (Ipv4Addr::new(203, 0, 113, 0), 24),  // documentation
    (Ipv4Addr::new(224, 0, 0, 0), 4),     // multicast
    (Ipv4Addr::new(240, 0, 0, 0), 4),     // reserved, broadcast
];

/// IPv6 blocks that are not reachable public unicast. Addresses embedding an IPv4 address are
/// judged by it before this list (`embedded_ipv4`), `::` and `::1` among them.
const NOT_PUBLIC_V6: &[(Ipv6Addr, u32)] = &[
    (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48), // local-use NAT64
    (Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0), 64),     // discard-only
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 32),    // Teredo: a tunnel to a hidden IPv4
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32), // documentation
    (Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0), 7),     // unique local, AWS metadata fd00:ec2::254
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10),    // link-local
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10),    // site-local (deprecated, still routed)
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8),     // multicast
];

/// Whether `ip` is a public unicast address: none of loopback, private, link-local (the cloud
/// metadata services among them), CGNAT, unique local, multicast, documentation or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match embedded_ipv4(v6) {
            Some(v4) => is_public_v4(v4),
            None => !NOT_PUBLIC_V6
                .iter()
                .any(|(net, len)| in_prefix(u128::from(v6), u128::from(*net), *len, 128)),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !NOT_PUBLIC_V4.iter().any(|(net, len)| {
        in_prefix(
            u128::from(u32::from(ip)),
            u128::from(u32::from(*net)),
            *len,
            32,
        )
    })
}

fn in_prefix(addr: u128, net: u128, len: u32, width: u32) -> bool {
    (addr ^ net) >> (width - len) == 0
}

/// The IPv4 address an IPv6 address leads to, for the forms a connection to which reaches that
/// IPv4 host: IPv4-mapped and -translated (`::ffff:a.b.c.d`, `::ffff:0:a.b.c.d`),
/// IPv4-compatible (`::a.b.c.d`, `::` and `::1` included, which so land in 0.0.0.0/8), NAT64
/// (`64:ff9b::a.b.c.d`) and 6to4 (`2002:aabb:ccdd::`).
fn embedded_ipv4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let ipv4 = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match ip.segments() {
        [0, 0, 0, 0, 0, 0xffff, high, low]
        | [0, 0, 0, 0, 0xffff, 0, high, low]
        | [0, 0, 0, 0, 0, 0, high, low]
        | [0x64, 0xff9b, 0, 0, 0, 0, high, low]
        | [0x2002, high, low, ..] => Some(ipv4(high, low)),
        _ => None,
    }
}

/// Why registration refuses an endpoint's host, in the words of `error_description`.
pub const USERINFO: &str =
    "backchannel_client_notification_endpoint must not carry a user name or password";
pub const IP_LITERAL: &str =
    "backchannel_client_notification_endpoint must name its host by a DNS name, not an IP address";
pub const LOCAL_NAME: &str = "backchannel_client_notification_endpoint must name a public host, not a local, internal or single-label name";
pub const RESOLVES_INTERNALLY: &str = "backchannel_client_notification_endpoint resolves to an address that is not public (loopback, private, link-local, shared, unique local or metadata)";

/// Names that never lead to a public host: `localhost` (RFC 6761), `.local` (mDNS, RFC 6762),
/// `.internal` (private use, and the cloud metadata names such as `metadata.google.internal`),
/// `.home.arpa` (RFC 8375).
const LOCAL_SUFFIXES: &[&str] = &["localhost", "local", "internal", "home.arpa"];

/// The DNS name of a notification endpoint a public OP may register, or why it may not: no
/// userinfo, no IP literal (the `url` crate has already turned `0x7f.1` or `2130706433` into one),
/// no local, internal or single-label name. What the name resolves to is `resolves_internally`'s.
pub fn registrable_host(url: &Url) -> Result<&str, &'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        return Err(USERINFO);
    }
    let name = match url.host() {
        Some(Host::Domain(name)) => name,
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(IP_LITERAL),
        None => return Err(LOCAL_NAME),
    };
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    let local = !bare.contains('.')
        || LOCAL_SUFFIXES
            .iter()
            .any(|s| bare == *s || bare.ends_with(&format!(".{s}")));
    if local { Err(LOCAL_NAME) } else { Ok(name) }
}

/// Whether `host` resolves now, within `REGISTRATION_LOOKUP`, to any address that is not public.
/// A name that does not resolve (yet, or not from here) is not refused: delivery resolves it
/// again and refuses such addresses then.
pub async fn resolves_internally(resolver: &dyn Resolver, host: &str) -> bool {
    resolves_outside(resolver, host, AddressPolicy::PublicOnly).await
}

/// Whether `host` resolves now, within `REGISTRATION_LOOKUP`, to any address `policy` does not
/// admit (a local OP's admits loopback too). A name that does not resolve is not refused.
pub async fn resolves_outside(resolver: &dyn Resolver, host: &str, policy: AddressPolicy) -> bool {
    match tokio::time::timeout(REGISTRATION_LOOKUP, resolver.resolve(host)).await {
        Ok(Ok(addresses)) => addresses.into_iter().any(|ip| !policy.admits(ip)),
        Ok(Err(_)) | Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_ipv4_ranges_are_not_public() {
        for addr in [
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.1",
            "169.254.169.254",
            "169.254.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!is_public(ip(addr)), "{addr} counted as public");
        }
    }

    #[test]
    fn addresses_next_to_internal_ranges_are_public() {
        for addr in [
            "1.1.1.1",
            "9.255.255.255",
            "11.0.0.1",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.1",
            "169.253.255.255",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.167.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "93.184.216.34",
        ] {
            assert!(is_public(ip(addr)), "{addr} counted as not public");
        }
    }

    #[test]
    fn internal_ipv6_ranges_are_not_public() {
        for addr in [
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "fc00::1",
            "fd00:ec2::254",
            "ff02::1",
            "2001:db8::1",
            "2001:0:4136:e378::1",
            "100::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!is_public(ip(addr)), "{addr} counted as public");
        }
    }

    #[test]
    fn ipv6_embedding_an_internal_ipv4_is_judged_by_it() {
        for addr in [
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:0:192.168.1.1",
            "::10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::169.254.169.254",
            "64:ff9b::a00:1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_public(ip(addr)), "{addr} counted as public");
        }
        for addr in ["::ffff:8.8.8.8", "64:ff9b::808:808", "2002:808:808::1"] {
            assert!(is_public(ip(addr)), "{addr} counted as not public");
        }
    }

    #[test]
    fn global_ipv6_is_public() {
        for addr in [
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
            "2001:4860::1",
        ] {
            assert!(is_public(ip(addr)), "{addr} counted as not public");
        }
    }

    #[test]
    fn loopback_is_admitted_only_for_an_op_that_runs_locally() {
        let local = AddressPolicy::for_op(true);
        let public = AddressPolicy::for_op(false);
        for addr in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert!(local.admits(ip(addr)), "{addr}");
            assert!(!public.admits(ip(addr)), "{addr}");
        }
        for addr in [
            "10.0.0.1",
            "169.254.169.254",
            "192.168.1.1",
            "fd00:ec2::254",
        ] {
            assert!(!local.admits(ip(addr)), "{addr}");
        }
        assert!(public.admits(ip("93.184.216.34")) && local.admits(ip("93.184.216.34")));
    }

    fn host(raw: &str) -> Result<String, &'static str> {
        registrable_host(&Url::parse(raw).unwrap()).map(str::to_owned)
    }

    #[test]
    fn ip_literal_hosts_are_refused_in_every_spelling() {
        for raw in [
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://192.168.1.1/",
            "https://93.184.216.34/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::1]/",
            "https://0x7f.1/",
            "https://2130706433/",
            "https://127.1/",
            "https://0177.0.0.1/",
            "https://0xa9fea9fe/",
        ] {
            assert_eq!(host(raw), Err(IP_LITERAL), "{raw}");
        }
    }

    #[test]
    fn userinfo_is_refused() {
        for raw in [
            "https://user:pw@rp.example.com/",
            "https://user@rp.example.com/",
            "https://:pw@rp.example.com/",
        ] {
            assert_eq!(host(raw), Err(USERINFO), "{raw}");
        }
    }

    #[test]
    fn local_internal_and_single_label_names_are_refused() {
        for raw in [
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://metadata.google.internal/",
            "https://metadata.google.internal./computeMetadata/v1/",
            "https://printer.local/",
            "https://nas.home.arpa/",
            "https://intranet/",
            "https://intranet./",
        ] {
            assert_eq!(host(raw), Err(LOCAL_NAME), "{raw}");
        }
    }

    #[test]
    fn public_names_are_registrable() {
        assert_eq!(
            host("https://rp.example.com:8443/cb").as_deref(),
            Ok("rp.example.com")
        );
        assert_eq!(
            host("https://notify.internal-bank.com/").as_deref(),
            Ok("notify.internal-bank.com")
        );
    }
}
