//! Per-peer limits of the hub's gRPC server, so that one peer cannot starve the others:
//! `HubLimits` (the configured numbers), and `PeerRateLimiter`, a token bucket per peer id
//! (`RESOURCE_EXHAUSTED` beyond). The cap on concurrent streams per connection is HTTP/2's own
//! `SETTINGS_MAX_CONCURRENT_STREAMS`, set on the server (`grpc::server`): a client past it
//! waits for a stream to end instead of opening another.
//!
//! Every decision is in `RateState`, pure, taking `now` (unit-tested without a runtime).
//! Not here: who the peer is (`grpc::auth` checks that first, so that an outsider cannot spend
//! a configured peer's budget).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::ConfigError;

/// The HTTP/2 spec's recommended minimum for `SETTINGS_MAX_CONCURRENT_STREAMS`; a peer uses a
/// handful (subscription, heartbeats, a sync, a connect).
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
/// A peer's steady load is a heartbeat every few seconds and a sync now and then; 50 a second
/// leaves room for catching up after a failover, and a burst of 100 for reconnect storms.
pub const DEFAULT_REQUESTS_PER_SEC: u32 = 50;
pub const DEFAULT_REQUEST_BURST: u32 = 100;
/// Peers tracked at once: past this, buckets full again (idle peers) are forgotten first; a
/// new peer finding the table still full is refused (only possible when peers are not
/// authenticated and callers invent ids).
const MAX_TRACKED_PEERS: usize = 10_000;

/// The per-peer limits of a hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubLimits {
    /// HTTP/2 streams one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Requests a peer may make per second on average.
    pub requests_per_sec: u32,
    /// Requests a peer may make at once after a quiet spell.
    pub burst: u32,
}

impl Default for HubLimits {
    fn default() -> Self {
        Self {
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            requests_per_sec: DEFAULT_REQUESTS_PER_SEC,
            burst: DEFAULT_REQUEST_BURST,
        }
    }
}

impl HubLimits {
    /// The limits from their raw fields (absent: the defaults; 0 refused).
    pub(crate) fn from_fields(
        streams: (&'static str, Option<u32>),
        rate: (&'static str, Option<u32>),
        burst: (&'static str, Option<u32>),
    ) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let positive = |(field, value): (&'static str, Option<u32>), default: u32| match value {
            Some(0) => Err(ConfigError::new(field, "must be at least 1")),
            Some(value) => Ok(value),
            None => Ok(default),
        };
        Ok(Self {
            max_concurrent_streams: positive(streams, defaults.max_concurrent_streams)?,
            requests_per_sec: positive(rate, defaults.requests_per_sec)?,
            burst: positive(burst, defaults.burst)?,
        })
    }
}

/// A request refused because its peer spent its budget: how long until one more would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Exhausted {
    pub(crate) retry_after: Duration,
}

/// A token bucket per peer id, shared by the server's handlers.
pub(crate) struct PeerRateLimiter {
    limits: HubLimits,
    state: Mutex<RateState>,
}

impl PeerRateLimiter {
    pub(crate) fn new(limits: &HubLimits) -> Self {
        Self {
            limits: *limits,
            state: Mutex::new(RateState::new(
                limits.requests_per_sec,
                limits.burst,
                MAX_TRACKED_PEERS,
            )),
        }
    }

    /// A limiter of the same limits, every bucket full.
    pub(crate) fn renewed(&self) -> Self {
        Self::new(&self.limits)
    }

    /// Takes one request from `peer`'s bucket.
    pub(crate) fn admit(&self, peer: &str) -> Result<(), Exhausted> {
        let now = Instant::now();
        // The state is a map of numbers updated in one step: a panic elsewhere cannot tear it.
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(peer, now)
    }
}

/// The buckets; every decision, pure.
struct RateState {
    /// Tokens added per second.
    rate: f64,
    /// Most tokens a bucket holds.
    burst: f64,
    max_peers: usize,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.updated = now;
    }
}

impl RateState {
    fn new(rate: u32, burst: u32, max_peers: usize) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            max_peers,
            buckets: HashMap::new(),
        }
    }

    fn admit(&mut self, peer: &str, now: Instant) -> Result<(), Exhausted> {
        if !self.buckets.contains_key(peer) && self.buckets.len() >= self.max_peers {
            self.forget_idle(now);
            if self.buckets.len() >= self.max_peers {
                return Err(Exhausted {
                    retry_after: Duration::from_secs_f64(1.0 / self.rate),
                });
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(peer.to_owned()).or_insert(Bucket {
            tokens: burst,
            updated: now,
        });
        bucket.refill(now, rate, burst);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Exhausted {
            retry_after: Duration::from_secs_f64((1.0 - bucket.tokens) / rate),
        })
    }

    /// Drops the buckets that are full again: their peers are as new.
    fn forget_idle(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, bucket| {
            bucket.refill(now, rate, burst);
            bucket.tokens < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_gets_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut state = RateState::new(10, 3, 100);
        for _ in 0..3 {
            assert!(state.admit("a", start).is_ok());
        }
        let refused = state.admit("a", start).unwrap_err();
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert!(
            state.admit("a", start + Duration::from_millis(50)).is_err(),
            "half a token"
        );
        assert!(state.admit("a", start + Duration::from_millis(100)).is_ok());
        assert!(
            state.admit("a", start + Duration::from_secs(60)).is_ok(),
            "refilled"
        );
    }

    #[test]
    fn one_peer_spending_its_budget_leaves_the_others_theirs() {
        let start = Instant::now();
        let mut state = RateState::new(1, 2, 100);
        assert!(state.admit("flood", start).is_ok());
        assert!(state.admit("flood", start).is_ok());
        assert!(state.admit("flood", start).is_err());
        assert!(state.admit("quiet", start).is_ok());
        assert!(state.admit("quiet", start).is_ok());
    }

    #[test]
    fn a_bucket_never_holds_more_than_the_burst() {
        let start = Instant::now();
        let mut state = RateState::new(100, 2, 100);
        assert!(state.admit("a", start).is_ok());
        let later = start + Duration::from_secs(3600);
        assert!(state.admit("a", later).is_ok());
        assert!(state.admit("a", later).is_ok());
        assert!(state.admit("a", later).is_err());
    }

    #[test]
    fn idle_peers_are_forgotten_when_the_table_is_full() {
        let start = Instant::now();
        let mut state = RateState::new(1, 1, 2);
        assert!(state.admit("a", start).is_ok());
        assert!(state.admit("b", start).is_ok());
        assert!(state.admit("c", start).is_err(), "table full of busy peers");
        let later = start + Duration::from_secs(5);
        assert!(state.admit("c", later).is_ok(), "a and b were idle");
        assert_eq!(state.buckets.len(), 1);
    }

    #[test]
    fn zero_limits_are_refused() {
        let err = HubLimits::from_fields(
            ("hub.max_concurrent_streams", Some(0)),
            ("hub.peer_requests_per_sec", None),
            ("hub.peer_request_burst", None),
        )
        .unwrap_err();
        assert_eq!(err.field, "hub.max_concurrent_streams");
        assert_eq!(
            HubLimits::from_fields(("s", None), ("r", None), ("b", None)).unwrap(),
            HubLimits::default()
        );
    }
}
