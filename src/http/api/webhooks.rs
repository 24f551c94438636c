//! The webhook endpoints (ADMIN only). Each handler: identity, input, one stored
//! function, response. Deliveries themselves run in `webhooks::dispatch`.

use poem::web::Data;
use poem_openapi::{
    ApiResponse, OpenApi, Tags,
    param::{Path, Query},
};
use serde_json::{Map, Value};

use super::{LIST_BAD_REQUEST, default_page_size};
use crate::http::{
    error::{
        ApiError, BAD_REQUEST, ErrorStatuses, Failure, FieldError, PAYLOAD_TOO_LARGE, REQUEST_TIMEOUT,
        SERVICE_UNAVAILABLE, UNAUTHORIZED, UNSUPPORTED_MEDIA_TYPE,
    },
    extract::{
        auth::AdminCaller,
        json::{Fields, FromJsonObject, JsonBody, ListBody},
        query::{CheckedQuery, NoParameters, QuerySpec},
    },
};
use crate::{
    db::{self, Database},
    domain::{CreatedWebhook, EventType, NewWebhook, QueuedAttempt, Webhook, WebhookDelivery, WebhookPatch},
    webhooks::{EndpointRules, signing::new_secret},
};

#[derive(Tags)]
enum ApiTags {
    /// Signed HTTPS POSTs of the organization's activity to endpoints its ADMINs
    /// register (Standard Webhooks 1.0), retried until delivered, in activity order.
    /// ADMIN only; another organization's webhook is a 404.
    Webhooks,
}

pub struct WebhooksApi;

#[derive(ApiResponse)]
pub enum Created {
    /// The endpoint, with its signing `secret`: shown this once only.
    #[oai(status = 201)]
    Created(
        JsonBody<CreatedWebhook>,
        /// The new endpoint's URL, e.g. `/api/webhooks/1`.
        #[oai(header = "Location")]
        String,
    ),
}

#[derive(ApiResponse)]
pub enum Rotated {
    /// The endpoint with its new signing `secret` (shown this once only); the previous
    /// one signs alongside it until `previousSecretExpiresAt`.
    #[oai(status = 200)]
    Ok(JsonBody<CreatedWebhook>),
}

#[derive(ApiResponse)]
pub enum OneWebhook {
    /// The endpoint (never its secret).
    #[oai(status = 200)]
    Ok(JsonBody<Webhook>),
}

