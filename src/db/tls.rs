//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`.
//!
//! tokio-postgres 0.7 knows only `sslmode=disable|prefer|require` and refuses
//! `sslrootcert`, so both come out of a URL before it parses the rest, and rustls (with
//! the `ring` provider: no OpenSSL, no cmake) is set up here:
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `prefer` (the default) | if the server offers it | not checked, or as `verify-ca` with `sslrootcert` |
//! | `require` | always | not checked, or as `verify-ca` with `sslrootcert` (libpq does the same) |
//! | `verify-ca` | always | signed by a CA in `sslrootcert` |
//! | `verify-full` | always | signed by a CA in `sslrootcert`, and issued for the host connected to |
//!
//! `sslrootcert` is a PEM file of CA certificates, or `system` for the platform's roots
//! (only with `verify-full`, as libpq has it: anyone can buy a certificate from a public CA,
//! so with those roots only the name says it is your server). Without it, `verify-ca` and
//! `verify-full` use `~/.postgresql/root.crt`, as libpq does. `sslcert`, `sslkey` and
//! `sslcrl` (client certificates, revocation lists) are refused: not supported yet.

use std::{path::PathBuf, str::FromStr, sync::Arc};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::{CryptoProvider, WebPkiSupportedAlgorithms},
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres::{Config, config::SslMode as WireMode};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// Where the trusted CA certificates come from (`sslrootcert`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// Why a database URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("{0} is not supported yet (client certificates and revocation lists): remove it from the URL")]
    Unsupported(String),
    #[error("sslmode={0} is not one of disable, prefer, require, verify-ca, verify-full")]
    SslMode(String),
    #[error(
        "sslrootcert=system trusts every public CA, so it needs sslmode=verify-full (the host name \
         is then what proves the server is yours), not sslmode={0}"
    )]
    SystemRootsNeedVerifyFull(&'static str),
    #[error("sslmode={0} needs sslrootcert (a PEM file of CA certificates, or system), or {1}")]
    NoRoots(&'static str, String),
    #[error("reading sslrootcert={0}: {1}")]
    ReadRoots(String, String),
    #[error("sslrootcert={0} holds no CA certificate")]
    EmptyRoots(String),
    #[error("{0}")]
    Parse(#[from] tokio_postgres::Error),
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// A database URL: what tokio-postgres connects with, and how TLS is done on it.
#[derive(Clone)]
pub struct Endpoint {
    pub config: Config,
    pub tls: MakeRustlsConnect,
    pub mode: SslMode,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("config", &self.config).field("sslmode", &self.mode).finish()
    }
}

impl Endpoint {
    /// Parses a URL (`postgres://...` or `key=value ...`), taking `sslmode` and
    /// `sslrootcert` out first (see the module comment).
    pub fn parse(url: &str) -> Result<Endpoint, UrlError> {
        let (rest, options) = take_tls_options(url)?;
        let mut config = Config::from_str(&rest)?;
        let mode = match options.get("sslmode").map(String::as_str) {
            None | Some("prefer") => SslMode::Prefer,
            Some("disable") => SslMode::Disable,
            Some("allow") => SslMode::Prefer, // libpq: plain first, then TLS; either is fine here
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => return Err(UrlError::SslMode(other.to_owned())),
        };
        let roots = match options.get("sslrootcert").map(String::as_str) {
            None => None,
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
        };
        config.ssl_mode(match mode {
            SslMode::Disable => WireMode::Disable,
            SslMode::Prefer => WireMode::Prefer,
            _ => WireMode::Require,
        });
        let tls = MakeRustlsConnect::new(client_config(mode, roots)?);
        Ok(Endpoint { config, tls, mode })
    }

    /// TLS when the server offers it, certificates unchecked: libpq's default, for
    /// connections whose URL the service made itself (the private cluster, tests).
    pub fn plain(config: Config) -> Endpoint {
        let tls = MakeRustlsConnect::new(client_config(SslMode::Prefer, None).expect("no file to read"));
        Endpoint { config, tls, mode: SslMode::Prefer }
    }
}

impl From<&Endpoint> for Endpoint {
    fn from(endpoint: &Endpoint) -> Self {
        endpoint.clone()
    }
}

impl From<&Config> for Endpoint {
    fn from(config: &Config) -> Self {
        Endpoint::plain(config.clone())
    }
}

/// Splits `sslmode`, `sslrootcert` (and the refused options) off a URL or a key=value
/// string; returns the rest for tokio-postgres.
fn take_tls_options(url: &str) -> Result<(String, std::collections::HashMap<String, String>), UrlError> {
    const TAKEN: [&str; 2] = ["sslmode", "sslrootcert"];
    const REFUSED: [&str; 5] = ["sslcert", "sslkey", "sslcrl", "sslcrldir", "sslpassword"];
    let mut options = std::collections::HashMap::new();
    let mut keep = |key: &str, value: &str| -> Result<bool, UrlError> {
        if REFUSED.contains(&key) {
            return Err(UrlError::Unsupported(key.to_owned()));
        }
        if TAKEN.contains(&key) {
            options.insert(key.to_owned(), value.to_owned());
            return Ok(false);
        }
        Ok(true)
    };
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else { return Ok((url.to_owned(), options)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value);
            if keep(key, &value)? {
                kept.push(pair);
            }
        }
        let rest = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
        return Ok((rest, options));
    }
    // key=value pairs, separated by white space; values may be quoted ('...') with \' and \\.
    let mut kept = Vec::new();
    let mut chars = url.trim().chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect::<String>().trim().to_owned();
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        let mut raw = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            raw.push('\'');
            while let Some(c) = chars.next() {
                raw.push(c);
                match c {
                    '\\' => {
                        if let Some(escaped) = chars.next() {
                            raw.push(escaped);
                            value.push(escaped);
                        }
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                raw.push(c);
                value.push(c);
            }
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if keep(&key, &value)? {
            kept.push(format!("{key}={raw}"));
        }
    }
    Ok((kept.join(" "), options))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, ..) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client for `mode` and `roots`.
fn client_config(mode: SslMode, roots: Option<Roots>) -> Result<ClientConfig, UrlError> {
    let provider = provider();
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let name = |mode: SslMode| match mode {
        SslMode::Disable => "disable",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    };
    if roots == Some(Roots::System) && mode != SslMode::VerifyFull {
        return Err(UrlError::SystemRootsNeedVerifyFull(name(mode)));
    }
    let roots = match (mode, roots) {
        (_, Some(roots)) => Some(roots),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            let default =
                std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".postgresql/root.crt"));
            match default {
                Some(path) if path.exists() => Some(Roots::File(path)),
                _ => return Err(UrlError::NoRoots(name(mode), "~/.postgresql/root.crt".into())),
            }
        }
        _ => None,
    };
    let Some(roots) = roots else {
        // prefer and require without a CA: encrypted, but anyone in between could answer.
        let verifier = Arc::new(AnyCertificate(provider.signature_verification_algorithms));
        return Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth());
    };
    let (store, source) = match &roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(found.certs);
            (store, "system".to_owned())
        }
        Roots::File(path) => {
            let shown = path.display().to_string();
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|err| UrlError::ReadRoots(shown.clone(), err.to_string()))?;
            let mut store = RootCertStore::empty();
            store.add_parsable_certificates(certs);
            (store, shown)
        }
    };
    if store.is_empty() {
        return Err(UrlError::EmptyRoots(source));
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
        .build()
        .map_err(|err| UrlError::Tls(rustls::Error::General(err.to_string())))?;
    let verifier = Arc::new(Checked { webpki, check_name: mode == SslMode::VerifyFull, roots: source });
    Ok(builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth())
}

