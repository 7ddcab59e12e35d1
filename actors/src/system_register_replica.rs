//! `SystemRegisterReplica` (peer role): this peer's copy of the hub's system register.
//!
//! On every new session it syncs: in full when it has no checkpoint, when the hub's
//! `history_id` differs from the checkpoint's, after the peer was isolated, or when the
//! replica diverged from the hub's register (its checkpoint is above the hub's version, or its
//! digest differs at the same version); otherwise incrementally, from its checkpoint (FR-018).
//! A hub that finds it diverged later (a heartbeat's `FULL_SYNC`, an incremental sync refused)
//! gets a full sync too, which replaces what differs; `diverged` is reported until it did. It subscribes to the hub's push notifications;
//! a notification triggers an incremental sync, coalesced with one already running (FR-033,
//! FR-034), and a periodic sync is the fallback (FR-032). Entries are applied idempotently: a
//! version never goes backwards, and duplicated or reordered notifications change nothing.
//! Entries are written to the replica store first and the checkpoint after, atomically, so a
//! restarted peer resumes incrementally.
//!
//! Every entry received is checked once, in the task that fetched it (hashing a large sync
//! would block the actor): its checksum, and, when the peer trusts hub keys
//! (`ReplicaConfig::trusted_keys`), its signature as an entry of the session's history
//! (`herald_messages::TrustedKeys::verify`; an unsigned entry fails). A sync with any entry
//! that fails is refused whole: the replica keeps its last good version, `refused` names the
//! entries (and `/health` says degraded) until a sync is accepted, an error is logged with the
//! hub and the versions, and `herald_replica_refused_entries_total` counts them. With no key
//! configured nothing is verified but checksums (as before signatures existed).
//!
//! Replays on restart: the replica and checkpoint from its store, then the current session from
//! the connection.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tracing::{Instrument, debug, error, info, warn};

use herald_messages::{
    BlueprintId, BlueprintSummary, CentralNodeConnectionMsg, Checkpoint, EntrySet, HistoryId,
    HubSession, NodeId, ReplicaPosition, ReplicaStatus, ReplicaView, SyncFailure, SyncQuery,
    SyncReport, SyncScope, SyncTrigger, SystemRegisterEntry, SystemRegisterReplicaMsg,
    SystemRegisterView, TrustedKeys,
};

use crate::actor_kit::{MessageName, Pending, Timers, message_span};
use crate::ports::{Clock, HubLink, HubLinkError, ReplicaStore, error_chain};
use crate::slot::ActorSlot;
use crate::view::Published;

/// Replica settings (DESIGN §6, §9).
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaConfig {
    /// The periodic sync, a fallback for lost notifications (FR-032).
    pub sync_interval: Duration,
    /// Deadline of one sync.
    pub sync_timeout: Duration,
    /// Pause before subscribing again after the push stream ended.
    pub resubscribe_delay: Duration,
    /// The hub keys whose signatures this peer accepts; empty: signatures are not verified.
    pub trusted_keys: TrustedKeys,
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            sync_interval: Duration::from_secs(300),
            sync_timeout: Duration::from_secs(60),
            resubscribe_delay: Duration::from_secs(1),
            trusted_keys: TrustedKeys::default(),
        }
    }
}

/// The actor.
pub struct SystemRegisterReplica;

/// Everything a (re)started replica needs; cloned for each start.
#[derive(Clone)]
pub struct SystemRegisterReplicaArgs {
    pub peer_id: NodeId,
    pub config: ReplicaConfig,
    pub store: Arc<dyn ReplicaStore>,
    pub link: Arc<dyn HubLink>,
    pub clock: Arc<dyn Clock>,
    pub connection: ActorSlot<CentralNodeConnectionMsg>,
    /// Where the replica publishes what it serves (read without its mailbox); owned by the
    /// wiring, it outlives restarts.
    pub view: Published<ReplicaView>,
}

