//! The issue endpoints. Each handler: identity, input, one stored function, response.

use poem::{Request, web::Data};
use poem_openapi::{
    ApiResponse, OpenApi, Tags,
    param::{Header, Path, Query},
    types::MaybeUndefined,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::{LIST_BAD_REQUEST, default_page_size};
use crate::http::{
    error::{
        ApiError, BAD_REQUEST, ErrorStatuses, FORBIDDEN, Failure, FieldError, NOT_FOUND, PAYLOAD_TOO_LARGE,
        PRECONDITION_FAILED, REQUEST_TIMEOUT, SERVICE_UNAVAILABLE, UNAUTHORIZED, UNPROCESSABLE_ENTITY,
        UNSUPPORTED_MEDIA_TYPE,
    },
    extract::{
        auth::{AdminCaller, Caller},
        json::{Fields, FromJsonObject, JsonBody, ListBody},
        preconditions::{EntityTags, IfMatch, IfNoneMatch, refuse_unreadable},
        query::{CheckedQuery, NoParameters, QuerySpec, ValueList, check_timestamps},
    },
};
use crate::{
    db::{self, Database},
    domain::{
        Issue, IssuePatch, IssueQuery, IssueSort, NewIssue, Priority, Status,
        page::SEARCH_MAX_CHARS,
        rules::{ID_RULE, description_problem, is_valid_id, text_problem, title_problem},
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Issues of the calling organization (another organization's issue is a 404).
    Issues,
}

pub struct IssuesApi;

#[derive(ApiResponse)]
pub enum CreatedIssue {
    /// The issue was created; `Location` is its URL. A retry with the same
    /// `Idempotency-Key` gets this same response, with `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        JsonBody<Issue>,
        /// The new issue's URL, e.g. `/api/issues/1`.
        #[oai(header = "Location")]
        String,
        /// The issue's version, for `If-Match` and `If-None-Match`.
        #[oai(header = "ETag")]
        String,
        /// `true` when this is the stored response to an earlier request with the same
        /// `Idempotency-Key`: nothing was created this time.
        #[oai(header = "Idempotent-Replayed")]
        Option<bool>,
    ),
}

#[derive(ApiResponse)]
pub enum OneIssue {
    /// The issue.
    #[oai(status = 200)]
    Ok(
        JsonBody<Issue>,
        /// The issue's version, for `If-Match` and `If-None-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum FetchedIssue {
    /// The issue.
    #[oai(status = 200)]
    Ok(
        JsonBody<Issue>,
        /// The issue's version, for `If-Match` and `If-None-Match`.
        #[oai(header = "ETag")]
        String,
    ),
    /// `If-None-Match` names the current version: the copy the client has is current.
    #[oai(status = 304)]
    NotModified(
        /// The issue's version.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum IssueList {
    /// One page of the organization's issues (a plain array; `[]` when none match).
    #[oai(status = 200)]
    Ok(
        ListBody<Issue>,
        /// RFC 8288 link to the next page, `</api/issues?...&cursor=...>; rel="next"`;
        /// absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum RestoredIssue {
    /// The issue is back, under its own number, as it was when deleted.
    #[oai(status = 200)]
    Ok(
        JsonBody<Issue>,
        /// The issue's version, for `If-Match` and `If-None-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The issue was deleted; its history keeps a copy.
    #[oai(status = 204)]
    NoContent,
}

pub struct CreateErrors;
impl ErrorStatuses for CreateErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        (
            403,
            "The organization has as many issues as its quota allows (`ORG_MAX_ISSUES`); the problem's \
             `type` is `urn:tenantry:problem:quota-exceeded`.",
        ),
        PAYLOAD_TOO_LARGE,
        REQUEST_TIMEOUT,
        UNSUPPORTED_MEDIA_TYPE,
        UNPROCESSABLE_ENTITY,
        SERVICE_UNAVAILABLE,
    ];
}

pub struct ListErrors;
impl ErrorStatuses for ListErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[LIST_BAD_REQUEST, UNAUTHORIZED, SERVICE_UNAVAILABLE];
}
pub struct RestoreErrors;
impl ErrorStatuses for RestoreErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        (
            403,
            "Only an ADMIN may restore; or the organization has as many issues as its quota allows \
             (`ORG_MAX_ISSUES`, problem `type` `urn:tenantry:problem:quota-exceeded`).",
        ),
        (404, "The organization never had this issue."),
        (409, "The issue is not deleted: there is nothing to restore."),
        SERVICE_UNAVAILABLE,
    ];
}

/// The query parameters of `GET /api/issues`.
pub struct IssueListParameters;
impl QuerySpec for IssueListParameters {
    const PARAMETERS: &'static [&'static str] = &[
        "limit",
        "cursor",
        "status",
        "priority",
        "assigneeId",
        "createdBy",
        "createdAfter",
        "createdBefore",
        "updatedAfter",
        "q",
        "sort",
    ];
    const LISTS: &'static [&'static str] = &["status", "priority"];
}

