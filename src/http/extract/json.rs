//! JSON bodies in both directions, with our rules rather than poem-openapi's `Json<T>`:
//!
//! - Requests: the content type is checked (415), the size is capped without reading more
//!   than the cap (413), and the object is read by [`FromJsonObject`], which reports every
//!   offending field at once, unknown fields included (400).
//! - Responses: serialized straight to bytes with serde. `Json<T>` builds a
//!   `serde_json::Value` tree first, which costs much of a list's throughput
//!   (docs/performance.md, "Settings").
//!
//! The OpenAPI schema still comes from `T`'s poem-openapi derive.

use std::marker::PhantomData;

use poem::{IntoResponse, Request, RequestBody, Response, error::ResponseError, http::header};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchemaRef, Registry},
    types::Type,
};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    db,
    domain::{ActivityEntry, IssueRef, Webhook, WebhookDelivery, timestamp},
    http::error::{ApiError, FieldError},
};

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A type read from a JSON object with field-level errors.
pub trait FromJsonObject: Sized {
    fn from_json_object(object: Map<String, Value>) -> Result<Self, Vec<FieldError>>;
}

/// A JSON request or response body of `T`.
pub struct JsonBody<T>(pub T);

/// `application/json`, with parameters, or any `application/*+json`.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json"
        || essence.strip_prefix("application/").is_some_and(|subtype| subtype.ends_with("+json"))
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn check_content_type(content_type: &str) -> bool {
        is_json(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: FromJsonObject + Send> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = true;

    async fn from_request(request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        match request.content_type() {
            Some(content_type) if is_json(content_type) => {}
            Some(content_type) => {
                return Err(ApiError::UnsupportedMediaType(format!(
                    "the body must be application/json, not {content_type}"
                ))
                .into());
            }
            None => {
                return Err(ApiError::UnsupportedMediaType(
                    "the body must be application/json; send Content-Type: application/json".into(),
                )
                .into());
            }
        }
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }.into());
        }
        // While it arrives, a time-out is the client's slowness (408), not the database's.
        let trace = crate::trace::RequestTrace::current();
        trace.iter().for_each(|trace| trace.receiving_body(true));
        let received = body.take()?.into_bytes_limit(MAX_BODY_BYTES).await;
        trace.iter().for_each(|trace| trace.receiving_body(false));
        let bytes = received.map_err(|err| match err {
            poem::error::ReadBodyError::PayloadTooLarge => {
                ApiError::PayloadTooLarge { limit: MAX_BODY_BYTES }
            }
            other => ApiError::invalid("body", format!("could not be read: {other}")),
        })?;
        if bytes.is_empty() {
            return Err(ApiError::invalid("body", "a JSON object is required").into());
        }
        let object = parse_object(&bytes).map_err(|problem| ApiError::invalid("body", problem))?;
        T::from_json_object(object).map(JsonBody).map_err(|errors| ApiError::invalid_fields(errors).into())
    }
}

impl<'a, T: Type + FromJsonObject + Send> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: true,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        <Self as ParsePayload>::from_request(request, body).await
    }
}

/// How a page ends: every body ends with a line break, so a terminal shows the next
/// prompt (or the next body) on a line of its own.
const PAGE_END: &[u8] = b"]\n";

/// A list page's JSON array, documented as the `Vec<T>` it is.
pub struct ListBody<T> {
    json: Vec<u8>,
    item: PhantomData<fn() -> T>,
}

