//! `ResyncDriver` (register role): owns the register CRUD against the ground truth and keeps
//! the pool in line with it.
//!
//! - At start it pushes every public register as one full sync, retrying with capped
//!   exponential backoff and full jitter until it succeeds (FR-003, FR-004).
//! - Then it pushes a full sync every `interval`, jittered, on a schedule measured from the
//!   first success rather than from the end of the last push (FR-006).
//! - A create, a change of the advertise flag or of an advertised register, or a delete is
//!   pushed at once (FR-007, FR-008); a failed push falls back to a full sync after the backoff,
//!   or as soon as the link sees the pool back (`PoolLink::until_ready`, the cluster link).
//! - A register changed behind its back (an operator editing a shared store such as MongoDB
//!   directly) is pushed at once too, when the ground truth can be watched
//!   (`GroundTruth::watch`): the driver reads the changed register and pushes its ad, unless it
//!   is what the driver's own change already pushed. The watch is opened before the first full
//!   sync; one that ends or fails is reopened after a backoff and followed by a full sync
//!   (changes may have been missed meanwhile). The periodic full sync stays the safety net.
//!
//! Pushes run in a task, one at a time, so the driver keeps answering CRUD while a push waits
//! on a slow pool; changes made meanwhile are coalesced per register and pushed next.
//! State replayed on restart: none is needed: the ground truth is the store, and a restarted
//! driver starts with a full sync.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use herald_messages::{
    AdInput, AdvertisementSyncState, BulkAdvertise, MAX_BULK_ITEMS, NewRegister, NodeId,
    PushReport, Register, RegisterError, RegisterId, RegisterPatch, ResyncDriverMsg, Snapshot,
    SyncStatus, Valid,
};

use crate::actor_kit::{MessageName, Pending, message_span};
use crate::backoff::{Backoff, BackoffConfig, random_up_to};
use crate::ports::{Clock, GroundTruth, GroundTruthError, PoolLink, error_chain};
use crate::view::Published;

/// Driver settings (DESIGN §5, §9).
#[derive(Debug, Clone, PartialEq)]
pub struct ResyncConfig {
    /// Period of the reconciling full sync.
    pub interval: Duration,
    /// Up to this fraction of `interval` is added at random to each period.
    pub interval_jitter: f64,
    /// Backoff after a failed push.
    pub backoff: BackoffConfig,
}

impl ResyncConfig {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(300);
}

impl Default for ResyncConfig {
    fn default() -> Self {
        Self {
            interval: Self::DEFAULT_INTERVAL,
            interval_jitter: 0.1,
            backoff: BackoffConfig::DEFAULT,
        }
    }
}

/// The actor.
pub struct ResyncDriver;

/// Everything a (re)started driver needs; cloned for each start.
#[derive(Clone)]
pub struct ResyncDriverArgs {
    pub node_id: NodeId,
    pub config: ResyncConfig,
    pub truth: Arc<dyn GroundTruth>,
    pub pool: Arc<dyn PoolLink>,
    pub clock: Arc<dyn Clock>,
    /// Where the driver publishes its sync state (read without its mailbox); owned by the
    /// wiring, it outlives restarts.
    pub view: Published<AdvertisementSyncState>,
}

pub struct ResyncDriverState {
    node_id: NodeId,
    config: ResyncConfig,
    truth: Arc<dyn GroundTruth>,
    pool: Arc<dyn PoolLink>,
    clock: Arc<dyn Clock>,
    view: Published<AdvertisementSyncState>,
    sync: AdvertisementSyncState,
    /// A full sync is wanted (start, schedule, operator, or after a failure).
    want_full_sync: bool,
    /// Changes not pushed yet, the latest per register.
    pending: BTreeMap<RegisterId, AdInput>,
    in_flight: bool,
    backoff: Backoff,
    /// Set while waiting out the backoff after a failure: nothing is pushed until it fires.
    retry: Pending,
    /// After a failure, the link's word that the pool is back (`PoolLink::until_ready`): it
    /// ends the backoff early.
    ready_wake: Pending,
    /// When the next periodic full sync is due (before jitter); set after the first success.
    next_due: Option<Instant>,
    periodic: Pending,
    /// Whether a full sync was ever started: a watch opened after that may have missed changes.
    full_sync_started: bool,
    /// The task forwarding the ground truth's watch, or the timer that reopens it.
    watch: Pending,
    watch_backoff: Backoff,
    /// Whether the ground truth's watch is open.
    watching: bool,
    /// While watching: what the driver's own changes made of each register it changed, so that
    /// the watch's echo of them is not pushed a second time.
    own_changes: HashMap<RegisterId, AdInput>,
}

