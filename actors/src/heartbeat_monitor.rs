//! `HeartbeatMonitor` (peer role): proves the current hub is alive (FR-036).
//!
//! Every `interval` it sends a heartbeat carrying the replica's version, with a deadline. The
//! hub answers with its version and a recommended action, which the monitor carries out (SYNC
//! → the replica syncs; FAILOVER → the connection moves on; RECONNECT → a new session). After
//! `missed_limit` consecutive failures it asks the connection to fail over.
//!
//! A failed heartbeat whose wait overlapped a stall of this process itself longer than
//! `own_stall_share` of the deadline is not counted as a miss, whatever the stall's length: the
//! hub may well have answered while this process was not running (SIGSTOP, a paused VM, an
//! overloaded host). The stall is measured by the node's `StallDetector`, not guessed from how
//! late the failure came. An excused failure neither counts nor clears earlier misses, so a
//! hub that is really silent is still failed over at the first heartbeats that find this
//! process running.
//!
//! Replays on restart: the current session, asked from the connection.

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, warn};

use herald_messages::{
    BeatFailure, BeatReport, CentralNodeConnectionMsg, HeartbeatMonitorMsg, HeartbeatReport,
    HeartbeatRequest, HubSession, NodeId, RecommendedAction, ReplicaPosition, SyncTrigger,
    SystemRegisterReplicaMsg,
};

use crate::actor_kit::{MessageName, Timers, message_span};
use crate::ports::{Clock, HubLink, HubLinkError, error_chain};
use crate::slot::ActorSlot;
use crate::stall_detector::{Stall, StallDetector};

/// Default `own_stall_share`: a stall of a quarter of the deadline is far beyond scheduling
/// noise (7.5 s with the default 30 s deadline), and short enough that a heartbeat which failed
/// because of it cannot be told from one the hub let fail.
pub const DEFAULT_OWN_STALL_SHARE: f64 = 0.25;

/// Heartbeat settings (DESIGN §6, §9).
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub interval: Duration,
    /// Deadline of one heartbeat.
    pub timeout: Duration,
    /// Consecutive misses that make the connection fail over.
    pub missed_limit: u32,
    /// A failed heartbeat is not a miss when, while it waited, this process itself stalled for
    /// longer than this share of `timeout` (in `(0, 1]`).
    pub own_stall_share: f64,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            missed_limit: 2,
            own_stall_share: DEFAULT_OWN_STALL_SHARE,
        }
    }
}

impl HeartbeatConfig {
    /// The shortest stall of this process that excuses a failed heartbeat: `own_stall_share`
    /// of the deadline (the whole deadline if the share is not a number in `(0, 1]`).
    pub fn own_stall_threshold(&self) -> Duration {
        let share = self.own_stall_share;
        if !(share > 0.0 && share <= 1.0) {
            return self.timeout;
        }
        self.timeout.mul_f64(share)
    }
}

/// The actor.
pub struct HeartbeatMonitor;

/// Everything a (re)started monitor needs; cloned for each start.
#[derive(Clone)]
pub struct HeartbeatMonitorArgs {
    pub peer_id: NodeId,
    pub config: HeartbeatConfig,
    pub link: Arc<dyn HubLink>,
    pub clock: Arc<dyn Clock>,
    pub connection: ActorSlot<CentralNodeConnectionMsg>,
    pub replica: ActorSlot<SystemRegisterReplicaMsg>,
    /// This process's own stalls (the node's detector, ticking).
    pub stalls: Arc<StallDetector>,
}

pub struct HeartbeatMonitorState {
    args: HeartbeatMonitorArgs,
    session: Option<HubSession>,
    sequence: u64,
    missed: u32,
    in_flight: bool,
    /// A tick found a heartbeat in flight: the next one goes as soon as that one ends (a tick
    /// is deferred, never dropped, so a silent hub costs `missed_limit` deadlines, no more).
    due: bool,
    /// Consecutive heartbeats the hub refused (logged, never counted as misses).
    refusals: u32,
    /// Consecutive failures excused by a stall of this process (logged with a rate limit).
    excused: u32,
    report: HeartbeatReport,
    _timers: Timers,
}

/// The stall of this process that excuses a heartbeat sent at `sent_at` and failed at
/// `failed_at` (now), if any: one longer than `own_stall_share` of the deadline during the
/// wait, whatever its length; one still being noticed included.
fn excusing_stall(
    stalls: &StallDetector,
    config: &HeartbeatConfig,
    sent_at: Instant,
    failed_at: Instant,
) -> Option<Stall> {
    stalls.stall_longer_than(config.own_stall_threshold(), sent_at, failed_at, failed_at)
}

