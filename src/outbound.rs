//! Which addresses outbound HTTP may reach: the guard against server-side request forgery through the URLs
//! this server fetches on a user's behalf (webhook receivers, Make zones). One job: say yes or no to a
//! host, an address or a URL, and build HTTP clients that cannot connect anywhere the answer is no.
//!
//! - **The rule** is [`OutboundPolicy::check_ip`], pure. Refused, whatever the settings: unspecified
//!   (`0.0.0.0/8`, `::`), link-local (`169.254/16`, `fe80::/10`), multicast, broadcast, benchmarking
//!   (`198.18/15`, `2001:2::/48`), documentation, reserved (`240/4`, `192.0.0/24`, Teredo, site-local, anything
//!   outside `2000::/3` in IPv6) and the cloud metadata addresses ([`METADATA_V4`], [`METADATA_V6`]).
//!   Refused unless allowed: loopback (`allow_loopback`), and private `10/8`, `172.16/12`, `192.168/16`,
//!   shared `100.64/10` (CGNAT) and unique-local `fc00::/7` (`allow_private`). IPv6 forms that embed an IPv4
//!   address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are
//!   judged as that IPv4 address.
//! - **Names** ([`OutboundPolicy::check_name`]) are judged by what they always mean:
//!   - `localhost`, `*.localhost` (RFC 6761) and the usual hosts-file aliases are loopback names: allowed only
//!     with `allow_loopback`;
//!   - `metadata`, `metadata.google.internal`, `metadata.goog`, `instance-data`, `instance-data.ec2.internal`
//!     are metadata names, always refused, at request time too: with `allow_private` on, such a name could
//!     resolve to a private proxy in front of the metadata service;
//!   - `*.internal` (ICANN's private-use top-level domain), `*.local` (mDNS), `*.home.arpa` (RFC 8375) and
//!     single-label names (which only a search domain can resolve) are private names: allowed only with
//!     `allow_private`. This is a judgement: such names can only mean an internal host.
//! - **Where it applies.** When a user gives a URL (`notify::validate_url`, `make::api_base_url`),
//!   [`OutboundPolicy::check_host`] judges its literal address or its name, for a clear error at once. That is
//!   a courtesy: DNS can change after it. The real guard is at request time. Before every request
//!   [`OutboundPolicy::check_request`] judges a literal address (reqwest connects to those without resolving)
//!   and refuses metadata names; every other name is resolved by [`PolicyResolver`], which hands reqwest only
//!   the addresses the policy admits. reqwest connects only to those, so the check is on the address actually
//!   connected to, and DNS rebinding (public when added, `127.0.0.1` now) is refused at connect time. URLs are
//!   parsed the WHATWG way first, so `http://2130706433/` and `http://0x7f000001/` are `127.0.0.1`.
//! - **Clients** from [`OutboundPolicy::client_builder`] resolve through the policy, use no proxy (an
//!   `HTTPS_PROXY` from the environment would resolve and connect on our behalf, past the check; a deployment
//!   that must use a proxy has to enforce its own egress rules) and follow no redirects (a redirect to a
//!   literal internal address would not pass the resolver).
//! - Errors name the host or address and its class, never a URL's path or query: webhook URL paths are
//!   credentials.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

/// Cloud metadata services reachable over IPv4: AWS, GCP, Azure and most others (`169.254.169.254`), AWS ECS
/// task metadata (`169.254.170.2`), Alibaba Cloud (`100.100.100.200`) and Azure's WireServer
/// (`168.63.129.16`, a public-range address every Azure VM can reach). Refused whatever the settings.
pub const METADATA_V4: [Ipv4Addr; 4] = [
    Ipv4Addr::new(169, 254, 169, 254),
    Ipv4Addr::new(169, 254, 170, 2),
    Ipv4Addr::new(100, 100, 100, 200),
    Ipv4Addr::new(168, 63, 129, 16),
];

