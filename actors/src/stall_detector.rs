//! `StallDetector`: measures this process's own scheduling lag, as Consul's Lifeguard "local
//! health" does, so that an actor judging another node by a deadline can tell "the other side
//! did not answer" from "this process was not running" (SIGSTOP, a paused VM, an overloaded
//! host, a starved runtime).
//!
//! A ticker task on `tokio::time` ticks every `period`. A tick that runs late records a stall:
//! the span from when the tick was due to when it ran, during which this process certainly did
//! not run its timers. The judging question is pure and takes `now`: "did this process stall
//! for longer than X at any time between `from` and `to`?" (`StallRecord::stall_longer_than`).
//! It also sees a stall **still being noticed**: just after a resume, a timeout can be handled
//! before the ticker's own late tick runs, so `now` past the last tick by more than `period`
//! counts as a stall in progress.
//!
//! The record is bounded: the last `STALLS_KEPT` stalls of at least half a period (shorter lags
//! are scheduling noise and are not kept). Judges should not ask about stalls shorter than one
//! period: a stall that began just after a tick shows only from when the next tick was due.
//!
//! Not done here: deciding what a stall excuses (each judge does, e.g. `HeartbeatMonitor`),
//! stretching deadlines by local health (Lifeguard does; herald only excuses), and telling a
//! stall of the whole process from one of the worker thread the ticker happened to run on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::debug;

use herald_messages::NodeId;

/// Default period of the ticker: a tenth of a second measures stalls to about that precision
/// at the cost of ten wake-ups a second.
pub const DEFAULT_STALL_TICK: Duration = Duration::from_millis(100);

/// Stalls kept: at one stall per tick and a 100 ms period, about 38 s of constant stalling,
/// more than the default heartbeat deadline (30 s). 256 × 32 bytes.
pub const STALLS_KEPT: usize = 256;

/// A span during which this process did not run its ticker although it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stall {
    /// When the late tick was due.
    pub from: Instant,
    /// When it ran (or `now`, for a stall still being noticed).
    pub to: Instant,
}

impl Stall {
    pub fn length(&self) -> Duration {
        self.to.saturating_duration_since(self.from)
    }

    /// The part of this stall between `from` and `to`, if any.
    pub fn clipped(&self, from: Instant, to: Instant) -> Option<Stall> {
        let start = self.from.max(from);
        let end = self.to.min(to);
        (end > start).then_some(Stall {
            from: start,
            to: end,
        })
    }
}

/// The pure part: ticks in, stalls recorded, questions answered. Every method takes `now`.
#[derive(Debug, Clone)]
pub struct StallRecord {
    period: Duration,
    last_tick: Instant,
    stalls: VecDeque<Stall>,
}

impl StallRecord {
    /// A record whose ticker ticked at `now` and ticks every `period` from then on.
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            period,
            last_tick: now,
            stalls: VecDeque::with_capacity(STALLS_KEPT),
        }
    }

    pub fn period(&self) -> Duration {
        self.period
    }

    /// The shortest stall recorded: half a period.
    pub fn resolution(&self) -> Duration {
        self.period / 2
    }

    /// The ticker ticked at `now`. Returns the stall this tick noticed, if it came late by at
    /// least `resolution()`.
    pub fn on_tick(&mut self, now: Instant) -> Option<Stall> {
        let stall = self.late_since_last_tick(now);
        self.last_tick = self.last_tick.max(now);
        let stall = stall?;
        if stall.length() < self.resolution() {
            return None;
        }
        if self.stalls.len() == STALLS_KEPT {
            self.stalls.pop_front();
        }
        self.stalls.push_back(stall);
        Some(stall)
    }

    /// The longest time this process stood still between `from` and `to`, if longer than
    /// `longer_than`: the part of a recorded stall, or of one still in progress at `now`, that
    /// falls between `from` and `to`.
    pub fn stall_longer_than(
        &self,
        longer_than: Duration,
        from: Instant,
        to: Instant,
        now: Instant,
    ) -> Option<Stall> {
        self.stalls
            .iter()
            .copied()
            .chain(self.late_since_last_tick(now))
            .filter_map(|stall| stall.clipped(from, to))
            .filter(|stall| stall.length() > longer_than)
            .max_by_key(Stall::length)
    }

    /// Stalls kept, oldest first.
    pub fn stalls(&self) -> impl Iterator<Item = &Stall> {
        self.stalls.iter()
    }

    /// The stall from when the next tick was due to `now`, if `now` is past it.
    fn late_since_last_tick(&self, now: Instant) -> Option<Stall> {
        let due = self.last_tick + self.period;
        (now > due).then_some(Stall { from: due, to: now })
    }
}

