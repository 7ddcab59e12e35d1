//! `AdvertisementPool` (peer role): the node's advertisements, in memory and in an `AdStore`.
//!
//! On start it replays the store (its `pre_start` queues a `Load` ahead of every other message),
//! serving the reloaded ads at once, unverified. Writes go through to the store in one batch per
//! request, only for what changed (FR-009). When the store fails the pool keeps serving and
//! accepting from memory, reports `degraded`, remembers what is unwritten and retries with
//! backoff; when the store is back it writes everything again (FR-010). Every stored ad expires
//! (`ad_ttl` + `store_retention`) unless renewed.
//!
//! Nothing acknowledged is lost to a store that forgets: every batch reads the store's meta
//! record in the same atomic step (see `PoolMeta`). When a batch, or the periodic check, finds
//! that the store no longer holds this pool's last write (emptied, restarted empty, replaced by
//! an older copy), the pool writes everything it holds again before it answers the request, and
//! counts a store repair. `persisted: true` is only answered once the store holds the change
//! and everything before it.
//!
//! Reads never enter the mailbox: after each message that may change what it serves, the pool
//! publishes a `PoolView` (the *Available Registers* answer, versioned, and its status) into a
//! `Published` handle the wiring owns, after the change reached the store (or failed to, which
//! the status says). An expired remote ad leaves the view when the pool handles the timer set
//! for its expiry (at once when idle, after the write in progress when busy).
//!
//! Decisions live in `state::PoolState`; this file only sequences I/O and timers.

mod state;

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use herald_messages::{AdvertisementPoolMsg, AvailableView, NodeId, PoolStatus, PoolView};

use crate::actor_kit::{MessageName, Pending, Timers, message_span};
use crate::backoff::{Backoff, BackoffConfig};
use crate::ports::{AdStore, Clock, StoreError, error_chain};
use crate::view::Published;

use state::PoolState;
pub use state::{LoadReport, PoolRules, WriteCheck};

/// Pool settings (DESIGN §4, §9). The runtime validates them.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    /// How long a remote ad stays fresh after its peer's last gossip.
    pub ad_ttl: Duration,
    /// How much longer than `ad_ttl` a stored ad outlives its last renewal, so that a pool down
    /// for a while restarts with its last state.
    pub store_retention: Duration,
    /// How often every stored ad's expiry is renewed (well below `ad_ttl + store_retention`).
    pub renew_interval: Duration,
    /// How often expired remote ads are dropped.
    pub sweep_interval: Duration,
    /// How often the pool checks that the store still holds its data.
    pub store_check_interval: Duration,
    /// Backoff between attempts to reach a failed store.
    pub store_backoff: BackoffConfig,
    /// How long a local withdrawal is remembered against late full syncs.
    pub tombstone_horizon: Duration,
    /// How far ahead of this node's clock a full sync's snapshot may have been read (`readAt`):
    /// more is refused as invalid input (the clocks of the register role's host and this one
    /// differ by less).
    pub snapshot_clock_tolerance: Duration,
}

impl PoolConfig {
    pub const DEFAULT_AD_TTL: Duration = Duration::from_secs(300);
    /// The same bound the hubs put on a peer's clock (they refuse heartbeats from further off).
    pub const DEFAULT_SNAPSHOT_CLOCK_TOLERANCE: Duration = Duration::from_secs(60);

    /// The expiry of every stored record.
    pub fn store_expiry(&self) -> Duration {
        self.ad_ttl + self.store_retention
    }
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            ad_ttl: Self::DEFAULT_AD_TTL,
            store_retention: Duration::from_secs(3_600),
            renew_interval: Duration::from_secs(120),
            sweep_interval: Duration::from_secs(10),
            store_check_interval: Duration::from_secs(10),
            store_backoff: BackoffConfig {
                base: Duration::from_millis(250),
                max: Duration::from_secs(10),
            },
            tombstone_horizon: Duration::from_secs(3_600),
            snapshot_clock_tolerance: Self::DEFAULT_SNAPSHOT_CLOCK_TOLERANCE,
        }
    }
}

/// The actor.
pub struct AdvertisementPool;

/// Everything a (re)started pool needs; cloned for each start.
#[derive(Clone)]
pub struct AdvertisementPoolArgs {
    pub node_id: NodeId,
    pub config: PoolConfig,
    pub store: Arc<dyn AdStore>,
    pub clock: Arc<dyn Clock>,
    /// Where the pool publishes what it serves; owned by the wiring, it outlives restarts.
    pub view: Published<PoolView>,
}

