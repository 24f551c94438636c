//! The outgoing side of webhooks: which URLs a delivery may go to, and one delivery attempt
//! made safely (no private addresses, no redirects, no proxies, bounded time, bounded reply).
//!
//! A URL is judged twice: when it is registered ([`Targets::check_url`], whose errors are
//! sentences for a 400) and again before every attempt. A host name is resolved at every
//! attempt by [`PublicResolver`], which hands the connector only public addresses; the client
//! keeps no idle connections, so a name that now resolves elsewhere (DNS rebinding) is judged
//! again instead of being reached through an old connection. reqwest does not call the
//! resolver for an IP-literal host, so `check_url` judges those.

use std::{
    error::Error as StdError,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use bytes::{Bytes, BytesMut};
use http_client::{
    Client,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER},
    redirect::Policy,
};
use url::{Host, Url};

/// The longest URL a webhook may have, in characters (before and after normalisation).
pub const MAX_URL_CHARS: usize = 2048;
/// How long one attempt may take, from the first DNS query to the last byte kept.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting (TCP and TLS) may take, within the attempt's time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How much of a response body is kept; the connection is dropped after it.
pub const MAX_RESPONSE_BYTES: usize = 4096;
/// The longest Retry-After honoured.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Which delivery targets are allowed: public HTTPS only, unless
/// WEBHOOK_ALLOW_INSECURE_TARGETS=1 also allows `http://` and local or private addresses
/// (development and tests only: it lets a tenant make the server call its own network).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Targets {
    allow_insecure: bool,
}

/// Why a webhook URL is refused; the message is written for the API's client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be at most {MAX_URL_CHARS} characters")]
    TooLong,
    #[error("url must be an absolute URL such as https://example.com/hooks ({0})")]
    Invalid(url::ParseError),
    #[error("url must use https://")]
    NotHttps,
    #[error("url must use https:// or http://")]
    NotHttp,
    #[error("url must name a host")]
    NoHost,
    #[error("url must not contain a user name or password")]
    UserInfo,
    #[error("url must not point to a private, local or reserved address ({0})")]
    NotPublic(IpAddr),
}

impl Targets {
    /// Public HTTPS targets only: what production runs with.
    pub const PUBLIC_HTTPS: Targets = Targets { allow_insecure: false };

    /// `allow_insecure` is WEBHOOK_ALLOW_INSECURE_TARGETS=1.
    pub fn new(allow_insecure: bool) -> Targets {
        Targets { allow_insecure }
    }

    /// Whether WEBHOOK_ALLOW_INSECURE_TARGETS=1 is in force (worth a warning at start).
    pub fn allows_insecure(self) -> bool {
        self.allow_insecure
    }

    /// Whether a connection to `ip` is allowed.
    pub fn allows(self, ip: IpAddr) -> bool {
        self.allow_insecure || is_public(ip)
    }

    /// Parses and judges a webhook URL; returns it normalised (lowercase scheme and host,
    /// an international host name in its ASCII form). A host name is judged later, by the
    /// addresses it resolves to at each attempt.
    pub fn check_url(self, url: &str) -> Result<Url, TargetError> {
        if url.chars().count() > MAX_URL_CHARS {
            return Err(TargetError::TooLong);
        }
        let parsed = Url::parse(url).map_err(TargetError::Invalid)?;
        match parsed.scheme() {
            "https" => {}
            "http" if self.allow_insecure => {}
            _ if self.allow_insecure => return Err(TargetError::NotHttp),
            _ => return Err(TargetError::NotHttps),
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(TargetError::UserInfo);
        }
        let ip = match parsed.host() {
            None => return Err(TargetError::NoHost),
            Some(Host::Domain("")) => return Err(TargetError::NoHost),
            Some(Host::Domain(_)) => None,
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        };
        if let Some(ip) = ip
            && !self.allows(ip)
        {
            return Err(TargetError::NotPublic(ip));
        }
        // Punycode and percent-encoding can lengthen it: the stored form must fit too.
        if parsed.as_str().chars().count() > MAX_URL_CHARS {
            return Err(TargetError::TooLong);
        }
        Ok(parsed)
    }
}

