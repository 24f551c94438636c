//! Webhooks: the endpoints ADMINs manage (through the request pool, as every request), and
//! the delivery side (through the pool of `tenantry_webhooks`): claim leases across
//! organizations, read what to send and record each attempt scoped to one organization.

use time::OffsetDateTime;
use tokio_postgres::{Row, types::Type};

use super::{Database, Error, Sql};
use crate::domain::{
    ActivityEntry, EventType, NewWebhook, QueuedAttempt, TenantContext, Webhook, WebhookDelivery,
    WebhookPatch,
};

/// The columns of `api.webhook`, in the order [`webhook_from_row`] reads them, then
/// `next_cursor` (column 10).
macro_rules! webhook_sql {
    ($call:literal) => {
        concat!(
            "select id, url, events, description, active, disabled_reason, created_by, created_at, \
             updated_at, secret_rotated_until, next_cursor from ",
            $call
        )
    };
}

const CREATE: Sql = Sql {
    text: webhook_sql!("api.create_webhook($1, $2, $3, $4, $5)"),
    param_types: &[Type::TEXT, Type::TEXT_ARRAY, Type::TEXT, Type::TEXT, Type::INT4],
};
const LIST: Sql = Sql {
    text: webhook_sql!("api.list_webhooks(page_size => $1, after => $2)"),
    param_types: &[Type::INT4, Type::TEXT],
};
const GET: Sql = Sql { text: webhook_sql!("api.get_webhook($1)"), param_types: &[Type::INT8] };
const UPDATE: Sql = Sql {
    text: webhook_sql!("api.update_webhook($1, url => $2, events => $3, description => $4, active => $5)"),
    param_types: &[Type::INT8, Type::TEXT, Type::TEXT_ARRAY, Type::TEXT, Type::BOOL],
};
const DELETE: Sql = Sql { text: "select api.delete_webhook($1)", param_types: &[Type::INT8] };
const ROTATE: Sql =
    Sql { text: webhook_sql!("api.rotate_webhook_secret($1, $2)"), param_types: &[Type::INT8, Type::TEXT] };
const DELIVERIES: Sql = Sql {
    text: "select id, event_id, event_type, activity_id, attempt, out_of_band, attempted_at, duration_ms, \
           status, error, succeeded, next_attempt_at, next_cursor \
           from api.list_webhook_deliveries($1, page_size => $2, after => $3)",
    param_types: &[Type::INT8, Type::INT4, Type::TEXT],
};
const REQUEST_ATTEMPT: Sql = Sql {
    text: "select event_id from api.request_webhook_attempt($1, $2, $3)",
    param_types: &[Type::INT8, Type::TEXT, Type::INT8],
};

/// Creates an endpoint signed with `secret`; at most `max_per_org` per organization.
pub async fn create(
    db: &Database,
    ctx: &TenantContext,
    new: &NewWebhook,
    secret: &str,
    max_per_org: u32,
) -> Result<Webhook, Error> {
    let events = new.events.as_deref().map(event_names);
    let max = i32::try_from(max_per_org).unwrap_or(i32::MAX);
    let rows = db.call(ctx, &CREATE, &[&new.url, &events, &new.description, &secret, &max]).await?;
    one(&rows)
}

/// One page of the organization's endpoints, each with the cursor of the page after it.
pub async fn list(
    db: &Database,
    ctx: &TenantContext,
    limit: i32,
    cursor: Option<&str>,
) -> Result<Vec<(Webhook, Option<String>)>, Error> {
    let rows = db.call(ctx, &LIST, &[&limit, &cursor]).await?;
    rows.iter().map(|row| Ok((webhook_from_row(row)?, row.try_get(10)?))).collect()
}

pub async fn get(db: &Database, ctx: &TenantContext, id: i64) -> Result<Webhook, Error> {
    one(&db.call(ctx, &GET, &[&id]).await?)
}

pub async fn update(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    patch: &WebhookPatch,
) -> Result<Webhook, Error> {
    let events = patch.events.as_deref().map(event_names);
    let rows = db.call(ctx, &UPDATE, &[&id, &patch.url, &events, &patch.description, &patch.active]).await?;
    one(&rows)
}

pub async fn delete(db: &Database, ctx: &TenantContext, id: i64) -> Result<(), Error> {
    db.call(ctx, &DELETE, &[&id]).await.map(drop)
}

/// Makes `secret` the endpoint's signing secret; the previous one signs 24 hours more.
pub async fn rotate_secret(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    secret: &str,
) -> Result<Webhook, Error> {
    one(&db.call(ctx, &ROTATE, &[&id, &secret]).await?)
}

