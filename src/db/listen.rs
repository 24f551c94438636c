//! The LISTEN connection: one session per instance, never inside a transaction, that hears
//! `tenantry_activity` notifications and wakes the feed each one routes to (`live.rs`).
//!
//! It connects to LISTEN_DATABASE_URL (default: DATABASE_URL, the owner's), which must
//! reach PostgreSQL itself: a transaction-mode pooler (PgBouncer) hands a session's LISTEN
//! to whichever server connection it likes and then to no one. It starts with the first
//! stream. While it is down (or cannot be had at all) every feed polls at
//! STREAM_POLL_INTERVAL_MS; each time it (re)connects, once its LISTEN is in place, every
//! feed reads again, which heals whatever was notified while nobody listened.
//!
//! The notification carries only an opaque routing value (see migration 12): this
//! session learns nothing else, and needs no right but CONNECT.

use std::time::Duration;

use futures::StreamExt;
use tokio_postgres::AsyncMessage;

use super::{Endpoint, live::WeakHub};

/// The channel migration 12's `app.log_activity` notifies.
pub const CHANNEL: &str = "tenantry_activity";
const FIRST_DELAY: Duration = Duration::from_millis(100);
const LONGEST_DELAY: Duration = Duration::from_secs(5);
/// How often the session proves it is alive (a silently dead connection would hear
/// nothing, and no one would know); and how long the answer may take.
const PING_EVERY: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps a LISTEN session up until the hub is gone or closed.
pub async fn run(endpoint: Endpoint, hub: WeakHub) {
    let mut delay = FIRST_DELAY;
    let mut said = false;
    loop {
        let Some(mut closed) = hub.upgrade().map(|hub| hub.closed_signal()) else { return };
        if *closed.borrow() {
            return;
        }
        match session(&endpoint, &hub, &mut closed).await {
            Ok(()) => {
                delay = FIRST_DELAY;
                said = false;
            }
            Err(err) => {
                if !said {
                    tracing::warn!(
                        error = %err,
                        "no LISTEN connection (LISTEN_DATABASE_URL): live streams poll every \
                         STREAM_POLL_INTERVAL_MS until one can be had"
                    );
                    said = true;
                }
                delay = (delay * 2).min(LONGEST_DELAY);
            }
        }
        if let Some(hub) = hub.upgrade() {
            hub.set_listening(false);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = closed.changed() => return,
        }
    }
}

/// One session: connect, LISTEN, wake feeds until the connection ends.
async fn session(
    endpoint: &Endpoint,
    hub: &WeakHub,
    closed: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<(), tokio_postgres::Error> {
    let mut config = endpoint.config.clone();
    if config.get_application_name().is_none() {
        config.application_name("tenantry listen");
    }
    let (client, mut connection) = super::pool::tune(config).connect(endpoint.tls.clone()).await?;
    let notifications = hub.clone();
    let mut driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let Some(hub) = notifications.upgrade() else { return };
                    hub.wake_route(notification.payload());
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "the LISTEN connection ended");
                    return;
                }
            }
        }
    });
    client.batch_execute(&format!("listen {CHANNEL}")).await?;
    if let Some(hub) = hub.upgrade() {
        hub.set_listening(true);
        // What was written while no one listened: every feed reads once more.
        hub.wake_all();
    }
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            _ = &mut driver => break,
            _ = closed.changed() => break,
            _ = ping.tick() => {
                match tokio::time::timeout(PING_TIMEOUT, client.simple_query("")).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => return Err(err),
                    Err(_) => {
                        tracing::warn!("the LISTEN connection did not answer a ping; reconnecting");
                        break;
                    }
                }
            }
        }
    }
    driver.abort();
    Ok(())
}
