//! Traces that join the caller's: W3C `traceparent`/`tracestate` in, and with
//! OTEL_EXPORTER_OTLP_ENDPOINT set, one span per request (and one per database
//! transaction inside it) out to an OpenTelemetry collector over OTLP/HTTP.
//!
//! Without the endpoint nothing is built and a request pays only for a look at its
//! `traceparent` (spans are made here, from the times the request path already takes, not
//! with `tracing` spans: entering one on every poll cost more than the log line, see
//! `http::observe`). The exporter runs on its own thread (the SDK's batch processor),
//! with rustls on the ring provider for an `https` endpoint.

use std::{
    sync::OnceLock,
    time::{Duration, SystemTime},
};

use opentelemetry::{
    Context, KeyValue,
    trace::{
        Span, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        Tracer, TracerProvider,
    },
};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};

static TRACER: OnceLock<opentelemetry_sdk::trace::SdkTracer> = OnceLock::new();

/// Keeps the exporter; dropping it sends what is left (at exit).
pub struct Telemetry(SdkTracerProvider);

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(err) = self.0.shutdown_with_timeout(Duration::from_secs(5)) {
            tracing::warn!(error = %err, "could not send the last spans");
        }
    }
}

/// Starts the exporter when `endpoint` is set (OTEL_EXPORTER_OTLP_ENDPOINT; the SDK reads
/// OTEL_EXPORTER_OTLP_PROTOCOL, `http/protobuf` by default or `http/json`, and
/// OTEL_SERVICE_NAME itself). Call before the tokio runtime starts: the HTTP client blocks.
pub fn init(endpoint: Option<&str>) -> Result<Option<Telemetry>, String> {
    let Some(endpoint) = endpoint else { return Ok(None) };
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| err.to_string())?
    .with_root_certificates({
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots
    })
    .with_no_client_auth();
    let client = http_client::blocking::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .map_err(|err| format!("the OTLP HTTP client: {err}"))?;
    // A base URL, as the variable means: the traces path goes after it.
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_endpoint(url)
        .build()
        .map_err(|err| format!("OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}: {err}"))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "tenantry".into());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build())
        .build();
    let _ = TRACER.set(provider.tracer("tenantry"));
    Ok(Some(Telemetry(provider)))
}

/// Whether spans are exported.
pub fn enabled() -> bool {
    TRACER.get().is_some()
}

/// The caller's trace: from `traceparent` (W3C Trace Context, version 00 and later
/// versions read as 00) and `tracestate`. Anything malformed is ignored: the request then
/// starts a trace of its own, it is never refused for it.
pub fn remote_parent(traceparent: Option<&[u8]>, tracestate: Option<&[u8]>) -> Option<SpanContext> {
    let text = std::str::from_utf8(traceparent?).ok()?.trim();
    let mut parts = text.split('-');
    let (version, trace_id, span_id, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |part: &str, len: usize| {
        part.len() == len && part.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    if !hex(version, 2) || version == "ff" || !hex(trace_id, 32) || !hex(span_id, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; a later version may have more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace_id).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span_id).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = TraceFlags::new(u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8());
    let state = tracestate
        .and_then(|raw| std::str::from_utf8(raw).ok())
        .and_then(|raw| raw.parse::<TraceState>().ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// One request, as a server span, and each of its database transactions as a child.
pub struct RequestSpan<'a> {
    pub parent: Option<SpanContext>,
    pub method: &'a str,
    pub route: &'a str,
    pub status: u16,
    pub organization: Option<&'a str>,
    pub request_id: &'a str,
    pub started: SystemTime,
    pub ended: SystemTime,
    /// Each transaction: when it started, how long it took, whether it committed.
    pub transactions: &'a [(SystemTime, Duration, bool)],
}

/// Exports `request` (does nothing when spans are not exported).
pub fn export(request: RequestSpan<'_>) {
    let Some(tracer) = TRACER.get() else { return };
    let parent = match request.parent {
        Some(remote) => Context::new().with_remote_span_context(remote),
        None => Context::new(),
    };
    let mut attributes = vec![
        KeyValue::new("http.request.method", request.method.to_owned()),
        KeyValue::new("http.route", request.route.to_owned()),
        KeyValue::new("http.response.status_code", i64::from(request.status)),
        KeyValue::new("tenantry.request_id", request.request_id.to_owned()),
    ];
    if let Some(organization) = request.organization {
        attributes.push(KeyValue::new("tenantry.organization_id", organization.to_owned()));
    }
    let mut span = tracer
        .span_builder(format!("{} {}", request.method, request.route))
        .with_kind(SpanKind::Server)
        .with_start_time(request.started)
        .with_attributes(attributes)
        .start_with_context(tracer, &parent);
    if request.status >= 500 {
        span.set_status(Status::error(format!("HTTP {}", request.status)));
    }
    let inside = Context::new().with_remote_span_context(span.span_context().clone());
    for &(started, took, committed) in request.transactions {
        let mut transaction = tracer
            .span_builder("database transaction")
            .with_kind(SpanKind::Client)
            .with_start_time(started)
            .with_attributes([
                KeyValue::new("db.system.name", "postgresql"),
                KeyValue::new("tenantry.committed", committed),
            ])
            .start_with_context(tracer, &inside);
        transaction.end_with_timestamp(started + took);
    }
    span.end_with_timestamp(request.ended);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_is_read_as_w3c_trace_context_says_and_anything_else_ignored() {
        let good = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let parent = remote_parent(Some(good), Some(b"congo=t61rcWkgMzE")).unwrap();
        assert_eq!(parent.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id().to_string(), "00f067aa0ba902b7");
        assert!(parent.is_sampled() && parent.is_remote());
        assert_eq!(parent.trace_state().get("congo"), Some("t61rcWkgMzE"));
        // A later version may carry more fields.
        assert!(
            remote_parent(Some(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what"), None)
                .is_some()
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é".as_bytes(),
            &[0xff, 0xfe],
        ] {
            assert!(remote_parent(Some(bad), None).is_none(), "{:?}", String::from_utf8_lossy(bad));
        }
        // A malformed tracestate is dropped, the parent kept.
        assert!(remote_parent(Some(good), Some(b"not a state")).is_some());
    }
}