pub struct AdvertisementPoolState {
    node_id: NodeId,
    config: PoolConfig,
    store: Arc<dyn AdStore>,
    clock: Arc<dyn Clock>,
    book: PoolState,
    backoff: Backoff,
    retry: Pending,
    view: Published<PoolView>,
    /// Fires when the first served remote ad stops being live, so the view drops it.
    expiry: Pending,
    _timers: Timers,
}

impl Actor for AdvertisementPool {
    type Msg = AdvertisementPoolMsg;
    type State = AdvertisementPoolState;
    type Arguments = AdvertisementPoolArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<AdvertisementPoolMsg>,
        args: AdvertisementPoolArgs,
    ) -> Result<AdvertisementPoolState, ActorProcessingErr> {
        // The replay is the first message; whatever callers send meanwhile waits behind it.
        myself.cast(AdvertisementPoolMsg::Load)?;
        let mut timers = Timers::new();
        timers.every(&myself, args.config.sweep_interval, || {
            AdvertisementPoolMsg::Sweep
        });
        timers.every(&myself, args.config.renew_interval, || {
            AdvertisementPoolMsg::Renew
        });
        timers.every(&myself, args.config.store_check_interval, || {
            AdvertisementPoolMsg::CheckStore
        });
        Ok(AdvertisementPoolState {
            book: PoolState::new(
                PoolRules {
                    ad_ttl: args.config.ad_ttl,
                    tombstone_horizon: args.config.tombstone_horizon,
                    snapshot_clock_tolerance: args.config.snapshot_clock_tolerance,
                },
                rand::random(),
            ),
            backoff: Backoff::new(args.config.store_backoff),
            node_id: args.node_id,
            config: args.config,
            store: args.store,
            clock: args.clock,
            retry: Pending::new(),
            view: args.view,
            expiry: Pending::new(),
            _timers: timers,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<AdvertisementPoolMsg>,
        msg: AdvertisementPoolMsg,
        state: &mut AdvertisementPoolState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("advertisement_pool", &state.node_id, &msg);
        // Reads change nothing; a bulk request publishes before it replies.
        let publish_after = !matches!(
            msg,
            AdvertisementPoolMsg::Available(_)
                | AdvertisementPoolMsg::Status(_)
                | AdvertisementPoolMsg::Bulk(..)
        );
        let metrics_after = !matches!(
            msg,
            AdvertisementPoolMsg::Available(_) | AdvertisementPoolMsg::Status(_)
        );
        async move {
            match msg {
                AdvertisementPoolMsg::Load => state.load(&myself).await,
                AdvertisementPoolMsg::Bulk(request, reply) => {
                    let now = state.clock.now();
                    let epoch_before = state.book.last_snapshot().and_then(|s| s.epoch);
                    let result = state.book.apply_bulk(&request, now);
                    // Applied: the request (2 MB at 10,000 ads) is not held through the store's
                    // write and the next answer, which allocate as much again (issue 11).
                    let full_sync = request.full_sync;
                    drop(request);
                    let epoch_after = state.book.last_snapshot().and_then(|s| s.epoch);
                    if let (Some(before), Some(after)) = (epoch_before, epoch_after)
                        && before != after
                    {
                        info!(epoch = %after, previous = %before, "full sync from another ground-truth epoch; snapshot order starts again");
                    }
                    let result = match result {
                        Ok(mut outcome) => {
                            state.flush(&myself).await;
                            outcome.persisted = !state.book.has_unwritten();
                            debug!(?outcome, full_sync, "bulk applied");
                            // A caller that reads after this reply sees its change.
                            state.publish_view(&myself);
                            Ok(outcome)
                        }
                        Err(err) => {
                            warn!(%err, "bulk request refused");
                            Err(err)
                        }
                    };
                    let _ = reply.send(result);
                }
                AdvertisementPoolMsg::Gossip { peer, ads } => {
                    let now = state.clock.now();
                    let changed = state.book.apply_gossip(&peer, &ads, now);
                    debug!(%peer, ads = ads.len(), changed, "gossip applied");
                    state.flush(&myself).await;
                }
                AdvertisementPoolMsg::Available(reply) => {
                    let _ = reply.send(state.book.available(state.clock.now()));
                }
                AdvertisementPoolMsg::Status(reply) => {
                    let _ = reply.send(state.status());
                }
                AdvertisementPoolMsg::Sweep => {
                    let expired = state.book.sweep(state.clock.now());
                    if expired > 0 {
                        info!(expired, "expired remote advertisements dropped");
                        state.flush(&myself).await;
                    }
                }
                AdvertisementPoolMsg::Renew => {
                    state.book.mark_all_dirty();
                    state.flush(&myself).await;
                }
                AdvertisementPoolMsg::CheckStore => state.check_store(&myself).await,
                AdvertisementPoolMsg::RetryStore => state.retry_store(&myself).await,
            }
            if publish_after {
                state.publish_view(&myself);
            }
            if metrics_after {
                state.publish_metrics();
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl AdvertisementPoolState {
    async fn load(&mut self, myself: &ActorRef<AdvertisementPoolMsg>) {
        let started = Instant::now();
        match self.store.load().await {
            Ok(stored) => {
                let report = self.book.merge_loaded(stored, self.clock.now());
                info!(
                    store = %self.store.describe(),
                    restored = report.restored,
                    discarded = report.discarded,
                    skipped = report.skipped,
                    continued = report.adopted_mark,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "advertisements reloaded from the store"
                );
                self.report_load(&report);
                self.flush(myself).await;
            }
            Err(err) => self.store_failed(myself, "load", &err),
        }
    }

    /// Writes what the store lacks, unless the store is known to be down (then the retry
    /// timer does it).
    async fn flush(&mut self, myself: &ActorRef<AdvertisementPoolMsg>) {
        if self.book.is_degraded() {
            return;
        }
        if let Err(err) = self.write_unwritten().await {
            self.store_failed(myself, "write", &err);
        }
    }

    /// Writes what the store lacks. When the store turns out to have lost earlier writes, writes
    /// everything again at once, so that the caller's answer is true when it is given.
    async fn write_unwritten(&mut self) -> Result<(), StoreError> {
        if !self.book.has_unwritten() {
            return Ok(());
        }
        match self.write_batch().await? {
            WriteCheck::Intact | WriteCheck::Claimed => Ok(()),
            WriteCheck::Repaired => {
                self.store_repaired("a write of everything found the store missing earlier writes; it holds everything again");
                Ok(())
            }
            WriteCheck::Lost => {
                self.store_repaired("store lost this pool's data; writing everything again");
                let again = self.write_batch().await?;
                debug!(?again, "everything written again");
                Ok(())
            }
        }
    }

    /// Writes `book.batch()` and hands the store's answer to the book.
    async fn write_batch(&mut self) -> Result<WriteCheck, StoreError> {
        let batch = self.book.batch();
        let (puts, deletes, scope) = (batch.puts.len(), batch.deletes.len(), batch.scope);
        let started = Instant::now();
        let written = self.store.write(&batch, self.config.store_expiry()).await;
        let previous = match written {
            Ok(previous) => previous,
            Err(err) => {
                self.book.write_failed();
                return Err(err);
            }
        };
        let check = self.book.mark_written(previous.as_ref());
        metrics::histogram!("herald_pool_store_write_seconds", "node" => self.node_id.to_string())
            .record(started.elapsed().as_secs_f64());
        debug!(puts, deletes, ?scope, ?check, "store written");
        Ok(check)
    }

    /// Logs and counts a store found missing what this pool wrote.
    fn store_repaired(&self, what: &'static str) {
        let (local, remote, ..) = self.book.counts();
        warn!(
            store = %self.store.describe(),
            ads = local + remote,
            local,
            remote,
            repairs = self.book.store_repairs(),
            "{what}"
        );
        metrics::counter!("herald_pool_store_repairs_total", "node" => self.node_id.to_string())
            .increment(1);
    }

    async fn check_store(&mut self, myself: &ActorRef<AdvertisementPoolMsg>) {
        if self.book.is_degraded() || !self.book.is_loaded() {
            return;
        }
        match self.store.read_meta().await {
            Ok(found) if self.book.store_holds_mark(found.as_ref()) => {}
            Ok(found) => {
                debug!(
                    ?found,
                    "the store's meta record is not this pool's last write"
                );
                self.book.rewrite_everything();
                self.store_repaired("store lost this pool's data; writing everything again");
                self.flush(myself).await;
            }
            Err(err) => self.store_failed(myself, "check", &err),
        }
    }

    fn report_load(&self, report: &LoadReport) {
        if report.skipped > 0 {
            warn!(
                skipped = report.skipped,
                "undecodable advertisement records skipped"
            );
        }
        if let Some(snapshot) = report.refused_snapshot {
            warn!(
                seq = snapshot.seq,
                read_at = %snapshot.read_at,
                "stored full-sync snapshot refused (read time ahead of this node's clock or seq beyond any store); the next full sync starts the order again"
            );
        }
    }

    async fn retry_store(&mut self, myself: &ActorRef<AdvertisementPoolMsg>) {
        if !self.book.is_degraded() {
            return;
        }
        if !self.book.is_loaded() {
            match self.store.load().await {
                Ok(stored) => {
                    let report = self.book.merge_loaded(stored, self.clock.now());
                    info!(
                        restored = report.restored,
                        discarded = report.discarded,
                        "late reload merged"
                    );
                    self.report_load(&report);
                }
                Err(err) => return self.store_failed(myself, "load", &err),
            }
        }
        // Whatever the store kept, after an outage write everything: it is cheap, and a store
        // restarted empty or from an old snapshot would otherwise miss ads or keep stale ones.
        self.book.mark_all_dirty();
        if let Err(err) = self.write_unwritten().await {
            return self.store_failed(myself, "write", &err);
        }
        self.book.recover();
        self.backoff.reset();
        let (local, remote, ..) = self.book.counts();
        info!(store = %self.store.describe(), ads = local + remote, "store recovered; everything written again");
    }

    fn store_failed(
        &mut self,
        myself: &ActorRef<AdvertisementPoolMsg>,
        during: &'static str,
        err: &StoreError,
    ) {
        let reason = format!("{during}: {}", error_chain(err));
        let newly = self.book.degrade(reason.clone(), self.clock.now());
        metrics::counter!("herald_pool_store_errors_total", "node" => self.node_id.to_string())
            .increment(1);
        let delay = self.backoff.next_delay();
        if newly {
            warn!(store = %self.store.describe(), %reason, "store unavailable; serving from memory");
        } else {
            debug!(%reason, ?delay, "store still unavailable");
        }
        self.retry
            .after(myself, delay, || AdvertisementPoolMsg::RetryStore);
    }

    /// Publishes what the pool serves now. The answer keeps its version (and its ETag) when its
    /// content did not change; the expiry timer is set for the first served remote ad to die.
    fn publish_view(&mut self, myself: &ActorRef<AdvertisementPoolMsg>) {
        let now = self.clock.now();
        let valid_until = self.book.next_expiry(now);
        let current = self.view.latest();
        // The pool's answer is always flat (only the gossip lays one over it).
        debug_assert!(current.available.base().is_none());
        let served = current.available.registers();
        let available = match self.book.available_if_changed(now, served) {
            None => Arc::clone(&current.available),
            Some(registers) => {
                let mut next =
                    AvailableView::new(current.available.tag, current.available.version, registers);
                // A change only the gossip sees (this node's sync state of a register, when
                // the counts stay) is a new answer under the same version: same JSON, same ETag.
                if !next.shows_same(&current.available) {
                    next.version += 1;
                }
                Arc::new(next)
            }
        };
        self.view.publish(PoolView {
            ready: true,
            available,
            valid_until,
            status: self.status(),
        });
        match valid_until {
            Some(until) => {
                let delay = until.since(now);
                self.expiry
                    .after(myself, delay, || AdvertisementPoolMsg::Sweep);
            }
            None => self.expiry.cancel(),
        }
    }

    fn status(&self) -> PoolStatus {
        let (local_ads, remote_ads, unverified_ads, dirty_ads) = self.book.counts();
        PoolStatus {
            node_id: self.node_id.clone(),
            local_ads,
            remote_ads,
            unverified_ads,
            dirty_ads,
            loaded: self.book.is_loaded(),
            store: self.book.store_health().clone(),
            last_snapshot: self.book.last_snapshot(),
            store_repairs: self.book.store_repairs(),
            gossip: None,
        }
    }

    fn publish_metrics(&self) {
        let node = self.node_id.to_string();
        let (local, remote, unverified, dirty) = self.book.counts();
        metrics::gauge!("herald_pool_ads", "node" => node.clone(), "source" => "local")
            .set(local as f64);
        metrics::gauge!("herald_pool_ads", "node" => node.clone(), "source" => "remote")
            .set(remote as f64);
        metrics::gauge!("herald_pool_unverified_ads", "node" => node.clone())
            .set(unverified as f64);
        metrics::gauge!("herald_pool_dirty_ads", "node" => node.clone()).set(dirty as f64);
        let degraded = if self.book.is_degraded() { 1.0 } else { 0.0 };
        metrics::gauge!("herald_pool_store_degraded", "node" => node).set(degraded);
    }
}

impl MessageName for AdvertisementPoolMsg {
    fn name(&self) -> &'static str {
        match self {
            AdvertisementPoolMsg::Bulk(..) => "bulk",
            AdvertisementPoolMsg::Gossip { .. } => "gossip",
            AdvertisementPoolMsg::Available(_) => "available",
            AdvertisementPoolMsg::Status(_) => "status",
            AdvertisementPoolMsg::Load => "load",
            AdvertisementPoolMsg::Sweep => "sweep",
            AdvertisementPoolMsg::Renew => "renew",
            AdvertisementPoolMsg::CheckStore => "check_store",
            AdvertisementPoolMsg::RetryStore => "retry_store",
        }
    }
}
