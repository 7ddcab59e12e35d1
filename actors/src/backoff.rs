//! Capped exponential backoff with full jitter ("Exponential Backoff And Jitter", AWS
//! Architecture Blog): the n-th delay is uniform in `[0, min(max, base · 2ⁿ)]`.
//!
//! This is a delay calculator for actor timers (`send_after`), not a retry loop: actors must keep
//! handling messages between attempts, which a retrying future would prevent.

use std::time::Duration;

use rand::Rng;

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub base: Duration,
    pub max: Duration,
}

impl BackoffConfig {
    /// 1 s doubling to 60 s (DESIGN §9).
    pub const DEFAULT: BackoffConfig = BackoffConfig {
        base: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The state of one backoff sequence.
#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Self { config, attempt: 0 }
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 2u32.saturating_pow(self.attempt.min(31));
        self.config.base.saturating_mul(factor).min(self.config.max)
    }

    /// The next delay (full jitter), advancing the sequence.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        random_up_to(ceiling)
    }

    /// Failures since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// A uniformly random duration in `[0, max]`, at millisecond resolution.
pub fn random_up_to(max: Duration) -> Duration {
    let millis = u64::try_from(max.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_from_base_and_is_capped() {
        let mut backoff = Backoff::new(BackoffConfig::DEFAULT);
        let mut ceilings = Vec::new();
        for _ in 0..9 {
            ceilings.push(backoff.ceiling().as_secs());
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_secs(60));
        }
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        backoff.reset();
        assert_eq!(backoff.ceiling(), Duration::from_secs(1));
    }

    #[test]
    fn delays_stay_within_the_ceiling_and_vary() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let mut backoff = Backoff::new(BackoffConfig::DEFAULT);
            for _ in 0..4 {
                backoff.next_delay();
            }
            let delay = backoff.next_delay();
            assert!(delay <= Duration::from_secs(16), "{delay:?}");
            seen.insert(delay.as_millis());
        }
        assert!(
            seen.len() > 50,
            "full jitter spreads the delays: {}",
            seen.len()
        );
    }

    #[test]
    fn many_failures_do_not_overflow() {
        let mut backoff = Backoff::new(BackoffConfig::DEFAULT);
        for _ in 0..10_000 {
            assert!(backoff.next_delay() <= Duration::from_secs(60));
        }
    }

    #[test]
    fn random_up_to_stays_within_bounds() {
        for _ in 0..100 {
            assert!(random_up_to(Duration::from_secs(30)) <= Duration::from_secs(30));
        }
        assert_eq!(random_up_to(Duration::ZERO), Duration::ZERO);
    }
}
