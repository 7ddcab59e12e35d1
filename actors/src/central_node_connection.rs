//! `CentralNodeConnection` (peer role): holds one session with one hub at a time.
//!
//! One state machine: Connecting → Connected, or Isolated (a node that has not started the role
//! reports Disconnected). The hubs form a ring
//! in priority order. Each attempt has a deadline; a hub gets `attempts_per_hub` attempts
//! before the ring moves on, so a dead first hub does not hold up the second (SC-014). When
//! every hub of a round failed the peer is Isolated: it keeps serving its replica and starts a
//! new round from the top after a capped, jittered backoff, forever (FR-030). A failover (the
//! heartbeat monitor lost the hub) continues with the next hub of the ring, and the peer stays
//! where it lands: no automatic failback (FR-035). The monitor and the replica are told of
//! every session that starts or ends.
//!
//! Connection attempts run in tasks; a late answer from a superseded attempt is ignored.
//! Replays on restart: its place in the ring (`RingMemory`, which outlives the actor): a
//! restarted connection tries the hub it was on first, so a crash is not a failback (the hubs
//! forget the old, silent session on their own).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, debug, info, warn};

use herald_messages::{
    AttemptReport, CentralNodeConnectionMsg, ConnectRequest, ConnectionState, ConnectionStatus,
    ConnectionView, HeartbeatMonitorMsg, HubEndpoint, HubReport, HubSession, NodeId, NodeType,
    SystemRegisterReplicaMsg, Timestamp,
};

use crate::actor_kit::{MessageName, Pending, message_span};
use crate::backoff::{Backoff, BackoffConfig};
use crate::ports::{Clock, HubLink, HubLinkError, error_chain};
use crate::slot::ActorSlot;
use crate::view::Published;

/// Connection settings (DESIGN §6, §9).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionConfig {
    /// The hubs; tried in ascending `priority`.
    pub hubs: Vec<HubEndpoint>,
    /// Deadline of one connection attempt.
    pub connect_timeout: Duration,
    /// Attempts on one hub before the ring moves on.
    pub attempts_per_hub: u32,
    /// Pause between two attempts on the same hub.
    pub retry_pause: Duration,
    /// Backoff between rounds while isolated.
    pub isolated_backoff: BackoffConfig,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            hubs: Vec::new(),
            // Not DESIGN's 30 s: a hub that never answers holds the ring up for one deadline,
            // and SC-014 wants the peer connected within 30 s when any hub is up.
            connect_timeout: Duration::from_secs(10),
            attempts_per_hub: 2,
            retry_pause: Duration::from_millis(500),
            isolated_backoff: BackoffConfig::DEFAULT,
        }
    }
}

/// How long an attempt waits for the replica's position before it connects without it.
const REPLICA_ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// The connection's place in the ring, kept outside the actor so that a restarted connection
/// resumes where it was. Cheap to clone; clones share the place.
#[derive(Debug, Clone, Default)]
pub struct RingMemory(Arc<AtomicUsize>);

impl RingMemory {
    const NONE: usize = usize::MAX;

    pub fn new() -> Self {
        Self(Arc::new(AtomicUsize::new(Self::NONE)))
    }

    /// The index (into the ring in priority order) of the hub last connected to.
    fn get(&self) -> Option<usize> {
        match self.0.load(Ordering::Relaxed) {
            Self::NONE => None,
            hub => Some(hub),
        }
    }

    fn set(&self, hub: usize) {
        self.0.store(hub, Ordering::Relaxed);
    }
}

/// The actor.
pub struct CentralNodeConnection;

/// Everything a (re)started connection needs; cloned for each start.
#[derive(Clone)]
pub struct CentralNodeConnectionArgs {
    pub peer_id: NodeId,
    /// Where this peer says it can be reached (told to hubs).
    pub address: String,
    pub config: ConnectionConfig,
    pub link: Arc<dyn HubLink>,
    pub clock: Arc<dyn Clock>,
    pub monitor: ActorSlot<HeartbeatMonitorMsg>,
    pub replica: ActorSlot<SystemRegisterReplicaMsg>,
    /// Where in the ring the connection was, across its restarts.
    pub ring_memory: RingMemory,
    /// Where the connection publishes its status and hubs (read without its mailbox); owned
    /// by the wiring, it outlives restarts.
    pub view: Published<ConnectionView>,
}