impl Actor for HeartbeatMonitor {
    type Msg = HeartbeatMonitorMsg;
    type State = HeartbeatMonitorState;
    type Arguments = HeartbeatMonitorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HeartbeatMonitorMsg>,
        args: HeartbeatMonitorArgs,
    ) -> Result<HeartbeatMonitorState, ActorProcessingErr> {
        // Replay: the connection knows whether a session is running.
        let connection = args.connection.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            if let Ok(Some(session)) = connection
                .call(CentralNodeConnectionMsg::Current, Duration::from_secs(10))
                .await
            {
                let _ = me.cast(HeartbeatMonitorMsg::SessionStarted(session));
            }
        });
        let mut timers = Timers::new();
        timers.every(&myself, args.config.interval, || HeartbeatMonitorMsg::Tick);
        Ok(HeartbeatMonitorState {
            args,
            session: None,
            sequence: 0,
            missed: 0,
            in_flight: false,
            due: false,
            refusals: 0,
            excused: 0,
            report: HeartbeatReport::default(),
            _timers: timers,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HeartbeatMonitorMsg>,
        msg: HeartbeatMonitorMsg,
        state: &mut HeartbeatMonitorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("heartbeat_monitor", &state.args.peer_id, &msg);
        async move {
            match msg {
                HeartbeatMonitorMsg::SessionStarted(session) => {
                    let same = state.session.as_ref().is_some_and(|current| {
                        current.grant.session_id == session.grant.session_id
                    });
                    if !same {
                        state.session = Some(session);
                        state.missed = 0;
                        state.in_flight = false;
                        state.due = false;
                        state.report.missed = 0;
                    }
                }
                HeartbeatMonitorMsg::SessionEnded => {
                    state.session = None;
                    state.missed = 0;
                    state.in_flight = false;
                    state.due = false;
                }
                HeartbeatMonitorMsg::Tick => state.beat(&myself).await,
                HeartbeatMonitorMsg::BeatFinished(report) => {
                    state.on_beat_finished(report);
                    if state.due && !state.in_flight {
                        state.due = false;
                        state.beat(&myself).await;
                    }
                }
                HeartbeatMonitorMsg::Status(reply) => {
                    let _ = reply.send(state.report);
                }
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl HeartbeatMonitorState {
    async fn beat(&mut self, myself: &ActorRef<HeartbeatMonitorMsg>) {
        // One heartbeat at a time: a slow one is judged by its own deadline, and this one
        // goes when it ends.
        if self.in_flight {
            self.due = true;
            return;
        }
        let Some(session) = self.session.clone() else {
            return;
        };
        let position = self.replica_position(&session).await;
        self.sequence += 1;
        self.in_flight = true;
        self.report.sent += 1;
        let beat = HeartbeatRequest {
            peer_id: self.args.peer_id.clone(),
            session_id: session.grant.session_id.clone(),
            sequence: self.sequence,
            last_sync_version: position.version,
            last_sync_digest: position.digest,
            sent_at: self.args.clock.now(),
        };
        let link = Arc::clone(&self.args.link);
        let deadline = self.args.config.timeout;
        let myself = myself.clone();
        tokio::spawn(
            async move {
                let sent_at = Instant::now();
                let result = match tokio::time::timeout(
                    deadline,
                    link.heartbeat(&session.hub, beat, deadline),
                )
                .await
                {
                    Ok(Ok(ack)) => Ok(ack),
                    Ok(Err(HubLinkError::UnknownSession(reason))) => {
                        Err(BeatFailure::UnknownSession(reason))
                    }
                    Ok(Err(HubLinkError::Refused(reason))) => Err(BeatFailure::Refused(reason)),
                    Ok(Err(err)) => Err(BeatFailure::Unreachable(error_chain(&err))),
                    Err(_) => Err(BeatFailure::Unreachable(format!(
                        "no answer within {deadline:?}"
                    ))),
                };
                let _ = myself.cast(HeartbeatMonitorMsg::BeatFinished(BeatReport {
                    session_id: session.grant.session_id.clone(),
                    sent_at,
                    result,
                }));
            }
            .in_current_span(),
        );
    }

    fn on_beat_finished(&mut self, report: BeatReport) {
        let Some(session) = &self.session else {
            return;
        };
        if session.grant.session_id != report.session_id {
            return;
        }
        self.in_flight = false;
        let now = Instant::now();
        let node = self.args.peer_id.to_string();
        match report.result {
            Ok(ack) => {
                self.refusals = 0;
                self.excused = 0;
                let latency = now.duration_since(report.sent_at);
                let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
                self.missed = 0;
                self.report.missed = 0;
                self.report.last_latency_ms = Some(latency_ms);
                metrics::histogram!("herald_heartbeat_latency_seconds", "node" => node)
                    .record(latency.as_secs_f64());
                debug!(hub = %ack.hub_id, version = ack.version, action = ?ack.action, latency_ms, "heartbeat acknowledged");
                let _ = self
                    .args
                    .connection
                    .cast(CentralNodeConnectionMsg::HeartbeatReport {
                        missed: 0,
                        latency_ms: Some(latency_ms),
                    });
                let history_changed = ack.history_id != session.grant.history_id;
                match ack.action {
                    RecommendedAction::FullSync => {
                        let _ = self.args.replica.cast(SystemRegisterReplicaMsg::Diverged {
                            reason: format!(
                                "hub {} found the replica diverged from its register (version {})",
                                ack.hub_id, ack.version
                            ),
                        });
                    }
                    RecommendedAction::Sync => {
                        let _ = self
                            .args
                            .replica
                            .cast(SystemRegisterReplicaMsg::SyncNow(SyncTrigger::Heartbeat));
                    }
                    RecommendedAction::Failover => {
                        let _ = self
                            .args
                            .connection
                            .cast(CentralNodeConnectionMsg::Failover {
                                reason: format!("hub {} advised to fail over", ack.hub_id),
                            });
                    }
                    RecommendedAction::Reconnect => {
                        let _ = self
                            .args
                            .connection
                            .cast(CentralNodeConnectionMsg::Reconnect {
                                reason: format!("hub {} advised to reconnect", ack.hub_id),
                            });
                    }
                    RecommendedAction::None | RecommendedAction::ReduceFrequency => {}
                }
                if history_changed {
                    // The hub's register was recreated under the session: start over with it.
                    let _ = self
                        .args
                        .connection
                        .cast(CentralNodeConnectionMsg::Reconnect {
                            reason: "the hub's system register history changed".into(),
                        });
                }
            }
            Err(BeatFailure::UnknownSession(error)) => {
                warn!(hub = %session.hub.id, %error, "the hub forgot this session; reconnecting");
                let _ = self
                    .args
                    .connection
                    .cast(CentralNodeConnectionMsg::Reconnect {
                        reason: format!("unknown session: {error}"),
                    });
            }
            Err(BeatFailure::Refused(error)) => {
                // The hub is alive and says no: failing over would not help (every hub would
                // refuse the same way). Rate-limited: it repeats every interval.
                self.refusals += 1;
                if self.refusals == 1 || self.refusals.is_power_of_two() {
                    error!(hub = %session.hub.id, %error, refusals = self.refusals, "the hub refuses this peer's heartbeats (is this peer's clock right?)");
                }
            }
            Err(BeatFailure::Unreachable(error)) => {
                let stall =
                    excusing_stall(&self.args.stalls, &self.args.config, report.sent_at, now);
                if let Some(stall) = stall {
                    self.excused += 1;
                    metrics::counter!("herald_heartbeat_own_stalls_total", "node" => node)
                        .increment(1);
                    let stall_ms = u64::try_from(stall.length().as_millis()).unwrap_or(u64::MAX);
                    let waited_ms = u64::try_from(now.duration_since(report.sent_at).as_millis())
                        .unwrap_or(u64::MAX);
                    // Rate-limited: a process that keeps stalling would log every interval.
                    if self.excused.is_power_of_two() {
                        info!(hub = %session.hub.id, %error, stall_ms, waited_ms, excused = self.excused, missed = self.missed, "heartbeat failed while this process stalled; not counted as a miss");
                    } else {
                        debug!(hub = %session.hub.id, %error, stall_ms, waited_ms, excused = self.excused, "heartbeat failed while this process stalled; not counted as a miss");
                    }
                    return;
                }
                self.excused = 0;
                self.missed += 1;
                self.report.missed = self.missed;
                metrics::counter!("herald_heartbeat_misses_total", "node" => node).increment(1);
                warn!(hub = %session.hub.id, %error, missed = self.missed, limit = self.args.config.missed_limit, "heartbeat missed");
                let _ = self
                    .args
                    .connection
                    .cast(CentralNodeConnectionMsg::HeartbeatReport {
                        missed: self.missed,
                        latency_ms: None,
                    });
                if self.missed >= self.args.config.missed_limit {
                    let reason = format!("{} heartbeats missed, last: {error}", self.missed);
                    self.missed = 0;
                    let _ = self
                        .args
                        .connection
                        .cast(CentralNodeConnectionMsg::Failover { reason });
                }
            }
        }
    }

    /// The replica's version and digest, reported in the heartbeat so the hub can tell it is
    /// behind or diverged. A replica of another history than the session's holds nothing of
    /// this one: version 0 (its full sync is on its way).
    async fn replica_position(&self, session: &HubSession) -> ReplicaPosition {
        let position = self
            .args
            .replica
            .call(SystemRegisterReplicaMsg::Position, Duration::from_secs(1))
            .await
            .unwrap_or_default();
        if position.history_id.as_ref() != Some(&session.grant.history_id) {
            return ReplicaPosition::default();
        }
        position
    }
}

impl MessageName for HeartbeatMonitorMsg {
    fn name(&self) -> &'static str {
        match self {
            HeartbeatMonitorMsg::SessionStarted(_) => "session_started",
            HeartbeatMonitorMsg::SessionEnded => "session_ended",
            HeartbeatMonitorMsg::Status(_) => "status",
            HeartbeatMonitorMsg::Tick => "tick",
            HeartbeatMonitorMsg::BeatFinished(_) => "beat_finished",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(100);

    fn secs(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    /// Ticks `detector` on time, every `TICK` after `from` up to `until`.
    fn on_time(detector: &StallDetector, from: Instant, until: Instant) {
        let mut at = from + TICK;
        while at <= until {
            assert_eq!(detector.tick(at), None);
            at += TICK;
        }
    }

    #[test]
    fn the_threshold_is_a_share_of_the_deadline() {
        let config = HeartbeatConfig::default();
        assert_eq!(config.own_stall_threshold(), Duration::from_millis(7_500));
        let odd = HeartbeatConfig {
            own_stall_share: f64::NAN,
            ..HeartbeatConfig::default()
        };
        assert_eq!(odd.own_stall_threshold(), odd.timeout, "never a panic");
    }

    /// Issue 7, item 5: a stall shorter than `1.5 × deadline + 1 s` used to count as a miss.
    /// Any stall beyond the share of the deadline excuses, however short or long it is.
    #[test]
    fn a_stall_during_the_wait_excuses_the_failure_whatever_its_length() {
        let config = HeartbeatConfig::default();
        for stall in [secs(8), secs(40), secs(600)] {
            let t0 = Instant::now();
            let stalls = StallDetector::new(TICK, t0);
            on_time(&stalls, t0, t0 + secs(5));
            let resumed = t0 + secs(5) + stall;
            assert!(stalls.tick(resumed).is_some());
            let sent = t0 + secs(1);
            let failed = resumed + Duration::from_millis(1);
            let excuse = excusing_stall(&stalls, &config, sent, failed);
            assert!(excuse.is_some(), "a {stall:?} stall");
        }
    }

    #[test]
    fn a_failure_without_a_long_enough_stall_is_a_miss() {
        let config = HeartbeatConfig::default();
        let t0 = Instant::now();
        let stalls = StallDetector::new(TICK, t0);
        on_time(&stalls, t0, t0 + secs(10));
        assert!(
            stalls.tick(t0 + secs(17)).is_some(),
            "stalled 6.9 s: under 7.5 s"
        );
        on_time(&stalls, t0 + secs(17), t0 + secs(35));
        assert_eq!(
            excusing_stall(&stalls, &config, t0 + secs(5), t0 + secs(35)),
            None
        );

        let t0 = Instant::now();
        let stalls = StallDetector::new(TICK, t0);
        assert!(stalls.tick(t0 + secs(60)).is_some(), "stalled for a minute");
        on_time(&stalls, t0 + secs(60), t0 + secs(90));
        assert_eq!(
            excusing_stall(&stalls, &config, t0 + secs(60), t0 + secs(90)),
            None,
            "a stall that ended before the heartbeat went out"
        );
    }

    /// After SIGCONT the heartbeat's timeout can be handled before the ticker's own late tick.
    #[test]
    fn a_stall_still_being_noticed_excuses() {
        let config = HeartbeatConfig::default();
        let t0 = Instant::now();
        let stalls = StallDetector::new(TICK, t0);
        on_time(&stalls, t0, t0 + secs(2));
        let sent = t0 + Duration::from_millis(1_950);
        let failed = t0 + secs(40);
        assert!(excusing_stall(&stalls, &config, sent, failed).is_some());
    }
}