/// IPv4 networks no webhook may reach: (network, prefix length). Everything else is public.
const NOT_PUBLIC_V4: &[(Ipv4Addr, u32)] = &[
    // "This network" (RFC 791), including the unspecified 0.0.0.0.
    (Ipv4Addr::new(0, 0, 0, 0), 8),
    // Private (RFC 1918).
    (Ipv4Addr::new(10, 0, 0, 0), 8),
    // Shared address space, carrier-grade NAT (RFC 6598); Alibaba Cloud's metadata service
    // is 100.100.100.200.
    (Ipv4Addr::new(100, 64, 0, 0), 10),
    // Loopback.
    (Ipv4Addr::new(127, 0, 0, 0), 8),
    // Link-local (RFC 3927); the cloud metadata service is 169.254.169.254.
    (Ipv4Addr::new(169, 254, 0, 0), 16),
    // Private (RFC 1918).
    (Ipv4Addr::new(172, 16, 0, 0), 12),
    // IETF protocol assignments (RFC 6890).
    (Ipv4Addr::new(192, 0, 0, 0), 24),
    // Documentation, TEST-NET-1 (RFC 5737).
    (Ipv4Addr::new(192, 0, 2, 0), 24),
    // 6to4 relay anycast, deprecated (RFC 7526).
    (Ipv4Addr::new(192, 88, 99, 0), 24),
    // Private (RFC 1918).
    (Ipv4Addr::new(192, 168, 0, 0), 16),
    // Benchmarking (RFC 2544).
    (Ipv4Addr::new(198, 18, 0, 0), 15),
    // Documentation, TEST-NET-2 and TEST-NET-3 (RFC 5737).
    (Ipv4Addr::new(198, 51, 100, 0), 24),
    (Ipv4Addr::new(203, 0, 113, 0), 24),
    // Multicast.
    (Ipv4Addr::new(224, 0, 0, 0), 4),
    // Reserved (RFC 1112), including the broadcast 255.255.255.255.
    (Ipv4Addr::new(240, 0, 0, 0), 4),
];

/// IPv6 networks inside global unicast (2000::/3) that no webhook may reach. Outside
/// 2000::/3 nothing is public (loopback, unspecified, IPv4-compatible ::/96, discard
/// 100::/64, local-use NAT64 64:ff9b:1::/48, SRv6 5f00::/16, unique-local fc00::/7,
/// link-local fe80::/10, site-local fec0::/10, multicast ff00::/8...), except the forms
/// that carry an IPv4 address, judged by it (see `embedded_v4`).
const NOT_PUBLIC_V6: &[(Ipv6Addr, u32)] = &[
    // IETF protocol assignments (RFC 6890), including Teredo 2001::/32 (whose client
    // address is obfuscated: refused rather than decoded) and benchmarking 2001:2::/48.
    (Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0), 23),
    // Documentation (RFC 3849, RFC 9637).
    (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0), 32),
    (Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0), 20),
];

/// Whether `ip` is a public unicast address: not loopback, private, link-local, shared,
/// reserved, documentation, benchmarking, multicast or broadcast, and not a cloud metadata
/// address. An IPv6 address that carries an IPv4 one (mapped, NAT64, 6to4) is judged by
/// the IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => is_public_v4(ip),
        IpAddr::V6(ip) => match embedded_v4(ip) {
            Some(v4) => is_public_v4(v4),
            None => {
                let bits = u128::from(ip);
                in_v6(bits, Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3)
                    && !NOT_PUBLIC_V6.iter().any(|&(net, len)| in_v6(bits, net, len))
            }
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let bits = u32::from(ip);
    !NOT_PUBLIC_V4.iter().any(|&(net, len)| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        bits & mask == u32::from(net)
    })
}

fn in_v6(bits: u128, net: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    bits & mask == u128::from(net)
}

/// The IPv4 address inside an IPv4-mapped (::ffff:0:0/96), NAT64 (64:ff9b::/96, RFC 6052)
/// or 6to4 (2002::/16, RFC 3056) address: a connection to one of them reaches it.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    if in_v6(bits, Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96)
        || in_v6(bits, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
    {
        return Some(Ipv4Addr::from(bits as u32));
    }
    if in_v6(bits, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16) {
        return Some(Ipv4Addr::from((bits >> 80) as u32));
    }
    None
}

/// Resolves a host name once per connection and keeps only the addresses [`Targets`]
/// allows; the connector never sees the others.
#[derive(Debug, Clone, Copy)]
pub struct PublicResolver {
    targets: Targets,
}

impl PublicResolver {
    pub fn new(targets: Targets) -> PublicResolver {
        PublicResolver { targets }
    }
}

