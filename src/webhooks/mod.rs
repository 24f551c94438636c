//! Webhooks: signed deliveries of the organizations' activity to the URLs their ADMINs
//! register. `client` makes one attempt (safe targets only), `signing` the Standard
//! Webhooks headers and body, `schedule` the retries, `dispatch` the loop that claims
//! due deliveries (`db::webhooks`) and records each attempt.

pub mod client;
pub mod dispatch;
pub mod schedule;
pub mod signing;

/// What the API checks of an endpoint (WEBHOOK_ALLOW_INSECURE_TARGETS,
/// WEBHOOK_MAX_PER_ORG).
#[derive(Debug, Clone, Copy)]
pub struct EndpointRules {
    pub targets: client::Targets,
    pub max_per_org: u32,
}
