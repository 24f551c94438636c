//! Value rules, written once for the service. The SQL CHECK constraints in
//! `sql/migrations` hold the very same limits (tests compare the two), so a psql user and
//! a curl user meet the same rules.

/// Longest title, in characters (Unicode scalar values, as `char_length` counts them).
pub const TITLE_MAX_CHARS: usize = 255;
/// Longest description, in characters.
pub const DESCRIPTION_MAX_CHARS: usize = 50_000;
/// Longest organization or user id.
pub const ID_MAX_CHARS: usize = 64;

// The text rules below as regular expressions, for the OpenAPI document, so that clients
// and spec-driven tools know them. The syntax means the same in ECMA 262 (Swagger UI),
// Python (schemathesis) and Rust (the tests, which compare these with the functions):
// `\x..` and `\u....` escapes only. Control characters are Unicode Cc (U+0000-U+001F,
// U+007F-U+009F); "blank" is Unicode White_Space, spelled out because `\s` differs
// between those engines.
/// A title: no control character, and at least one character that is not White_Space.
pub const TITLE_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x1f\x7f-\x9f]*$";
/// A description: as a title, but tab, line feed and carriage return are allowed.
pub const DESCRIPTION_PATTERN: &str = r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*[^\x00-\x20\x7f-\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]*$";

/// The instants a timestamp parameter may name: 0001-01-01T00:00:00Z ..=
/// 9999-12-31T23:59:59.999999Z, once converted to UTC. A value such as
/// `9999-12-31T23:59:00-00:01` is valid RFC 3339, but its UTC instant is in year 10000:
/// converting it overflows (postgres-types panics while encoding it).
pub fn timestamp_in_range(value: time::OffsetDateTime) -> bool {
    const FIRST: time::OffsetDateTime = time::macros::datetime!(0001-01-01 00:00:00 UTC);
    const LAST: time::OffsetDateTime = time::macros::datetime!(9999-12-31 23:59:59.999999 UTC);
    // Comparisons of OffsetDateTime compare instants, whatever the offsets.
    (FIRST..=LAST).contains(&value)
}

/// The id rule in words, for messages and descriptions: a macro, so `concat!` can put it
/// in constants.
macro_rules! id_rule {
    () => {
        "1-64 characters of A-Z a-z 0-9 . _ : @ -"
    };
}
pub(crate) use id_rule;

/// The id rule in words.
pub const ID_RULE: &str = id_rule!();
/// The id rule as the OpenAPI document's `pattern` (poem-openapi's validator attributes
/// take literals: a test checks every id pattern of the document is this one).
pub const ID_PATTERN: &str = r"^[A-Za-z0-9._:@-]{1,64}$";

/// Organization and user ids: [`ID_RULE`] (SQL: `app.is_valid_id`).
pub fn is_valid_id(value: &str) -> bool {
    (1..=ID_MAX_CHARS).contains(&value.len())
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Longest `Idempotency-Key`, in characters (all printable ASCII, so bytes too).
pub const IDEMPOTENCY_KEY_MAX_CHARS: usize = 255;
/// The `Idempotency-Key` rule as the OpenAPI document's `pattern` (the header's validator
/// attribute takes a literal: a test checks the document's is this one).
pub const IDEMPOTENCY_KEY_PATTERN: &str = r"^[ -~]{1,255}$";

/// An `Idempotency-Key`: 1-255 printable ASCII characters (SQL:
/// `app.is_valid_idempotency_key`; a test compares the two).
pub fn is_valid_idempotency_key(value: &str) -> bool {
    (1..=IDEMPOTENCY_KEY_MAX_CHARS).contains(&value.len())
        && value.bytes().all(|b| (b' '..=b'~').contains(&b))
}

/// Why a text field is not acceptable, phrased for an API client.
pub fn text_problem(value: &str, max_chars: usize, allow_line_breaks: bool) -> Option<String> {
    let length = value.chars().count();
    if length == 0 {
        return Some("must not be empty".into());
    }
    if length > max_chars {
        return Some(format!("must be at most {max_chars} characters (got {length})"));
    }
    // char::is_whitespace is Unicode White_Space, the set SQL's app.is_blank trims.
    if value.chars().all(char::is_whitespace) {
        return Some("must not be blank".into());
    }
    // char::is_control is Unicode category Cc, the set SQL's app.has_control_chars matches.
    let allowed = |c: char| allow_line_breaks && matches!(c, '\t' | '\n' | '\r');
    if let Some(c) = value.chars().find(|&c| c.is_control() && !allowed(c)) {
        let what = if allow_line_breaks {
            "control characters other than tab and line breaks"
        } else {
            "control characters"
        };
        return Some(format!("must not contain {what} (found U+{:04X})", c as u32));
    }
    None
}

pub fn title_problem(value: &str) -> Option<String> {
    text_problem(value, TITLE_MAX_CHARS, false)
}

pub fn description_problem(value: &str) -> Option<String> {
    text_problem(value, DESCRIPTION_MAX_CHARS, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_the_documented_alphabet_and_length() {
        assert!(is_valid_id("org-1"));
        assert!(is_valid_id("a.b_c:d@e-F9"));
        assert!(is_valid_id(&"x".repeat(64)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id(&"x".repeat(65)));
        assert!(!is_valid_id("org 1"));
        assert!(!is_valid_id("org/1"));
        assert!(!is_valid_id("orgé"));
    }

    #[test]
    fn titles_reject_empty_blank_long_and_control_characters() {
        assert_eq!(title_problem("Fix login"), None);
        assert_eq!(title_problem(&"é".repeat(255)), None);
        assert!(title_problem("").unwrap().contains("empty"));
        assert!(title_problem(" \u{3000}\t").unwrap().contains("blank"));
        assert!(title_problem(&"é".repeat(256)).unwrap().contains("at most 255"));
        assert!(title_problem("a\tb").unwrap().contains("U+0009"));
        assert!(title_problem("a\u{0}b").unwrap().contains("U+0000"));
        assert!(title_problem("a\u{85}b").unwrap().contains("U+0085"));
    }

    #[test]
    fn descriptions_allow_tab_and_line_breaks_only() {
        assert_eq!(description_problem("line 1\r\nline 2\tend"), None);
        assert!(description_problem("bell\u{7}").unwrap().contains("U+0007"));
        assert!(description_problem("\n\n").unwrap().contains("blank"));
    }
}