impl Actor for ResyncDriver {
    type Msg = ResyncDriverMsg;
    type State = ResyncDriverState;
    type Arguments = ResyncDriverArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ResyncDriverMsg>,
        args: ResyncDriverArgs,
    ) -> Result<ResyncDriverState, ActorProcessingErr> {
        // The watch first: changes made after the first full sync's read are then not missed.
        myself.cast(ResyncDriverMsg::WatchTruth)?;
        myself.cast(ResyncDriverMsg::ResyncNow)?;
        let sync = AdvertisementSyncState {
            pool: args.pool.describe(),
            ..AdvertisementSyncState::default()
        };
        Ok(ResyncDriverState {
            backoff: Backoff::new(args.config.backoff),
            watch_backoff: Backoff::new(args.config.backoff),
            node_id: args.node_id,
            config: args.config,
            truth: args.truth,
            pool: args.pool,
            clock: args.clock,
            view: args.view,
            sync,
            want_full_sync: false,
            pending: BTreeMap::new(),
            in_flight: false,
            retry: Pending::new(),
            ready_wake: Pending::new(),
            next_due: None,
            periodic: Pending::new(),
            full_sync_started: false,
            watch: Pending::new(),
            watching: false,
            own_changes: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ResyncDriverMsg>,
        msg: ResyncDriverMsg,
        state: &mut ResyncDriverState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("resync_driver", &state.node_id, &msg);
        async move {
            match msg {
                ResyncDriverMsg::CreateRegister(new, reply) => {
                    let result = state.create(new).await;
                    if let Ok(register) = &result {
                        state.note_own_change(register.to_ad_input());
                        if register.advertise {
                            state.enqueue(register.to_ad_input());
                        }
                    }
                    let _ = reply.send(result);
                }
                ResyncDriverMsg::UpdateRegister(id, patch, reply) => {
                    let result = state.update(&id, patch).await;
                    if let Ok((before, after)) = &result {
                        state.note_own_change(after.to_ad_input());
                        if before.advertise || after.advertise {
                            state.enqueue(after.to_ad_input());
                        }
                    }
                    let _ = reply.send(result.map(|(_, after)| after));
                }
                ResyncDriverMsg::DeleteRegister(id, reply) => {
                    let result = state.delete(&id).await;
                    if result.is_ok() {
                        state.note_own_change(AdInput::withdraw(id.clone()));
                        state.enqueue(AdInput::withdraw(id));
                    }
                    let _ = reply.send(result);
                }
                ResyncDriverMsg::GetRegister(id, reply) => {
                    let result = match state.truth.get(&id).await {
                        Ok(Some(register)) => Ok(register),
                        Ok(None) => Err(RegisterError::NotFound(id)),
                        Err(err) => Err(register_error(err)),
                    };
                    let _ = reply.send(result);
                }
                ResyncDriverMsg::ListRegisters(reply) => {
                    let _ = reply.send(state.truth.list().await.map_err(register_error));
                }
                ResyncDriverMsg::SyncState(reply) => {
                    let _ = reply.send(state.sync.clone());
                }
                ResyncDriverMsg::ResyncNow => state.want_full_sync = true,
                ResyncDriverMsg::PeriodicTick => {
                    state.want_full_sync = true;
                    state.schedule_periodic(&myself);
                }
                ResyncDriverMsg::Retry => {
                    state.retry.cancel();
                    state.ready_wake.cancel();
                    state.want_full_sync = true;
                }
                ResyncDriverMsg::PushFinished(report) => state.on_push_finished(&myself, report),
                ResyncDriverMsg::WatchTruth => state.open_watch(&myself).await,
                ResyncDriverMsg::TruthChanged(id) => state.on_truth_changed(id).await,
                ResyncDriverMsg::TruthWatchEnded => {
                    warn!(truth = %state.truth.describe(), "ground truth watch ended; reopening it");
                    state.watch_lost(&myself);
                }
            }
            state.pump(&myself);
            state.view.publish_if_changed(state.sync.clone());
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl ResyncDriverState {
    async fn create(&mut self, new: Valid<NewRegister>) -> Result<Register, RegisterError> {
        let new = new.into_inner();
        let now = self.clock.now();
        let register = Register {
            register_id: new
                .register_id
                .unwrap_or_else(|| RegisterId::from_bytes(rand::random())),
            name: new.name,
            description: new.description,
            advertise: new.advertise,
            latest_version: new.latest_version,
            latest_docket_version: new.latest_docket_version,
            created_at: now,
            updated_at: now,
            revision: 0,
        };
        let created = self.truth.create(register).await.map_err(register_error)?;
        info!(register = %created.register_id, advertise = created.advertise, "register created");
        Ok(created)
    }

    /// Returns the register before and after; an update that changes nothing writes nothing.
    async fn update(
        &mut self,
        id: &RegisterId,
        patch: Valid<RegisterPatch>,
    ) -> Result<(Register, Register), RegisterError> {
        let before = self
            .truth
            .get(id)
            .await
            .map_err(register_error)?
            .ok_or_else(|| RegisterError::NotFound(id.clone()))?;
        let mut after = before.clone();
        patch.apply_to(&mut after)?;
        if after == before {
            return Ok((before.clone(), before));
        }
        after.updated_at = self.clock.now();
        let stored = self.truth.replace(after).await.map_err(register_error)?;
        info!(register = %id, advertise = stored.advertise, "register updated");
        Ok((before, stored))
    }

    async fn delete(&mut self, id: &RegisterId) -> Result<(), RegisterError> {
        match self.truth.delete(id).await.map_err(register_error)? {
            true => {
                info!(register = %id, "register deleted");
                Ok(())
            }
            false => Err(RegisterError::NotFound(id.clone())),
        }
    }

    /// Opens the ground truth's watch and forwards it to this actor; after a failure, tries
    /// again after the backoff. A watch opened after a full sync started may have missed
    /// changes: a full sync follows.
    async fn open_watch(&mut self, myself: &ActorRef<ResyncDriverMsg>) {
        self.watch.cancel();
        let mut changes = match self.truth.watch().await {
            Ok(None) => return,
            Ok(Some(changes)) => changes,
            Err(err) => {
                let delay = self.watch_backoff.next_delay();
                warn!(truth = %self.truth.describe(), err = %error_chain(&err), ?delay, "cannot watch the ground truth; retrying");
                self.watch
                    .after(myself, delay, || ResyncDriverMsg::WatchTruth);
                return;
            }
        };
        debug!(truth = %self.truth.describe(), "watching the ground truth");
        self.watching = true;
        if self.full_sync_started {
            self.want_full_sync = true;
        }
        let forward_to = myself.clone();
        let task = tokio::spawn(
            async move {
                while let Some(id) = changes.next().await {
                    if forward_to.cast(ResyncDriverMsg::TruthChanged(id)).is_err() {
                        return;
                    }
                }
                let _ = forward_to.cast(ResyncDriverMsg::TruthWatchEnded);
            }
            .in_current_span(),
        );
        self.watch.task(&task);
    }

    /// The watch ended: changes may be missed until it is reopened, after the backoff (the
    /// full sync that follows a reopened watch covers them).
    fn watch_lost(&mut self, myself: &ActorRef<ResyncDriverMsg>) {
        self.watching = false;
        self.own_changes.clear();
        let delay = self.watch_backoff.next_delay();
        self.watch
            .after(myself, delay, || ResyncDriverMsg::WatchTruth);
    }

    /// A register changed (perhaps behind this driver's back): push what it is now, unless
    /// the driver's own change already pushed exactly that. A register that cannot be read is
    /// left to a full sync.
    async fn on_truth_changed(&mut self, id: RegisterId) {
        self.watch_backoff.reset();
        let now = match self.truth.get(&id).await {
            Ok(Some(register)) => register.to_ad_input(),
            Ok(None) => AdInput::withdraw(id.clone()),
            Err(err) => {
                debug!(register = %id, err = %error_chain(&err), "cannot read a changed register; a full sync will");
                self.want_full_sync = true;
                return;
            }
        };
        if self.own_changes.get(&id) == Some(&now) {
            self.own_changes.remove(&id);
            return;
        }
        self.own_changes.remove(&id);
        info!(register = %id, public = now.is_public, "register changed in the ground truth; pushing it");
        self.enqueue(now);
    }

    /// Remembers what the driver's own change made of a register, while the watch will echo
    /// it. Bounded: past the limit it forgets them all (a few changes are pushed twice).
    fn note_own_change(&mut self, input: AdInput) {
        if !self.watching {
            return;
        }
        if self.own_changes.len() >= MAX_BULK_ITEMS {
            self.own_changes.clear();
        }
        self.own_changes.insert(input.register_id.clone(), input);
    }

    fn enqueue(&mut self, input: AdInput) {
        if self.pending.len() >= MAX_BULK_ITEMS {
            // More changes than one request may carry: a full sync covers them all.
            self.pending.clear();
            self.want_full_sync = true;
            return;
        }
        self.pending.insert(input.register_id.clone(), input);
    }

    /// Starts the next push if none is running and no backoff is pending.
    fn pump(&mut self, myself: &ActorRef<ResyncDriverMsg>) {
        if self.in_flight || self.retry.is_pending() {
            return;
        }
        let started_at = self.clock.now();
        let pool = Arc::clone(&self.pool);
        if self.want_full_sync {
            self.want_full_sync = false;
            self.full_sync_started = true;
            // The snapshot includes every change made so far.
            self.pending.clear();
            self.in_flight = true;
            self.sync.status = SyncStatus::Syncing;
            self.sync.last_attempt = Some(started_at);
            let truth = Arc::clone(&self.truth);
            let clock = Arc::clone(&self.clock);
            spawn_push(myself, true, started_at, async move {
                let read_at = clock.now();
                let public = truth
                    .public_registers()
                    .await
                    .map_err(|err| format!("reading public registers: {}", error_chain(&err)))?;
                let count = public.registers.len();
                let snapshot = Snapshot {
                    seq: public.revision,
                    read_at,
                    epoch: Some(public.epoch),
                };
                pool.push(BulkAdvertise::full(public.registers, Some(snapshot)))
                    .await
                    .map_err(|err| format!("pushing to the pool: {}", error_chain(&err)))?;
                Ok(count)
            });
            return;
        }
        if self.pending.is_empty() {
            return;
        }
        let changes: Vec<AdInput> = std::mem::take(&mut self.pending).into_values().collect();
        self.in_flight = true;
        spawn_push(myself, false, started_at, async move {
            let count = changes.len();
            pool.push(BulkAdvertise {
                advertisements: changes,
                full_sync: false,
                snapshot: None,
            })
            .await
            .map_err(|err| format!("pushing changes to the pool: {}", error_chain(&err)))?;
            Ok(count)
        });
    }

    fn on_push_finished(&mut self, myself: &ActorRef<ResyncDriverMsg>, report: PushReport) {
        self.in_flight = false;
        let now = self.clock.now();
        let node = self.node_id.to_string();
        match report.result {
            Ok(count) if report.full_sync => {
                let elapsed = now.since(report.started_at);
                info!(registers = count, elapsed_ms = elapsed.as_millis() as u64, pool = %self.sync.pool, "full sync pushed");
                self.sync.status = SyncStatus::InSync;
                self.sync.last_success = Some(now);
                self.sync.last_pushed = count;
                self.sync.successful_full_syncs += 1;
                self.sync.consecutive_failures = 0;
                self.sync.last_error = None;
                self.backoff.reset();
                metrics::counter!("herald_resync_full_syncs_total", "node" => node.clone())
                    .increment(1);
                metrics::gauge!("herald_resync_last_success_unix_ms", "node" => node)
                    .set(now.as_unix_millis() as f64);
                if self.next_due.is_none() {
                    self.next_due = Some(Instant::now() + self.config.interval);
                    self.schedule_periodic(myself);
                }
            }
            Ok(count) => debug!(changes = count, "changes pushed"),
            Err(error) => {
                self.sync.status = SyncStatus::Retrying;
                self.sync.consecutive_failures += 1;
                self.sync.last_error = Some(error.clone());
                self.want_full_sync = true;
                let delay = self.backoff.next_delay();
                self.sync.next_full_sync = Some(now.saturating_add(delay));
                metrics::counter!("herald_resync_failures_total", "node" => node).increment(1);
                let failures = self.sync.consecutive_failures;
                if failures == 1 || failures.is_power_of_two() {
                    warn!(%error, failures, ?delay, pool = %self.sync.pool, "push failed; full sync after backoff");
                } else {
                    debug!(%error, failures, ?delay, "push failed again");
                }
                self.retry.after(myself, delay, || ResyncDriverMsg::Retry);
                if let Some(ready) = self.pool.until_ready() {
                    let myself = myself.clone();
                    let wake = tokio::spawn(async move {
                        ready.await;
                        debug!("the pool is reachable again; retrying before the backoff ends");
                        let _ = myself.cast(ResyncDriverMsg::Retry);
                    });
                    self.ready_wake.task(&wake);
                }
            }
        }
    }

    /// Arms the timer for the next periodic full sync, keeping to the schedule: a late tick
    /// does not shift the ones after it.
    fn schedule_periodic(&mut self, myself: &ActorRef<ResyncDriverMsg>) {
        let Some(mut due) = self.next_due else {
            return;
        };
        let now = Instant::now();
        while due <= now {
            due += self.config.interval;
        }
        self.next_due = Some(due);
        let spread = self
            .config
            .interval
            .mul_f64(self.config.interval_jitter.clamp(0.0, 1.0));
        let fire_in = (due - now) + random_up_to(spread);
        if !self.retry.is_pending() {
            let wall = self.clock.now().saturating_add(fire_in);
            self.sync.next_full_sync = Some(wall);
        }
        self.periodic
            .after(myself, fire_in, || ResyncDriverMsg::PeriodicTick);
    }
}

fn spawn_push(
    myself: &ActorRef<ResyncDriverMsg>,
    full_sync: bool,
    started_at: herald_messages::Timestamp,
    push: impl std::future::Future<Output = Result<usize, String>> + Send + 'static,
) {
    let myself = myself.clone();
    tokio::spawn(
        async move {
            let result = push.await;
            // If the driver is gone its successor starts with a full sync anyway.
            let _ = myself.cast(ResyncDriverMsg::PushFinished(PushReport {
                full_sync,
                started_at,
                result,
            }));
        }
        .in_current_span(),
    );
}

fn register_error(err: GroundTruthError) -> RegisterError {
    match err {
        GroundTruthError::AlreadyExists(id) => RegisterError::AlreadyExists(id),
        GroundTruthError::NotFound(id) => RegisterError::NotFound(id),
        other => RegisterError::Unavailable(error_chain(&other)),
    }
}

impl MessageName for ResyncDriverMsg {
    fn name(&self) -> &'static str {
        match self {
            ResyncDriverMsg::CreateRegister(..) => "create_register",
            ResyncDriverMsg::UpdateRegister(..) => "update_register",
            ResyncDriverMsg::DeleteRegister(..) => "delete_register",
            ResyncDriverMsg::GetRegister(..) => "get_register",
            ResyncDriverMsg::ListRegisters(_) => "list_registers",
            ResyncDriverMsg::SyncState(_) => "sync_state",
            ResyncDriverMsg::ResyncNow => "resync_now",
            ResyncDriverMsg::PeriodicTick => "periodic_tick",
            ResyncDriverMsg::Retry => "retry",
            ResyncDriverMsg::PushFinished(_) => "push_finished",
            ResyncDriverMsg::WatchTruth => "watch_truth",
            ResyncDriverMsg::TruthChanged(_) => "truth_changed",
            ResyncDriverMsg::TruthWatchEnded => "truth_watch_ended",
        }
    }
}