/// Why a host name gave no address to connect to.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("no public address for {host}")]
    NoPublicAddress { host: String },
    #[error("could not resolve {host}: {source}")]
    Lookup { host: String, source: io::Error },
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let targets = self.targets;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in its place.
            let found = tokio::net::lookup_host((host.clone(), 0)).await;
            let kept: Vec<SocketAddr> = match found {
                Ok(found) => found.filter(|addr| targets.allows(addr.ip())).collect(),
                Err(source) => return Err(ResolveError::Lookup { host, source }.into()),
            };
            if kept.is_empty() {
                return Err(ResolveError::NoPublicAddress { host }.into());
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The receiver's status, if it answered.
    pub status: Option<u16>,
    /// Why the attempt failed or was cut short, as a short sentence ("timed out after 10 s",
    /// "connection refused", "no public address for example.com", "TLS: ..."). It can come
    /// with a status when reading the response failed.
    pub error: Option<String>,
    /// The receiver's Retry-After (seconds or an HTTP date), at most [`MAX_RETRY_AFTER`]; a
    /// date already past reads as zero.
    pub retry_after: Option<Duration>,
    /// From the start of the attempt to its end.
    pub duration: Duration,
    /// The start of the response body, at most [`MAX_RESPONSE_BYTES`].
    pub body: Bytes,
}

impl Attempt {
    /// The receiver answered 2xx: the event is delivered (even if reading the rest of the
    /// response then failed).
    pub fn success(&self) -> bool {
        matches!(self.status, Some(200..=299))
    }
}

/// Could not build the HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("webhook client TLS settings: {0}")]
    Tls(#[from] rustls::Error),
    #[error("webhook HTTP client: {0}")]
    Client(#[from] http_client::Error),
}

/// Makes delivery attempts: one HTTP client, shared by every attempt.
#[derive(Debug, Clone)]
pub struct Deliverer {
    client: Client,
    targets: Targets,
    timeout: Duration,
}

impl Deliverer {
    /// A deliverer whose attempts take at most [`DEFAULT_TIMEOUT`].
    pub fn new(targets: Targets) -> Result<Deliverer, BuildError> {
        Deliverer::with_timeout(targets, DEFAULT_TIMEOUT)
    }

    /// A deliverer whose attempts take at most `timeout` each.
    pub fn with_timeout(targets: Targets, timeout: Duration) -> Result<Deliverer, BuildError> {
        // As telemetry's exporter: rustls on ring, the system's root certificates.
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_root_certificates({
                    let mut roots = rustls::RootCertStore::empty();
                    let (added, _) =
                        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
                    if added == 0 {
                        tracing::warn!("no root certificates found: webhook deliveries over https will fail");
                    }
                    roots
                })
                .with_no_client_auth();
        let client = Client::builder()
            .tls_backend_preconfigured(tls)
            .dns_resolver(PublicResolver::new(targets))
            // HTTP_PROXY and friends are ignored: a proxy would connect for us, to
            // addresses the resolver never judged.
            .no_proxy()
            // A redirect could lead anywhere (a private address, another scheme): the
            // receiver's 3xx is its answer.
            .redirect(Policy::none())
            .https_only(!targets.allow_insecure)
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            // No idle connections: every attempt resolves and judges the host again.
            .pool_max_idle_per_host(0)
            .user_agent(concat!("tenantry-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Deliverer { client, targets, timeout })
    }

    /// What this deliverer allows (for checking a URL at registration with the same rules).
    pub fn targets(&self) -> Targets {
        self.targets
    }

    /// POSTs `body` as `application/json` to `url` with `headers` (which may replace the
    /// content type), after judging the URL again. Keeps at most [`MAX_RESPONSE_BYTES`] of
    /// the response, then drops the connection. Never fails: the outcome is in [`Attempt`].
    pub async fn attempt(&self, url: &str, headers: &[(&str, String)], body: Bytes) -> Attempt {
        let started = Instant::now();
        let mut attempt = Attempt {
            status: None,
            error: None,
            retry_after: None,
            duration: Duration::ZERO,
            body: Bytes::new(),
        };
        // reqwest's own timeout covers the same span; this one also bounds what is ours.
        if tokio::time::timeout(self.timeout, self.exchange(url, headers, body, &mut attempt)).await.is_err()
        {
            attempt.error = Some(timed_out(self.timeout));
        }
        attempt.duration = started.elapsed();
        attempt
    }

    async fn exchange(&self, url: &str, headers: &[(&str, String)], body: Bytes, out: &mut Attempt) {
        let url = match self.targets.check_url(url) {
            Ok(url) => url,
            Err(err) => return out.error = Some(err.to_string()),
        };
        let mut map = HeaderMap::new();
        map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for (name, value) in headers {
            match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                (Ok(name), Ok(value)) => map.insert(name, value),
                _ => return out.error = Some(format!("invalid header {name:?}")),
            };
        }
        let mut response = match self.client.post(url).headers(map).body(body).send().await {
            Ok(response) => response,
            Err(err) => return out.error = Some(describe(&err, self.timeout)),
        };
        out.status = Some(response.status().as_u16());
        out.retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| retry_after(value.as_bytes(), SystemTime::now()));
        let mut kept = BytesMut::new();
        while kept.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_RESPONSE_BYTES - kept.len();
                    kept.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(err) => {
                    out.error = Some(format!("{} while reading the response", describe(&err, self.timeout)));
                    break;
                }
            }
        }
        out.body = kept.freeze();
        // Dropping the response with its body unread closes the connection: a receiver
        // that streams forever does not keep us.
        drop(response);
    }
}