impl<T> ListBody<T> {
    /// Writes `items` (each with the cursor of the page after it, when the page may end
    /// there) as a JSON array, ended before the first item that would take it past
    /// `max_bytes` (PAGE_MAX_BYTES; the first item is always written), so a client that
    /// never reads a page of huge items pins at most that much. Returns the body and where
    /// the next page starts: the cursor of the last item written, if it has one.
    pub fn page<'a, I: ListItem>(
        items: impl IntoIterator<Item = Result<(I, Option<&'a str>), db::Error>>,
        max_bytes: Option<i32>,
    ) -> Result<(Self, Option<String>), ApiError> {
        let max_bytes = max_bytes.and_then(|max| usize::try_from(max).ok());
        let items = items.into_iter();
        // Room for the page's rows at once: grown from a small buffer, a page was copied
        // again at every doubling (docs/performance.md, "The issue 14 move, measured").
        // Never more than the page may hold: the body keeps its allocation while it waits.
        let count = items.size_hint().0;
        let room = max_bytes.map_or(usize::MAX, |max| max.saturating_add(PAGE_END.len()));
        let mut json = Vec::with_capacity(count.saturating_mul(512).saturating_add(2).min(room));
        json.push(b'[');
        // Where each item written so far ends, and its cursor.
        let mut ends: Vec<(usize, Option<&str>)> = Vec::with_capacity(count);
        for (i, item) in items.enumerate() {
            let (item, cursor) = item?;
            if i > 0 {
                json.push(b',');
            }
            item.write_json(&mut json)?;
            if i > 0 && max_bytes.is_some_and(|max| json.len() + PAGE_END.len() > max) {
                // The last item before this one that the page may end at (the SQL marks
                // them; should its estimate ever fall short, the page ends earlier rather
                // than fail, and if no item is marked it goes on past the bound).
                if let Some(&(end, Some(cursor))) = ends.iter().rev().find(|(_, cursor)| cursor.is_some()) {
                    json.truncate(end);
                    json.extend_from_slice(PAGE_END);
                    return Ok((ListBody { json, item: PhantomData }, Some(cursor.to_owned())));
                }
            }
            ends.push((json.len(), cursor));
        }
        json.extend_from_slice(PAGE_END);
        let next = ends.last().and_then(|(_, cursor)| *cursor).map(str::to_owned);
        Ok((ListBody { json, item: PhantomData }, next))
    }

    /// The JSON written.
    pub fn json(&self) -> &[u8] {
        &self.json
    }
}

/// An item of a list page, as JSON.
pub trait ListItem {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ApiError>;
}

impl ListItem for ActivityEntry {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        serde_json::to_writer(out, self).map_err(|err| ApiError::Internal(err.into()))
    }
}

impl ListItem for Webhook {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        serde_json::to_writer(out, self).map_err(|err| ApiError::Internal(err.into()))
    }
}

impl ListItem for WebhookDelivery {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        serde_json::to_writer(out, self).map_err(|err| ApiError::Internal(err.into()))
    }
}

impl ListItem for IssueRef<'_> {
    fn write_json(&self, out: &mut Vec<u8>) -> Result<(), ApiError> {
        write_issue(out, self);
        Ok(())
    }
}

impl<T: Type> Payload for ListBody<T> {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        <Vec<T> as Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Vec<T> as Type>::register(registry);
    }
}

impl<T: Send> IntoResponse for ListBody<T> {
    fn into_response(self) -> Response {
        Response::builder().content_type("application/json").body(self.json)
    }
}

impl<T: Serialize + Send> IntoResponse for JsonBody<T> {
    fn into_response(self) -> Response {
        match serde_json::to_vec(&self.0) {
            Ok(mut bytes) => {
                bytes.push(b'\n');
                Response::builder().content_type("application/json").body(bytes)
            }
            Err(err) => ApiError::Internal(err.into()).as_response(),
        }
    }
}

/// Parses a JSON object, refusing a key that appears twice in any object within it:
/// `{"title": "a", "title": "b"}` is ambiguous (RFC 8259 leaves it to the reader; serde
/// would keep the last), and two readers of one text must never see two values.
/// The error says what is wrong, for a `detail`.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, String> {
    match serde_json::from_slice::<Unambiguous>(bytes) {
        Ok(Unambiguous(Value::Object(object))) => Ok(object),
        Ok(_) => Err("must be a JSON object".into()),
        // Our own refusal (a data error), or JSON that does not parse.
        Err(err) if err.is_data() => Err(err.to_string()),
        Err(err) => Err(format!("is not valid JSON: {err}")),
    }
}

/// A JSON value read with [`parse_object`]'s rule (serde_json's depth limit still applies).
struct Unambiguous(Value);

impl<'de> serde::Deserialize<'de> for Unambiguous {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UnambiguousVisitor)
    }
}

struct UnambiguousVisitor;

