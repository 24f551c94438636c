//! Lists that are read a page at a time: what to list (filters, order, position) and
//! what one page holds. The rules themselves (defaults, limits, what a cursor may be
//! used with) live in SQL, in the `api.list_*` functions.

use poem_openapi::Enum;
use time::OffsetDateTime;

use super::{Action, Priority, Status};

/// Rows per page when the client does not say.
pub const DEFAULT_PAGE_SIZE: i32 = 50;
/// The most rows one page may hold.
pub const MAX_PAGE_SIZE: i32 = 200;
/// The longest search text, in characters.
pub const SEARCH_MAX_CHARS: usize = 200;

/// The order of an issue list. A leading `-` means descending; ties are broken by the
/// issue number in the same direction.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueSort {
    #[oai(rename = "createdAt")]
    CreatedAt,
    #[oai(rename = "-createdAt")]
    CreatedAtDescending,
    #[oai(rename = "updatedAt")]
    UpdatedAt,
    #[oai(rename = "-updatedAt")]
    UpdatedAtDescending,
    #[oai(rename = "priority")]
    Priority,
    #[oai(rename = "-priority")]
    PriorityDescending,
    /// Best match first, then newest: only with `q`, and its default.
    #[oai(rename = "relevance")]
    Relevance,
}

impl IssueSort {
    /// The spelling of the query parameter and of `api.list_issues(sort => ...)`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueSort::CreatedAt => "createdAt",
            IssueSort::CreatedAtDescending => "-createdAt",
            IssueSort::UpdatedAt => "updatedAt",
            IssueSort::UpdatedAtDescending => "-updatedAt",
            IssueSort::Priority => "priority",
            IssueSort::PriorityDescending => "-priority",
            IssueSort::Relevance => "relevance",
        }
    }
}

/// Which issues to list, in which order, from where. Empty lists and `None` mean "any";
/// the default is the first page of everything, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct IssueQuery {
    pub limit: i32,
    pub cursor: Option<String>,
    pub statuses: Vec<Status>,
    pub priorities: Vec<Priority>,
    /// A user id, or `none` for the unassigned.
    pub assignee_id: Option<String>,
    pub created_by: Option<String>,
    pub created_after: Option<OffsetDateTime>,
    pub created_before: Option<OffsetDateTime>,
    pub updated_after: Option<OffsetDateTime>,
    pub search: Option<String>,
    /// `None`: newest first, or by relevance when searching.
    pub sort: Option<IssueSort>,
}

/// Which entries of the organization's activity feed to list; the default is the first
/// page of everything.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityQuery {
    pub limit: i32,
    pub cursor: Option<String>,
    pub actor_id: Option<String>,
    pub actions: Vec<Action>,
    pub issue_id: Option<i64>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
}

impl Default for IssueQuery {
    fn default() -> Self {
        IssueQuery {
            limit: DEFAULT_PAGE_SIZE,
            cursor: None,
            statuses: Vec::new(),
            priorities: Vec::new(),
            assignee_id: None,
            created_by: None,
            created_after: None,
            created_before: None,
            updated_after: None,
            search: None,
            sort: None,
        }
    }
}

impl Default for ActivityQuery {
    fn default() -> Self {
        ActivityQuery {
            limit: DEFAULT_PAGE_SIZE,
            cursor: None,
            actor_id: None,
            actions: Vec::new(),
            issue_id: None,
            since: None,
            until: None,
        }
    }
}
