//! The activity endpoints: the organization's feed and one issue's history. Each
//! handler: identity, query, one stored function, a page with its `Link` header.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi, Tags,
    param::{Path, Query},
};
use time::OffsetDateTime;

use super::{LIST_BAD_REQUEST, default_page_size};
use crate::http::{
    error::{ErrorStatuses, Failure, SERVICE_UNAVAILABLE, UNAUTHORIZED},
    extract::{
        auth::Caller,
        json::ListBody,
        query::{CheckedQuery, QuerySpec, ValueList, check_timestamps},
    },
};
use crate::{
    db::{self, Database},
    domain::{Action, ActivityEntry, ActivityQuery},
};

#[derive(Tags)]
pub(super) enum ApiTags {
    /// Who changed what, when: every change to an issue, recorded in the transaction of
    /// the change and never altered. Readable by ADMIN and MEMBER.
    Activity,
}

pub struct ActivityApi;

#[derive(ApiResponse)]
pub enum ActivityPage {
    /// One page of activity entries (a plain array).
    #[oai(status = 200)]
    Ok(
        ListBody<ActivityEntry>,
        /// RFC 8288 link to the next page (`rel="next"`); absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

pub struct FeedErrors;
impl ErrorStatuses for FeedErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[LIST_BAD_REQUEST, UNAUTHORIZED, SERVICE_UNAVAILABLE];
}
pub struct HistoryErrors;
impl ErrorStatuses for HistoryErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        LIST_BAD_REQUEST,
        UNAUTHORIZED,
        (404, "The organization never had this issue."),
        SERVICE_UNAVAILABLE,
    ];
}

/// The query parameters of `GET /api/activity`.
pub struct FeedParameters;
impl QuerySpec for FeedParameters {
    const PARAMETERS: &'static [&'static str] =
        &["limit", "cursor", "actorId", "action", "issueId", "since", "until"];
    const LISTS: &'static [&'static str] = &["action"];
}

/// The query parameters of `GET /api/issues/{id}/activity`.
pub struct HistoryParameters;
impl QuerySpec for HistoryParameters {
    const PARAMETERS: &'static [&'static str] = &["limit", "cursor"];
    const LISTS: &'static [&'static str] = &[];
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Activity")]
impl ActivityApi {
    /// The organization's activity
    ///
    /// Every change to the caller's organization's issues, newest first, a page at a
    /// time: follow the `Link` header (`rel="next"`) until it is absent. Entries are
    /// numbered in commit order, so new entries only ever appear before the first page,
    /// never between pages. Filters combine (all must hold).
    #[oai(path = "/activity", method = "get", operation_id = "listActivity")]
    #[allow(clippy::too_many_arguments)] // one argument per documented query parameter
    async fn feed(
        &self,
        caller: Caller,
        query: CheckedQuery<FeedParameters>,
        db: Data<&Database>,
        /// Entries per page, 1-200. A page holds fewer when they are large (the server caps
        /// a page's size, PAGE_MAX_BYTES): follow `Link`, never count items to detect the end.
        #[oai(default = "default_page_size", validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<i32>,
        /// Where to continue: the `cursor` of the previous page's `Link` header. Valid only
        /// with the same filters.
        #[oai(validator(max_length = 1024, pattern = r"^[A-Za-z0-9_-]+$"))]
        cursor: Query<Option<String>>,
        /// Changes made by this user.
        #[oai(name = "actorId", validator(pattern = r"^[A-Za-z0-9._:@-]{1,64}$"))]
        actor_id: Query<Option<String>>,
        /// Any of these actions: repeat the parameter or separate values with commas.
        action: Query<Option<ValueList<Action>>>,
        /// Changes to this issue (also a deleted one).
        #[oai(name = "issueId", validator(minimum(value = "1")))]
        issue_id: Query<Option<i64>>,
        /// Changes made at or after this time, RFC 3339, e.g. `2026-01-31T00:00:00Z` (in a
        /// URL, write `+` of an offset as `%2B`).
        since: Query<Option<OffsetDateTime>>,
        /// Changes made before this time (exclusive), RFC 3339.
        until: Query<Option<OffsetDateTime>>,
    ) -> Result<ActivityPage, Failure<FeedErrors>> {
        check_timestamps(&[("since", since.0), ("until", until.0)])?;
        let request = ActivityQuery {
            limit: limit.0,
            cursor: cursor.0,
            actor_id: actor_id.0,
            actions: action.0.map(|list| list.0).unwrap_or_default(),
            issue_id: issue_id.0,
            since: since.0,
            until: until.0,
        };
        let page = db::activity::feed(&db, &caller.0, &request).await?;
        let (body, next) = ListBody::page(page.items(), page.max_bytes())?;
        let link = next.map(|cursor| query.next_link(&cursor));
        Ok(ActivityPage::Ok(body, link))
    }

    /// An issue's history
    ///
    /// Every change to one issue, oldest first, a page at a time (follow the `Link`
    /// header). A deleted issue's history stays readable: its `deleted` entry holds the
    /// issue as it was. 404 when the organization never had the issue.
    #[oai(path = "/issues/:id/activity", method = "get", operation_id = "listIssueActivity")]
    async fn history(
        &self,
        caller: Caller,
        query: CheckedQuery<HistoryParameters>,
        db: Data<&Database>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// Entries per page, 1-200. A page holds fewer when they are large (the server caps
        /// a page's size, PAGE_MAX_BYTES): follow `Link`, never count items to detect the end.
        #[oai(default = "default_page_size", validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<i32>,
        /// Where to continue: the `cursor` of the previous page's `Link` header.
        #[oai(validator(max_length = 1024, pattern = r"^[A-Za-z0-9_-]+$"))]
        cursor: Query<Option<String>>,
    ) -> Result<ActivityPage, Failure<HistoryErrors>> {
        let page = db::activity::history(&db, &caller.0, id.0, limit.0, cursor.as_deref()).await?;
        let (body, next) = ListBody::page(page.items(), page.max_bytes())?;
        let link = next.map(|cursor| query.next_link(&cursor));
        Ok(ActivityPage::Ok(body, link))
    }
}