/// Cloud metadata services reachable over IPv6: AWS IMDS (`fd00:ec2::254`) and GCP (`fd20:ce::254`).
pub const METADATA_V6: [Ipv6Addr; 2] =
    [Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x254), Ipv6Addr::new(0xfd20, 0x00ce, 0, 0, 0, 0, 0, 0x254)];

/// Host names that name a metadata service; refused whatever the settings, also at request time.
const METADATA_NAMES: [&str; 5] =
    ["metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"];

/// Host names that mean this machine besides `localhost` and `*.localhost`.
const LOOPBACK_NAMES: [&str; 3] = ["localhost.localdomain", "ip6-localhost", "ip6-loopback"];

/// Suffixes of names that can only mean an internal host.
const PRIVATE_SUFFIXES: [&str; 3] = [".internal", ".local", ".home.arpa"];

/// Where outbound HTTP may connect besides the public internet. The default allows neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Admit loopback addresses and names (`127.0.0.0/8`, `::1`, `localhost`), and plain http to them: for
    /// local development and tests only.
    pub allow_loopback: bool,
    /// Admit private addresses (`10/8`, `172.16/12`, `192.168/16`), shared `100.64/10` and unique-local
    /// `fc00::/7`, and private names: for receivers and Make instances inside your network. Never link-local
    /// or metadata.
    pub allow_private: bool,
}

/// The kind of address (or name) a refusal is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrClass {
    Loopback,
    Unspecified,
    /// RFC 1918.
    Private,
    /// RFC 6598 shared address space (carrier-grade NAT).
    Shared,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    Benchmarking,
    Documentation,
    Reserved,
    /// A cloud metadata service.
    Metadata,
}

impl AddrClass {
    pub fn as_str(self) -> &'static str {
        match self {
            AddrClass::Loopback => "loopback",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Private => "private",
            AddrClass::Shared => "shared (CGNAT)",
            AddrClass::LinkLocal => "link-local",
            AddrClass::UniqueLocal => "unique-local",
            AddrClass::Multicast => "multicast",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Benchmarking => "benchmarking",
            AddrClass::Documentation => "documentation",
            AddrClass::Reserved => "reserved",
            AddrClass::Metadata => "cloud metadata",
        }
    }

    /// The setting that admits this class, if one does.
    pub fn setting(self) -> Option<&'static str> {
        match self {
            AddrClass::Loopback => Some("outbound.allow_loopback"),
            AddrClass::Private | AddrClass::Shared | AddrClass::UniqueLocal => Some("outbound.allow_private"),
            _ => None,
        }
    }

    /// How to admit this class, when a setting can: `"; set outbound.allow_loopback (…) for local development
    /// and tests"`; empty when nothing can.
    pub fn hint(self) -> &'static str {
        match self {
            AddrClass::Loopback => {
                "; set outbound.allow_loopback (MBM_OUTBOUND_ALLOW_LOOPBACK=true) for local development and tests"
            }
            AddrClass::Private | AddrClass::Shared | AddrClass::UniqueLocal => {
                "; set outbound.allow_private (MBM_OUTBOUND_ALLOW_PRIVATE=true) to reach hosts in your own network"
            }
            _ => "",
        }
    }

    fn article(self) -> &'static str {
        match self {
            AddrClass::Unspecified => "an",
            _ => "a",
        }
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a host or address may not be contacted: which one, and its class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The address (as the URL gave it) or the host name.
    pub target: String,
    pub class: AddrClass,
    /// Refused for what the name means, not for an address.
    pub by_name: bool,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = if self.by_name { "name" } else { "address" };
        write!(f, "{} is {} {} {what}", self.target, self.class.article(), self.class)
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn address(ip: IpAddr, class: AddrClass) -> Self {
        Refusal { target: ip.to_string(), class, by_name: false }
    }

    fn name(host: &str, class: AddrClass) -> Self {
        Refusal { target: host.to_owned(), class, by_name: true }
    }

    /// How to admit it, when a setting can (see [`AddrClass::hint`]).
    pub fn hint(&self) -> &'static str {
        self.class.hint()
    }

    /// The rule for a URL given by a user, for a `ValidationError` of its field:
    /// `must not point at a private, loopback, link-local or metadata address (… is a … address); set …`.
    pub fn rule(&self) -> String {
        format!("must not point at a private, loopback, link-local or metadata address ({self}){}", self.hint())
    }
}