/// One page of an endpoint's attempts, newest first, each with the cursor after it.
pub async fn deliveries(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    limit: i32,
    cursor: Option<&str>,
) -> Result<Vec<(WebhookDelivery, Option<String>)>, Error> {
    let rows = db.call(ctx, &DELIVERIES, &[&id, &limit, &cursor]).await?;
    rows.iter()
        .map(|row| {
            let delivery = WebhookDelivery {
                id: row.try_get(0)?,
                event_id: row.try_get(1)?,
                event_type: row.try_get(2)?,
                activity_id: row.try_get(3)?,
                attempt: row.try_get(4)?,
                out_of_band: row.try_get(5)?,
                attempted_at: row.try_get(6)?,
                duration_ms: row.try_get(7)?,
                status: row.try_get(8)?,
                error: row.try_get(9)?,
                succeeded: row.try_get(10)?,
                next_attempt_at: row.try_get(11)?,
            };
            Ok((delivery, row.try_get(12)?))
        })
        .collect()
}

/// Queues a ping, or the event of attempt `delivery_id` again (`Some`), out of band.
pub async fn request_attempt(
    db: &Database,
    ctx: &TenantContext,
    id: i64,
    delivery_id: Option<i64>,
) -> Result<QueuedAttempt, Error> {
    let kind = if delivery_id.is_some() { "redeliver" } else { "ping" };
    let rows = db.call(ctx, &REQUEST_ATTEMPT, &[&id, &kind, &delivery_id]).await?;
    let row =
        rows.first().ok_or_else(|| Error::Internal("api.request_webhook_attempt returned no row".into()))?;
    Ok(QueuedAttempt { event_id: row.try_get(0)? })
}

fn event_names(events: &[EventType]) -> Vec<&'static str> {
    events.iter().map(|e| e.as_str()).collect()
}

fn one(rows: &[Row]) -> Result<Webhook, Error> {
    webhook_from_row(
        rows.first().ok_or_else(|| Error::Internal("a webhook function returned no row".into()))?,
    )
}

fn webhook_from_row(row: &Row) -> Result<Webhook, Error> {
    let events: Vec<&str> = row.try_get(2)?;
    let events = events
        .into_iter()
        .map(|name| {
            EventType::parse(name).ok_or_else(|| Error::Internal(format!("unknown event {name:?}").into()))
        })
        .collect::<Result<_, Error>>()?;
    Ok(Webhook {
        id: row.try_get(0)?,
        url: row.try_get(1)?,
        events,
        description: row.try_get(3)?,
        active: row.try_get(4)?,
        disabled_reason: row.try_get(5)?,
        created_by: row.try_get(6)?,
        created_at: row.try_get(7)?,
        updated_at: row.try_get(8)?,
        previous_secret_expires_at: row.try_get(9)?,
    })
}

// ---------------------------------------------------------------------------------------
// Deliveries: run on the pool of `tenantry_webhooks`.
// ---------------------------------------------------------------------------------------

const CLAIM: Sql = Sql {
    text: "select organization_id, webhook_id, request_id, claim::text \
           from api.claim_webhook_work($1, $2, $3, $4, $5)",
    param_types: &[Type::INT4, Type::INT4, Type::TEXT_ARRAY, Type::INT4_ARRAY, Type::INT4],
};
const WORK: Sql = Sql {
    text: "select url, secrets, event_id, event_type, attempt, id, issue_id, actor_id, action, changes, \
           created_at, skipped_to from api.webhook_work($1, $2, $3::uuid)",
    param_types: &[Type::INT8, Type::INT8, Type::TEXT],
};
const RECORD: Sql = Sql {
    text: "select api.record_webhook_attempt($1, $2, $3::uuid, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    param_types: &[
        Type::INT8,
        Type::INT8,
        Type::TEXT,
        Type::TEXT,
        Type::TEXT,
        Type::INT8,
        Type::INT4,
        Type::TIMESTAMPTZ,
        Type::INT4,
        Type::INT4,
        Type::TEXT,
        Type::BOOL,
        Type::TIMESTAMPTZ,
        Type::TEXT,
        Type::INT8,
    ],
};

/// A lease on one delivery: an endpoint's next owed event, or an out-of-band request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub organization_id: String,
    pub webhook_id: i64,
    /// An out-of-band request (ping, redelivery); `None`: the endpoint's next owed event.
    pub request_id: Option<i64>,
    /// The lease's token (a uuid, carried as text: the service never looks inside it).
    claim: String,
}

/// How many to claim, and which organizations already have deliveries in flight.
pub struct ClaimLimits<'a> {
    pub lease_ms: i32,
    pub max: i32,
    pub busy: &'a [(String, i32)],
    pub per_org: i32,
}