pub struct CentralNodeConnectionState {
    args: CentralNodeConnectionArgs,
    ring: Ring,
    phase: Phase,
    since: Timestamp,
    failovers: u64,
    missed_heartbeats: u32,
    last_latency_ms: Option<u64>,
    last_error: Option<String>,
    backoff: Backoff,
    /// Identifies the attempt whose answer is awaited; older answers are ignored.
    attempt_id: u64,
    timer: Pending,
}

/// Where the state machine is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Trying `hub` (an index into the ring), attempt `attempt` of its budget; `tried` hubs of
    /// this round have failed so far.
    Connecting {
        hub: usize,
        attempt: u32,
        tried: usize,
        after_isolation: bool,
    },
    Connected(Box<HubSession>),
    Isolated,
}

/// The configured hubs in priority order, with what we know of each.
#[derive(Debug)]
struct Ring {
    hubs: Vec<HubEndpoint>,
    health: Vec<HubHealth>,
}

#[derive(Debug, Clone, Default)]
struct HubHealth {
    consecutive_failures: u32,
    last_attempt_at: Option<Timestamp>,
    last_error: Option<String>,
}

impl Ring {
    fn new(mut hubs: Vec<HubEndpoint>) -> Self {
        hubs.sort_by(|a, b| a.priority.cmp(&b.priority).then_with(|| a.id.cmp(&b.id)));
        let health = vec![HubHealth::default(); hubs.len()];
        Self { hubs, health }
    }

    fn next(&self, hub: usize) -> usize {
        (hub + 1) % self.hubs.len()
    }
}

/// What to do after an attempt failed.
#[derive(Debug, PartialEq, Eq)]
enum AfterFailure {
    /// Try the same hub again after the pause.
    Retry {
        hub: usize,
        attempt: u32,
        tried: usize,
    },
    /// Move on to the next hub at once.
    Next { hub: usize, tried: usize },
    /// Every hub of the round failed.
    Isolate,
}

/// The ring's decision after a failed attempt on `hub` (pure: tested without a runtime).
fn after_failure(hub: usize, attempt: u32, tried: usize, hubs: usize, budget: u32) -> AfterFailure {
    if attempt < budget {
        return AfterFailure::Retry {
            hub,
            attempt: attempt + 1,
            tried,
        };
    }
    let tried = tried + 1;
    if tried >= hubs {
        return AfterFailure::Isolate;
    }
    AfterFailure::Next {
        hub: (hub + 1) % hubs,
        tried,
    }
}

