//! Conditional requests (RFC 9110 §13) on issues: a strong `ETag` made from the row's
//! `version`, `If-None-Match` on GET (304) and `If-Match` on PATCH and DELETE (412).
//! The version comparison for writes happens in SQL, in the statement that writes; this
//! module only reads and writes the header syntax.

use poem::http::HeaderMap;

use super::error::ApiError;

/// The strong entity tag of an issue at `version`: `"3"`.
pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

/// What an `If-Match` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfMatch {
    /// No header, or `*`: any current version will do.
    Any,
    /// Exactly this version. A tag that cannot be ours (weak, malformed) becomes version 0,
    /// which no issue has: the write is refused with 412 and the current ETag.
    Version(i64),
}

impl IfMatch {
    pub fn parse(header: Option<&str>) -> Result<IfMatch, ApiError> {
        let Some(header) = header else { return Ok(IfMatch::Any) };
        if header.trim() == "*" {
            return Ok(IfMatch::Any);
        }
        let tags: Vec<&str> = list(header).collect();
        match tags.as_slice() {
            // An empty list: no tag can match (RFC 9110 §13.1.1), never "no condition".
            [] => Ok(IfMatch::Version(0)),
            // Strong comparison: a weak tag never matches.
            [tag] => Ok(IfMatch::Version(strong_version(tag).unwrap_or(0))),
            _ => Err(ApiError::invalid("If-Match", "must be one ETag (as sent in ETag) or *")),
        }
    }

    /// The version SQL checks, if any.
    pub fn expected_version(self) -> Option<i64> {
        match self {
            IfMatch::Any => None,
            IfMatch::Version(version) => Some(version),
        }
    }
}

/// Whether `If-None-Match` matches an issue at `version` (weak comparison): the client's
/// copy is current and a 304 says so.
pub fn none_match_hits(header: Option<&str>, version: i64) -> bool {
    let Some(header) = header else { return false };
    header.trim() == "*"
        || list(header).any(|tag| strong_version(tag.strip_prefix("W/").unwrap_or(tag)) == Some(version))
}

/// How often a guarded header may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrences {
    Once,
    /// Several field lines form one list (RFC 9110 §5.3).
    Repeatable,
}

/// poem-openapi's `Header<T>` reads a value that is not visible ASCII as if the header
/// were absent (it skips what `to_str` refuses). For a precondition or an idempotency key
/// "absent" means "no check", so such a value is refused here, before it can turn a
/// conditional or idempotent request into an unconditional one. `Occurrences::Once`
/// also refuses a second copy, which `Header<T>` would silently ignore.
pub fn refuse_unreadable(
    headers: &HeaderMap,
    name: &'static str,
    occurs: Occurrences,
) -> Result<(), ApiError> {
    let values = headers.get_all(name);
    if values.iter().any(|value| value.to_str().is_err()) {
        return Err(ApiError::invalid(name, "must be visible ASCII"));
    }
    if occurs == Occurrences::Once && values.iter().nth(1).is_some() {
        return Err(ApiError::invalid(name, "must be sent once"));
    }
    Ok(())
}

fn list(header: &str) -> impl Iterator<Item = &str> {
    header.split(',').map(str::trim).filter(|tag| !tag.is_empty())
}

/// The version in a strong tag `"N"`.
fn strong_version(tag: &str) -> Option<i64> {
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok().filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_takes_one_strong_tag_or_a_star() {
        assert_eq!(IfMatch::parse(None).unwrap(), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some(" * ")).unwrap(), IfMatch::Any);
        assert_eq!(IfMatch::parse(Some("\"3\"")).unwrap(), IfMatch::Version(3));
        assert_eq!(IfMatch::parse(Some("W/\"3\"")).unwrap(), IfMatch::Version(0), "weak never matches");
        assert_eq!(IfMatch::parse(Some("3")).unwrap(), IfMatch::Version(0), "unquoted is not a tag");
        assert_eq!(IfMatch::parse(Some("\"-1\"")).unwrap(), IfMatch::Version(0));
        assert!(IfMatch::parse(Some("\"1\", \"2\"")).is_err());
        assert_eq!(etag(7), "\"7\"");
    }

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        assert!(none_match_hits(Some("\"2\""), 2));
        assert!(none_match_hits(Some("W/\"2\""), 2));
        assert!(none_match_hits(Some("\"1\", \"2\""), 2));
        assert!(none_match_hits(Some("*"), 2));
        assert!(!none_match_hits(Some("\"1\""), 2));
        assert!(!none_match_hits(None, 2));
        assert!(!none_match_hits(Some("garbage"), 2));
    }
}