pub struct GetErrors;
impl ErrorStatuses for GetErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, SERVICE_UNAVAILABLE];
}
pub struct UpdateErrors;
impl ErrorStatuses for UpdateErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        FORBIDDEN,
        NOT_FOUND,
        PRECONDITION_FAILED,
        PAYLOAD_TOO_LARGE,
        REQUEST_TIMEOUT,
        UNSUPPORTED_MEDIA_TYPE,
        SERVICE_UNAVAILABLE,
    ];
}
pub struct DeleteErrors;
impl ErrorStatuses for DeleteErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, PRECONDITION_FAILED, SERVICE_UNAVAILABLE];
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Issues")]
impl IssuesApi {
    /// Create an issue
    ///
    /// Creates an issue in the caller's organization with the next issue number (each
    /// organization counts from 1) and records a `created` activity entry. Any role may
    /// create. The body cannot choose the organization, number, creator or timestamps.
    ///
    /// With an `Idempotency-Key`, a retry (same key, same body, same user) within 24 hours
    /// creates nothing and gets the first response again; the same key with another body
    /// is a 422. Concurrent requests with one key create one issue.
    #[oai(path = "/issues", method = "post", operation_id = "createIssue")]
    #[allow(clippy::too_many_arguments)] // one argument per documented input
    async fn create(
        &self,
        caller: Caller,
        request: &Request,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        tags: Data<&EntityTags>,
        /// Makes the POST safe to retry: 1-255 printable ASCII characters, unique per
        /// request (a UUID, say); remembered for 24 hours per organization.
        #[oai(
            name = "Idempotency-Key",
            validator(min_length = 1, max_length = 255, pattern = r"^[ -~]{1,255}$")
        )]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<NewIssue>,
    ) -> Result<CreatedIssue, Failure<CreateErrors>> {
        refuse_unreadable(request.headers(), "Idempotency-Key")?;
        let (issue, replayed) = match &idempotency_key.0 {
            Some(key) => db::issues::create_idempotently(&db, &caller.0, key, &body.0).await?,
            None => (db::issues::create(&db, &caller.0, &body.0).await?, false),
        };
        let location = format!("/api/issues/{}", issue.id);
        let tag = tags.tag(&caller.0.org_id, issue.id, issue.version);
        Ok(CreatedIssue::Created(JsonBody(issue), location, tag, replayed.then_some(true)))
    }

    /// List issues
    ///
    /// One page of the caller's organization's issues, newest first unless `sort` says
    /// otherwise. The body is a plain array; when more issues follow, the `Link` header
    /// holds the URL of the next page (`rel="next"`): follow it until it is absent. Pages
    /// are keyset pages: issues created or deleted between two requests never make another
    /// issue appear twice or go missing. There are no total counts (they cost a scan).
    ///
    /// Filters combine (all must hold); a list filter matches any of its values. `q`
    /// searches titles and descriptions: every word is a prefix (`logi` finds `login`),
    /// an issue must hold them all, and results come best match first (title words
    /// count more than description words), then newest. Other organizations' issues
    /// are never visible: PostgreSQL row-level security filters them.
    #[oai(path = "/issues", method = "get", operation_id = "listIssues")]
    #[allow(clippy::too_many_arguments)] // one argument per documented query parameter
    async fn list(
        &self,
        caller: Caller,
        query: CheckedQuery<IssueListParameters>,
        db: Data<&Database>,
        /// Issues per page, 1-200. A page holds fewer when they are large (the server caps
        /// a page's size, PAGE_MAX_BYTES): follow `Link`, never count items to detect the end.
        #[oai(default = "default_page_size", validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<i32>,
        /// Where to continue: the `cursor` of the previous page's `Link` header. Valid only
        /// with the same `sort`, filters and `q`.
        #[oai(validator(max_length = 1024, pattern = r"^[A-Za-z0-9_-]+$"))]
        cursor: Query<Option<String>>,
        /// Any of these statuses: repeat the parameter or separate values with commas.
        status: Query<Option<ValueList<Status>>>,
        /// Any of these priorities: repeat the parameter or separate values with commas.
        priority: Query<Option<ValueList<Priority>>>,
        /// Issues assigned to this user; `none` for unassigned issues.
        #[oai(name = "assigneeId", validator(pattern = r"^(none|[A-Za-z0-9._:@-]{1,64})$"))]
        assignee_id: Query<Option<String>>,
        /// Issues created by this user.
        #[oai(name = "createdBy", validator(pattern = r"^[A-Za-z0-9._:@-]{1,64}$"))]
        created_by: Query<Option<String>>,
        /// Issues created after this time (exclusive), RFC 3339, e.g. `2026-01-31T00:00:00Z`
        /// (in a URL, write `+` of an offset as `%2B`).
        #[oai(name = "createdAfter")]
        created_after: Query<Option<OffsetDateTime>>,
        /// Issues created before this time (exclusive), RFC 3339.
        #[oai(name = "createdBefore")]
        created_before: Query<Option<OffsetDateTime>>,
        /// Issues changed after this time (exclusive), RFC 3339.
        #[oai(name = "updatedAfter")]
        updated_after: Query<Option<OffsetDateTime>>,
        /// Search titles and descriptions: up to 10 words of letters or digits, each a
        /// prefix of at least 2 characters; 1-200 characters. A search whose prefixes
        /// match too many indexed words (`SEARCH_MAX_CANDIDATES`) is a 400: use longer or
        /// fewer words.
        #[oai(validator(min_length = 1))]
        q: Query<Option<String>>,
        /// `createdAt`, `updatedAt` or `priority` (LOW < MEDIUM < HIGH), with `-` first for
        /// descending; ties go by issue number in the same direction. Default `-createdAt`,
        /// or `relevance` (best match, then newest) with `q`.
        sort: Query<Option<IssueSort>>,
    ) -> Result<IssueList, Failure<ListErrors>> {
        check_timestamps(&[
            ("createdAfter", created_after.0),
            ("createdBefore", created_before.0),
            ("updatedAfter", updated_after.0),
        ])?;
        if let Some(problem) = q.as_deref().and_then(|q| text_problem(q, SEARCH_MAX_CHARS, false)) {
            return Err(ApiError::invalid("q", problem).into());
        }
        let request = IssueQuery {
            limit: limit.0,
            cursor: cursor.0,
            statuses: status.0.map(|list| list.0).unwrap_or_default(),
            priorities: priority.0.map(|list| list.0).unwrap_or_default(),
            assignee_id: assignee_id.0,
            created_by: created_by.0,
            created_after: created_after.0,
            created_before: created_before.0,
            updated_after: updated_after.0,
            search: q.0,
            sort: sort.0,
        };
        let rows = db::issues::list(&db, &caller.0, &request).await?;
        let (body, next) = ListBody::page(rows.items(), rows.max_bytes())?;
        let link = next.map(|cursor| query.next_link(&cursor));
        Ok(IssueList::Ok(body, link))
    }

    /// Get an issue
    ///
    /// One issue of the caller's organization by its number. Another organization's
    /// issue is indistinguishable from a missing one (404). With `If-None-Match` naming
    /// the current `ETag`, the answer is 304 without a body.
    #[oai(path = "/issues/:id", method = "get", operation_id = "getIssue")]
    #[allow(clippy::too_many_arguments)] // one argument per documented input
    async fn get(
        &self,
        caller: Caller,
        request: &Request,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        tags: Data<&EntityTags>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// ETags of copies the client has (or `*`): 304 when one is current.
        #[oai(
            name = "If-None-Match",
            validator(
                pattern = r#"^[ \t]*(\*|(W/)?"[\x21\x23-\x7E]*"([ \t]*,[ \t]*(W/)?"[\x21\x23-\x7E]*")*)[ \t]*$"#
            )
        )]
        // Documents and pattern-checks the header; every field line of it is read by
        // `IfNoneMatch::from_headers`.
        _if_none_match: Header<Option<String>>,
    ) -> Result<FetchedIssue, Failure<GetErrors>> {
        let copies = IfNoneMatch::from_headers(request.headers())?;
        let issue = db::issues::get(&db, &caller.0, id.0).await?;
        let tag = tags.tag(&caller.0.org_id, issue.id, issue.version);
        if copies.hits(&tags, &caller.0.org_id, issue.id, issue.version) {
            return Ok(FetchedIssue::NotModified(tag));
        }
        Ok(FetchedIssue::Ok(JsonBody(issue), tag))
    }

    /// Update an issue (ADMIN)
    ///
    /// Changes any subset of title, description, status, priority and assigneeId
    /// (`null` unassigns) and records an `updated` activity entry listing each changed
    /// field's old and new value. `{}`, or values equal to the current ones, change
    /// nothing and record nothing. With `If-Match`, the change is made only if the issue
    /// is still at that version (else 412 with the current `ETag`), checked in the
    /// database by the statement that writes.
    #[oai(path = "/issues/:id", method = "patch", operation_id = "updateIssue")]
    #[allow(clippy::too_many_arguments)] // one argument per documented input
    async fn update(
        &self,
        caller: AdminCaller,
        request: &Request,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        tags: Data<&EntityTags>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// The `ETag` the change is based on (or `*`): 412 if the issue is at another version.
        #[oai(name = "If-Match", validator(pattern = r#"^[ \t]*(\*|(W/)?"[\x21\x23-\x7E]*")[ \t]*$"#))]
        // Documents and pattern-checks the header; its value is read, strictly, from the raw
        // field lines by `IfMatch::from_headers`.
        _if_match: Header<Option<String>>,
        body: JsonBody<IssuePatch>,
    ) -> Result<OneIssue, Failure<UpdateErrors>> {
        let org = &caller.0.org_id;
        let expected = IfMatch::from_headers(request.headers())?.expected_version(&tags, org, id.0);
        let issue = db::issues::update_at(&db, &caller.0, id.0, &body.0, expected)
            .await
            .map_err(|err| tags.precondition_failed(err, org, id.0))?;
        let tag = tags.tag(org, issue.id, issue.version);
        Ok(OneIssue::Ok(JsonBody(issue), tag))
    }

    /// Delete an issue (ADMIN)
    ///
    /// Deletes the issue and records a `deleted` activity entry holding the whole final
    /// issue. Its number is never reused. With `If-Match`, only if the issue is still at
    /// that version (else 412 with the current `ETag`).
    #[oai(path = "/issues/:id", method = "delete", operation_id = "deleteIssue")]
    #[allow(clippy::too_many_arguments)] // one argument per documented input
    async fn delete(
        &self,
        caller: AdminCaller,
        request: &Request,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        tags: Data<&EntityTags>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// The `ETag` the deletion is based on (or `*`): 412 if the issue is at another version.
        #[oai(name = "If-Match", validator(pattern = r#"^[ \t]*(\*|(W/)?"[\x21\x23-\x7E]*")[ \t]*$"#))]
        // Documents and pattern-checks the header; its value is read, strictly, from the raw
        // field lines by `IfMatch::from_headers`.
        _if_match: Header<Option<String>>,
    ) -> Result<Deleted, Failure<DeleteErrors>> {
        let org = &caller.0.org_id;
        let expected = IfMatch::from_headers(request.headers())?.expected_version(&tags, org, id.0);
        db::issues::delete_at(&db, &caller.0, id.0, expected)
            .await
            .map_err(|err| tags.precondition_failed(err, org, id.0))?;
        Ok(Deleted::NoContent)
    }

    /// Restore a deleted issue (ADMIN)
    ///
    /// Brings a deleted issue back under its own number, exactly as its `deleted` activity
    /// entry recorded it (creator and `createdAt` kept; `updatedAt` is now), and records a
    /// `restored` entry. 404 when the organization never had the issue, 409 when it is
    /// not deleted.
    #[oai(path = "/issues/:id/restore", method = "post", operation_id = "restoreIssue")]
    async fn restore(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        tags: Data<&EntityTags>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<RestoredIssue, Failure<RestoreErrors>> {
        let issue = db::issues::restore(&db, &caller.0, id.0).await?;
        let tag = tags.tag(&caller.0.org_id, issue.id, issue.version);
        Ok(RestoredIssue::Ok(JsonBody(issue), tag))
    }
}