/// The error an outbound request fails with when the policy stopped it: `refused: …`. It travels inside
/// reqwest's error (as the resolver's error); [`refusal_in`] finds it there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refused: {0}")]
pub struct Refused(pub String);

impl From<Refusal> for Refused {
    fn from(r: Refusal) -> Self {
        Refused(format!("{r}{}", r.hint()))
    }
}

/// The policy's refusal somewhere in an error's chain of causes (a failed reqwest request), if there is one.
pub fn refusal_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// The class of a non-public address; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddrClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddrClass> {
    use AddrClass::*;
    // Most specific first: metadata inside link-local and shared, broadcast inside reserved.
    const NETS: [([u8; 4], u32, AddrClass); 16] = [
        ([0, 0, 0, 0], 8, Unspecified),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, Shared),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
        ([198, 18, 0, 0], 15, Benchmarking),
        ([192, 88, 99, 0], 24, Reserved),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
    ];
    if METADATA_V4.contains(&ip) {
        return Some(Metadata);
    }
    let n = u32::from(ip);
    NETS.iter().find(|(net, len, _)| n >> (32 - len) == u32::from_be_bytes(*net) >> (32 - len)).map(|(_, _, c)| *c)
}

/// The IPv4 address an IPv6 address stands for: mapped `::ffff:a.b.c.d`, translated `::ffff:0:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d` and 6to4 `2002:AABB:CCDD::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0xffff, 0, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8)),
        _ => None,
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddrClass> {
    use AddrClass::*;
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    if METADATA_V6.contains(&ip) {
        return Some(Metadata);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    // Most specific first: benchmarking and Teredo inside 2001::/23.
    const NETS: [(u128, u32, AddrClass); 11] = [
        (0xfc00 << 112, 7, UniqueLocal),
        (0xfe80 << 112, 10, LinkLocal),
        (0xfec0 << 112, 10, Reserved),
        (0xff00 << 112, 8, Multicast),
        (0x2001_0db8 << 96, 32, Documentation),
        (0x3fff << 112, 20, Documentation),
        (0x2001_0002 << 96, 48, Benchmarking),
        (0x0064_ff9b_0001 << 80, 48, Reserved),
        (0x0100 << 112, 64, Reserved),
        (0x2001 << 112, 23, Reserved),
        // Everything outside global unicast 2000::/3 is unallocated or special.
        (0, 0, Reserved),
    ];
    let n = u128::from(ip);
    let inside = |net: u128, len: u32| len == 0 || n >> (128 - len) == net >> (128 - len);
    match NETS.iter().find(|(net, len, _)| inside(*net, *len)) {
        Some((_, 0, _)) if inside(0x2000 << 112, 3) => None,
        found => found.map(|(_, _, c)| *c),
    }
}

/// `localhost`, `*.localhost` or a hosts-file alias of this machine (lower case, no trailing dot).
fn is_loopback_name(host: &str) -> bool {
    host == "localhost" || host.ends_with(".localhost") || LOOPBACK_NAMES.contains(&host)
}

/// A URL's host as an address, when it is one (the URL parser has already turned `2130706433`, `0x7f000001`
/// and `[::ffff:7f00:1]` into canonical addresses).
fn host_ip(url: &reqwest::Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).parse().ok()
}