#[derive(ApiResponse)]
pub enum WebhookList {
    /// One page of the organization's endpoints (a plain array), by number.
    #[oai(status = 200)]
    Ok(
        ListBody<Webhook>,
        /// RFC 8288 link to the next page (`rel="next"`); absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum DeliveryList {
    /// One page of the endpoint's attempts, newest first (a plain array).
    #[oai(status = 200)]
    Ok(
        ListBody<WebhookDelivery>,
        /// RFC 8288 link to the next page (`rel="next"`); absent on the last page.
        #[oai(header = "Link")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
pub enum Queued {
    /// Queued: the attempt is made shortly, out of the endpoint's order, and appears in
    /// its deliveries.
    #[oai(status = 202)]
    Accepted(JsonBody<QueuedAttempt>),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// The endpoint, its secrets and its attempts are gone; nothing more is sent to it.
    #[oai(status = 204)]
    NoContent,
}

const ADMIN_ONLY: (u16, &str) = (403, "Only an ADMIN may manage webhooks.");
const NO_WEBHOOK: (u16, &str) = (404, "The organization has no such webhook.");

pub struct CreateErrors;
impl ErrorStatuses for CreateErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        (
            403,
            "Only an ADMIN may manage webhooks; or the organization has as many as `WEBHOOK_MAX_PER_ORG` \
             allows (problem `type` `urn:tenantry:problem:quota-exceeded`).",
        ),
        PAYLOAD_TOO_LARGE,
        REQUEST_TIMEOUT,
        UNSUPPORTED_MEDIA_TYPE,
        SERVICE_UNAVAILABLE,
    ];
}
pub struct ListErrors;
impl ErrorStatuses for ListErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[LIST_BAD_REQUEST, UNAUTHORIZED, ADMIN_ONLY, SERVICE_UNAVAILABLE];
}
pub struct DeliveriesErrors;
impl ErrorStatuses for DeliveriesErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[LIST_BAD_REQUEST, UNAUTHORIZED, ADMIN_ONLY, NO_WEBHOOK, SERVICE_UNAVAILABLE];
}
pub struct OneErrors;
impl ErrorStatuses for OneErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, ADMIN_ONLY, NO_WEBHOOK, SERVICE_UNAVAILABLE];
}
/// 403 of the out-of-band attempts.
const ADMIN_ONLY_OR_TOO_MANY_WAITING: (u16, &str) = (
    403,
    "Only an ADMIN may manage webhooks; or 100 pings and redeliveries of this webhook are already \
     waiting (problem `type` `urn:tenantry:problem:quota-exceeded`).",
);
pub struct PingErrors;
impl ErrorStatuses for PingErrors {
    const STATUSES: &'static [(u16, &'static str)] =
        &[BAD_REQUEST, UNAUTHORIZED, ADMIN_ONLY_OR_TOO_MANY_WAITING, NO_WEBHOOK, SERVICE_UNAVAILABLE];
}
pub struct RedeliverErrors;
impl ErrorStatuses for RedeliverErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        ADMIN_ONLY_OR_TOO_MANY_WAITING,
        (404, "The organization has no such webhook, or the webhook no such delivery."),
        SERVICE_UNAVAILABLE,
    ];
}
pub struct UpdateErrors;
impl ErrorStatuses for UpdateErrors {
    const STATUSES: &'static [(u16, &'static str)] = &[
        BAD_REQUEST,
        UNAUTHORIZED,
        ADMIN_ONLY,
        NO_WEBHOOK,
        PAYLOAD_TOO_LARGE,
        REQUEST_TIMEOUT,
        UNSUPPORTED_MEDIA_TYPE,
        SERVICE_UNAVAILABLE,
    ];
}

/// The query parameters of the two webhook lists.
pub struct PageParameters;
impl QuerySpec for PageParameters {
    const PARAMETERS: &'static [&'static str] = &["limit", "cursor"];
    const LISTS: &'static [&'static str] = &[];
}

#[OpenApi(prefix_path = "/api", tag = "ApiTags::Webhooks")]
impl WebhooksApi {
    /// Create a webhook (ADMIN)
    ///
    /// Registers an endpoint for the organization's activity entries from now on, of the
    /// kinds in `events` (default all). The answer holds its signing `secret`, shown this
    /// once only. Each event is a `POST` with `content-type: application/json`, the headers
    /// `webhook-id` (the same on every attempt of one event), `webhook-timestamp` (Unix
    /// seconds of this attempt) and `webhook-signature` (`v1,` and the base64
    /// HMAC-SHA256 of `id.timestamp.body`, keyed with the base64-decoded part of the secret
    /// after `whsec_`; two, space-separated, during a rotation), and a body
    /// `{"type": "issue.created", "timestamp": "...", "data": <the activity entry as GET
    /// /api/activity shows it>}` (schema `WebhookEvent`). A 2xx within 10 s is success;
    /// anything else is retried on a schedule (about 27.6 hours by default), one event at a
    /// time per endpoint, in activity order; a 410 or the last failed retry disables the
    /// endpoint (events are kept: setting `active` again sends them).
    #[oai(path = "/webhooks", method = "post", operation_id = "createWebhook")]
    async fn create(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        rules: Data<&EndpointRules>,
        body: JsonBody<NewWebhook>,
    ) -> Result<Created, Failure<CreateErrors>> {
        let mut new = body.0;
        new.url = checked_url(&rules, &new.url)?;
        let secret = new_secret();
        let webhook = db::webhooks::create(&db, &caller.0, &new, &secret, rules.max_per_org).await?;
        let location = format!("/api/webhooks/{}", webhook.id);
        Ok(Created::Created(JsonBody(CreatedWebhook { webhook, secret }), location))
    }