impl Actor for CentralNodeConnection {
    type Msg = CentralNodeConnectionMsg;
    type State = CentralNodeConnectionState;
    type Arguments = CentralNodeConnectionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<CentralNodeConnectionMsg>,
        args: CentralNodeConnectionArgs,
    ) -> Result<CentralNodeConnectionState, ActorProcessingErr> {
        if args.config.hubs.is_empty() {
            return Err("no hub configured".into());
        }
        myself.cast(CentralNodeConnectionMsg::Attempt)?;
        let ring = Ring::new(args.config.hubs.clone());
        // A restart resumes with the hub it was on: no failback.
        let first = args
            .ring_memory
            .get()
            .filter(|hub| *hub < ring.hubs.len())
            .unwrap_or(0);
        Ok(CentralNodeConnectionState {
            ring,
            since: args.clock.now(),
            backoff: Backoff::new(args.config.isolated_backoff),
            phase: Phase::Connecting {
                hub: first,
                attempt: 1,
                tried: 0,
                after_isolation: false,
            },
            args,
            failovers: 0,
            missed_heartbeats: 0,
            last_latency_ms: None,
            last_error: None,
            attempt_id: 0,
            timer: Pending::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<CentralNodeConnectionMsg>,
        msg: CentralNodeConnectionMsg,
        state: &mut CentralNodeConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("central_node_connection", &state.args.peer_id, &msg);
        async move {
            match msg {
                CentralNodeConnectionMsg::Attempt => state.attempt(&myself),
                CentralNodeConnectionMsg::AttemptFinished(report) => {
                    state.on_attempt_finished(&myself, report);
                }
                CentralNodeConnectionMsg::Failover { reason } => {
                    state.leave_hub(&myself, reason, true);
                }
                CentralNodeConnectionMsg::Reconnect { reason } => {
                    state.leave_hub(&myself, reason, false);
                }
                CentralNodeConnectionMsg::HeartbeatReport { missed, latency_ms } => {
                    state.missed_heartbeats = missed;
                    if latency_ms.is_some() {
                        state.last_latency_ms = latency_ms;
                    }
                }
                CentralNodeConnectionMsg::Current(reply) => {
                    let _ = reply.send(state.session().cloned());
                }
                CentralNodeConnectionMsg::Status(reply) => {
                    let _ = reply.send(state.status());
                }
                CentralNodeConnectionMsg::Hubs(reply) => {
                    let _ = reply.send(state.hub_reports());
                }
            }
            state.args.view.publish_if_changed(ConnectionView {
                status: state.status(),
                hubs: state.hub_reports(),
            });
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<CentralNodeConnectionMsg>,
        state: &mut CentralNodeConnectionState,
    ) -> Result<(), ActorProcessingErr> {
        state.timer.cancel();
        // A clean stop says goodbye, so the hub frees the session at once.
        if let Phase::Connected(session) = &state.phase {
            let link = Arc::clone(&state.args.link);
            let (hub, peer, id) = (
                session.hub.clone(),
                state.args.peer_id.clone(),
                session.grant.session_id.clone(),
            );
            let _ = tokio::time::timeout(Duration::from_secs(2), link.disconnect(&hub, &peer, &id))
                .await;
        }
        Ok(())
    }
}

impl CentralNodeConnectionState {
    fn session(&self) -> Option<&HubSession> {
        match &self.phase {
            Phase::Connected(session) => Some(session),
            _ => None,
        }
    }

    /// Starts the attempt the phase names (Connecting), or a new round (Isolated).
    fn attempt(&mut self, myself: &ActorRef<CentralNodeConnectionMsg>) {
        let hub_index = match &self.phase {
            Phase::Connecting { hub, .. } => *hub,
            Phase::Isolated => {
                // A new round from the top of the ring.
                self.phase = Phase::Connecting {
                    hub: 0,
                    attempt: 1,
                    tried: 0,
                    after_isolation: true,
                };
                0
            }
            Phase::Connected(_) => return,
        };
        self.attempt_id += 1;
        let hub = self.ring.hubs[hub_index].clone();
        self.ring.health[hub_index].last_attempt_at = Some(self.args.clock.now());
        debug!(hub = %hub.id, url = %hub.url, "connecting");
        let (peer_id, address) = (self.args.peer_id.clone(), self.args.address.clone());
        let replica = self.args.replica.clone();
        let link = Arc::clone(&self.args.link);
        let deadline = self.args.config.connect_timeout;
        let myself = myself.clone();
        let attempt_id = self.attempt_id;
        tokio::spawn(
            async move {
                // The hub learns where the replica stands (a replica still loading, or of
                // another history, says nothing: the session's first sync settles it).
                let position = replica
                    .call(SystemRegisterReplicaMsg::Position, REPLICA_ASK_TIMEOUT)
                    .await
                    .unwrap_or_default();
                let request = ConnectRequest {
                    peer_id,
                    node_type: NodeType::Peer,
                    address,
                    last_known_version: position.version,
                    last_known_digest: position.digest,
                };
                let answer =
                    tokio::time::timeout(deadline, link.connect(&hub, request, deadline)).await;
                // Ours or the link's own deadline: either way the hub gave no answer.
                let timed_out = matches!(answer, Err(_) | Ok(Err(HubLinkError::TimedOut(_))));
                let result = match answer {
                    Ok(Ok(grant)) => Ok(grant),
                    Ok(Err(err)) => Err(error_chain(&err)),
                    Err(_) => Err(format!("no answer within {deadline:?}")),
                };
                let _ = myself.cast(CentralNodeConnectionMsg::AttemptFinished(AttemptReport {
                    attempt_id,
                    hub_index,
                    result,
                    timed_out,
                }));
            }
            .in_current_span(),
        );
    }

    fn on_attempt_finished(
        &mut self,
        myself: &ActorRef<CentralNodeConnectionMsg>,
        report: AttemptReport,
    ) {
        let Phase::Connecting {
            hub,
            attempt,
            tried,
            after_isolation,
        } = self.phase.clone()
        else {
            return;
        };
        if report.attempt_id != self.attempt_id || report.hub_index != hub {
            return;
        }
        let now = self.args.clock.now();
        match report.result {
            Ok(grant) => {
                let endpoint = self.ring.hubs[hub].clone();
                self.ring.health[hub] = HubHealth {
                    last_attempt_at: Some(now),
                    ..HubHealth::default()
                };
                self.backoff.reset();
                self.last_error = None;
                self.missed_heartbeats = 0;
                info!(hub = %endpoint.id, session = %grant.session_id, version = grant.version, after_isolation, "connected to hub");
                self.args.ring_memory.set(hub);
                let session = HubSession {
                    hub: endpoint,
                    grant,
                    after_isolation,
                };
                self.set_phase(Phase::Connected(Box::new(session.clone())));
                let _ = self
                    .args
                    .monitor
                    .cast(HeartbeatMonitorMsg::SessionStarted(session.clone()));
                let _ = self
                    .args
                    .replica
                    .cast(SystemRegisterReplicaMsg::SessionStarted(session));
            }
            Err(error) => {
                let health = &mut self.ring.health[hub];
                health.consecutive_failures += 1;
                health.last_error = Some(error.clone());
                let failures = health.consecutive_failures;
                // Rate-limited: an isolated peer retries forever.
                if failures == 1 || failures.is_power_of_two() {
                    warn!(hub = %self.ring.hubs[hub].id, %error, attempt, failures, "cannot connect to hub");
                } else {
                    debug!(hub = %self.ring.hubs[hub].id, %error, attempt, failures, "cannot connect to hub");
                }
                self.last_error = Some(format!("{}: {error}", self.ring.hubs[hub].id));
                let budget = self.args.config.attempts_per_hub.max(1);
                // A hub that does not answer at all used a whole deadline: retrying it would hold
                // up the next hub for another one (SC-014).
                let attempt = if report.timed_out { budget } else { attempt };
                let decision = after_failure(hub, attempt, tried, self.ring.hubs.len(), budget);
                match decision {
                    AfterFailure::Retry {
                        hub,
                        attempt,
                        tried,
                    } => {
                        self.phase = Phase::Connecting {
                            hub,
                            attempt,
                            tried,
                            after_isolation,
                        };
                        self.schedule_attempt(myself, self.args.config.retry_pause);
                    }
                    AfterFailure::Next { hub, tried } => {
                        self.phase = Phase::Connecting {
                            hub,
                            attempt: 1,
                            tried,
                            after_isolation,
                        };
                        myself.cast(CentralNodeConnectionMsg::Attempt).ok();
                    }
                    AfterFailure::Isolate => {
                        let delay = self.backoff.next_delay();
                        if self.phase_is_new_isolation() {
                            warn!(
                                hubs = self.ring.hubs.len(),
                                ?delay,
                                "every hub failed: isolated; serving the last replica and retrying"
                            );
                            metrics::counter!("herald_peer_isolations_total", "node" => self.args.peer_id.to_string()).increment(1);
                        } else {
                            debug!(?delay, "still isolated");
                        }
                        self.set_phase(Phase::Isolated);
                        self.schedule_attempt(myself, delay);
                    }
                }
            }
        }
    }

    fn phase_is_new_isolation(&self) -> bool {
        !matches!(
            self.phase,
            Phase::Connecting {
                after_isolation: true,
                ..
            }
        )
    }

    /// Leaves the current hub: on a failover for the next one of the ring, on a reconnect for
    /// the same one.
    fn leave_hub(
        &mut self,
        myself: &ActorRef<CentralNodeConnectionMsg>,
        reason: String,
        failover: bool,
    ) {
        let Phase::Connected(session) = &self.phase else {
            return;
        };
        let current = self
            .ring
            .hubs
            .iter()
            .position(|hub| hub.id == session.hub.id)
            .unwrap_or(0);
        let (hub, peer, id) = (
            session.hub.clone(),
            self.args.peer_id.clone(),
            session.grant.session_id.clone(),
        );
        let link = Arc::clone(&self.args.link);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(5), link.disconnect(&hub, &peer, &id))
                .await;
        });
        let _ = self.args.monitor.cast(HeartbeatMonitorMsg::SessionEnded);
        let _ = self
            .args
            .replica
            .cast(SystemRegisterReplicaMsg::SessionEnded);
        let next = if failover {
            self.failovers += 1;
            metrics::counter!("herald_peer_failovers_total", "node" => self.args.peer_id.to_string()).increment(1);
            self.ring.health[current].consecutive_failures += 1;
            self.ring.health[current].last_error = Some(reason.clone());
            self.ring.next(current)
        } else {
            current
        };
        if failover {
            warn!(from = %self.ring.hubs[current].id, to = %self.ring.hubs[next].id, %reason, "failing over");
        } else {
            info!(hub = %self.ring.hubs[current].id, %reason, "reconnecting");
        }
        self.last_error = Some(reason);
        self.set_phase(Phase::Connecting {
            hub: next,
            attempt: 1,
            // A failover counts the hub it leaves as tried in this round.
            tried: usize::from(failover),
            after_isolation: false,
        });
        myself.cast(CentralNodeConnectionMsg::Attempt).ok();
    }

    fn schedule_attempt(&mut self, myself: &ActorRef<CentralNodeConnectionMsg>, delay: Duration) {
        self.timer
            .after(myself, delay, || CentralNodeConnectionMsg::Attempt);
    }

    fn set_phase(&mut self, phase: Phase) {
        let state_changes = phase_state(&phase) != phase_state(&self.phase);
        self.phase = phase;
        if state_changes {
            self.since = self.args.clock.now();
            let connected = if phase_state(&self.phase) == ConnectionState::Connected {
                1.0
            } else {
                0.0
            };
            metrics::gauge!("herald_peer_hub_connected", "node" => self.args.peer_id.to_string())
                .set(connected);
        }
    }

    fn status(&self) -> ConnectionStatus {
        let session = self.session();
        ConnectionStatus {
            state: phase_state(&self.phase),
            hub_id: session.map(|s| s.hub.id.clone()),
            session_id: session.map(|s| s.grant.session_id.clone()),
            missed_heartbeats: self.missed_heartbeats,
            last_latency_ms: self.last_latency_ms,
            since: self.since,
            failovers: self.failovers,
            last_error: self.last_error.clone(),
        }
    }

    fn hub_reports(&self) -> Vec<HubReport> {
        let current = self.session().map(|s| s.hub.id.clone());
        self.ring
            .hubs
            .iter()
            .zip(&self.ring.health)
            .map(|(hub, health)| HubReport {
                id: hub.id.clone(),
                url: hub.url.clone(),
                priority: hub.priority,
                current: current.as_ref() == Some(&hub.id),
                consecutive_failures: health.consecutive_failures,
                last_attempt_at: health.last_attempt_at,
                last_error: health.last_error.clone(),
            })
            .collect()
    }
}