/// A host name as compared: lower case, without trailing dots.
fn normal_name(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the URL's host is loopback: a loopback address or name. Plain http is allowed only to these.
pub fn is_loopback_host(url: &reqwest::Url) -> bool {
    match host_ip(url) {
        Some(ip) => classify(ip) == Some(AddrClass::Loopback),
        None => url.host_str().is_some_and(|h| is_loopback_name(&normal_name(h))),
    }
}

impl OutboundPolicy {
    /// Loopback allowed, private not: what local development and the tests run with.
    pub const ALLOW_LOOPBACK: OutboundPolicy = OutboundPolicy { allow_loopback: true, allow_private: false };

    /// Whether addresses (or names) of this class may be contacted.
    pub fn admits(&self, class: AddrClass) -> bool {
        match class {
            AddrClass::Loopback => self.allow_loopback,
            AddrClass::Private | AddrClass::Shared | AddrClass::UniqueLocal => self.allow_private,
            _ => false,
        }
    }

    /// May outbound HTTP connect to `ip`? Public addresses: yes. Otherwise the class decides (see the module
    /// documentation); metadata, link-local and the other special ranges never.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Refusal> {
        match classify(ip) {
            Some(class) if !self.admits(class) => Err(Refusal::address(ip, class)),
            _ => Ok(()),
        }
    }

    /// May a host be contacted by this name? Judges what the name always means (loopback, metadata,
    /// private-use; see the module documentation), not what it resolves to now.
    pub fn check_name(&self, host: &str) -> Result<(), Refusal> {
        let name = normal_name(host);
        let class = if METADATA_NAMES.contains(&name.as_str()) {
            Some(AddrClass::Metadata)
        } else if is_loopback_name(&name) {
            Some(AddrClass::Loopback)
        } else if !name.contains('.') || PRIVATE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            Some(AddrClass::Private)
        } else {
            None
        };
        match class {
            Some(class) if !self.admits(class) => Err(Refusal::name(&name, class)),
            _ => Ok(()),
        }
    }

    /// The check when a user gives a URL: its literal address, or its name. A URL without a host passes
    /// (callers refuse those themselves).
    pub fn check_host(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        match (host_ip(url), url.host_str()) {
            (Some(ip), _) => self.check_ip(ip),
            (None, Some(name)) => self.check_name(name),
            (None, None) => Ok(()),
        }
    }

    /// The check before every request: a literal address (reqwest connects to those without asking the
    /// resolver) and metadata names. Other names are left to [`PolicyResolver`], which judges the addresses
    /// they resolve to at connect time.
    pub fn check_request(&self, url: &reqwest::Url) -> Result<(), Refusal> {
        match (host_ip(url), url.host_str()) {
            (Some(ip), _) => self.check_ip(ip),
            (None, Some(name)) if METADATA_NAMES.contains(&normal_name(name).as_str()) => {
                Err(Refusal::name(&normal_name(name), AddrClass::Metadata))
            }
            _ => Ok(()),
        }
    }

    /// Of what `host` resolved to, the addresses the policy admits; refused when none is left.
    pub fn filter_resolved(&self, host: &str, addrs: &[IpAddr]) -> Result<Vec<IpAddr>, Refused> {
        let admitted: Vec<IpAddr> = addrs.iter().copied().filter(|ip| self.check_ip(*ip).is_ok()).collect();
        if !admitted.is_empty() {
            return Ok(admitted);
        }
        let mut classes: Vec<AddrClass> = Vec::new();
        for class in addrs.iter().filter_map(|ip| classify(*ip)) {
            if !classes.contains(&class) {
                classes.push(class);
            }
        }
        let names: Vec<&str> = classes.iter().map(|c| c.as_str()).collect();
        let shown: Vec<String> = addrs.iter().take(4).map(ToString::to_string).collect();
        let hint = match classes.as_slice() {
            [only] => only.hint(),
            _ => "",
        };
        Err(Refused(format!("{host} resolves only to {} addresses ({}){hint}", names.join(" and "), shown.join(", "))))
    }

    /// A reqwest client builder whose connections obey this policy: names resolved by the system resolver
    /// through [`PolicyResolver`], no proxy, no redirects. Callers add timeouts and the User-Agent, and must
    /// call [`OutboundPolicy::check_request`] before each request (literal addresses bypass the resolver).
    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        self.client_builder_with(Arc::new(SystemLookup))
    }

    /// [`OutboundPolicy::client_builder`] with another name lookup (tests inject one).
    pub fn client_builder_with(&self, lookup: Arc<dyn Lookup>) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(PolicyResolver { policy: *self, lookup })
    }
}

