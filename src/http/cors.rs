//! CORS for browser front ends on other origins (`CORS_ALLOWED_ORIGINS`): which origins
//! may read our responses, and the preflight answered for them. [`super::observe`] asks
//! this module before a request is served and decorates every response after it.
//!
//! - Unset: no CORS header on any response (a browser on another origin can read nothing).
//! - A preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) from an allowed
//!   origin, for a path the route table has, is answered 204 before authentication, rate
//!   limits and parameter checks, with that route's methods (the `Allow` list): never one
//!   list for every path. A method the route lacks gets the same answer, without it, and
//!   the browser refuses the request itself (its console names the method).
//! - Every response to an allowed origin, whatever its status (401, 429 and problems
//!   included, so a front end can read them), says so and exposes the headers our API
//!   speaks in (`ETag`, `Link`, `RateLimit-*`, ...).
//! - A disallowed origin (any other, `null`, a non-ASCII or repeated `Origin`) is served
//!   exactly as without CORS: its preflight gets what OPTIONS gets without one (405 with
//!   `Allow`), its requests their normal answer, without CORS headers; the browser then
//!   keeps the response from the page.
//! - Since the headers depend on `Origin`, `Origin` is appended to `Vary` of every
//!   response (after the identity headers `/api` responses already vary by), so no cache
//!   hands one origin's answer to another. With `*` the headers are the same for everyone
//!   and nothing varies.
//!
//! Why not poem's `Cors` middleware (poem 3.1): it answers a disallowed origin with a
//! plain-text 403 (not our problem+json, and not what the request would have got), a
//! preflight with 200 and one method list for every path, and it sets `Vary` instead of
//! appending to it, dropping the identity headers every `/api` response must vary by
//! (ARCHITECTURE.md, "Every response that depends on the caller is private to it"). What
//! we need is a few dozen lines over the route table we already have.
//!
//! No `Access-Control-Allow-Credentials`: the API reads no cookies, only explicit headers.

use std::net::Ipv6Addr;

use poem::{
    Response,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header},
};

use crate::config::AuthMode;

/// The request headers a front end may send: the identity headers, the bearer token, and
/// what the API reads (bodies, preconditions, idempotency, request ids, trace context,
/// the event stream's resume point).
pub const ALLOWED_HEADERS: &str = "x-organization-id, x-user-id, x-user-role, authorization, content-type, \
     if-match, if-none-match, idempotency-key, x-request-id, traceparent, tracestate, last-event-id";
/// The response headers a front end's script may read beyond the CORS-safelisted ones.
pub const EXPOSED_HEADERS: &str = "ETag, Link, Location, Retry-After, RateLimit-Limit, RateLimit-Remaining, \
     RateLimit-Reset, Idempotent-Replayed, x-request-id, Server-Timing";
/// How long a browser may reuse a preflight's answer: Chromium's ceiling (2 hours;
/// Firefox allows a day). The answer only changes with a new release's routes.
pub const MAX_AGE_SECONDS: u32 = 7200;

const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");

/// Why CORS_ALLOWED_ORIGINS was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum CorsSetupError {
    #[error(
        "CORS_ALLOWED_ORIGINS: {origin:?} {problem}; each origin is scheme://host[:port], as a \
         browser sends it in Origin, e.g. https://app.example.com or http://localhost:3000"
    )]
    Origin { origin: String, problem: &'static str },
    #[error(
        "CORS_ALLOWED_ORIGINS=* with AUTH_MODE=headers would let every web page a developer \
         opens act as any user of any organization through their browser: list the front \
         end's origins, switch to AUTH_MODE=jwt, or set ALLOW_HEADER_AUTH_ON_NETWORK=1 if every \
         page that can reach the service may act as anyone"
    )]
    AnyOriginWithHeaderAuth,
}

/// The CORS policy: every origin (`*`), or a list of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    AnyOrigin,
    /// Serialized as browsers do: lowercase scheme and host, no default port.
    Origins(Vec<String>),
}

/// What the policy makes of one request, decided before it is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Its page may read the response: `Access-Control-Allow-Origin` says this.
    Allowed(HeaderValue),
    /// Served as if there were no CORS; only `Vary: Origin` is added.
    NotAllowed,
}