impl<'de> serde::de::Visitor<'de> for UnambiguousVisitor {
    type Value = Unambiguous;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Unambiguous, E> {
        Ok(Unambiguous(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Unambiguous, E> {
        Ok(Unambiguous(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Unambiguous, E> {
        Ok(Unambiguous(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Unambiguous, E> {
        Ok(Unambiguous(v.into()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Unambiguous, E> {
        Ok(Unambiguous(v.into()))
    }
    fn visit_string<E>(self, v: String) -> Result<Unambiguous, E> {
        Ok(Unambiguous(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Unambiguous, E> {
        Ok(Unambiguous(Value::Null))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Unambiguous, A::Error> {
        let mut items = Vec::new();
        while let Some(Unambiguous(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Unambiguous(Value::Array(items)))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Unambiguous, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("has the key {key:?} twice")));
            }
            let Unambiguous(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Unambiguous(Value::Object(object)))
    }
}

/// Reads fields out of a JSON object, collecting every problem.
pub struct Fields {
    object: Map<String, Value>,
    errors: Vec<FieldError>,
}

impl Fields {
    pub fn new(object: Map<String, Value>) -> Self {
        Fields { object, errors: Vec::new() }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// A string field, absent (`None`) or present (`Some`), checked by `rule`.
    /// `null` is refused unless `nullable`, in which case it reads as `Some(None)`.
    pub fn text(
        &mut self,
        field: &str,
        nullable: bool,
        rule: impl Fn(&str) -> Option<String>,
    ) -> Option<Option<String>> {
        match self.object.remove(field)? {
            Value::String(text) => match rule(&text) {
                None => Some(Some(text)),
                Some(problem) => {
                    self.fail(field, problem);
                    None
                }
            },
            Value::Null if nullable => Some(None),
            Value::Null => {
                self.fail(field, "must not be null");
                None
            }
            other => {
                self.fail(field, format!("must be a string, not {}", json_type(&other)));
                None
            }
        }
    }

    /// A required string field.
    pub fn required_text(&mut self, field: &str, rule: impl Fn(&str) -> Option<String>) -> Option<String> {
        if !self.object.contains_key(field) {
            self.fail(field, "is required");
            return None;
        }
        self.text(field, false, rule).flatten()
    }

    /// An optional field holding one of `allowed` (by its `as_str` spelling).
    pub fn choice<E: Copy>(&mut self, field: &str, allowed: &[E], name: fn(E) -> &'static str) -> Option<E> {
        let spellings: Vec<&str> = allowed.iter().map(|e| name(*e)).collect();
        let rule = |text: &str| {
            (!spellings.contains(&text)).then(|| format!("must be one of {}", spellings.join(", ")))
        };
        let text = self.text(field, false, rule).flatten()?;
        allowed.iter().copied().find(|e| name(*e) == text)
    }

    /// An optional array of distinct values of `allowed` (by their `as_str` spelling), at
    /// least one; in `allowed`'s order.
    pub fn choices<E: Copy + PartialEq>(
        &mut self,
        field: &str,
        allowed: &[E],
        name: fn(E) -> &'static str,
    ) -> Option<Vec<E>> {
        let spellings: Vec<&str> = allowed.iter().map(|e| name(*e)).collect();
        let rule = format!("must be an array of one or more of {}", spellings.join(", "));
        let Value::Array(values) = self.object.remove(field)? else {
            self.fail(field, rule);
            return None;
        };
        let mut chosen = Vec::new();
        for value in &values {
            match value.as_str().and_then(|text| allowed.iter().copied().find(|e| name(*e) == text)) {
                Some(e) if !chosen.contains(&e) => chosen.push(e),
                Some(_) => {
                    self.fail(field, format!("names {} twice", value));
                    return None;
                }
                None => {
                    self.fail(field, rule);
                    return None;
                }
            }
        }
        if chosen.is_empty() {
            self.fail(field, rule);
            return None;
        }
        Some(allowed.iter().copied().filter(|e| chosen.contains(e)).collect())
    }

    /// An optional boolean field.
    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        match self.object.remove(field)? {
            Value::Bool(value) => Some(value),
            other => {
                self.fail(field, format!("must be true or false, not {}", json_type(&other)));
                None
            }
        }
    }

    /// Everything read: fails on fields left over, explaining the ones the server sets.
    pub fn finish(mut self) -> Result<(), Vec<FieldError>> {
        let leftovers: Vec<String> = self.object.keys().cloned().collect();
        for field in leftovers {
            let message = match field.as_str() {
                "organizationId" => "cannot be sent: the server sets it to the caller's organization",
                "secret" => "cannot be sent: the server makes it (POST /api/webhooks/{id}/rotate-secret)",
                "id"
                | "createdAt"
                | "updatedAt"
                | "createdBy"
                | "version"
                | "disabledReason"
                | "previousSecretExpiresAt" => "cannot be sent: the server sets it",
                _ => "is not a known field",
            };
            self.fail(&field, message);
        }
        if self.errors.is_empty() { Ok(()) } else { Err(self.errors) }
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One issue, fields in `Issue`'s order and spelling, byte for byte what serde_json writes
/// for `Issue` (tested), by hand: lists are the one large body on the hot path, and this
/// costs less than serde's machinery per field (docs/performance.md, "Settings").
fn write_issue(out: &mut Vec<u8>, issue: &IssueRef<'_>) {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(issue.id.to_string().as_bytes());
    out.extend_from_slice(b",\"title\":");
    write_json_string(out, issue.title);
    out.extend_from_slice(b",\"description\":");
    write_json_string(out, issue.description);
    // Known values only: they need no escaping.
    out.extend_from_slice(b",\"status\":\"");
    out.extend_from_slice(issue.status.as_str().as_bytes());
    out.extend_from_slice(b"\",\"priority\":\"");
    out.extend_from_slice(issue.priority.as_str().as_bytes());
    out.extend_from_slice(b"\",\"assigneeId\":");
    match issue.assignee_id {
        Some(assignee) => write_json_string(out, assignee),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"organizationId\":");
    write_json_string(out, issue.organization_id);
    out.extend_from_slice(b",\"createdBy\":");
    write_json_string(out, issue.created_by);
    out.extend_from_slice(b",\"createdAt\":\"");
    out.extend_from_slice(&timestamp::digits(issue.created_at));
    out.extend_from_slice(b"\",\"updatedAt\":\"");
    out.extend_from_slice(&timestamp::digits(issue.updated_at));
    out.extend_from_slice(b"\"}");
}

/// A JSON string exactly as serde_json writes one: `"` and `\` escaped, control characters
/// as `\b \t \n \f \r` or `\u00xx`, everything else (non-ASCII too) as it is. Eight bytes
/// at a time while none of them needs escaping, which is nearly always.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = text.as_bytes();
    out.push(b'"');
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes.get(i..i + 8)
            && !word_needs_escape(u64::from_le_bytes(word.try_into().expect("eight bytes")))
        {
            i += 8;
            continue;
        }
        let escaped: &[u8] = match bytes[i] {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            control @ 0x00..=0x1f => {
                &[b'\\', b'u', b'0', b'0', HEX[usize::from(control >> 4)], HEX[usize::from(control & 0xf)]]
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Whether any of the eight bytes is below 0x20, `"` or `\` (the classic SWAR tests for a
/// byte below n and for a zero byte).
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = 0x8080_8080_8080_8080;
    let below = |n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word;
    let equal = |c: u8| {
        let x = word ^ (ONES * u64::from(c));
        x.wrapping_sub(ONES) & !x
    };
    (below(0x20) | equal(b'"') | equal(b'\\')) & HIGH_BITS != 0
}

#[cfg(test)]
mod tests {
    use super::{is_json, parse_object, write_json_string};

    #[test]
    fn a_key_twice_in_any_object_is_refused_and_everything_else_reads_as_serde_json_does() {
        let refused = |text: &str| parse_object(text.as_bytes()).unwrap_err();
        assert!(refused(r#"{"title": "a", "title": "b"}"#).contains(r#"has the key "title" twice"#));
        assert!(refused(r#"{"a": {"x": 1, "x": 1}}"#).contains(r#""x" twice"#));
        assert!(refused(r#"{"a": [{"x": 1, "x": 2}]}"#).contains(r#""x" twice"#));
        // Escapes are decoded first: "title" is "title".
        assert!(refused(r#"{"title": "a", "title": "b"}"#).contains("twice"));
        assert!(refused("[1]").contains("must be a JSON object"));
        assert!(refused("{").starts_with("is not valid JSON"));
        let text = r#"{"a": [1, -2, 3.5, 18446744073709551615, true, null, "é"], "b": {"c": {}}}"#;
        let expected: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::Value::Object(parse_object(text.as_bytes()).unwrap()), expected);
        let deep = "[".repeat(200) + &"]".repeat(200);
        assert!(refused(&format!(r#"{{"a": {deep}}}"#)).contains("recursion limit"));
    }

    #[test]
    fn json_content_types_are_recognised_with_parameters_and_suffixes() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(is_json("application/merge-patch+json"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/jsonx"));
        assert!(!is_json("text/json"));
    }

    // The list writer's strings.

    fn written(text: &str) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_are_escaped_exactly_as_serde_json_escapes_them() {
        let every_ascii: String = (0u8..=0x7f).map(char::from).collect();
        let samples = [
            "",
            "plain",
            "exactly8",
            "sixteen bytes!!!",
            "\"",
            "a\\b",
            "tab\there and\nthere\r",
            "ünïcödé 🚀 \u{2028} </script>",
            "quote after eight bytes: \"",
            &every_ascii,
        ];
        for sample in samples {
            assert_eq!(written(sample), serde_json::to_string(sample).unwrap(), "{sample:?}");
        }
        for byte in 0u8..=0x7f {
            let text = format!("01234567{}89", char::from(byte));
            assert_eq!(written(&text), serde_json::to_string(&text).unwrap(), "{byte:#x}");
        }
    }
}