/// The state operators see. A new round of attempts from isolation still reads `Isolated`: the
/// peer is isolated until a hub answers, whether or not an attempt is under way.
fn phase_state(phase: &Phase) -> ConnectionState {
    match phase {
        Phase::Connecting {
            after_isolation: true,
            ..
        } => ConnectionState::Isolated,
        Phase::Connecting { .. } => ConnectionState::Connecting,
        Phase::Connected(_) => ConnectionState::Connected,
        Phase::Isolated => ConnectionState::Isolated,
    }
}

impl MessageName for CentralNodeConnectionMsg {
    fn name(&self) -> &'static str {
        match self {
            CentralNodeConnectionMsg::Failover { .. } => "failover",
            CentralNodeConnectionMsg::Reconnect { .. } => "reconnect",
            CentralNodeConnectionMsg::HeartbeatReport { .. } => "heartbeat_report",
            CentralNodeConnectionMsg::Current(_) => "current",
            CentralNodeConnectionMsg::Status(_) => "status",
            CentralNodeConnectionMsg::Hubs(_) => "hubs",
            CentralNodeConnectionMsg::Attempt => "attempt",
            CentralNodeConnectionMsg::AttemptFinished(_) => "attempt_finished",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_retries_a_hub_within_its_budget_then_moves_on_then_isolates() {
        // Three hubs, two attempts each.
        assert_eq!(
            after_failure(0, 1, 0, 3, 2),
            AfterFailure::Retry {
                hub: 0,
                attempt: 2,
                tried: 0
            }
        );
        assert_eq!(
            after_failure(0, 2, 0, 3, 2),
            AfterFailure::Next { hub: 1, tried: 1 }
        );
        assert_eq!(
            after_failure(1, 2, 1, 3, 2),
            AfterFailure::Next { hub: 2, tried: 2 }
        );
        assert_eq!(after_failure(2, 2, 2, 3, 2), AfterFailure::Isolate);
        // A failover from hub 1 wraps around: 2, then 0.
        assert_eq!(
            after_failure(2, 2, 1, 3, 2),
            AfterFailure::Next { hub: 0, tried: 2 }
        );
        assert_eq!(after_failure(0, 2, 2, 3, 2), AfterFailure::Isolate);
    }
}