impl Cors {
    /// The policy the settings ask for: `None` when CORS_ALLOWED_ORIGINS is unset or lists
    /// nothing.
    pub fn from_settings(
        origins: Option<&str>,
        mode: AuthMode,
        allow_header_auth_on_network: bool,
    ) -> Result<Option<Cors>, CorsSetupError> {
        let Some(cors) = origins.map(Cors::parse).transpose()?.flatten() else { return Ok(None) };
        if cors == Cors::AnyOrigin && mode == AuthMode::Headers {
            if !allow_header_auth_on_network {
                return Err(CorsSetupError::AnyOriginWithHeaderAuth);
            }
            tracing::warn!(
                "CORS_ALLOWED_ORIGINS=* with AUTH_MODE=headers (ALLOW_HEADER_AUTH_ON_NETWORK=1): \
                 any web page can act as any user of any organization through a visitor's browser"
            );
        }
        Ok(Some(cors))
    }

    /// Comma-separated origins, or `*` alone. Empty entries are skipped (a trailing comma).
    pub fn parse(list: &str) -> Result<Option<Cors>, CorsSetupError> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|entry| !entry.is_empty()).collect();
        if entries.is_empty() {
            return Ok(None);
        }
        if entries.contains(&"*") {
            if entries.len() > 1 {
                return Err(CorsSetupError::Origin {
                    origin: "*".into(),
                    problem: "stands alone (it already allows every origin)",
                });
            }
            return Ok(Some(Cors::AnyOrigin));
        }
        let mut origins = Vec::with_capacity(entries.len());
        for entry in entries {
            let origin = serialize_origin(entry)
                .map_err(|problem| CorsSetupError::Origin { origin: entry.to_owned(), problem })?;
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        }
        Ok(Some(Cors::Origins(origins)))
    }

    /// Whether the request's page may read the response. With a list, the request must
    /// carry exactly one `Origin`, equal to a listed one (scheme and host compared without
    /// regard to ASCII case, as URLs do); the answer names it as it was sent.
    pub fn verdict(&self, headers: &HeaderMap) -> Verdict {
        let origins = match self {
            Cors::AnyOrigin => return Verdict::Allowed(HeaderValue::from_static("*")),
            Cors::Origins(origins) => origins,
        };
        let mut sent = headers.get_all(header::ORIGIN).iter();
        let (Some(origin), None) = (sent.next(), sent.next()) else { return Verdict::NotAllowed };
        if origins.iter().any(|allowed| allowed.as_bytes().eq_ignore_ascii_case(origin.as_bytes())) {
            Verdict::Allowed(origin.clone())
        } else {
            Verdict::NotAllowed
        }
    }

    /// The headers every response gets under this policy: for an allowed origin the
    /// origin, the exposed headers and `Timing-Allow-Origin`; `Origin` appended to `Vary`
    /// unless the policy is `*` (then nothing depends on it).
    pub fn decorate(&self, verdict: &Verdict, headers: &mut HeaderMap) {
        if let Verdict::Allowed(origin) = verdict {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSED_HEADERS));
            headers.insert(TIMING_ALLOW_ORIGIN, origin.clone());
        }
        if *self != Cors::AnyOrigin {
            append_to_vary(headers, "Origin");
        }
    }
}

/// Whether a request is a CORS preflight: OPTIONS with `Origin` and
/// `Access-Control-Request-Method` (OPTIONS without them is an ordinary request).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS
        && headers.contains_key(header::ORIGIN)
        && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The answer to an allowed preflight for a route with `methods` (its `Allow` list,
/// whatever method the preflight asked about). [`Cors::decorate`] adds the origin.
pub fn preflight_answer(methods: &str) -> Response {
    let mut response = Response::builder().status(StatusCode::NO_CONTENT).finish();
    let headers = response.headers_mut();
    if let Ok(methods) = HeaderValue::try_from(methods) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
    }
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(ALLOWED_HEADERS));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE_SECONDS.into());
    response
}

