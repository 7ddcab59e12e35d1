//! The production clock: wall-clock time that advances with tokio's clock.
//!
//! It reads the system clock once, at creation, and then adds tokio's monotonic elapsed time.
//! Under a paused tokio clock (tests) it therefore advances exactly with virtual time, and in
//! production it never jumps backwards when the system clock is stepped.

use tokio::time::Instant;

use herald_messages::Timestamp;

use crate::ports::Clock;

#[derive(Debug, Clone)]
pub struct TokioClock {
    anchor_wall: Timestamp,
    anchor: Instant,
}

impl TokioClock {
    pub fn new() -> Self {
        #[allow(clippy::disallowed_methods)] // the one place that reads the system clock
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let millis = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
        Self {
            anchor_wall: Timestamp::from_unix_millis(millis),
            anchor: Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for TokioClock {
    fn now(&self) -> Timestamp {
        self.anchor_wall.saturating_add(self.anchor.elapsed())
    }
}