fn timed_out(timeout: Duration) -> String {
    if timeout.subsec_millis() == 0 {
        format!("timed out after {} s", timeout.as_secs())
    } else {
        format!("timed out after {} ms", timeout.as_millis())
    }
}

/// A short sentence for a failed request, from the first cause we recognise.
fn describe(err: &http_client::Error, timeout: Duration) -> String {
    if err.is_timeout() {
        return timed_out(timeout);
    }
    let mut innermost: &dyn StdError = err;
    let mut cause: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = cause {
        innermost = current;
        if let Some(resolve) = current.downcast_ref::<ResolveError>() {
            return resolve.to_string();
        }
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return format!("TLS: {tls}");
        }
        let mut next = current.source();
        if let Some(io) = current.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::ConnectionRefused => return "connection refused".into(),
                io::ErrorKind::ConnectionReset => return "connection reset by the receiver".into(),
                io::ErrorKind::TimedOut => return timed_out(timeout),
                _ => {}
            }
            // io::Error's `source` skips the error it holds (tokio-rustls reports TLS
            // failures as an io::Error holding the rustls::Error): look at that one next.
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
            }
        }
        cause = next;
    }
    if err.is_connect() {
        format!("could not connect: {innermost}")
    } else {
        format!("request failed: {innermost}")
    }
}

