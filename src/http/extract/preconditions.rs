//! Conditional requests (RFC 9110 §13) on issues: the `ETag` of an issue, `If-None-Match`
//! on GET (304) and `If-Match` on PATCH and DELETE (412).
//!
//! A tag is `"<version>.<mac>"`, the mac 16 bytes (base64url) of HMAC-SHA256 over
//! organization ‖ 0 ‖ issue id ‖ 0 ‖ version under the database's etag key (migration 7,
//! or ETAG_KEY). Made from the version alone, organization B's issue 1 had the tag of
//! organization A's issue 1, and a cache revalidating A's copy with B's identity got a 304;
//! with the mac, a tag matches one issue of one organization at one version, on every
//! instance and after every restart. A tag whose mac does not verify becomes a version no
//! issue has (-1): the version comparison itself stays in SQL, in the statement that
//! writes, so of two writers holding one tag exactly one wins, and a missing issue is still
//! a 404 while an existing one is a 412.
//!
//! Header syntax is strict: a value that is not an entity tag (unquoted, empty, a list
//! with a malformed member) is a 400 that says how to write one, never a condition that
//! silently cannot match.

use std::sync::Arc;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use poem::http::HeaderMap;
use sha2::Sha256;

use crate::db;
use crate::http::error::ApiError;

/// Bytes of the HMAC kept in a tag: 128 bits, far beyond guessing.
const MAC_BYTES: usize = 16;
/// The version `If-Match` sends to SQL when its tag is not one of ours: no issue has it.
const NO_VERSION: i64 = -1;

/// How to write an entity tag, for every 400 about one.
const HOW_TO_WRITE: &str = "must be an entity tag exactly as the ETag header sent it, quotes included \
     (e.g. \"1.Qk3x…\"), or *";

/// Makes and checks the entity tags of issues. Cheap to clone (shared key state).
#[derive(Clone)]
pub struct EntityTags(Arc<Hmac<Sha256>>);

impl EntityTags {
    pub fn new(key: &[u8; 32]) -> EntityTags {
        EntityTags(Arc::new(Hmac::new_from_slice(key).expect("HMAC takes a key of any length")))
    }

    /// The strong tag of issue `id` of `organization` at `version`, quotes included.
    pub fn tag(&self, organization: &str, id: i64, version: i64) -> String {
        let mac = self.mac(organization, id, version).finalize().into_bytes();
        format!("\"{version}.{}\"", URL_SAFE_NO_PAD.encode(&mac[..MAC_BYTES]))
    }

    /// The version an opaque tag (between the quotes) names, if it is ours for this issue.
    fn version_of(&self, organization: &str, id: i64, opaque: &str) -> Option<i64> {
        let (version, mac) = opaque.split_once('.')?;
        if !version.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let version: i64 = version.parse().ok().filter(|v| *v > 0)?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok().filter(|mac| mac.len() == MAC_BYTES)?;
        // Constant time: the comparison must not tell a forger how much of a mac was right.
        self.mac(organization, id, version).verify_truncated_left(&mac).ok()?;
        Some(version)
    }

    fn mac(&self, organization: &str, id: i64, version: i64) -> Hmac<Sha256> {
        let mut mac = (*self.0).clone();
        mac.update(organization.as_bytes());
        mac.update(&[0]);
        mac.update(id.to_string().as_bytes());
        mac.update(&[0]);
        mac.update(version.to_string().as_bytes());
        mac
    }

    /// A write refused for its `If-Match` (TN412) as a 412 carrying the issue's current tag.
    pub fn precondition_failed(&self, err: db::Error, organization: &str, id: i64) -> ApiError {
        match err {
            db::Error::Stale { current_version: Some(version), .. } => ApiError::PreconditionFailed {
                detail: format!(
                    "issue {id} is not at the version If-Match names (it changed since, or the tag was \
                     not sent for it); ETag is its current tag"
                ),
                etag: Some(self.tag(organization, id, version)),
            },
            other => other.into(),
        }
    }
}

/// One entity tag as sent: weak or strong, and what stands between the quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    opaque: &'a str,
}

/// What `If-Match` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`: any current version will do.
    Any,
    /// One entity tag, as sent.
    Tag { weak: bool, opaque: String },
}