/// A `StallRecord` shared by `Arc` between its ticker and the actors that judge by deadlines.
#[derive(Debug)]
pub struct StallDetector {
    record: Mutex<StallRecord>,
}

impl StallDetector {
    /// A detector whose first tick is `now`. Nothing ticks until `start`.
    pub fn new(period: Duration, now: Instant) -> Self {
        Self {
            record: Mutex::new(StallRecord::new(period, now)),
        }
    }

    pub fn period(&self) -> Duration {
        self.lock().period()
    }

    /// Records a tick at `now` (the ticker's job; tests may call it to play a ticker).
    pub fn tick(&self, now: Instant) -> Option<Stall> {
        self.lock().on_tick(now)
    }

    /// See `StallRecord::stall_longer_than`.
    pub fn stall_longer_than(
        &self,
        longer_than: Duration,
        from: Instant,
        to: Instant,
        now: Instant,
    ) -> Option<Stall> {
        self.lock().stall_longer_than(longer_than, from, to, now)
    }

    /// A copy of the record, for reports and tests.
    pub fn record(&self) -> StallRecord {
        self.lock().clone()
    }

    /// Spawns the ticker of `node`'s detector on the current tokio runtime. It runs until
    /// `StallTicker::stop`.
    pub fn start(self: &Arc<Self>, node: &NodeId) -> StallTicker {
        let detector = Arc::clone(self);
        let period = self.period();
        let node = node.to_string();
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(period);
            // After a stall, one late tick and then a period from it: no burst of catch-up ticks.
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Some(stall) = detector.tick(Instant::now()) {
                    let stall_ms = u64::try_from(stall.length().as_millis()).unwrap_or(u64::MAX);
                    debug!(%node, stall_ms, "this process stalled");
                    metrics::counter!("herald_own_stalls_total", "node" => node.clone())
                        .increment(1);
                }
            }
        });
        StallTicker { task }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StallRecord> {
        // A record is consistent after every method, so a panic elsewhere cannot leave it torn.
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running ticker of a `StallDetector`, owned by the node (or the test) that started it.
/// Dropping it leaves the ticker running; call `stop`.
#[derive(Debug)]
pub struct StallTicker {
    task: JoinHandle<()>,
}

impl StallTicker {
    /// Stops the ticker and waits until it is gone. Stop it after the actors that ask the
    /// detector: without its ticker, a detector sees a stall in progress from its last tick on.
    pub async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_millis(100);

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// A record that ticked on time every period from `t0` until `until`.
    fn ticking(t0: Instant, until: Duration) -> StallRecord {
        let mut record = StallRecord::new(PERIOD, t0);
        let mut at = PERIOD;
        while at <= until {
            assert_eq!(record.on_tick(t0 + at), None, "on time at {at:?}");
            at += PERIOD;
        }
        record
    }

    #[test]
    fn ticks_on_time_or_a_little_late_record_nothing() {
        let t0 = Instant::now();
        let mut record = ticking(t0, ms(1_000));
        assert_eq!(record.on_tick(t0 + ms(1_149)), None, "49 ms late is noise");
        assert_eq!(record.stalls().count(), 0);
        assert_eq!(
            record.stall_longer_than(Duration::ZERO, t0, t0 + ms(1_149), t0 + ms(1_149)),
            None
        );
    }

    #[test]
    fn a_late_tick_records_the_span_from_when_it_was_due() {
        let t0 = Instant::now();
        let mut record = ticking(t0, ms(1_000));
        let stall = record.on_tick(t0 + ms(4_100)).expect("3 s late");
        assert_eq!(
            stall,
            Stall {
                from: t0 + ms(1_100),
                to: t0 + ms(4_100)
            }
        );
        assert_eq!(stall.length(), ms(3_000));
        assert_eq!(record.on_tick(t0 + ms(4_200)), None, "back on time");
    }

    #[test]
    fn only_the_part_of_a_stall_inside_the_interval_counts() {
        let t0 = Instant::now();
        let mut record = ticking(t0, ms(1_000));
        record.on_tick(t0 + ms(4_100)); // stalled 1.1 s → 4.1 s
        let now = t0 + ms(4_150);
        let asked = |from: u64, to: u64, longer_than: u64| {
            record
                .stall_longer_than(ms(longer_than), t0 + ms(from), t0 + ms(to), now)
                .map(|stall| stall.length())
        };
        assert_eq!(asked(1_000, 4_150, 2_000), Some(ms(3_000)), "all of it");
        assert_eq!(asked(3_000, 4_150, 500), Some(ms(1_100)), "its tail");
        assert_eq!(asked(3_000, 4_150, 1_100), None, "strictly longer");
        assert_eq!(
            asked(4_100, 4_150, 0),
            None,
            "it ended when the interval began"
        );
        assert_eq!(asked(0, 1_100, 0), None, "it began when the interval ended");
        assert_eq!(asked(2_000, 2_500, 400), Some(ms(500)), "inside it");
    }

    #[test]
    fn the_longest_of_several_stalls_answers() {
        let t0 = Instant::now();
        let mut record = StallRecord::new(PERIOD, t0);
        record.on_tick(t0 + ms(1_100)); // 1 s
        record.on_tick(t0 + ms(3_200)); // 2 s
        record.on_tick(t0 + ms(3_300));
        record.on_tick(t0 + ms(3_900)); // 0.5 s
        let longest = record.stall_longer_than(ms(100), t0, t0 + ms(4_000), t0 + ms(4_000));
        assert_eq!(longest.map(|stall| stall.length()), Some(ms(2_000)));
    }

    /// After a resume a timeout may be judged before the ticker's late tick runs: the stall is
    /// seen from the last tick's due time to `now`.
    #[test]
    fn a_stall_still_being_noticed_counts() {
        let t0 = Instant::now();
        let record = ticking(t0, ms(1_000));
        let now = t0 + ms(3_000);
        let stall = record
            .stall_longer_than(ms(1_000), t0 + ms(900), now, now)
            .expect("in progress");
        assert_eq!(
            stall,
            Stall {
                from: t0 + ms(1_100),
                to: now
            }
        );
        let soon = t0 + ms(1_150);
        assert_eq!(
            record.stall_longer_than(ms(10), t0 + ms(900), soon, soon),
            Some(Stall {
                from: t0 + ms(1_100),
                to: soon
            }),
            "50 ms past due"
        );
        assert_eq!(
            record.stall_longer_than(ms(1_000), t0 + ms(900), soon, soon),
            None,
            "is not a 1 s stall"
        );
    }

    #[test]
    fn the_record_keeps_the_most_recent_stalls_only() {
        let t0 = Instant::now();
        let mut record = StallRecord::new(PERIOD, t0);
        let mut at = Duration::ZERO;
        for _ in 0..STALLS_KEPT + 10 {
            at += ms(1_000);
            assert!(record.on_tick(t0 + at).is_some());
        }
        assert_eq!(record.stalls().count(), STALLS_KEPT);
        let oldest = record.stalls().next().unwrap();
        assert_eq!(oldest.to, t0 + ms(11_000), "the first 10 were dropped");
    }

    #[test]
    fn a_tick_from_the_past_changes_nothing() {
        let t0 = Instant::now();
        let mut record = ticking(t0, ms(500));
        assert_eq!(record.on_tick(t0 + ms(200)), None);
        assert_eq!(
            record.on_tick(t0 + ms(600)),
            None,
            "still measured from 500 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ticker_sees_the_clock_jump_while_it_cannot_run() {
        let detector = Arc::new(StallDetector::new(PERIOD, Instant::now()));
        let ticker = detector.start(&NodeId::parse("ticking").unwrap());
        tokio::time::sleep(ms(1_000)).await;
        assert_eq!(
            detector.record().stalls().count(),
            0,
            "auto-advance is on time"
        );
        let before = Instant::now();
        tokio::time::advance(ms(5_000)).await;
        tokio::time::sleep(ms(1)).await;
        let now = Instant::now();
        let stall = detector
            .stall_longer_than(ms(4_000), before, now, now)
            .expect("seen");
        assert!(stall.length() > ms(4_800), "{stall:?}");
        ticker.stop().await;
    }
}