/// Retry-After as delay-seconds or an HTTP date (RFC 9110, 10.2.3), at most
/// [`MAX_RETRY_AFTER`]; anything else is ignored.
fn retry_after(value: &[u8], now: SystemTime) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "later than the cap".
        let seconds = text.parse::<u64>().unwrap_or(u64::MAX);
        return Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener as StdListener;

    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
        task::JoinHandle,
    };

    use super::*;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        let cases: &[(&str, bool)] = &[
            // Public.
            ("8.8.8.8", true),
            ("1.1.1.1", true),
            ("93.184.216.34", true),
            ("100.63.255.255", true),
            ("100.128.0.0", true),
            ("172.15.255.255", true),
            ("172.32.0.0", true),
            ("192.0.1.1", true),
            ("198.17.255.255", true),
            ("198.20.0.0", true),
            ("223.255.255.255", true),
            ("2606:4700:4700::1111", true),
            ("2001:4860:4860::8888", true),
            ("2a00:1450:4001:80b::200e", true),
            ("2001:200::1", true),
            // IPv4 that is not.
            ("0.0.0.0", false),
            ("0.1.2.3", false),
            ("10.0.0.1", false),
            ("10.255.255.255", false),
            ("100.64.0.1", false),
            ("100.127.255.255", false),
            ("100.100.100.200", false),
            ("127.0.0.1", false),
            ("127.255.255.254", false),
            ("169.254.0.1", false),
            ("169.254.169.254", false),
            ("172.16.0.1", false),
            ("172.31.255.255", false),
            ("192.0.0.1", false),
            ("192.0.0.170", false),
            ("192.0.2.1", false),
            ("192.88.99.1", false),
            ("192.168.1.1", false),
            ("198.18.0.1", false),
            ("198.19.255.255", false),
            ("198.51.100.7", false),
            ("203.0.113.9", false),
            ("224.0.0.1", false),
            ("239.255.255.250", false),
            ("240.0.0.1", false),
            ("255.255.255.255", false),
            // IPv6 that is not.
            ("::", false),
            ("::1", false),
            ("fe80::1", false),
            ("febf:ffff::1", false),
            ("fec0::1", false),
            ("fc00::1", false),
            ("fd00:ec2::254", false),
            ("fdff:ffff::1", false),
            ("ff02::1", false),
            ("ff0e::1", false),
            ("100::1", false),
            ("2001:db8::1", false),
            ("3fff::1", false),
            ("5f00::1", false),
            ("2001::1", false),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", false),
            ("2001:2::1", false),
            ("64:ff9b:1::808:808", false),
            // IPv4-compatible (deprecated): refused whatever it carries.
            ("::8.8.8.8", false),
            ("::127.0.0.1", false),
            // Forms that carry an IPv4 address are judged by it.
            ("::ffff:127.0.0.1", false),
            ("::ffff:169.254.169.254", false),
            ("::ffff:10.0.0.1", false),
            ("::ffff:8.8.8.8", true),
            ("64:ff9b::7f00:1", false),
            ("64:ff9b::a9fe:a9fe", false),
            ("64:ff9b::808:808", true),
            ("2002:7f00:1::1", false),
            ("2002:a9fe:a9fe::", false),
            ("2002:c0a8:101::1", false),
            ("2002:808:808::1", true),
        ];
        let wrong: Vec<_> = cases
            .iter()
            .filter(|(ip, public)| is_public(ip.parse().unwrap()) != *public)
            .map(|(ip, public)| format!("{ip} should be {}", if *public { "public" } else { "refused" }))
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn check_url_accepts_public_https_and_says_why_it_refuses_the_rest() {
        let public = Targets::PUBLIC_HTTPS;
        for ok in [
            "https://example.com/hooks",
            "https://example.com:8443/hooks?x=1",
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            // A name is judged when it is resolved, not here.
            "https://localhost/",
        ] {
            assert!(public.check_url(ok).is_ok(), "{ok}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS));
        let refused: &[(&str, &str)] = &[
            ("http://example.com/", "url must use https://"),
            ("ftp://example.com/", "url must use https://"),
            ("HTTP://example.com/", "url must use https://"),
            ("https://127.0.0.1/", "url must not point to a private, local or reserved address (127.0.0.1)"),
            ("https://127.0.0.1./", "url must not point to a private, local or reserved address (127.0.0.1)"),
            ("https://2130706433/", "url must not point to a private, local or reserved address (127.0.0.1)"),
            ("https://0x7f.1/", "url must not point to a private, local or reserved address (127.0.0.1)"),
            ("https://[::1]/", "url must not point to a private, local or reserved address (::1)"),
            (
                "https://[::ffff:127.0.0.1]/",
                "url must not point to a private, local or reserved address (::ffff:127.0.0.1)",
            ),
            (
                "https://169.254.169.254/latest/meta-data/",
                "url must not point to a private, local or reserved address (169.254.169.254)",
            ),
            (
                "https://[fd00:ec2::254]/",
                "url must not point to a private, local or reserved address (fd00:ec2::254)",
            ),
            ("https://user:secret@example.com/", "url must not contain a user name or password"),
            ("https://user@example.com/", "url must not contain a user name or password"),
            ("https://:secret@example.com/", "url must not contain a user name or password"),
            (&long, "url must be at most 2048 characters"),
            (
                "",
                "url must be an absolute URL such as https://example.com/hooks (relative URL without a base)",
            ),
            ("https://", "url must be an absolute URL such as https://example.com/hooks (empty host)"),
            (
                "/hooks",
                "url must be an absolute URL such as https://example.com/hooks (relative URL without a base)",
            ),
            (
                "not a url",
                "url must be an absolute URL such as https://example.com/hooks (relative URL without a base)",
            ),
            (
                "https://exa mple.com/",
                "url must be an absolute URL such as https://example.com/hooks (invalid international domain name)",
            ),
            (
                "https://[::1/",
                "url must be an absolute URL such as https://example.com/hooks (invalid IPv6 address)",
            ),
            ("mailto:someone@example.com", "url must use https://"),
            ("data:text/plain,hi", "url must use https://"),
        ];
        for (url, message) in refused {
            match public.check_url(url) {
                Ok(parsed) => panic!("{url} was accepted as {parsed}"),
                Err(err) => assert_eq!(err.to_string(), *message, "{url}"),
            }
        }
        // Exactly the limit is fine.
        let at_limit =
            format!("https://example.com/{}", "a".repeat(MAX_URL_CHARS - "https://example.com/".len()));
        assert!(public.check_url(&at_limit).is_ok());
    }

    #[test]
    fn an_international_host_name_is_kept_in_its_ascii_form_and_a_bad_one_refused_without_panic() {
        let public = Targets::PUBLIC_HTTPS;
        assert_eq!(
            public.check_url("https://Bücher.example/hooks").unwrap().as_str(),
            "https://xn--bcher-kva.example/hooks"
        );
        assert_eq!(
            public.check_url("https://例え.テスト/").unwrap().host_str(),
            Some("xn--r8jz45g.xn--zckzah")
        );
        for odd in [
            "https://xn--/",
            "https://\u{200b}/",
            "https://a\u{0000}b/",
            "https://％００/",
            "https://💩.la/",
            "https://.../",
        ] {
            // Either answer will do; it must be an answer.
            let _ = public.check_url(odd);
        }
        // Full-width digits normalise to an address, which is then judged.
        assert_eq!(
            public.check_url("https://１２７.０.０.１/").unwrap_err(),
            TargetError::NotPublic("127.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn insecure_targets_allow_http_and_local_addresses_but_still_no_user_info() {
        let insecure = Targets::new(true);
        assert!(insecure.check_url("http://127.0.0.1:8080/hooks").is_ok());
        assert!(insecure.check_url("https://[::1]/").is_ok());
        assert_eq!(
            insecure.check_url("ftp://example.com/").unwrap_err().to_string(),
            "url must use https:// or http://"
        );
        assert_eq!(insecure.check_url("http://u:p@localhost/").unwrap_err(), TargetError::UserInfo);
    }

    #[test]
    fn retry_after_reads_seconds_or_a_date_and_ignores_the_rest() {
        let now = httpdate::parse_http_date("Fri, 04 Dec 2026 03:00:00 GMT").unwrap();
        let cases: &[(&str, Option<u64>)] = &[
            ("120", Some(120)),
            (" 120 ", Some(120)),
            ("0", Some(0)),
            ("86400", Some(86400)),
            ("86401", Some(86400)),
            ("99999999999999999999999999", Some(86400)),
            ("Fri, 04 Dec 2026 03:02:00 GMT", Some(120)),
            ("Friday, 04-Dec-26 03:02:00 GMT", Some(120)),
            ("Fri Dec  4 03:02:00 2026", Some(120)),
            ("Fri, 04 Dec 2026 02:00:00 GMT", Some(0)),
            ("Fri, 11 Dec 2026 03:00:00 GMT", Some(86400)),
            ("-5", None),
            ("1.5", None),
            ("", None),
            ("soon", None),
            ("120s", None),
            ("Fri, 04 Dec 2026 03:02:00", None),
        ];
        for (value, expected) in cases {
            assert_eq!(retry_after(value.as_bytes(), now), expected.map(Duration::from_secs), "{value:?}");
        }
        assert_eq!(retry_after(&[0xff, b'1'], now), None);
    }

    /// Reads one request's head and Content-Length body.
    async fn read_request(stream: &mut TcpStream) -> String {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&seen[..end]).to_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .map_or(0, |n| n.trim().parse::<usize>().unwrap());
                if seen.len() >= end + 4 + length {
                    return String::from_utf8_lossy(&seen).into_owned();
                }
            }
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before sending its request");
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// A plain HTTP server for one connection: reads the request, writes `response`, and
    /// returns the request.
    async fn answer_once(response: &'static str) -> (String, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            stream.write_all(response.as_bytes()).await.unwrap();
            stream.shutdown().await.unwrap();
            request
        });
        (url, server)
    }

    fn insecure(timeout: Duration) -> Deliverer {
        Deliverer::with_timeout(Targets::new(true), timeout).unwrap()
    }

    /// A listener that must never get a connection: checked, without waiting, by `accepted`.
    fn untouched_listener() -> StdListener {
        let listener = StdListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        listener
    }

    fn accepted(listener: &StdListener) -> bool {
        match listener.accept() {
            Ok(_) => true,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => false,
            Err(err) => panic!("{err}"),
        }
    }

    #[tokio::test]
    async fn a_2xx_answer_is_a_success_and_the_request_is_a_json_post_with_our_headers() {
        let (url, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nthank you").await;
        let headers =
            [("x-tenantry-signature", "v1=abc".to_owned()), ("x-tenantry-event", "issue.created".into())];
        let attempt =
            insecure(DEFAULT_TIMEOUT).attempt(&url, &headers, Bytes::from_static(b"{\"a\":1}")).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (Some(200), None));
        assert!(attempt.success());
        assert_eq!(attempt.retry_after, None);
        assert_eq!(&attempt.body[..], b"thank yo");
        let request = server.await.unwrap();
        let lower = request.to_lowercase();
        assert!(request.starts_with("POST /hooks HTTP/1.1\r\n"), "{request}");
        assert!(lower.contains("\r\ncontent-type: application/json\r\n"), "{request}");
        assert!(lower.contains("\r\nx-tenantry-signature: v1=abc\r\n"), "{request}");
        assert!(lower.contains("\r\nx-tenantry-event: issue.created\r\n"), "{request}");
        assert!(
            lower.contains(&format!("\r\nuser-agent: tenantry-webhooks/{}\r\n", env!("CARGO_PKG_VERSION")))
        );
        assert!(request.ends_with("\r\n\r\n{\"a\":1}"), "{request}");
    }

    #[tokio::test]
    async fn a_redirect_is_an_answer_and_is_not_followed() {
        let elsewhere = untouched_listener();
        let response: &'static str = format!(
            "HTTP/1.1 302 Found\r\nlocation: http://{}/\r\ncontent-length: 0\r\n\r\n",
            elsewhere.local_addr().unwrap()
        )
        .leak();
        let (url, server) = answer_once(response).await;
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (Some(302), None));
        assert!(!attempt.success());
        server.await.unwrap();
        assert!(!accepted(&elsewhere), "the redirect was followed");
    }

    #[tokio::test]
    async fn a_4xx_status_comes_back_as_it_is() {
        let (url, server) = answer_once("HTTP/1.1 410 Gone\r\ncontent-length: 4\r\n\r\ngone").await;
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!(
            (attempt.status, attempt.error.as_deref(), &attempt.body[..]),
            (Some(410), None, &b"gone"[..])
        );
        assert!(!attempt.success());
        server.await.unwrap();
    }

    #[tokio::test]
    async fn retry_after_in_seconds_is_read_from_the_answer() {
        let (url, server) =
            answer_once("HTTP/1.1 503 Service Unavailable\r\nretry-after: 120\r\ncontent-length: 0\r\n\r\n")
                .await;
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!(attempt.status, Some(503));
        assert_eq!(attempt.retry_after, Some(Duration::from_secs(120)));
        server.await.unwrap();
    }

    #[tokio::test]
    async fn an_endless_response_is_cut_after_4_kib_and_its_connection_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await.unwrap();
            let chunk = format!("400\r\n{}\r\n", "x".repeat(1024));
            let mut written = 0usize;
            // Until the client hangs up: a write then fails.
            while stream.write_all(chunk.as_bytes()).await.is_ok() {
                written += 1024;
            }
            written
        });
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (Some(200), None));
        assert_eq!(attempt.body.len(), MAX_RESPONSE_BYTES);
        let written = server.await.unwrap();
        assert!(written >= MAX_RESPONSE_BYTES, "{written}");
    }

    #[tokio::test]
    async fn a_receiver_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_request(&mut stream).await;
            // Say nothing; wait for the client to give up and close.
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap_or(0)
        });
        let attempt =
            insecure(Duration::from_millis(300)).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (None, Some("timed out after 300 ms")));
        assert_eq!(server.await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_closed_port_is_connection_refused() {
        let port = StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let attempt =
            insecure(DEFAULT_TIMEOUT).attempt(&format!("http://127.0.0.1:{port}/"), &[], Bytes::new()).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (None, Some("connection refused")));
    }

    #[tokio::test]
    async fn a_receiver_that_does_not_speak_tls_is_a_tls_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
        });
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::new()).await;
        let error = attempt.error.unwrap();
        assert_eq!(error, "TLS: received corrupt message of type InvalidContentType");
        assert_eq!(attempt.status, None);
        server.await.unwrap();
    }

    #[tokio::test]
    async fn localhost_has_no_public_address_and_is_never_connected_to() {
        let listener = untouched_listener();
        let port = listener.local_addr().unwrap().port();
        let deliverer = Deliverer::new(Targets::PUBLIC_HTTPS).unwrap();
        let attempt = deliverer.attempt(&format!("https://localhost:{port}/"), &[], Bytes::new()).await;
        assert_eq!(
            (attempt.status, attempt.error.as_deref()),
            (None, Some("no public address for localhost"))
        );
        assert!(!accepted(&listener), "the attempt connected to localhost");
    }

    #[tokio::test]
    async fn a_private_address_is_refused_before_connecting() {
        let listener = untouched_listener();
        let deliverer = Deliverer::new(Targets::PUBLIC_HTTPS).unwrap();
        for url in [
            format!("https://{}/", listener.local_addr().unwrap()),
            format!("https://[::ffff:127.0.0.1]:{}/", listener.local_addr().unwrap().port()),
            format!("http://{}/", listener.local_addr().unwrap()),
        ] {
            let attempt = deliverer.attempt(&url, &[], Bytes::new()).await;
            assert_eq!(attempt.status, None);
            let error = attempt.error.unwrap();
            assert!(
                error.starts_with("url must not point to a private") || error == "url must use https://",
                "{url}: {error}"
            );
        }
        assert!(!accepted(&listener));
    }

    #[tokio::test]
    async fn a_bad_header_fails_the_attempt_before_sending() {
        let listener = untouched_listener();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let attempt =
            insecure(DEFAULT_TIMEOUT).attempt(&url, &[("bad header", "x".into())], Bytes::new()).await;
        assert_eq!(attempt.error.as_deref(), Some("invalid header \"bad header\""));
        let attempt =
            insecure(DEFAULT_TIMEOUT).attempt(&url, &[("x-ok", "line\nbreak".into())], Bytes::new()).await;
        assert_eq!(attempt.error.as_deref(), Some("invalid header \"x-ok\""));
        assert!(!accepted(&listener));
    }

    /// Where `proxy_variables_are_ignored_in_a_process_that_has_them` tells its child to post.
    const CHILD_URL: &str = "TENANTRY_TEST_WEBHOOK_URL";

    /// reqwest reads proxy variables from the process's environment, which tests share:
    /// setting them here would race with every other test. So this test runs a copy of this
    /// test binary with them set (`in_a_child`), and serves it a proxy and a receiver.
    #[tokio::test]
    async fn proxy_variables_are_ignored_in_a_process_that_has_them() {
        let proxy = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
        // The proxy answers the one request it takes with 418.
        let proxying = tokio::spawn(async move {
            let (mut stream, _) = proxy.accept().await.unwrap();
            let request = read_request(&mut stream).await;
            stream.write_all(b"HTTP/1.1 418 I'm a teapot\r\ncontent-length: 0\r\n\r\n").await.unwrap();
            request
        });
        let (url, server) = answer_once("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let mut child = tokio::process::Command::new(std::env::current_exe().unwrap());
        child.args(["--exact", "webhooks::client::tests::in_a_child", "--ignored", "--nocapture"]);
        for name in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"] {
            child.env(name, &proxy_url);
        }
        for name in ["NO_PROXY", "no_proxy", "REQUEST_METHOD"] {
            child.env_remove(name);
        }
        let output = child.env(CHILD_URL, &url).output().await.unwrap();
        let report =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "{report}");
        assert!(report.contains("1 passed"), "{report}");
        // The control request went through the proxy; the attempt went straight to the server.
        let through_proxy = proxying.await.unwrap();
        assert!(through_proxy.starts_with(&format!("GET {url} HTTP/1.1\r\n")), "{through_proxy}");
        assert!(server.await.unwrap().starts_with("POST /hooks HTTP/1.1\r\n"));
    }

    /// Run by `proxy_variables_are_ignored_in_a_process_that_has_them` only.
    #[tokio::test]
    #[ignore = "runs in a child process with proxy variables set"]
    async fn in_a_child() {
        let Ok(url) = std::env::var(CHILD_URL) else { return };
        // Control: a client that does not opt out goes through the proxy, so the variables
        // are in force in this process.
        let tls =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
        let proxied = Client::builder().tls_backend_preconfigured(tls).build().unwrap();
        assert_eq!(proxied.get(&url).send().await.unwrap().status().as_u16(), 418);
        let attempt = insecure(DEFAULT_TIMEOUT).attempt(&url, &[], Bytes::from_static(b"{}")).await;
        assert_eq!((attempt.status, attempt.error.as_deref()), (Some(200), None));
    }
}