/// The future a [`Lookup`] returns.
pub type LookupFuture = Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;

/// Name resolution as [`PolicyResolver`] uses it: a host name to its addresses.
pub trait Lookup: Send + Sync {
    fn lookup(&self, host: &str) -> LookupFuture;
}

/// The system resolver (`getaddrinfo`, run by tokio on its blocking pool so no runtime thread waits).
#[derive(Debug, Clone, Copy)]
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: &str) -> LookupFuture {
        let host = host.to_owned();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A reqwest resolver that returns only the addresses the policy admits, so a connection can only be made
/// to those. Refuses metadata names without looking them up.
#[derive(Clone)]
pub struct PolicyResolver {
    policy: OutboundPolicy,
    lookup: Arc<dyn Lookup>,
}

impl fmt::Debug for PolicyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyResolver").field("policy", &self.policy).finish_non_exhaustive()
    }
}

impl PolicyResolver {
    pub fn new(policy: OutboundPolicy, lookup: Arc<dyn Lookup>) -> Self {
        Self { policy, lookup }
    }

    /// Resolve `host` and keep what the policy admits (port 0: reqwest puts in the URL's port).
    pub async fn resolve_host(&self, host: &str) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let name = normal_name(host);
        if METADATA_NAMES.contains(&name.as_str()) {
            return Err(Box::new(Refused::from(Refusal::name(&name, AddrClass::Metadata))));
        }
        let addrs = self.lookup.lookup(&name).await?;
        if addrs.is_empty() {
            return Err(format!("{name} has no addresses").into());
        }
        let admitted = self.policy.filter_resolved(&name, &addrs)?;
        Ok(admitted.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect())
    }
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_host(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    const DEFAULT: OutboundPolicy = OutboundPolicy { allow_loopback: false, allow_private: false };
    const BOTH: OutboundPolicy = OutboundPolicy { allow_loopback: true, allow_private: true };
    const PRIVATE: OutboundPolicy = OutboundPolicy { allow_loopback: false, allow_private: true };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("{s} is an address"))
    }

    fn class_of(s: &str) -> Option<AddrClass> {
        classify(ip(s))
    }

    #[test]
    fn every_class_is_recognised() {
        use AddrClass::*;
        for (addr, class) in [
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("::1", Loopback),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.253", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd00::1", UniqueLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            ("2001:2::1", Benchmarking),
            ("240.0.0.1", Reserved),
            ("254.1.2.3", Reserved),
            ("192.0.0.8", Reserved),
            ("192.88.99.1", Reserved),
            ("2001::1", Reserved),
            ("fec0::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("4000::1", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("169.254.169.254", Metadata),
            ("169.254.170.2", Metadata),
            ("100.100.100.200", Metadata),
            ("168.63.129.16", Metadata),
            ("fd00:ec2::254", Metadata),
            ("fd20:ce::254", Metadata),
        ] {
            assert_eq!(class_of(addr), Some(class), "{addr}");
        }
        for public in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001::200e",
            "2001:200::1",
        ] {
            assert_eq!(class_of(public), None, "{public}");
        }
    }

    #[test]
    fn embedded_ipv4_is_judged_as_that_address() {
        use AddrClass::*;
        for (addr, class) in [
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:7f00:1", Loopback),
            ("::ffff:169.254.169.254", Metadata),
            ("::ffff:10.0.0.1", Private),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:0:127.0.0.1", Loopback),
            ("::127.0.0.1", Loopback),
            ("::10.1.2.3", Private),
            ("::2", Unspecified),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::169.254.169.254", Metadata),
            ("64:ff9b::192.168.0.1", Private),
            ("2002:7f00:1::", Loopback),
            ("2002:a9fe:a9fe::1", Metadata),
        ] {
            assert_eq!(class_of(addr), Some(class), "{addr}");
        }
        assert_eq!(class_of("::ffff:8.8.8.8"), None);
        assert_eq!(class_of("64:ff9b::8.8.8.8"), None);
        assert_eq!(class_of("2002:0808:0808::1"), None);
    }

    #[test]
    fn check_ip_admits_only_what_the_settings_allow() {
        for p in [DEFAULT, OutboundPolicy::ALLOW_LOOPBACK, PRIVATE, BOTH] {
            assert_eq!(p.check_ip(ip("93.184.216.34")), Ok(()));
        }
        let e = DEFAULT.check_ip(ip("127.0.0.1")).unwrap_err();
        assert_eq!((e.class, e.to_string()), (AddrClass::Loopback, "127.0.0.1 is a loopback address".to_owned()));
        assert!(e.rule().contains("outbound.allow_loopback"), "{}", e.rule());
        assert_eq!(OutboundPolicy::ALLOW_LOOPBACK.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(OutboundPolicy::ALLOW_LOOPBACK.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(OutboundPolicy::ALLOW_LOOPBACK.check_ip(ip("10.0.0.1")).is_err(), "loopback admits only loopback");
        assert!(PRIVATE.check_ip(ip("127.0.0.1")).is_err(), "private does not admit loopback");
        for private in ["10.0.0.1", "172.16.5.4", "192.168.1.1", "100.64.1.1", "fd00::1", "::ffff:192.168.1.1"] {
            assert!(DEFAULT.check_ip(ip(private)).is_err(), "{private}");
            assert_eq!(PRIVATE.check_ip(ip(private)), Ok(()), "{private}");
        }
        let e = DEFAULT.check_ip(ip("fd00::1")).unwrap_err();
        assert!(e.rule().contains("outbound.allow_private"), "{}", e.rule());
        // Never admitted, whatever the settings: metadata (also inside the allowed ranges), link-local,
        // unspecified and the other special ranges.
        for never in [
            "169.254.169.254",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "100.100.100.200",
            "169.254.1.1",
            "fe80::1",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "198.18.0.1",
            "240.0.0.1",
            "192.0.2.1",
        ] {
            let e = BOTH.check_ip(ip(never)).unwrap_err();
            assert_eq!(e.hint(), "", "{never}: no setting admits {}", e.class);
        }
        let e = BOTH.check_ip(ip("169.254.169.254")).unwrap_err();
        assert_eq!(e.to_string(), "169.254.169.254 is a cloud metadata address");
        assert_eq!(BOTH.check_ip(ip("::")).unwrap_err().to_string(), ":: is an unspecified address");
    }

    #[test]
    fn names_are_judged_by_what_they_always_mean() {
        for (name, class) in [
            ("localhost", AddrClass::Loopback),
            ("LOCALHOST.", AddrClass::Loopback),
            ("app.localhost", AddrClass::Loopback),
            ("localhost.localdomain", AddrClass::Loopback),
            ("metadata.google.internal", AddrClass::Metadata),
            ("metadata", AddrClass::Metadata),
            ("metadata.google.internal.", AddrClass::Metadata),
            ("db.corp.internal", AddrClass::Private),
            ("printer.local", AddrClass::Private),
            ("nas.home.arpa", AddrClass::Private),
            ("intranet", AddrClass::Private),
        ] {
            let e = DEFAULT.check_name(name).unwrap_err();
            assert_eq!((e.class, e.by_name), (class, true), "{name}");
        }
        assert_eq!(DEFAULT.check_name("localhost").unwrap_err().to_string(), "localhost is a loopback name");
        for public in ["hooks.slack.com", "eu1.make.com", "localhost.example.com", "internal.example.com"] {
            assert_eq!(DEFAULT.check_name(public), Ok(()), "{public}");
        }
        assert_eq!(OutboundPolicy::ALLOW_LOOPBACK.check_name("localhost"), Ok(()));
        assert!(OutboundPolicy::ALLOW_LOOPBACK.check_name("db.internal").is_err());
        assert_eq!(PRIVATE.check_name("db.internal"), Ok(()));
        assert_eq!(BOTH.check_name("metadata.google.internal").unwrap_err().class, AddrClass::Metadata);
    }

    #[test]
    fn urls_are_judged_after_whatwg_normalisation() {
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        for (given, shown) in [
            ("http://2130706433/", "127.0.0.1"),
            ("http://0x7f000001/", "127.0.0.1"),
            ("http://0177.0.0.1/", "127.0.0.1"),
            ("http://127.1/", "127.0.0.1"),
            ("https://[::ffff:169.254.169.254]/", "::ffff:169.254.169.254"),
            ("https://[0:0:0:0:0:0:0:1]/", "::1"),
            ("http://127.0.0.1./", "127.0.0.1"),
        ] {
            let e = DEFAULT.check_host(&url(given)).unwrap_err();
            assert_eq!(e.target, shown, "{given}");
            assert_eq!(DEFAULT.check_request(&url(given)).unwrap_err(), e, "{given}");
        }
        for name in ["http://LOCALHOST./", "http://loc%61lhost/", "http://ⓛocalhost/"] {
            let e = DEFAULT.check_host(&url(name));
            assert_eq!(e.map_err(|e| e.class), Err(AddrClass::Loopback), "{name}");
        }
        assert!(is_loopback_host(&url("http://2130706433/")));
        assert!(is_loopback_host(&url("http://localhost:8080/")));
        assert!(!is_loopback_host(&url("http://localhost.example.com/")));
        // At request time a name is left to the resolver, except a metadata name.
        assert_eq!(DEFAULT.check_request(&url("http://localhost:5432/")), Ok(()));
        assert!(DEFAULT.check_host(&url("http://localhost:5432/")).is_err());
        assert_eq!(
            BOTH.check_request(&url("http://metadata.google.internal/")).unwrap_err().class,
            AddrClass::Metadata
        );
    }

    /// A lookup with fixed answers that counts its calls; a name may answer differently each time.
    #[derive(Default)]
    struct FakeLookup {
        answers: Mutex<HashMap<String, Vec<Vec<IpAddr>>>>,
        calls: Mutex<Vec<String>>,
    }

    impl FakeLookup {
        fn answer(self, host: &str, rounds: &[&[&str]]) -> Self {
            let rounds = rounds.iter().map(|r| r.iter().map(|a| ip(a)).collect()).collect();
            self.answers.lock().unwrap().insert(host.to_owned(), rounds);
            self
        }
    }

    impl Lookup for FakeLookup {
        fn lookup(&self, host: &str) -> LookupFuture {
            self.calls.lock().unwrap().push(host.to_owned());
            let mut answers = self.answers.lock().unwrap();
            let out = match answers.get_mut(host) {
                Some(rounds) if rounds.len() > 1 => Ok(rounds.remove(0)),
                Some(rounds) => Ok(rounds[0].clone()),
                None => Err(std::io::Error::other(format!("{host}: no such host"))),
            };
            Box::pin(std::future::ready(out))
        }
    }

    #[tokio::test]
    async fn the_resolver_returns_only_admitted_addresses() {
        let lookup = Arc::new(
            FakeLookup::default()
                .answer("loop.example", &[&["127.0.0.1", "::1"]])
                .answer("mixed.example", &[&["10.0.0.7", "93.184.216.34", "fd00::9", "2606:4700::1111"]])
                .answer("meta.example", &[&["169.254.169.254"]]),
        );
        let resolver = PolicyResolver::new(DEFAULT, lookup.clone());
        let e = resolver.resolve_host("loop.example").await.unwrap_err();
        let refused = e.downcast_ref::<Refused>().expect("a policy refusal");
        assert!(
            refused
                .to_string()
                .starts_with("refused: loop.example resolves only to loopback addresses (127.0.0.1, ::1)"),
            "{refused}"
        );
        assert!(refused.to_string().contains("outbound.allow_loopback"), "{refused}");
        let got = resolver.resolve_host("mixed.example").await.unwrap();
        let got: Vec<IpAddr> = got.iter().map(SocketAddr::ip).collect();
        assert_eq!(got, vec![ip("93.184.216.34"), ip("2606:4700::1111")], "only the public addresses");
        let with_private = PolicyResolver::new(PRIVATE, lookup.clone()).resolve_host("mixed.example").await.unwrap();
        assert_eq!(with_private.len(), 4);
        let e = PolicyResolver::new(BOTH, lookup.clone()).resolve_host("meta.example").await.unwrap_err();
        assert!(e.to_string().contains("cloud metadata"), "{e}");
        // Metadata names are refused without asking DNS.
        let before = lookup.calls.lock().unwrap().len();
        let e = PolicyResolver::new(BOTH, lookup.clone()).resolve_host("metadata.google.internal").await.unwrap_err();
        assert!(e.downcast_ref::<Refused>().is_some(), "{e}");
        assert_eq!(lookup.calls.lock().unwrap().len(), before);
        // A failed lookup is a lookup error, not a refusal.
        let e = resolver.resolve_host("nowhere.example").await.unwrap_err();
        assert!(e.downcast_ref::<Refused>().is_none() && e.to_string().contains("no such host"), "{e}");
    }

    #[tokio::test]
    async fn every_resolution_is_judged_again_so_rebinding_is_refused() {
        // Public when first asked (say, when the URL was added), loopback a moment later.
        let lookup = Arc::new(FakeLookup::default().answer("rebind.example", &[&["93.184.216.34"], &["127.0.0.1"]]));
        let resolver = PolicyResolver::new(DEFAULT, lookup.clone());
        assert_eq!(
            resolver.resolve_host("rebind.example").await.unwrap(),
            vec![SocketAddr::new(ip("93.184.216.34"), 0)]
        );
        let e = resolver.resolve_host("rebind.example").await.unwrap_err();
        assert!(e.to_string().contains("resolves only to loopback"), "{e}");
        assert_eq!(lookup.calls.lock().unwrap().len(), 2, "each connection resolves anew");
        // Judging a URL when it is given does not resolve it: that is left to connect time.
        let url = reqwest::Url::parse("https://rebind.example/hook").unwrap();
        assert_eq!(DEFAULT.check_host(&url), Ok(()));
        assert_eq!(lookup.calls.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_client_cannot_connect_where_the_policy_refuses() {
        // A listener on loopback that counts connections; the name resolves to it.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(Mutex::new(0usize));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((_socket, _)) = listener.accept().await {
                *count.lock().unwrap() += 1;
            }
        });
        let lookup = Arc::new(FakeLookup::default().answer("rebind.example", &[&["127.0.0.1"]]));
        let client = DEFAULT.client_builder_with(lookup).build().unwrap();
        let e = client.get(format!("http://rebind.example:{port}/secret-path")).send().await.unwrap_err();
        let refused = refusal_in(&e).expect("the policy's refusal is in the error chain");
        assert!(refused.to_string().contains("rebind.example resolves only to loopback"), "{refused}");
        assert_eq!(*accepted.lock().unwrap(), 0, "no connection was made");
    }
}
