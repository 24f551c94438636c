//! Fair shares of the request pool: one organization may hold at most so many of its
//! connections at once (ORG_MAX_TRANSACTIONS). A request over its organization's share
//! waits a little (ORG_QUEUE_TIMEOUT_MS), then is refused (429): one tenant's burst of
//! slow requests (or requests waiting on its own row locks) cannot take every connection
//! from the others.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Error;

/// The shares of every organization with a transaction in flight on this instance.
pub struct Shares {
    per_organization: usize,
    queue_timeout: Duration,
    /// Only organizations with a transaction in flight or waiting for a place, with how
    /// many [`Share`]s (holding or waiting) exist: the entry goes with the last of them.
    organizations: Mutex<HashMap<Box<str>, Entry>>,
}

/// An organization's semaphore and the number of [`Share`]s of it that exist.
type Entry = (Arc<Semaphore>, usize);

/// One transaction's place in its organization's share; given back when dropped.
pub struct Share {
    permit: Option<OwnedSemaphorePermit>,
    organization: Box<str>,
    shares: Arc<Shares>,
}

impl Shares {
    pub fn new(per_organization: usize, queue_timeout: Duration) -> Arc<Shares> {
        Arc::new(Shares {
            per_organization: per_organization.clamp(1, Semaphore::MAX_PERMITS),
            queue_timeout,
            organizations: Mutex::default(),
        })
    }

    pub fn per_organization(&self) -> usize {
        self.per_organization
    }

    /// A place in `organization`'s share, waiting up to the queue time-out for one.
    pub async fn take(self: &Arc<Self>, organization: &str) -> Result<Share, Error> {
        let semaphore = {
            let mut organizations = self.lock();
            let entry = organizations
                .entry(organization.into())
                .or_insert_with(|| (Arc::new(Semaphore::new(self.per_organization)), 0));
            entry.1 += 1;
            entry.0.clone()
        };
        // Counted before waiting; however this ends (a place, a time-out, the request
        // dropped), the share's drop uncounts it exactly once.
        let mut share = Share { permit: None, organization: organization.into(), shares: self.clone() };
        match tokio::time::timeout(self.queue_timeout, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => {
                share.permit = Some(permit);
                Ok(share)
            }
            _ => Err(Error::OverShare { organization: organization.into(), share: self.per_organization }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Entry>> {
        self.organizations.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut organizations = self.shares.lock();
        if let Some(entry) = organizations.get_mut(&self.organization) {
            entry.1 -= 1;
            if entry.1 == 0 {
                organizations.remove(&self.organization);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_organization_holds_at_most_its_share_and_others_are_unaffected() {
        let shares = Shares::new(2, Duration::from_millis(20));
        let a1 = shares.take("a").await.unwrap();
        let _a2 = shares.take("a").await.unwrap();
        assert!(matches!(shares.take("a").await, Err(Error::OverShare { share: 2, .. })));
        let _b = shares.take("b").await.expect("another organization has its own share");
        drop(a1);
        let _a3 = shares.take("a").await.expect("a place came free");
    }

    /// The last to leave, whatever way it leaves, forgets the organization: here a waiter
    /// refused after the holder it waited for had finished, and a waiter given up on.
    #[tokio::test]
    async fn an_organization_is_forgotten_however_its_last_request_ends() {
        let shares = Shares::new(1, Duration::from_millis(50));
        let holder = shares.take("a").await.unwrap();
        let waiter = tokio::spawn({
            let shares = shares.clone();
            async move { shares.take("a").await.map(drop) }
        });
        tokio::task::yield_now().await;
        let abandoned = tokio::spawn({
            let shares = shares.clone();
            async move { shares.take("a").await.map(drop) }
        });
        tokio::task::yield_now().await;
        abandoned.abort();
        let _ = abandoned.await;
        drop(holder);
        let _ = waiter.await.unwrap();
        assert!(shares.lock().is_empty(), "{:?}", shares.lock().keys().collect::<Vec<_>>());
        // Refused by the time-out while nobody else holds a place.
        let busy = shares.take("b").await.unwrap();
        let refused = tokio::spawn({
            let shares = shares.clone();
            async move { shares.take("b").await.map(drop) }
        });
        tokio::task::yield_now().await;
        drop(busy);
        let _ = refused.await.unwrap();
        assert!(shares.lock().is_empty(), "{:?}", shares.lock().keys().collect::<Vec<_>>());
    }

    /// A waiter refused by its time-out, its holder gone meanwhile: nothing is left.
    #[tokio::test]
    async fn a_refused_last_waiter_leaves_nothing_behind() {
        let shares = Shares::new(1, Duration::from_millis(20));
        let holder = shares.take("a").await.unwrap();
        let refused = shares.take("a").await;
        assert!(refused.is_err());
        drop(holder);
        drop(refused);
        assert!(shares.lock().is_empty());
    }

    #[tokio::test]
    async fn an_organization_without_transactions_is_forgotten() {
        let shares = Shares::new(1, Duration::from_millis(20));
        let share = shares.take("a").await.unwrap();
        assert_eq!(shares.lock().len(), 1);
        // A refused wait leaves nothing behind either.
        assert!(shares.take("a").await.is_err());
        drop(share);
        assert!(shares.lock().is_empty());
    }
}