/// `prefer` and `require` without `sslrootcert`: any certificate, but the handshake
/// itself is still verified (the server must hold the key of the certificate it sent).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `verify-ca` (the chain only) and `verify-full` (the chain and the name), with errors
/// that say which check failed and against what.
#[derive(Debug)]
struct Checked {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
    roots: String,
}

impl ServerCertVerifier for Checked {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError, Error};
        // (CertificateError::Other would show its Debug form.)
        let explain = |what: String| Error::General(what);
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Ok(verified) => Ok(verified),
            Err(Error::InvalidCertificate(CertificateError::NotValidForName))
            | Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }))
                if !self.check_name =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(Error::InvalidCertificate(CertificateError::NotValidForNameContext {
                expected,
                presented,
            })) => {
                let expected = match expected {
                    ServerName::DnsName(name) => name.as_ref().to_owned(),
                    ServerName::IpAddress(ip) => std::net::IpAddr::from(ip).to_string(),
                    other => format!("{other:?}"),
                };
                Err(explain(format!(
                    "sslmode=verify-full: the server's certificate is not for {expected} (it names {}); \
                     connect by one of those names, or fix the certificate",
                    presented
                        .iter()
                        .map(|name| name.trim_start_matches("DnsName(\"").trim_end_matches("\")"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )))
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer)) => Err(explain(format!(
                "the server's certificate is not signed by a CA in sslrootcert={}",
                self.roots
            ))),
            Err(other) => Err(other),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(url: &str) -> (String, Vec<(String, String)>) {
        let (rest, options) = take_tls_options(url).unwrap();
        let mut options: Vec<_> = options.into_iter().collect();
        options.sort();
        (rest, options)
    }

    #[test]
    fn tls_options_come_out_of_urls_and_key_value_strings() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        assert_eq!(
            options("postgres://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem"),
            (
                "postgres://u@h:5/db?application_name=x".into(),
                vec![pair("sslmode", "verify-full"), pair("sslrootcert", "/tmp/ca.pem")]
            )
        );
        assert_eq!(
            options("postgresql://u@h/db?sslmode=require"),
            ("postgresql://u@h/db".into(), vec![pair("sslmode", "require")])
        );
        assert_eq!(
            options("host=h user=u sslmode = require sslrootcert='/a b/c\\'s.pem' dbname=d"),
            (
                "host=h user=u dbname=d".into(),
                vec![pair("sslmode", "require"), pair("sslrootcert", "/a b/c's.pem")]
            )
        );
        assert!(
            matches!(take_tls_options("postgres://h/db?sslcert=/x"), Err(UrlError::Unsupported(key)) if key == "sslcert")
        );
        assert!(
            matches!(take_tls_options("host=h sslkey=/x"), Err(UrlError::Unsupported(key)) if key == "sslkey")
        );
    }

    #[test]
    fn modes_and_roots_that_do_not_go_together_are_refused() {
        let err = |url: &str| Endpoint::parse(url).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            err("postgres://h/db?sslmode=require&sslrootcert=system").contains("needs sslmode=verify-full")
        );
        assert!(err("postgres://h/db?sslmode=bogus").contains("sslmode=bogus"));
        assert!(
            err("postgres://h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .contains("/nonexistent.pem")
        );
        assert!(Endpoint::parse("postgres://h/db?sslmode=verify-full&sslrootcert=system").is_ok());
        assert!(Endpoint::parse("postgres://h/db").is_ok_and(|e| e.mode == SslMode::Prefer));
    }
}