    /// List webhooks (ADMIN)
    ///
    /// The organization's endpoints by number, a page at a time (follow the `Link`
    /// header until it is absent).
    #[oai(path = "/webhooks", method = "get", operation_id = "listWebhooks")]
    async fn list(
        &self,
        caller: AdminCaller,
        query: CheckedQuery<PageParameters>,
        db: Data<&Database>,
        /// Endpoints per page, 1-200.
        #[oai(default = "default_page_size", validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<i32>,
        /// Where to continue: the `cursor` of the previous page's `Link` header.
        #[oai(validator(max_length = 1024, pattern = r"^[A-Za-z0-9_-]+$"))]
        cursor: Query<Option<String>>,
    ) -> Result<WebhookList, Failure<ListErrors>> {
        let rows = db::webhooks::list(&db, &caller.0, limit.0, cursor.as_deref()).await?;
        let items = rows.iter().map(|(webhook, next)| Ok((webhook.clone(), next.as_deref())));
        let (body, next) = ListBody::page(items, None)?;
        Ok(WebhookList::Ok(body, next.map(|cursor| query.next_link(&cursor))))
    }

    /// Get a webhook (ADMIN)
    ///
    /// One endpoint of the caller's organization: its URL, kinds, whether it is active
    /// (and why not), never its secret.
    #[oai(path = "/webhooks/:id", method = "get", operation_id = "getWebhook")]
    async fn get(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<OneWebhook, Failure<OneErrors>> {
        Ok(OneWebhook::Ok(JsonBody(db::webhooks::get(&db, &caller.0, id.0).await?)))
    }

    /// Update a webhook (ADMIN)
    ///
    /// Changes any of `url`, `events`, `description` and `active`. `active: false` stops
    /// deliveries and keeps the events; `active: true` sends what is owed, in order, with
    /// the retries counted anew.
    #[oai(path = "/webhooks/:id", method = "patch", operation_id = "updateWebhook")]
    async fn update(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        rules: Data<&EndpointRules>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        body: JsonBody<WebhookPatch>,
    ) -> Result<OneWebhook, Failure<UpdateErrors>> {
        let mut patch = body.0;
        if let Some(url) = &patch.url {
            patch.url = Some(checked_url(&rules, url)?);
        }
        Ok(OneWebhook::Ok(JsonBody(db::webhooks::update(&db, &caller.0, id.0, &patch).await?)))
    }

    /// Delete a webhook (ADMIN)
    ///
    /// Removes the endpoint with its secrets, delivery state and attempts; nothing more is
    /// sent to it, not even an attempt under way's retry.
    #[oai(path = "/webhooks/:id", method = "delete", operation_id = "deleteWebhook")]
    async fn delete(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<Deleted, Failure<OneErrors>> {
        db::webhooks::delete(&db, &caller.0, id.0).await?;
        Ok(Deleted::NoContent)
    }

    /// Rotate a webhook's secret (ADMIN)
    ///
    /// Makes a new signing secret, returned this once. For 24 hours the previous one
    /// signs alongside it (two `v1,` signatures per request), so receivers can switch
    /// without losing an event; a secret from an earlier rotation still in its 24 hours
    /// stops at once.
    #[oai(path = "/webhooks/:id/rotate-secret", method = "post", operation_id = "rotateWebhookSecret")]
    async fn rotate_secret(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<Rotated, Failure<OneErrors>> {
        let secret = new_secret();
        let webhook = db::webhooks::rotate_secret(&db, &caller.0, id.0, &secret).await?;
        Ok(Rotated::Ok(JsonBody(CreatedWebhook { webhook, secret })))
    }

    /// List a webhook's deliveries (ADMIN)
    ///
    /// Every attempt to send an event to the endpoint, newest first: the event's
    /// `webhook-id`, the attempt number, when, the HTTP status or the error, how long it
    /// took, and when it is tried again.
    #[oai(path = "/webhooks/:id/deliveries", method = "get", operation_id = "listWebhookDeliveries")]
    async fn deliveries(
        &self,
        caller: AdminCaller,
        query: CheckedQuery<PageParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// Attempts per page, 1-200.
        #[oai(default = "default_page_size", validator(minimum(value = "1"), maximum(value = "200")))]
        limit: Query<i32>,
        /// Where to continue: the `cursor` of the previous page's `Link` header.
        #[oai(validator(max_length = 1024, pattern = r"^[A-Za-z0-9_-]+$"))]
        cursor: Query<Option<String>>,
    ) -> Result<DeliveryList, Failure<DeliveriesErrors>> {
        let rows = db::webhooks::deliveries(&db, &caller.0, id.0, limit.0, cursor.as_deref()).await?;
        let items = rows.iter().map(|(delivery, next)| Ok((delivery.clone(), next.as_deref())));
        let (body, next) = ListBody::page(items, None)?;
        Ok(DeliveryList::Ok(body, next.map(|cursor| query.next_link(&cursor))))
    }

    /// Redeliver an event (ADMIN)
    ///
    /// Sends the event of one attempt again, once, outside the endpoint's order (its
    /// `webhook-id` unchanged, so receivers can tell it from a new event).
    #[oai(
        path = "/webhooks/:id/deliveries/:deliveryId/redeliver",
        method = "post",
        operation_id = "redeliverWebhookEvent"
    )]
    async fn redeliver(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
        /// The attempt whose event to send again (`id` in the deliveries).
        #[oai(name = "deliveryId", validator(minimum(value = "1")))]
        delivery_id: Path<i64>,
    ) -> Result<Queued, Failure<RedeliverErrors>> {
        let queued = db::webhooks::request_attempt(&db, &caller.0, id.0, Some(delivery_id.0)).await?;
        Ok(Queued::Accepted(JsonBody(queued)))
    }

    /// Ping a webhook (ADMIN)
    ///
    /// Sends one `webhook.ping` event (`data`: `{"webhookId": ...}`), signed like every
    /// event, to check the endpoint and its signature check; also while it is disabled.
    #[oai(path = "/webhooks/:id/ping", method = "post", operation_id = "pingWebhook")]
    async fn ping(
        &self,
        caller: AdminCaller,
        _query: CheckedQuery<NoParameters>,
        db: Data<&Database>,
        /// The endpoint's number within the organization.
        #[oai(validator(minimum(value = "1")))]
        id: Path<i64>,
    ) -> Result<Queued, Failure<PingErrors>> {
        Ok(Queued::Accepted(JsonBody(db::webhooks::request_attempt(&db, &caller.0, id.0, None).await?)))
    }
}

/// The URL as it will be used, or a 400 naming `url`.
fn checked_url(rules: &EndpointRules, url: &str) -> Result<String, ApiError> {
    rules
        .targets
        .check_url(url)
        .map(|url| url.to_string())
        .map_err(|err| ApiError::invalid("url", err.to_string()))
}

fn description_problem(value: &str) -> Option<String> {
    if value.chars().count() > 1000 {
        return Some("must be at most 1000 characters".into());
    }
    value
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
        .then(|| "must not hold control characters other than tab and line breaks".into())
}

fn url_problem(value: &str) -> Option<String> {
    (value.is_empty() || value.len() > 2048).then(|| "must be 1-2048 characters".into())
}

impl FromJsonObject for NewWebhook {
    fn from_json_object(object: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::new(object);
        let url = fields.required_text("url", url_problem);
        let events = fields.choices("events", &EventType::ALL, EventType::as_str);
        let description = fields.text("description", false, description_problem).flatten();
        fields.finish()?;
        let url = url.expect("finish() reports a missing or invalid url");
        Ok(NewWebhook { url, events, description })
    }
}

impl FromJsonObject for WebhookPatch {
    fn from_json_object(object: Map<String, Value>) -> Result<Self, Vec<FieldError>> {
        let mut fields = Fields::new(object);
        let patch = WebhookPatch {
            url: fields.text("url", false, url_problem).flatten(),
            events: fields.choices("events", &EventType::ALL, EventType::as_str),
            description: fields.text("description", false, description_problem).flatten(),
            active: fields.boolean("active"),
        };
        fields.finish()?;
        Ok(patch)
    }
}