/// Appends `name` to `Vary`, keeping every name already there (joined into one field
/// line), unless it is listed already or `Vary: *` says everything varies. Never replaces.
fn append_to_vary(headers: &mut HeaderMap, name: &'static str) {
    let lines: Option<Vec<&str>> = headers.get_all(header::VARY).iter().map(|v| v.to_str().ok()).collect();
    let Some(lines) = lines else {
        // A line that is not text (not one of ours): left as it is, the name on a line of its own.
        headers.append(header::VARY, HeaderValue::from_static(name));
        return;
    };
    let mut names = lines.iter().flat_map(|line| line.split(',')).map(str::trim).filter(|n| !n.is_empty());
    if names.clone().any(|n| n == "*" || n.eq_ignore_ascii_case(name)) {
        return;
    }
    let joined = names.by_ref().chain([name]).collect::<Vec<_>>().join(", ");
    let joined =
        HeaderValue::try_from(joined).expect("names from text field lines, joined by commas, are text");
    headers.insert(header::VARY, joined);
}

/// An origin as a browser serializes it in `Origin`: `scheme://host[:port]`, scheme and
/// host in lowercase, the scheme's default port left out. Anything else is refused with
/// the reason, so a typo fails at start rather than silently never matching.
fn serialize_origin(text: &str) -> Result<String, &'static str> {
    if text.eq_ignore_ascii_case("null") {
        return Err(
            "is what sandboxed frames and file: pages of any site send: allowing it would allow them all",
        );
    }
    let Some((scheme, rest)) = text.split_once("://") else { return Err("has no scheme://") };
    let mut scheme_chars = scheme.chars();
    let scheme_ok = scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err("has no valid scheme");
    }
    let scheme = scheme.to_ascii_lowercase();
    if rest.contains(['/', '?', '#']) {
        return Err("has a path, query or fragment (an origin has none, not even a trailing /)");
    }
    if rest.contains('@') {
        return Err("has user information (an origin has none)");
    }
    if rest.contains('*') {
        return Err("has a wildcard: list each origin (or `*` alone for every origin)");
    }
    if !rest.is_ascii() {
        return Err("has a host that is not ASCII: write its xn-- (punycode) form, as browsers send it");
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else { return Err("has an unclosed [") };
        if address.parse::<Ipv6Addr>().is_err() {
            return Err("has an invalid IPv6 address");
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("has something after the IPv6 address")?),
        };
        (format!("[{}]", address.to_ascii_lowercase()), port)
    } else {
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| !label.is_empty())
            && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !host_ok {
            return Err("has no valid host");
        }
        (host.to_ascii_lowercase(), port)
    };
    let port = match port {
        None => None,
        Some(digits) => {
            // Digits only (`parse` would take a sign), as many as 65535 has.
            let digits_only = digits.len() <= 5 && digits.bytes().all(|b| b.is_ascii_digit());
            let number = digits
                .parse::<u16>()
                .ok()
                .filter(|port| digits_only && *port != 0)
                .ok_or("has an invalid port (1-65535)")?;
            let default = match scheme.as_str() {
                "http" | "ws" => Some(80u16),
                "https" | "wss" => Some(443),
                _ => None,
            };
            (Some(number) != default).then_some(number)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_kept_as_browsers_send_them() {
        for (written, kept) in [
            ("https://app.example.com", "https://app.example.com"),
            ("HTTPS://App.Example.COM", "https://app.example.com"),
            ("https://app.example.com:443", "https://app.example.com"),
            ("http://localhost:80", "http://localhost"),
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://127.0.0.1:08080", "http://127.0.0.1:8080"),
            ("http://[::1]:5173", "http://[::1]:5173"),
            ("http://[FE80::1]", "http://[fe80::1]"),
            ("capacitor://localhost", "capacitor://localhost"),
            ("https://xn--bcher-kva.example", "https://xn--bcher-kva.example"),
        ] {
            assert_eq!(serialize_origin(written).as_deref(), Ok(kept), "{written}");
        }
    }

    #[test]
    fn anything_but_an_origin_is_refused_with_the_reason() {
        for (written, reason) in [
            ("https://app.example.com/", "path"),
            ("https://app.example.com/app", "path"),
            ("https://app.example.com?x=1", "path"),
            ("app.example.com", "scheme://"),
            ("://app.example.com", "scheme"),
            ("1http://app.example.com", "scheme"),
            ("https://", "host"),
            ("https://app..example.com", "host"),
            ("https://app_example.com", "host"),
            ("https://*.example.com", "wildcard"),
            ("https://bücher.example", "punycode"),
            ("https://user@app.example.com", "user"),
            ("https://app.example.com:0", "port"),
            ("https://app.example.com:65536", "port"),
            ("https://app.example.com:", "port"),
            ("https://app.example.com:80a", "port"),
            ("http://[::1", "unclosed"),
            ("http://[not::an:address]", "IPv6"),
            ("http://[::1]x", "after"),
            ("null", "sandboxed"),
        ] {
            let refused = serialize_origin(written).expect_err(written);
            assert!(refused.contains(reason), "{written}: {refused}");
        }
    }

    #[test]
    fn a_list_is_comma_separated_and_a_star_stands_alone() {
        assert_eq!(Cors::parse("").unwrap(), None);
        assert_eq!(Cors::parse(" , ").unwrap(), None);
        assert_eq!(Cors::parse("*").unwrap(), Some(Cors::AnyOrigin));
        assert_eq!(
            Cors::parse("https://a.example, http://localhost:3000,https://A.example,").unwrap(),
            Some(Cors::Origins(vec!["https://a.example".into(), "http://localhost:3000".into()]))
        );
        let err = Cors::parse("https://a.example, *").unwrap_err().to_string();
        assert!(err.contains("stands alone"), "{err}");
        let err = Cors::parse("https://a.example, https://b.example/").unwrap_err().to_string();
        assert!(err.starts_with("CORS_ALLOWED_ORIGINS: \"https://b.example/\" has a path"), "{err}");
    }

    #[test]
    fn vary_keeps_what_is_there_and_gains_origin_once() {
        let mut headers = HeaderMap::new();
        append_to_vary(&mut headers, "Origin");
        assert_eq!(headers.get_all(header::VARY).iter().collect::<Vec<_>>(), ["Origin"]);
        let mut headers = HeaderMap::new();
        headers.append(header::VARY, HeaderValue::from_static("Authorization, x-user-id"));
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        append_to_vary(&mut headers, "Origin");
        append_to_vary(&mut headers, "origin");
        assert_eq!(
            headers.get_all(header::VARY).iter().collect::<Vec<_>>(),
            ["Authorization, x-user-id, Accept-Encoding, Origin"]
        );
        let mut headers = HeaderMap::new();
        headers.append(header::VARY, HeaderValue::from_static("*"));
        append_to_vary(&mut headers, "Origin");
        assert_eq!(headers.get_all(header::VARY).iter().collect::<Vec<_>>(), ["*"]);
        let mut headers = HeaderMap::new();
        headers.append(header::VARY, HeaderValue::from_bytes(b"x-\xff").unwrap());
        append_to_vary(&mut headers, "Origin");
        assert_eq!(headers.get_all(header::VARY).iter().collect::<Vec<_>>(), [&b"x-\xff"[..], b"Origin"]);
    }

    #[test]
    fn only_one_listed_origin_is_allowed_and_it_is_answered_as_sent() {
        let cors = Cors::parse("https://app.example.com").unwrap().unwrap();
        let verdict = |origins: &[&[u8]]| {
            let mut headers = HeaderMap::new();
            for origin in origins {
                headers.append(header::ORIGIN, HeaderValue::from_bytes(origin).unwrap());
            }
            cors.verdict(&headers)
        };
        let allowed = |origin: &'static str| Verdict::Allowed(HeaderValue::from_static(origin));
        assert_eq!(verdict(&[b"https://app.example.com"]), allowed("https://app.example.com"));
        assert_eq!(verdict(&[b"https://APP.example.com"]), allowed("https://APP.example.com"));
        let refused: [&[&[u8]]; 8] = [
            &[],
            &[b"https://app.example.com/"],
            &[b"https://app.example.com:443"],
            &[b"http://app.example.com"],
            &[b"null"],
            &["https://äpp.example.com".as_bytes()],
            &[b"https://app.example.com", b"https://app.example.com"],
            &[b"https://app.example.com", b"https://evil.example"],
        ];
        for refused in refused {
            assert_eq!(verdict(refused), Verdict::NotAllowed, "{refused:?}");
        }
        let any = Cors::AnyOrigin;
        assert_eq!(any.verdict(&HeaderMap::new()), allowed("*"));
    }
}
