//! The issue endpoints. Each handler: identity, input, one stored function, response.

use poem::{IntoResponse, Response, error::ResponseError, web::Data};
use poem_openapi::{
    ApiResponse, OpenApi, Tags,
    param::Path,
    payload::Payload,
    registry::{MetaSchemaRef, Registry},
    types::{MaybeUndefined, Type},
};
use serde_json::{Map, Value};

use super::{
    auth::{AdminCaller, Caller},
    error::{
        ApiError, BAD_REQUEST, ErrorStatuses, FORBIDDEN, Failure, FieldError, NOT_FOUND, PAYLOAD_TOO_LARGE,
        SERVICE_UNAVAILABLE, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE,
    },
    json::{Fields, FromJsonObject, JsonBody},
};
use crate::{
    db::{self, Database, issues::IssueRows},
    domain::{
        Issue, IssuePatch, NewIssue, Priority, Status,
        rules::{description_problem, is_valid_id, title_problem},
    },
};

#[derive(Tags)]
enum ApiTags {
    /// Issues of the calling organization. Every call needs the three identity headers.
    Issues,
}

pub struct IssuesApi;

#[derive(ApiResponse)]
pub enum CreatedIssue {
    /// The issue was created; `Location` is its URL.
    #[oai(status = 201)]
    Created(JsonBody<Issue>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum OneIssue {
    /// The issue.
    #[oai(status = 200)]
    Ok(JsonBody<Issue>),
}

#[derive(ApiResponse)]
pub enum IssueList {
    /// The organization's issues, newest first.
    #[oai(status = 200)]
    Ok(IssueListBody),
}

/// A list body written straight from the rows ([`IssueRows::to_json`]), documented as the
/// array of `Issue` it is.
pub struct IssueListBody(IssueRows);

impl Payload for IssueListBody {
    const CONTENT_TYPE: &'static str = "application/json";

    fn schema_ref() -> MetaSchemaRef {
        <Vec<Issue> as Type>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Vec<Issue> as Type>::register(registry);
    }
}

impl IntoResponse for IssueListBody {
    fn into_response(self) -> Response {
        match self.0.to_json() {
            Ok(bytes) => Response::builder().content_type(Self::CONTENT_TYPE).body(bytes),
            Err(err) => ApiError::from(err).as_response(),
        }
    }
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The issue was deleted; its history keeps a copy.
    #[oai(status = 204)]
    NoContent,
}

pub struct CreateErrors;
impl ErrorStatuses for CreateErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, PAYLOAD_TOO_LARGE, UNSUPPORTED_MEDIA_TYPE, SERVICE_UNAVAILABLE];
}
pub struct ListErrors;
impl ErrorStatuses for ListErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[UNAUTHORIZED, SERVICE_UNAVAILABLE];
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
        PAYLOAD_TOO_LARGE,
        UNSUPPORTED_MEDIA_TYPE,
        SERVICE_UNAVAILABLE,
    ];
}
pub struct DeleteErrors;
impl ErrorStatuses for DeleteErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, SERVICE_UNAVAILABLE];
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Issues")]
impl IssuesApi {
    /// Create an issue
    ///
    /// Creates an issue in the caller's organization with the next issue number (each
    /// organization counts from 1) and records a `created` activity entry. Any role may
    /// create. The body cannot choose the organization, number, creator or timestamps.
    #[oai(path = "/issues", method = "post", operation_id = "createIssue")]
    async fn create(
        &self,
        caller: Caller,
        db: Data<&Database>,
        body: JsonBody<NewIssue>,
    ) -> Result<CreatedIssue, Failure<CreateErrors>> {
        let issue = db::issues::create(&db, &caller.0, &body.0).await?;
        let location = format!("/api/issues/{}", issue.id);
        Ok(CreatedIssue::Created(JsonBody(issue), location))
    }

    /// List issues
    ///
    /// All issues of the caller's organization, newest first. Other organizations' issues
    /// are never visible: PostgreSQL row-level security filters them.
    #[oai(path = "/issues", method = "get", operation_id = "listIssues")]
    async fn list(&self, caller: Caller, db: Data<&Database>) -> Result<IssueList, Failure<ListErrors>> {
        Ok(IssueList::Ok(IssueListBody(db::issues::list(&db, &caller.0).await?)))
    }

    /// Get an issue
    ///
    /// One issue of the caller's organization by its number. Another organization's
    /// issue is indistinguishable from a missing one (404).
    #[oai(path = "/issues/:id", method = "get", operation_id = "getIssue")]
    async fn get(
        &self,
        caller: Caller,
        db: Data<&Database>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<OneIssue, Failure<GetErrors>> {
        Ok(OneIssue::Ok(JsonBody(db::issues::get(&db, &caller.0, id.0).await?)))
    }

    /// Update an issue (ADMIN)
    ///
    /// Changes any subset of title, description, status, priority and assigneeId
    /// (`null` unassigns) and records an `updated` activity entry listing each changed
    /// field's old and new value. `{}`, or values equal to the current ones, change
    /// nothing and record nothing.
    #[oai(path = "/issues/:id", method = "patch", operation_id = "updateIssue")]
    async fn update(
        &self,
        caller: AdminCaller,
        db: Data<&Database>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        body: JsonBody<IssuePatch>,
    ) -> Result<OneIssue, Failure<UpdateErrors>> {
        Ok(OneIssue::Ok(JsonBody(db::issues::update(&db, &caller.0, id.0, &body.0).await?)))
    }

    /// Delete an issue (ADMIN)
    ///
    /// Deletes the issue and records a `deleted` activity entry holding the whole final
    /// issue. Its number is never reused.
    #[oai(path = "/issues/:id", method = "delete", operation_id = "deleteIssue")]
    async fn delete(
        &self,
        caller: AdminCaller,
        db: Data<&Database>,
        /// The issue's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<Deleted, Failure<DeleteErrors>> {
        db::issues::delete(&db, &caller.0, id.0).await?;
        Ok(Deleted::NoContent)
    }
}

fn assignee_problem(value: &str) -> Option<String> {
    (!is_valid_id(value)).then(|| "must be 1-64 characters of A-Z a-z 0-9 . _ : @ -".to_owned())
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