impl IfMatch {
    /// Reads `If-Match` from the request: absent, `*`, or exactly one entity tag.
    pub fn from_headers(headers: &HeaderMap) -> Result<IfMatch, ApiError> {
        const NAME: &str = "If-Match";
        let Some(value) = single_value(headers, NAME)? else { return Ok(IfMatch::Any) };
        if value.trim() == "*" {
            return Ok(IfMatch::Any);
        }
        match parse_list(value).as_deref() {
            Some([tag]) => Ok(IfMatch::Tag { weak: tag.weak, opaque: tag.opaque.to_owned() }),
            // Several tags would name several versions; the write checks one.
            Some([_, _, ..]) => Err(ApiError::invalid(NAME, "must be one entity tag (as sent in ETag) or *")),
            _ => Err(ApiError::invalid(NAME, HOW_TO_WRITE)),
        }
    }

    /// The version SQL compares under the row lock: `None` for no condition; a tag that is
    /// weak (strong comparison: never matches) or not ours for this issue becomes -1.
    pub fn expected_version(&self, tags: &EntityTags, organization: &str, id: i64) -> Option<i64> {
        match self {
            IfMatch::Any => None,
            IfMatch::Tag { weak: true, .. } => Some(NO_VERSION),
            IfMatch::Tag { weak: false, opaque } => {
                Some(tags.version_of(organization, id, opaque).unwrap_or(NO_VERSION))
            }
        }
    }
}

/// What `If-None-Match` lists: `*`, or entity tags (several field lines form one list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfNoneMatch {
    Absent,
    Any,
    Tags(Vec<String>),
}

impl IfNoneMatch {
    pub fn from_headers(headers: &HeaderMap) -> Result<IfNoneMatch, ApiError> {
        const NAME: &str = "If-None-Match";
        let lines = readable_values(headers, NAME)?;
        if lines.is_empty() {
            return Ok(IfNoneMatch::Absent);
        }
        if let [line] = lines.as_slice()
            && line.trim() == "*"
        {
            return Ok(IfNoneMatch::Any);
        }
        let mut tags = Vec::new();
        for line in lines {
            match parse_list(line) {
                Some(list) if !list.is_empty() => tags.extend(list.into_iter().map(|t| t.opaque.to_owned())),
                _ => {
                    return Err(ApiError::invalid(
                        NAME,
                        "must be * or a comma-separated list of entity tags exactly as the ETag header \
                         sent them, quotes included (e.g. \"1.Qk3x…\")",
                    ));
                }
            }
        }
        Ok(IfNoneMatch::Tags(tags))
    }

    /// Whether the client's copy of the issue at `version` is current (weak comparison: a
    /// `W/` prefix does not matter). Only a tag made for this organization's issue counts.
    pub fn hits(&self, tags: &EntityTags, organization: &str, id: i64, version: i64) -> bool {
        match self {
            IfNoneMatch::Absent => false,
            IfNoneMatch::Any => true,
            IfNoneMatch::Tags(list) => {
                list.iter().any(|opaque| tags.version_of(organization, id, opaque) == Some(version))
            }
        }
    }
}

/// Every field line of `name`, refusing one that is not visible ASCII: poem-openapi's
/// `Header<T>` would read it as absent, turning a conditional request into an
/// unconditional one.
fn readable_values<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Vec<&'a str>, ApiError> {
    headers
        .get_all(name)
        .iter()
        .map(|value| value.to_str().map_err(|_| ApiError::invalid(name, "must be visible ASCII")))
        .collect()
}

/// The one field line of `name`, if any; a second one is refused (`Header<T>` would ignore it).
fn single_value<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<Option<&'a str>, ApiError> {
    match readable_values(headers, name)?.as_slice() {
        [] => Ok(None),
        [value] => Ok(Some(value)),
        _ => Err(ApiError::invalid(name, "must be sent once")),
    }
}

/// Refuses a header that must be sent once as visible ASCII (e.g. `Idempotency-Key`).
pub fn refuse_unreadable(headers: &HeaderMap, name: &'static str) -> Result<(), ApiError> {
    single_value(headers, name).map(drop)
}