pub struct SystemRegisterReplicaState {
    args: SystemRegisterReplicaArgs,
    replica: Replica,
    session: Option<HubSession>,
    syncing: bool,
    /// A sync was asked for while one was running: run another when it ends.
    again: bool,
    /// The next sync of this session must be a full one.
    full_pending: bool,
    /// A write to the store failed: memory is ahead of it, and the next write rewrites the
    /// whole replica (else a later checkpoint would cover entries the store never got).
    store_behind: bool,
    /// Failures since the last good sync, and push streams ended since then (for rate-limited
    /// logs: while a hub is away they repeat every second).
    sync_failures: u32,
    stream_ends: u32,
    status: ReplicaStatus,
    /// The task forwarding the current push stream.
    subscription: Pending,
    _timers: Timers,
}

/// The replica in memory: the latest entry of each blueprint, and the checkpoint.
#[derive(Debug, Default)]
struct Replica {
    entries: BTreeMap<BlueprintId, Arc<SystemRegisterEntry>>,
    checkpoint: Option<Checkpoint>,
}

impl Replica {
    fn version(&self) -> u64 {
        self.checkpoint
            .as_ref()
            .map_or(0, |checkpoint| checkpoint.version)
    }

    /// Applies a sync's entries (replacing everything for a full sync). Older entries than the
    /// ones held are skipped. Returns the entries that changed the replica.
    fn apply(
        &mut self,
        full: bool,
        entries: &[Arc<SystemRegisterEntry>],
    ) -> Vec<Arc<SystemRegisterEntry>> {
        if full {
            self.entries.clear();
        }
        let mut changed = Vec::new();
        for entry in entries {
            let newer = self
                .entries
                .get(&entry.blueprint_id)
                .is_none_or(|held| held.version < entry.version);
            if newer {
                self.entries
                    .insert(entry.blueprint_id.clone(), Arc::clone(entry));
                changed.push(Arc::clone(entry));
            }
        }
        changed
    }

    fn position(&self) -> ReplicaPosition {
        ReplicaPosition {
            history_id: self.checkpoint.as_ref().map(|c| c.history_id.clone()),
            version: self.version(),
            digest: self.checkpoint.as_ref().and_then(|c| c.digest),
        }
    }

    fn view(&self) -> SystemRegisterView {
        let blueprints: Vec<BlueprintSummary> = self
            .entries
            .values()
            .map(|entry| BlueprintSummary {
                blueprint_id: entry.blueprint_id.clone(),
                version: entry.version,
                is_active: entry.is_active,
                checksum: entry.checksum.clone(),
            })
            .collect();
        SystemRegisterView {
            history_id: self.checkpoint.as_ref().map(|c| c.history_id.clone()),
            version: self.version(),
            total_blueprints: blueprints.len(),
            active_blueprints: blueprints.iter().filter(|b| b.is_active).count(),
            blueprints,
        }
    }
}

/// Why the replica subscribes to a session's push notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resubscription {
    /// The session just started; its first sync runs anyway.
    First,
    /// The previous stream ended: pushes may have been missed, sync once subscribed.
    CatchUp,
}

/// Why a session needs a full sync rather than an incremental one, if it does.
#[derive(Debug, Clone, PartialEq, Eq)]
enum FullSyncNeed {
    NoCheckpoint,
    OtherHistory,
    AfterIsolation,
    /// The replica diverged from the hub's register: a repair.
    Diverged(String),
}

/// The entries of a sync this peer must refuse, and why: each that does not match its
/// checksum or, with trusted keys, is not signed by one of them as an entry of `history`.
/// `None` when every entry passes.
fn refusal(
    entries: &[SystemRegisterEntry],
    history: &HistoryId,
    trusted: &TrustedKeys,
) -> Option<(u64, String)> {
    let refused: Vec<String> = entries
        .iter()
        .filter_map(|entry| {
            let why = if !entry.checksum_holds() {
                "does not match its checksum".to_owned()
            } else {
                trusted.verify(history, entry).err()?.to_string()
            };
            Some(format!(
                "{} (version {}): {why}",
                entry.blueprint_id, entry.version
            ))
        })
        .collect();
    if refused.is_empty() {
        return None;
    }
    let count = u64::try_from(refused.len()).unwrap_or(u64::MAX);
    Some((count, refused.join("; ")))
}