fn assignee_problem(value: &str) -> Option<String> {
    (!is_valid_id(value)).then(|| format!("must be {ID_RULE}"))
}

impl FromJsonObject for NewIssue {
    fn from_json_object(object: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::new(object);
        let title = fields.required_text("title", title_problem);
        let description = fields.required_text("description", description_problem);
        let status = fields.choice("status", &Status::ALL, Status::as_str);
        let priority = fields.choice("priority", &Priority::ALL, Priority::as_str);
        let assignee_id = fields.text("assigneeId", true, assignee_problem).flatten();
        fields.finish()?;
        match (title, description) {
            (Some(title), Some(description)) => {
                Ok(NewIssue { title, description, status, priority, assignee_id })
            }
            _ => unreachable!("finish() reports every missing or invalid field"),
        }
    }
}

impl FromJsonObject for IssuePatch {
    fn from_json_object(object: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::new(object);
        let patch = IssuePatch {
            title: fields.text("title", false, title_problem).flatten(),
            description: fields.text("description", false, description_problem).flatten(),
            status: fields.choice("status", &Status::ALL, Status::as_str),
            priority: fields.choice("priority", &Priority::ALL, Priority::as_str),
            assignee_id: match fields.text("assigneeId", true, assignee_problem) {
                None => MaybeUndefined::Undefined,
                Some(None) => MaybeUndefined::Null,
                Some(Some(id)) => MaybeUndefined::Value(id),
            },
        };
        fields.finish()?;
        Ok(patch)
    }
}