/// `#entity-tag` (RFC 9110 §8.8.3): tags separated by commas and optional white space.
/// `None` if any member is malformed. Empty members are skipped, as the list syntax
/// allows; a value with no member at all is an empty list.
fn parse_list(value: &str) -> Option<Vec<EntityTag<'_>>> {
    let mut tags = Vec::new();
    let mut rest = value;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return Some(tags);
        }
        let (weak, quoted) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let inner = quoted.strip_prefix('"')?;
        // etagc: %x21 / %x23-7E / obs-text, i.e. anything visible but the double quote.
        let end = inner.find(|c: char| !(c == '!' || ('#'..='~').contains(&c) || !c.is_ascii()))?;
        if !inner[end..].starts_with('"') {
            return None;
        }
        tags.push(EntityTag { weak, opaque: &inner[..end] });
        rest = inner[end + 1..].trim_start_matches([' ', '\t']);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use poem::http::HeaderValue;

    use super::*;

    fn headers(name: &'static str, values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn tags() -> EntityTags {
        EntityTags::new(&[7; 32])
    }

    #[test]
    fn a_tag_names_one_issue_of_one_organization_at_one_version() {
        let tags = tags();
        let tag = tags.tag("acme", 1, 3);
        assert!(tag.starts_with("\"3.") && tag.ends_with('"'), "{tag}");
        assert_eq!(tag.len(), 2 + 2 + 22, "version, dot, 22 base64url characters: {tag}");
        let opaque = &tag[1..tag.len() - 1];
        assert_eq!(tags.version_of("acme", 1, opaque), Some(3));
        assert_eq!(tags.version_of("globex", 1, opaque), None, "another organization");
        assert_eq!(tags.version_of("acme", 2, opaque), None, "another issue");
        assert_eq!(tags.version_of("acme", 1, &opaque.replacen('3', "4", 1)), None, "another version");
        assert_eq!(EntityTags::new(&[8; 32]).version_of("acme", 1, opaque), None, "another key");
        assert_eq!(tag, tags.tag("acme", 1, 3), "the same on every call");
        // The separator keeps ("ab", 12) and ("ab1", 2) apart.
        assert_ne!(tags.tag("ab", 12, 3), tags.tag("ab1", 2, 3));
    }

    #[test]
    fn if_match_takes_one_well_formed_tag_or_a_star() {
        let tags = tags();
        let tag = tags.tag("acme", 1, 3);
        let expected = |values: &[&str]| {
            IfMatch::from_headers(&headers("if-match", values)).map(|m| m.expected_version(&tags, "acme", 1))
        };
        assert_eq!(expected(&[]).unwrap(), None);
        assert_eq!(expected(&[" * "]).unwrap(), None);
        assert_eq!(expected(&[&tag]).unwrap(), Some(3));
        assert_eq!(expected(&[&format!("W/{tag}")]).unwrap(), Some(-1), "weak never matches");
        assert_eq!(expected(&["\"3\""]).unwrap(), Some(-1), "well formed, not ours");
        assert_eq!(expected(&[&tags.tag("globex", 1, 3)]).unwrap(), Some(-1));
        for malformed in ["3", "", " ", "\"3", "3\"", "\"a\"b", "W/3", "*, \"3\"", "\"a\" \"b\""] {
            let err = expected(&[malformed]).unwrap_err();
            assert!(err.to_string().contains("entity tag"), "{malformed:?}: {err}");
        }
        assert!(expected(&[&tag, &tag]).is_err(), "two field lines");
        assert!(expected(&[&format!("{tag}, {tag}")]).is_err(), "a list");
    }

    #[test]
    fn if_none_match_compares_weakly_and_only_our_tags_of_this_issue() {
        let tags = tags();
        let tag = tags.tag("acme", 1, 2);
        let hits = |values: &[&str]| {
            IfNoneMatch::from_headers(&headers("if-none-match", values)).map(|m| m.hits(&tags, "acme", 1, 2))
        };
        assert!(hits(&[&tag]).unwrap());
        assert!(hits(&[&format!("W/{tag}")]).unwrap());
        assert!(hits(&[&format!("\"x\", {tag}")]).unwrap());
        assert!(hits(&["\"x\"", &tag]).unwrap(), "several field lines form one list");
        assert!(hits(&["*"]).unwrap());
        assert!(!hits(&[]).unwrap());
        assert!(!hits(&["\"2\""]).unwrap(), "the version alone is not a tag of ours");
        assert!(!hits(&[&tags.tag("globex", 1, 2)]).unwrap(), "another organization's");
        assert!(!hits(&[&tags.tag("acme", 2, 2)]).unwrap(), "another issue's");
        assert!(!hits(&[&tags.tag("acme", 1, 1)]).unwrap(), "an older version");
        for malformed in ["garbage", "", "2", &format!("{tag}, garbage"), "*, \"x\"", "\"x\" y"] {
            assert!(hits(&[malformed]).is_err(), "{malformed:?}");
        }
    }
}
