//! Rate limits per organization and per user within it: token buckets (GCRA) from
//! governor, one keyed limiter each. A check is a few atomic operations on one shard of a
//! concurrent map: no global lock, no allocation once a key is known, and it never waits,
//! so an organization at its limit is answered 429 at once and slows no one else.

use std::{
    hash::{BuildHasher, RandomState},
    num::NonZeroU32,
    time::Duration,
};

use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter, clock::Clock, middleware::StateInformationMiddleware,
};

use crate::{config::RateLimitConfig, domain::TenantContext};

type Limiter<K> = RateLimiter<
    K,
    governor::state::keyed::DefaultKeyedStateStore<K>,
    governor::clock::DefaultClock,
    StateInformationMiddleware,
>;

/// What the `RateLimit-*` headers say about the tighter of the two limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allowance {
    /// Requests allowed in a burst.
    pub limit: u32,
    /// Requests left right now.
    pub remaining: u32,
    /// Seconds until the whole burst is available again.
    pub reset: u64,
}

/// A refusal: which limit, when to retry, and the headers to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub scope: &'static str,
    pub retry_after: u64,
    pub allowance: Allowance,
}

pub struct RateLimits {
    organizations: Option<Limiter<String>>,
    /// Keyed by a hash of (organization, user): no allocation per request. The hasher's
    /// keys are random per process, so no one can aim a collision at another user.
    users: Option<Limiter<u64>>,
    hasher: RandomState,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_second: u32, burst: u32) -> Option<Limiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = NonZeroU32::new(burst.max(per_second)).unwrap_or(rate);
    let limiter: DefaultKeyedRateLimiter<K> = RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst));
    Some(limiter.with_middleware::<StateInformationMiddleware>())
}

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> RateLimits {
        RateLimits {
            organizations: limiter(config.org_per_second, config.org_burst),
            users: limiter(config.user_per_second, config.user_burst),
            hasher: RandomState::new(),
        }
    }

    /// Takes one request from the user's and then the organization's bucket. `Ok(None)`:
    /// no limit is configured.
    pub fn admit(&self, ctx: &TenantContext) -> Result<Option<Allowance>, Refusal> {
        let user = match &self.users {
            Some(users) => {
                let key = self.hasher.hash_one((&ctx.org_id, &ctx.user_id));
                Some(check(users, &key, "user")?)
            }
            None => None,
        };
        let organization = match &self.organizations {
            Some(organizations) => Some(check(organizations, &ctx.org_id, "organization")?),
            None => None,
        };
        Ok(match (user, organization) {
            (Some(a), Some(b)) => Some(if b.remaining < a.remaining { b } else { a }),
            (a, b) => a.or(b),
        })
    }

    /// Forgets keys whose buckets are full again (they are indistinguishable from new
    /// ones), so the maps hold only recently active organizations and users.
    pub fn forget_idle(&self) {
        if let Some(organizations) = &self.organizations {
            organizations.retain_recent();
            organizations.shrink_to_fit();
        }
        if let Some(users) = &self.users {
            users.retain_recent();
            users.shrink_to_fit();
        }
    }
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Limiter<K>,
    key: &K,
    scope: &'static str,
) -> Result<Allowance, Refusal> {
    match limiter.check_key(key) {
        Ok(snapshot) => {
            let quota = snapshot.quota();
            let limit = quota.burst_size().get();
            let remaining = snapshot.remaining_burst_capacity();
            Ok(Allowance {
                limit,
                remaining,
                reset: seconds(quota.replenish_interval() * (limit - remaining)),
            })
        }
        Err(not_until) => {
            let quota = not_until.quota();
            let limit = quota.burst_size().get();
            let wait = not_until.wait_time_from(limiter.clock().now());
            Err(Refusal {
                scope,
                retry_after: seconds(wait).max(1),
                allowance: Allowance {
                    limit,
                    remaining: 0,
                    reset: seconds(quota.replenish_interval() * limit),
                },
            })
        }
    }
}

/// Whole seconds, rounded up (a client that waits that long will be let in).
fn seconds(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// How often idle keys are forgotten.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Role;

    fn ctx(org: &str, user: &str) -> TenantContext {
        TenantContext { org_id: org.into(), user_id: user.into(), role: Role::Member }
    }

    #[test]
    fn a_user_over_its_burst_is_refused_and_others_are_not() {
        let limits = RateLimits::new(&RateLimitConfig {
            org_per_second: 1,
            org_burst: 5,
            user_per_second: 1,
            user_burst: 3,
        });
        for remaining in [2, 1, 0] {
            assert_eq!(limits.admit(&ctx("a", "u")).unwrap().unwrap().remaining, remaining);
        }
        let refusal = limits.admit(&ctx("a", "u")).unwrap_err();
        assert_eq!((refusal.scope, refusal.retry_after, refusal.allowance.limit), ("user", 1, 3));
        // Another user of the same organization still has its own bucket, and the
        // organization's is the tighter one now (5 - 3 - 1 left).
        assert_eq!(
            limits.admit(&ctx("a", "v")).unwrap().unwrap(),
            Allowance { limit: 5, remaining: 1, reset: 4 }
        );
        // Another organization is untouched.
        assert_eq!(limits.admit(&ctx("b", "u")).unwrap().unwrap().remaining, 2);
    }

    #[test]
    fn a_rate_of_zero_turns_a_limit_off() {
        let limits = RateLimits::new(&RateLimitConfig {
            org_per_second: 0,
            org_burst: 0,
            user_per_second: 0,
            user_burst: 0,
        });
        for _ in 0..10_000 {
            assert_eq!(limits.admit(&ctx("a", "u")), Ok(None));
        }
    }
}