fn full_sync_need(checkpoint: Option<&Checkpoint>, session: &HubSession) -> Option<FullSyncNeed> {
    let Some(checkpoint) = checkpoint else {
        return Some(FullSyncNeed::NoCheckpoint);
    };
    let grant = &session.grant;
    if checkpoint.history_id != grant.history_id {
        return Some(FullSyncNeed::OtherHistory);
    }
    if checkpoint.version > grant.version {
        return Some(FullSyncNeed::Diverged(format!(
            "the replica is at version {}, ahead of hub {}'s {}",
            checkpoint.version, grant.hub_id, grant.version
        )));
    }
    if checkpoint.version == grant.version
        && let (Some(ours), Some(theirs)) = (checkpoint.digest, grant.digest)
        && ours != theirs
    {
        return Some(FullSyncNeed::Diverged(format!(
            "the replica differs from hub {}'s register at version {} (digest {ours}, the hub's \
             {theirs})",
            grant.hub_id, grant.version
        )));
    }
    if session.after_isolation {
        return Some(FullSyncNeed::AfterIsolation);
    }
    None
}

impl Actor for SystemRegisterReplica {
    type Msg = SystemRegisterReplicaMsg;
    type State = SystemRegisterReplicaState;
    type Arguments = SystemRegisterReplicaArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SystemRegisterReplicaMsg>,
        args: SystemRegisterReplicaArgs,
    ) -> Result<SystemRegisterReplicaState, ActorProcessingErr> {
        myself.cast(SystemRegisterReplicaMsg::Load)?;
        let mut timers = Timers::new();
        timers.every(&myself, args.config.sync_interval, || {
            SystemRegisterReplicaMsg::SyncNow(SyncTrigger::Periodic)
        });
        Ok(SystemRegisterReplicaState {
            args,
            replica: Replica::default(),
            session: None,
            syncing: false,
            again: false,
            full_pending: false,
            store_behind: false,
            status: ReplicaStatus {
                checkpoint: None,
                total_blueprints: 0,
                syncing: false,
                last_sync_at: None,
                last_sync_kind: None,
                last_error: None,
                full_syncs: 0,
                incremental_syncs: 0,
                entries_received: 0,
                active_blueprints: 0,
                diverged: None,
                repairs: 0,
                refused: None,
                refused_entries: 0,
            },
            sync_failures: 0,
            stream_ends: 0,
            subscription: Pending::new(),
            _timers: timers,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SystemRegisterReplicaMsg>,
        msg: SystemRegisterReplicaMsg,
        state: &mut SystemRegisterReplicaState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("system_register_replica", &state.args.peer_id, &msg);
        let reads_only = matches!(
            msg,
            SystemRegisterReplicaMsg::Get(..)
                | SystemRegisterReplicaMsg::View(_)
                | SystemRegisterReplicaMsg::Position(_)
                | SystemRegisterReplicaMsg::Status(_)
        );
        async move {
            match msg {
                SystemRegisterReplicaMsg::Load => state.load(&myself).await,
                SystemRegisterReplicaMsg::SessionStarted(session) => state.on_session(&myself, session),
                SystemRegisterReplicaMsg::SessionEnded => {
                    state.session = None;
                    state.subscription.cancel();
                }
                SystemRegisterReplicaMsg::SyncNow(trigger) => state.sync(&myself, trigger),
                SystemRegisterReplicaMsg::Notified(notification) => {
                    let behind = notification.version > state.replica.version();
                    let other_history = state
                        .replica
                        .checkpoint
                        .as_ref()
                        .is_some_and(|checkpoint| checkpoint.history_id != notification.history_id);
                    if behind || other_history {
                        debug!(version = notification.version, blueprint = %notification.blueprint_id, "notified");
                        state.sync(&myself, SyncTrigger::Notification);
                    }
                }
                SystemRegisterReplicaMsg::SyncFinished(report) => state.on_sync_finished(&myself, report).await,
                SystemRegisterReplicaMsg::SubscriptionEnded { session_id, reason } => {
                    let current = state
                        .session
                        .as_ref()
                        .is_some_and(|session| session.grant.session_id == session_id);
                    if current {
                        state.stream_ends += 1;
                        let ends = state.stream_ends;
                        // Rate-limited: while the hub is away this repeats every second.
                        if ends == 1 || ends.is_power_of_two() {
                            warn!(%reason, ends, "push notifications ended; subscribing again");
                        } else {
                            debug!(%reason, ends, "push notifications ended; subscribing again");
                        }
                        state.subscribe(&myself, Resubscription::CatchUp);
                    }
                }
                SystemRegisterReplicaMsg::Get(id, reply) => {
                    let _ = reply.send(state.replica.entries.get(&id).cloned());
                }
                SystemRegisterReplicaMsg::Position(reply) => {
                    let _ = reply.send(state.replica.position());
                }
                SystemRegisterReplicaMsg::Diverged { reason } => {
                    state.diverged(&myself, reason);
                }
                SystemRegisterReplicaMsg::View(reply) => {
                    let _ = reply.send(state.replica.view());
                }
                SystemRegisterReplicaMsg::Status(reply) => {
                    let _ = reply.send(state.report());
                }
            }
            // After the handler: the entries and checkpoint it shows are in the store.
            if !reads_only {
                state.publish_view();
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl SystemRegisterReplicaState {
    async fn load(&mut self, myself: &ActorRef<SystemRegisterReplicaMsg>) {
        match self.args.store.load().await {
            Ok(stored) => {
                for entry in stored.entries {
                    self.replica
                        .entries
                        .insert(entry.blueprint_id.clone(), Arc::new(entry));
                }
                self.replica.checkpoint = stored.checkpoint;
                info!(
                    store = %self.args.store.describe(),
                    blueprints = self.replica.entries.len(),
                    version = self.replica.version(),
                    trusted_hub_keys = ?self.args.config.trusted_keys,
                    "replica reloaded"
                );
            }
            Err(err) => {
                error!(store = %self.args.store.describe(), err = %error_chain(&err), "cannot read the replica; starting empty, the next sync is a full one");
            }
        }
        // Then the session, if the connection already holds one.
        let connection = self.args.connection.clone();
        let me = myself.clone();
        tokio::spawn(async move {
            if let Ok(Some(session)) = connection
                .call(CentralNodeConnectionMsg::Current, Duration::from_secs(10))
                .await
            {
                let _ = me.cast(SystemRegisterReplicaMsg::SessionStarted(session));
            }
        });
    }

    fn on_session(&mut self, myself: &ActorRef<SystemRegisterReplicaMsg>, session: HubSession) {
        let same = self
            .session
            .as_ref()
            .is_some_and(|current| current.grant.session_id == session.grant.session_id);
        if same {
            return;
        }
        let need = full_sync_need(self.replica.checkpoint.as_ref(), &session);
        if let Some(FullSyncNeed::Diverged(reason)) = &need {
            self.mark_diverged(reason.clone());
        }
        self.full_pending = need.is_some();
        self.session = Some(session);
        self.subscribe(myself, Resubscription::First);
        self.sync(myself, SyncTrigger::Connected);
    }

    /// Subscribes to the session's push notifications, in a task that forwards them. When the
    /// stream ends (or the hub refuses it) the task waits `resubscribe_delay` before it reports
    /// the end, so a hub that refuses at once is not called in a busy loop; a resubscription
    /// that succeeds syncs, to catch up what was published while the stream was down.
    fn subscribe(&mut self, myself: &ActorRef<SystemRegisterReplicaMsg>, kind: Resubscription) {
        self.subscription.cancel();
        let Some(session) = self.session.clone() else {
            return;
        };
        let link = Arc::clone(&self.args.link);
        let peer_id = self.args.peer_id.clone();
        let delay = self.args.config.resubscribe_delay;
        let me = myself.clone();
        let forwarding = tokio::spawn(
            async move {
                let session_id = session.grant.session_id.clone();
                let reason = match link.subscribe(&session.hub, &peer_id, &session_id).await {
                    Ok(mut notifications) => {
                        if kind == Resubscription::CatchUp {
                            let _ = me
                                .cast(SystemRegisterReplicaMsg::SyncNow(SyncTrigger::Notification));
                        }
                        while let Some(notification) = notifications.next().await {
                            if me
                                .cast(SystemRegisterReplicaMsg::Notified(notification))
                                .is_err()
                            {
                                return;
                            }
                        }
                        "the hub ended the stream".to_owned()
                    }
                    Err(err) => error_chain(&err),
                };
                tokio::time::sleep(delay).await;
                let _ = me.cast(SystemRegisterReplicaMsg::SubscriptionEnded { session_id, reason });
            }
            .in_current_span(),
        );
        self.subscription.task(&forwarding);
    }

    /// Starts a sync unless one is running (then one more runs after it).
    fn sync(&mut self, myself: &ActorRef<SystemRegisterReplicaMsg>, trigger: SyncTrigger) {
        let Some(session) = self.session.clone() else {
            return;
        };
        if self.syncing {
            self.again = true;
            return;
        }
        let full = self.full_pending;
        let scope = if full {
            SyncScope::Full
        } else {
            SyncScope::After(self.replica.version())
        };
        self.syncing = true;
        self.again = false;
        debug!(?trigger, full, hub = %session.hub.id, "syncing");
        let position = self.replica.position();
        let query = SyncQuery {
            peer_id: self.args.peer_id.clone(),
            session_id: session.grant.session_id.clone(),
            scope,
            history_id: position.history_id,
            digest: position.digest,
        };
        let link = Arc::clone(&self.args.link);
        let deadline = self.args.config.sync_timeout;
        let trusted = self.args.config.trusted_keys.clone();
        let me = myself.clone();
        tokio::spawn(
            async move {
                let fetched =
                    match tokio::time::timeout(deadline, link.sync(&session.hub, query, deadline))
                        .await
                    {
                        // Checked here, in the task: hashing a large sync would block the actor.
                        Ok(Ok(synced))
                            if let Some((entries, refused)) =
                                refusal(&synced.entries, &session.grant.history_id, &trusted) =>
                        {
                            Err(SyncFailure::Refused {
                                entries,
                                reason: format!(
                                    "sync from hub {} refused: {refused}",
                                    session.hub.id
                                ),
                            })
                        }
                        Ok(Ok(synced)) => {
                            // A full sync carries the latest entry of every blueprint, the newest
                            // entry of the register included, read after the session was granted:
                            // the newest entry received is the register's version (the grant's
                            // version is a floor for an empty answer).
                            let newest = synced.entries.iter().map(|entry| entry.version).max();
                            let floor = if full { session.grant.version } else { 0 };
                            let version = newest.unwrap_or(0).max(floor);
                            let digests = match synced.digest {
                                Some(digest) if newest == Some(version) => vec![digest],
                                _ => Vec::new(),
                            };
                            Ok(EntrySet {
                                history_id: session.grant.history_id.clone(),
                                version,
                                entries: synced.entries.into_iter().map(Arc::new).collect(),
                                digests,
                            })
                        }
                        Ok(Err(HubLinkError::UnknownSession(reason))) => {
                            Err(SyncFailure::UnknownSession(reason))
                        }
                        Ok(Err(HubLinkError::NeedsFullSync(reason))) => {
                            Err(SyncFailure::NeedsFullSync(reason))
                        }
                        Ok(Err(err)) => Err(SyncFailure::Failed(error_chain(&err))),
                        Err(_) => Err(SyncFailure::Failed(format!(
                            "no answer within {deadline:?}"
                        ))),
                    };
                let _ = me.cast(SystemRegisterReplicaMsg::SyncFinished(SyncReport {
                    full,
                    hub_id: session.hub.id.clone(),
                    result: fetched,
                }));
            }
            .in_current_span(),
        );
    }

    async fn on_sync_finished(
        &mut self,
        myself: &ActorRef<SystemRegisterReplicaMsg>,
        report: SyncReport,
    ) {
        self.syncing = false;
        let now = self.args.clock.now();
        match report.result {
            Ok(set) => {
                let received = set.entries.len();
                let same_history = self
                    .replica
                    .checkpoint
                    .as_ref()
                    .is_some_and(|checkpoint| checkpoint.history_id == set.history_id);
                let base = if report.full || !same_history {
                    0
                } else {
                    self.replica.version()
                };
                let version = base.max(set.version);
                // The digest at the new version: the hub's for its newest entry; an empty
                // incremental answer leaves the version, and so the digest, as they were.
                let digest = if set.entries.is_empty() && version == base {
                    self.replica.checkpoint.as_ref().and_then(|c| c.digest)
                } else {
                    set.digests
                        .last()
                        .copied()
                        .filter(|_| set.entries.last().is_some_and(|e| e.version == version))
                };
                let checkpoint = Checkpoint {
                    history_id: set.history_id.clone(),
                    version,
                    synced_at: now,
                    hub_id: report.hub_id.clone(),
                    digest,
                };
                let full = report.full || !same_history;
                let changed = self.replica.apply(full, &set.entries);
                let rewrite = full || self.store_behind;
                let to_store = if rewrite {
                    self.replica.entries.values().cloned().collect()
                } else {
                    changed
                };
                if let Err(err) = self.args.store.apply(rewrite, &to_store, &checkpoint).await {
                    // Memory is ahead of the store: a restart re-fetches from the older
                    // checkpoint, and the next write rewrites everything.
                    warn!(err = %error_chain(&err), "cannot persist the replica; serving it from memory");
                    self.store_behind = true;
                    self.status.last_error = Some(error_chain(&err));
                } else {
                    self.store_behind = false;
                    self.status.last_error = None;
                }
                self.replica.checkpoint = Some(checkpoint);
                if full {
                    // Only a full sync settles a pending one: a late incremental answer (from
                    // the hub of an earlier session) does not.
                    self.full_pending = false;
                    if let Some(reason) = self.status.diverged.take() {
                        self.status.repairs += 1;
                        metrics::counter!("herald_replica_repairs_total", "node" => self.args.peer_id.to_string())
                            .increment(1);
                        info!(hub = %report.hub_id, version, %reason, "diverged replica repaired by a full sync");
                    }
                }
                self.status.entries_received += received as u64;
                self.status.last_sync_at = Some(now);
                let kind = if full { "full" } else { "incremental" };
                self.status.last_sync_kind = Some(kind.to_owned());
                if full {
                    self.status.full_syncs += 1;
                } else {
                    self.status.incremental_syncs += 1;
                }
                let node = self.args.peer_id.to_string();
                metrics::gauge!("herald_replica_version", "node" => node.clone())
                    .set(self.replica.version() as f64);
                metrics::counter!("herald_replica_entries_received_total", "node" => node)
                    .increment(received as u64);
                self.sync_failures = 0;
                self.stream_ends = 0;
                if let Some(refused) = self.status.refused.take() {
                    info!(hub = %report.hub_id, version, %refused, "a sync was accepted again after refused entries");
                }
                info!(hub = %report.hub_id, kind, received, version = self.replica.version(), blueprints = self.replica.entries.len(), "replica synced");
            }
            Err(SyncFailure::Refused { entries, reason }) => {
                let node = self.args.peer_id.to_string();
                metrics::counter!("herald_replica_refused_entries_total", "node" => node)
                    .increment(entries);
                self.status.refused_entries += entries;
                let version = self.replica.version();
                // Rate-limited: a hub serving a forged entry is refused at every sync.
                if self.status.refused.as_ref() != Some(&reason) {
                    error!(hub = %report.hub_id, entries, kept_version = version, %reason, "refused entries that fail their signature or checksum; keeping the replica at its last good version");
                } else {
                    debug!(hub = %report.hub_id, entries, kept_version = version, "refused the same entries again");
                }
                self.status.last_error = Some(reason.clone());
                self.status.refused = Some(reason);
            }
            Err(SyncFailure::NeedsFullSync(reason)) => {
                self.mark_diverged(reason);
                self.full_pending = true;
                self.again = true;
            }
            Err(error) => {
                self.sync_failures += 1;
                let failures = self.sync_failures;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(hub = %report.hub_id, %error, failures, "sync failed; the next trigger or the periodic sync retries");
                } else {
                    debug!(hub = %report.hub_id, %error, failures, "sync failed again");
                }
                if let SyncFailure::UnknownSession(_) = &error {
                    let _ = self
                        .args
                        .connection
                        .cast(CentralNodeConnectionMsg::Reconnect {
                            reason: error.to_string(),
                        });
                }
                self.status.last_error = Some(error.to_string());
            }
        }
        if self.again {
            self.sync(myself, SyncTrigger::Notification);
        }
    }

    /// A hub found the replica diverged: sync in full at once.
    fn diverged(&mut self, myself: &ActorRef<SystemRegisterReplicaMsg>, reason: String) {
        self.mark_diverged(reason);
        self.full_pending = true;
        self.sync(myself, SyncTrigger::Heartbeat);
    }

    fn mark_diverged(&mut self, reason: String) {
        if self.status.diverged.is_none() {
            warn!(%reason, "the replica diverged from the hub's register; syncing in full to repair it");
            metrics::counter!("herald_replica_divergences_total", "node" => self.args.peer_id.to_string())
                .increment(1);
        }
        self.status.diverged = Some(reason);
    }

    fn publish_view(&self) {
        self.args.view.publish(ReplicaView {
            ready: true,
            status: self.report(),
            register: self.replica.view(),
            entries: self.replica.entries.clone(),
        });
    }

    fn report(&self) -> ReplicaStatus {
        ReplicaStatus {
            checkpoint: self.replica.checkpoint.clone(),
            total_blueprints: self.replica.entries.len(),
            active_blueprints: self
                .replica
                .entries
                .values()
                .filter(|e| e.is_active)
                .count(),
            syncing: self.syncing,
            ..self.status.clone()
        }
    }
}

impl MessageName for SystemRegisterReplicaMsg {
    fn name(&self) -> &'static str {
        match self {
            SystemRegisterReplicaMsg::SessionStarted(_) => "session_started",
            SystemRegisterReplicaMsg::SessionEnded => "session_ended",
            SystemRegisterReplicaMsg::SyncNow(_) => "sync_now",
            SystemRegisterReplicaMsg::Notified(_) => "notified",
            SystemRegisterReplicaMsg::Get(..) => "get",
            SystemRegisterReplicaMsg::Position(_) => "position",
            SystemRegisterReplicaMsg::Diverged { .. } => "diverged",
            SystemRegisterReplicaMsg::View(_) => "view",
            SystemRegisterReplicaMsg::Status(_) => "status",
            SystemRegisterReplicaMsg::Load => "load",
            SystemRegisterReplicaMsg::SyncFinished(_) => "sync_finished",
            SystemRegisterReplicaMsg::SubscriptionEnded { .. } => "subscription_ended",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap as Map;

    use bytes::Bytes;
    use herald_messages::{
        EntryDraft, EntryKind, EntrySigner, HubEndpoint, RegisterDigest, SessionGrant, SessionId,
        Timestamp,
    };

    use super::*;

    fn entry(version: u64, blueprint: &str) -> Arc<SystemRegisterEntry> {
        Arc::new(
            EntryDraft {
                blueprint_id: BlueprintId::parse(blueprint).unwrap(),
                kind: EntryKind::Published,
                document: Bytes::from(format!("{{\"v\":{version}}}")),
                published_at: Timestamp::EPOCH,
                published_by: "hub".into(),
                transaction_id: "t".into(),
                metadata: Map::new(),
            }
            .at_version(version),
        )
    }

    #[test]
    fn applying_is_idempotent_and_never_goes_backwards() {
        let mut replica = Replica::default();
        assert_eq!(
            replica.apply(false, &[entry(1, "a"), entry(2, "b")]).len(),
            2
        );
        assert!(
            replica
                .apply(false, &[entry(1, "a"), entry(2, "b")])
                .is_empty(),
            "a repeat changes nothing"
        );
        assert_eq!(replica.apply(false, &[entry(3, "a")]).len(), 1);
        assert!(
            replica.apply(false, &[entry(1, "a")]).is_empty(),
            "an older entry is skipped"
        );
        assert_eq!(
            replica.entries[&BlueprintId::parse("a").unwrap()].version,
            3
        );
        replica.apply(true, &[entry(5, "c")]);
        assert_eq!(replica.entries.len(), 1, "a full sync replaces everything");
    }

    /// A sync is refused when an entry fails its checksum, or, with trusted keys, its
    /// signature (unsigned, another key, another history, tampered); the reason names each
    /// refused entry by blueprint and version. Without keys only checksums count.
    #[test]
    fn entries_failing_checksum_or_signature_are_refused_by_name_and_version() {
        let hub = EntrySigner::from_bytes([1; 32]);
        let history = HistoryId::from_bytes([3; 16]);
        let signed = |version, blueprint| {
            let mut entry = entry(version, blueprint).as_ref().clone();
            entry.signature = Some(hub.sign(&history, &entry));
            entry
        };
        let trusted = TrustedKeys::new([hub.trusted_key()]);
        let none = TrustedKeys::default();
        let good = [signed(1, "a"), signed(2, "b")];
        assert_eq!(refusal(&good, &history, &trusted), None);
        assert_eq!(refusal(&good, &history, &none), None);

        let mut forged = signed(3, "c");
        forged.document = Bytes::from_static(b"{\"evil\":true}");
        forged.checksum = SystemRegisterEntry::checksum_of(&forged.document);
        let unsigned = entry(4, "d").as_ref().clone();
        let mut tampered = signed(5, "e");
        tampered.document = Bytes::from_static(b"{}");
        let sync = [good[0].clone(), forged, unsigned, tampered];
        let (count, reason) = refusal(&sync, &history, &trusted).unwrap();
        assert_eq!(count, 3, "{reason}");
        assert!(
            reason.contains("c (version 3): its signature by key"),
            "{reason}"
        );
        assert!(reason.contains("d (version 4): unsigned"), "{reason}");
        assert!(
            reason.contains("e (version 5): does not match its checksum"),
            "{reason}"
        );
        assert!(!reason.contains("version 1"), "{reason}");
        assert!(
            refusal(&good, &HistoryId::from_bytes([4; 16]), &trusted).is_some(),
            "another history"
        );
        let (count, reason) = refusal(&sync, &history, &none).unwrap();
        assert_eq!((count, reason.contains("version 5")), (1, true), "{reason}");
    }

    /// A session syncs in full without a checkpoint, with another history, after isolation,
    /// and when the replica diverged from the hub: ahead of its version, or another digest at
    /// the same version. Regression: a replica ahead of its hub was treated as up to date.
    #[test]
    fn full_sync_needs() {
        let digest = |n: u8| {
            let mut entry = entry(1, "a");
            Arc::make_mut(&mut entry).checksum = SystemRegisterEntry::checksum_of(&[n]);
            RegisterDigest::EMPTY.then(&entry)
        };
        let session = |history: u8,
                       version: u64,
                       hub_digest: Option<RegisterDigest>,
                       after_isolation| HubSession {
            hub: HubEndpoint {
                id: NodeId::parse("hub-0").unwrap(),
                url: "http://hub-0".into(),
                priority: 0,
            },
            grant: SessionGrant {
                session_id: SessionId::parse("s").unwrap(),
                hub_id: NodeId::parse("hub-0").unwrap(),
                history_id: HistoryId::from_bytes([history; 16]),
                version,
                digest: hub_digest,
                connected_at: Timestamp::EPOCH,
                heartbeat_interval: Duration::from_secs(30),
                heartbeat_timeout: Duration::from_secs(30),
                sync_interval: Duration::from_secs(300),
            },
            after_isolation,
        };
        let checkpoint = Checkpoint {
            history_id: HistoryId::from_bytes([1; 16]),
            version: 3,
            synced_at: Timestamp::EPOCH,
            hub_id: NodeId::parse("hub-0").unwrap(),
            digest: Some(digest(1)),
        };
        let need = |checkpoint: Option<&Checkpoint>, session: HubSession| {
            full_sync_need(checkpoint, &session)
        };
        assert_eq!(
            need(None, session(1, 3, None, false)),
            Some(FullSyncNeed::NoCheckpoint)
        );
        assert_eq!(
            need(Some(&checkpoint), session(1, 3, Some(digest(1)), false)),
            None
        );
        assert_eq!(
            need(Some(&checkpoint), session(1, 3, None, false)),
            None,
            "an older hub"
        );
        assert_eq!(
            need(Some(&checkpoint), session(1, 9, Some(digest(2)), false)),
            None,
            "behind: the incremental sync checks"
        );
        assert_eq!(
            need(Some(&checkpoint), session(2, 3, Some(digest(1)), false)),
            Some(FullSyncNeed::OtherHistory)
        );
        assert_eq!(
            need(Some(&checkpoint), session(1, 3, Some(digest(1)), true)),
            Some(FullSyncNeed::AfterIsolation)
        );
        assert!(matches!(
            need(Some(&checkpoint), session(1, 2, Some(digest(1)), false)),
            Some(FullSyncNeed::Diverged(reason)) if reason.contains("ahead")
        ));
        assert!(matches!(
            need(Some(&checkpoint), session(1, 3, Some(digest(2)), false)),
            Some(FullSyncNeed::Diverged(reason)) if reason.contains("differs")
        ));
    }
}
