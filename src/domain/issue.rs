//! Issues as the API shows them and as clients create and change them.
//!
//! These types double as the OpenAPI schemas (poem-openapi derives): the service is thin
//! on purpose, and one definition keeps the documentation and the data in step.

use poem_openapi::{Enum, Object, types::MaybeUndefined};
use serde::Serialize;
use time::OffsetDateTime;

/// Where an issue stands.
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    #[default]
    Open,
    InProgress,
    Done,
}

/// How urgent an issue is.
#[derive(Enum, Serialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Priority {
    Low,
    #[default]
    Medium,
    High,
}

impl Status {
    pub const ALL: [Status; 3] = [Status::Open, Status::InProgress, Status::Done];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Open => "OPEN",
            Status::InProgress => "IN_PROGRESS",
            Status::Done => "DONE",
        }
    }

    pub fn parse(value: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == value)
    }
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Low, Priority::Medium, Priority::High];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "LOW",
            Priority::Medium => "MEDIUM",
            Priority::High => "HIGH",
        }
    }

    pub fn parse(value: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == value)
    }
}

/// An issue of one organization.
#[derive(Object, Serialize, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase")]
#[serde(rename_all = "camelCase")]
pub struct Issue {
    /// The issue's number within its organization, starting at 1 and never reused.
    pub id: i64,
    /// Short summary.
    pub title: String,
    /// Body text.
    pub description: String,
    pub status: Status,
    pub priority: Priority,
    /// The assigned user's id, or null.
    pub assignee_id: Option<String>,
    /// The organization the issue belongs to: the caller's.
    pub organization_id: String,
    /// The user who created the issue.
    pub created_by: String,
    /// When the issue was created (UTC, microseconds).
    #[serde(with = "crate::domain::issue::timestamp")]
    pub created_at: OffsetDateTime,
    /// When the issue last changed (UTC, microseconds).
    #[serde(with = "crate::domain::issue::timestamp")]
    pub updated_at: OffsetDateTime,
    /// Incremented on every change; not part of the body.
    #[oai(skip)]
    #[serde(skip)]
    pub version: i64,
}

/// An [`Issue`] borrowed from where it was read (a database row): the same JSON, with no
/// copy of its text. List pages are written from these.
#[derive(Serialize, Debug, Clone, Copy, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IssueRef<'a> {
    pub id: i64,
    pub title: &'a str,
    pub description: &'a str,
    pub status: Status,
    pub priority: Priority,
    pub assignee_id: Option<&'a str>,
    pub organization_id: &'a str,
    pub created_by: &'a str,
    #[serde(with = "crate::domain::issue::timestamp")]
    pub created_at: OffsetDateTime,
    #[serde(with = "crate::domain::issue::timestamp")]
    pub updated_at: OffsetDateTime,
}

/// A new issue. Only these fields are accepted: the organization and the creator are
/// the caller's, never the body's.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct NewIssue {
    /// 1–255 characters, not blank, no control characters.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub title: String,
    /// 1–50,000 characters, not blank, no control characters except tab and line breaks.
    #[oai(validator(min_length = 1, max_length = 50000))]
    pub description: String,
    /// Defaults to OPEN.
    pub status: Option<Status>,
    /// Defaults to MEDIUM.
    pub priority: Option<Priority>,
    /// The assigned user's id (1–64 characters of `A-Z a-z 0-9 . _ : @ -`), or null.
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._:@-]{1,64}$"))]
    pub assignee_id: Option<String>,
}

/// A change to an issue: any subset of these fields. `assigneeId: null` unassigns;
/// `{}` changes nothing.
#[derive(Object, Debug, Clone, PartialEq, Default)]
#[oai(rename_all = "camelCase", deny_unknown_fields)]
pub struct IssuePatch {
    /// 1–255 characters, not blank, no control characters.
    #[oai(validator(min_length = 1, max_length = 255))]
    pub title: Option<String>,
    /// 1–50,000 characters, not blank, no control characters except tab and line breaks.
    #[oai(validator(min_length = 1, max_length = 50000))]
    pub description: Option<String>,
    pub status: Option<Status>,
    pub priority: Option<Priority>,
    /// A user id, or null to unassign.
    #[oai(validator(min_length = 1, max_length = 64, pattern = r"^[A-Za-z0-9._:@-]{1,64}$"))]
    pub assignee_id: MaybeUndefined<String>,
}

/// Timestamps as the API prints them everywhere (also inside activity entries, see
/// `app.json_time`): UTC, always six fractional digits, `Z`.
pub mod timestamp {
    use serde::Serializer;
    use time::{OffsetDateTime, UtcOffset};

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written by hand: `time`'s general formatter cost a
    /// list page measurable time (two timestamps per issue). Years outside 0..=9999 (which
    /// `time` does not decode without its large-dates feature) are clamped, never garbled.
    pub fn format(value: OffsetDateTime) -> String {
        let bytes = digits(value);
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The same as ASCII bytes.
    pub fn digits(value: OffsetDateTime) -> [u8; 27] {
        let utc = value.to_offset(UtcOffset::UTC);
        let mut out = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                out[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, utc.year().clamp(0, 9999) as u32);
        put(5, 2, u8::from(utc.month()).into());
        put(8, 2, utc.day().into());
        put(11, 2, utc.hour().into());
        put(14, 2, utc.minute().into());
        put(17, 2, utc.second().into());
        put(20, 6, utc.microsecond());
        out
    }

    pub fn serialize<S: Serializer>(value: &OffsetDateTime, serializer: S) -> Result<S::Ok, S::Error> {
        let bytes = digits(*value);
        serializer.serialize_str(std::str::from_utf8(&bytes).expect("ASCII digits and separators"))
    }

    /// The same for an optional timestamp (`null` when absent).
    pub mod option {
        use serde::Serializer;
        use time::OffsetDateTime;

        pub fn serialize<S: Serializer>(
            value: &Option<OffsetDateTime>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(value) => super::serialize(value, serializer),
                None => serializer.serialize_none(),
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use time::{OffsetDateTime, UtcOffset, format_description::well_known::Rfc3339, macros::datetime};

        #[test]
        fn timestamps_print_in_utc_with_six_fractional_digits() {
            assert_eq!(super::format(datetime!(2026-01-31 12:00:00 UTC)), "2026-01-31T12:00:00.000000Z");
            assert_eq!(
                super::format(datetime!(0987-06-05 04:03:02.000001 +02:00)),
                "0987-06-05T02:03:02.000001Z"
            );
            assert_eq!(
                super::format(datetime!(9999-12-31 23:59:59.999999 UTC)),
                "9999-12-31T23:59:59.999999Z"
            );
            let now = OffsetDateTime::now_utc().to_offset(UtcOffset::from_hms(-5, 30, 0).unwrap());
            let parsed = OffsetDateTime::parse(&super::format(now), &Rfc3339).unwrap();
            assert_eq!(parsed, now.replace_nanosecond(now.microsecond() * 1000).unwrap());
        }
    }
}