/// Claims due deliveries across organizations (no tenant: the role sees only leases).
pub async fn claim(db: &Database, limits: &ClaimLimits<'_>) -> Result<Vec<Lease>, Error> {
    let orgs: Vec<&str> = limits.busy.iter().map(|(org, _)| org.as_str()).collect();
    let counts: Vec<i32> = limits.busy.iter().map(|(_, n)| *n).collect();
    let rows = db
        .call_without_tenant(&CLAIM, &[&limits.lease_ms, &limits.max, &orgs, &counts, &limits.per_org])
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Lease {
                organization_id: row.try_get(0)?,
                webhook_id: row.try_get(1)?,
                request_id: row.try_get(2)?,
                claim: row.try_get(3)?,
            })
        })
        .collect()
}

/// What a lease is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Work {
    /// Send this event.
    Send(Box<Outgoing>),
    /// No owed entry is of the endpoint's kinds up to this id: move past them.
    Skip { through: i64 },
}

/// One event to send, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub url: String,
    /// The signing secrets, newest first (two during a rotation).
    pub secrets: Vec<String>,
    /// The `webhook-id`.
    pub event_id: String,
    pub event_type: String,
    pub attempt: i32,
    /// The entry (None: a ping).
    pub entry: Option<ActivityEntry>,
    /// The entry's time, or the ping's request time: the body's `timestamp`.
    pub occurred_at: OffsetDateTime,
}

/// The identity of the delivery transactions: the claimed organization, and an actor no
/// user id can be mistaken for in the logs.
fn scope(organization_id: &str) -> TenantContext {
    TenantContext {
        org_id: organization_id.to_owned(),
        user_id: "tenantry-webhooks".into(),
        role: crate::domain::Role::Member,
    }
}

/// Reads what `lease` is for, scoped to its organization; `None`: the lease is gone (it
/// expired and another instance took it, or the endpoint was deleted).
pub async fn work(db: &Database, lease: &Lease) -> Result<Option<Work>, Error> {
    let ctx = scope(&lease.organization_id);
    let rows = db.call(&ctx, &WORK, &[&lease.webhook_id, &lease.request_id, &lease.claim]).await?;
    let Some(row) = rows.first() else { return Ok(None) };
    if let Some(through) = row.try_get::<_, Option<i64>>(11)? {
        return Ok(Some(Work::Skip { through }));
    }
    let entry = match row.try_get::<_, Option<i64>>(5)? {
        None => None,
        Some(_) => Some(super::activity::entry_from_row_at(row, 5)?),
    };
    Ok(Some(Work::Send(Box::new(Outgoing {
        url: row.try_get(0)?,
        secrets: row.try_get(1)?,
        event_id: row.try_get(2)?,
        event_type: row.try_get(3)?,
        attempt: row.try_get(4)?,
        entry,
        occurred_at: row.try_get(10)?,
    }))))
}

/// The outcome of one attempt, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub activity_id: Option<i64>,
    pub attempt: i32,
    pub attempted_at: OffsetDateTime,
    pub duration_ms: i32,
    pub status: Option<i32>,
    pub error: Option<&'a str>,
    pub succeeded: bool,
    /// When to try again (failures that are retried).
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Disables the endpoint, saying why (a 410, or the last retry failed).
    pub disable_reason: Option<String>,
}

/// Records an attempt and releases the lease; `false` when the lease had been lost (the
/// attempt is recorded, the endpoint's state left to whoever holds it now).
pub async fn record(db: &Database, lease: &Lease, attempt: &AttemptRecord<'_>) -> Result<bool, Error> {
    finish(db, lease, Some(attempt), None).await
}

/// Moves past owed entries not of the endpoint's kinds, releasing the lease.
pub async fn skip(db: &Database, lease: &Lease, through: i64) -> Result<bool, Error> {
    finish(db, lease, None, Some(through)).await
}

async fn finish(
    db: &Database,
    lease: &Lease,
    attempt: Option<&AttemptRecord<'_>>,
    skipped_to: Option<i64>,
) -> Result<bool, Error> {
    let ctx = scope(&lease.organization_id);
    let now = OffsetDateTime::now_utc();
    let (event_id, event_type) = attempt.map_or(("", ""), |a| (a.event_id, a.event_type));
    let rows = db
        .call(
            &ctx,
            &RECORD,
            &[
                &lease.webhook_id,
                &lease.request_id,
                &lease.claim,
                &event_id,
                &event_type,
                &attempt.and_then(|a| a.activity_id),
                &attempt.map_or(1, |a| a.attempt),
                &attempt.map_or(now, |a| a.attempted_at),
                &attempt.map_or(0, |a| a.duration_ms),
                &attempt.and_then(|a| a.status),
                &attempt.and_then(|a| a.error),
                &attempt.is_some_and(|a| a.succeeded),
                &attempt.and_then(|a| a.next_attempt_at),
                &attempt.and_then(|a| a.disable_reason.as_deref()),
                &skipped_to,
            ],
        )
        .await?;
    Ok(rows.first().map(|row| row.try_get::<_, bool>(0)).transpose()?.unwrap_or(false))
}
