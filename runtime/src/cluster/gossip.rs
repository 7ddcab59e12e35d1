//! `GossipDriver`: runs the gossip of public ads (issue 9) on a running peer. It owns the
//! protocol's pure state (`herald_actors::gossip::GossipState`: every decision is there) and
//! does the I/O around it:
//!
//! - every `interval` a round (`on_round`): each `Syn` goes to the member's gateway as a
//!   `RequestBody::Gossip`, in a task (a slow member never holds up the next round);
//! - the gateway hands each gossip message from a member over by cast (`Received`), never
//!   waiting for this mailbox; `on_message` validates every entry (a bad one is refused
//!   alone and counted) and its answers (`Ack`, `Ack2`) go back as requests of their own;
//! - members from the cluster link's published view (`set_members`: ready, unreachable,
//!   departed), followed through its watch;
//! - this node's public ads from the pool's published view (`set_local`), followed through
//!   its watch; no round runs and no message is taken before the pool's first replay ended,
//!   so a restarted node never tells the others it has no ads;
//! - the state restored from the `GossipStore` at start, when there is one, and the records
//!   of changed origins written back after changes: debounced, one write at a time, in a
//!   task (a round never waits for the store);
//! - the read side: *Available Registers* is the pool's answer (this node's ads) merged with
//!   the origins the gossip shows (`merge_remote`, laid over the pool's answer), published
//!   as a `PoolView` that `NodeApi` reads instead of the pool's own (the REST routes, the
//!   events feed and the status follow without change), with each register's `peerCount`,
//!   `fullReplicaPeerCount` and `stale`, and the gossip's status (partitioned mode).
//!
//! It lives in the runtime, not in `herald-actors`, because its I/O is the cluster's: the
//! members' gateways (`ClusterView`) and the `GatewayClient` are runtime types over
//! ractor_cluster, and the actors crate stays free of them. The protocol it drives stays
//! in `herald-actors`, pure and simulated.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info, warn};

use herald_actors::actor_kit::{MessageName, Pending, Timers, message_span};
use herald_actors::gossip::{GossipConfig, GossipCounters, GossipState, Record};
use herald_actors::ports::{Clock, GossipBatch, GossipStore};
use herald_actors::{Published, View};
use herald_messages::{
    AvailableRegister, AvailableView, EntryRun, GossipAd, GossipMessage, GossipStatus,
    LocalRegister, NodeId, PersistedGossip, PersistedRecord, PoolView, Role, SharedRegisters,
};

use super::client::GatewayClient;
use super::view::ClusterHandle;
use super::wire::{Reply, RequestBody};

/// The gossip's settings (the configuration's `[peer.gossip]`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GossipSettings {
    /// The protocol's own (fanout, message budget, ad TTL, stale grace, tombstone TTL,
    /// retention).
    pub protocol: GossipConfig,
    /// Time between two rounds.
    pub interval: Duration,
    /// The node is *partitioned* while at least this share of the remote ads it shows is
    /// stale, in `(0, 1]`.
    pub partitioned_share: f64,
    /// Changes are written to the gossip store at most this often.
    pub persist_debounce: Duration,
}

impl GossipSettings {
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
    pub const DEFAULT_FANOUT: usize = 3;
    /// Well under ractor_cluster's frame limit, a few TCP segments' worth.
    pub const DEFAULT_MESSAGE_BUDGET: usize = 64 * 1024;
    /// A day: the tombstone TTL should exceed any partition that should heal by deltas.
    pub const DEFAULT_TOMBSTONE_TTL: Duration = Duration::from_secs(24 * 3_600);
    pub const DEFAULT_PARTITIONED_SHARE: f64 = 0.5;

    /// The defaults around an ad TTL: the stale grace is three TTLs, the retention of a
    /// record no longer shown one tombstone TTL.
    pub fn defaults(ad_ttl: Duration) -> Self {
        Self {
            protocol: GossipConfig {
                fanout: Self::DEFAULT_FANOUT,
                message_budget: Self::DEFAULT_MESSAGE_BUDGET,
                ad_ttl,
                stale_grace: ad_ttl.saturating_mul(3),
                tombstone_ttl: Self::DEFAULT_TOMBSTONE_TTL,
                retention: Self::DEFAULT_TOMBSTONE_TTL,
            },
            interval: Self::DEFAULT_INTERVAL,
            partitioned_share: Self::DEFAULT_PARTITIONED_SHARE,
            persist_debounce: Self::DEFAULT_INTERVAL,
        }
    }
}

/// The driver's messages (local only).
#[derive(ractor_cluster::RactorMessage)]
pub enum GossipDriverMsg {
    /// Time for a round.
    Round,
    /// A gossip message from a member, handed over by the gateway (`bytes`: its frame's size).
    Received {
        from: NodeId,
        message: GossipMessage,
        bytes: usize,
    },
    /// The cluster link published a new view.
    Members,
    /// The pool published a new view.
    Local,
    /// Time to write changed records to the store.
    Flush,
    /// A store write ended: on success the store holds `written`.
    Flushed {
        written: HashMap<NodeId, Position>,
        error: Option<String>,
    },
}

impl MessageName for GossipDriverMsg {
    fn name(&self) -> &'static str {
        match self {
            GossipDriverMsg::Round => "round",
            GossipDriverMsg::Received { .. } => "received",
            GossipDriverMsg::Members => "members",
            GossipDriverMsg::Local => "local",
            GossipDriverMsg::Flush => "flush",
            GossipDriverMsg::Flushed { .. } => "flushed",
        }
    }
}

/// Where a stored record stands: incarnation, highest version, floor.
pub type Position = (u64, u64, u64);

pub struct GossipDriver;

/// Everything a (re)started driver needs; cloned for each start.
#[derive(Clone)]
pub struct GossipDriverArgs {
    pub node_id: NodeId,
    pub settings: GossipSettings,
    pub clock: Arc<dyn Clock>,
    pub cluster: ClusterHandle,
    pub client: GatewayClient,
    /// The pool's own view: this node's ads.
    pub pool: View<PoolView>,
    /// Where the merged view goes (what `NodeApi` reads); outlives restarts.
    pub published: Published<PoolView>,
    /// Persistence is on when given.
    pub store: Option<Arc<dyn GossipStore>>,
    pub call_timeout: Duration,
}

pub struct GossipDriverState {
    args: GossipDriverArgs,
    gossip: GossipState,
    /// The pool has published its first replayed view, and its ads were taken.
    local_ready: bool,
    /// The pool's answer whose local registers were taken last: a view that shares it
    /// changed nothing local.
    local_taken: Option<Arc<AvailableView>>,
    /// What the store holds, as far as this driver knows.
    written: HashMap<NodeId, Position>,
    write_in_flight: bool,
    flush: Pending,
    sends: JoinSet<()>,
    /// What the last merged view was computed from.
    merged_from: Option<MergeKey>,
    last_counters: GossipCounters,
    store_error: Option<String>,
    _timers: Timers,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct MergeKey {
    pool_tag: u64,
    pool_version: u64,
    shown: Vec<(NodeId, u64, u64, bool)>,
    status: GossipStatus,
}

impl Actor for GossipDriver {
    type Msg = GossipDriverMsg;
    type State = GossipDriverState;
    type Arguments = GossipDriverArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GossipDriverMsg>,
        args: GossipDriverArgs,
    ) -> Result<GossipDriverState, ActorProcessingErr> {
        let (gossip, written, store_error) = start_state(&args).await;
        let mut timers = Timers::new();
        timers.every(&myself, args.settings.interval, || GossipDriverMsg::Round);
        let mut members = args.cluster.subscribe();
        let driver = myself.clone();
        let follow_members = tokio::spawn(async move {
            while members.changed().await.is_ok() {
                if driver.cast(GossipDriverMsg::Members).is_err() {
                    break;
                }
            }
        });
        timers.keep(&follow_members);
        let mut pool = args.pool.clone();
        let driver = myself.clone();
        let follow_pool = tokio::spawn(async move {
            while pool.changed().await.is_some() {
                if driver.cast(GossipDriverMsg::Local).is_err() {
                    break;
                }
            }
        });
        timers.keep(&follow_pool);
        myself.cast(GossipDriverMsg::Members)?;
        myself.cast(GossipDriverMsg::Local)?;
        info!(node = %args.node_id, incarnation = gossip.incarnation(), interval = ?args.settings.interval,
            store = args.store.as_ref().map(|store| store.describe()), "gossip driver started");
        Ok(GossipDriverState {
            last_counters: gossip.counters(),
            gossip,
            local_ready: false,
            local_taken: None,
            written,
            write_in_flight: false,
            flush: Pending::new(),
            sends: JoinSet::new(),
            merged_from: None,
            store_error,
            _timers: timers,
            args,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<GossipDriverMsg>,
        msg: GossipDriverMsg,
        state: &mut GossipDriverState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("gossip_driver", &state.args.node_id, &msg);
        async move {
            match msg {
                GossipDriverMsg::Round => state.on_round(&myself),
                GossipDriverMsg::Received {
                    from,
                    message,
                    bytes,
                } => state.on_received(&myself, &from, message, bytes),
                GossipDriverMsg::Members => state.on_members(&myself),
                GossipDriverMsg::Local => state.on_local(&myself),
                GossipDriverMsg::Flush => state.on_flush(&myself),
                GossipDriverMsg::Flushed { written, error } => {
                    state.on_flushed(&myself, written, error)
                }
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

/// The state at start: restored from the store when it has one and answers, else new.
async fn start_state(
    args: &GossipDriverArgs,
) -> (GossipState, HashMap<NodeId, Position>, Option<String>) {
    let now = args.clock.now();
    let seed = rand::random();
    let fresh = || GossipState::new(args.node_id.clone(), args.settings.protocol, now, seed);
    let Some(store) = &args.store else {
        return (fresh(), HashMap::new(), None);
    };
    let loaded = match tokio::time::timeout(args.call_timeout, store.load()).await {
        Ok(Ok(loaded)) => loaded,
        Ok(Err(err)) => {
            let reason = herald_actors::ports::error_chain(&err);
            warn!(node = %args.node_id, store = %store.describe(), %reason, "gossip store unreadable at start; starting afresh");
            return (fresh(), HashMap::new(), Some(reason));
        }
        Err(_) => {
            let reason = format!("no answer within {:?}", args.call_timeout);
            warn!(node = %args.node_id, store = %store.describe(), %reason, "gossip store unreadable at start; starting afresh");
            return (fresh(), HashMap::new(), Some(reason));
        }
    };
    if !loaded.skipped.is_empty() {
        warn!(node = %args.node_id, skipped = ?loaded.skipped, "gossip records that could not be decoded were skipped");
    }
    let written: HashMap<NodeId, Position> = loaded
        .records
        .iter()
        .map(|record| (record.origin.clone(), stored_position(record)))
        .collect();
    let mut own = None;
    let mut remote = Vec::new();
    for record in loaded.records {
        if record.origin == args.node_id {
            own = Some(record);
        } else {
            remote.push(record);
        }
    }
    let own = own.unwrap_or_else(|| PersistedRecord {
        origin: args.node_id.clone(),
        incarnation: 0,
        max: 0,
        floor: 0,
        entries: EntryRun::empty(),
    });
    let persisted = PersistedGossip { own, remote };
    match GossipState::restore(
        args.node_id.clone(),
        args.settings.protocol,
        persisted,
        now,
        seed,
    ) {
        Ok(state) => {
            info!(node = %args.node_id, origins = written.len(), incarnation = state.incarnation(), "gossip state restored");
            (state, written, None)
        }
        Err(err) => {
            warn!(node = %args.node_id, %err, "stored gossip state not taken; starting afresh");
            (fresh(), written, Some(err.to_string()))
        }
    }
}

fn stored_position(record: &PersistedRecord) -> Position {
    (record.incarnation, record.max, record.floor)
}

impl GossipDriverState {
    fn node(&self) -> String {
        self.args.node_id.to_string()
    }

    fn on_round(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        while self.sends.try_join_next().is_some() {}
        if !self.local_ready {
            return;
        }
        let now = self.args.clock.now();
        let messages = self.gossip.on_round(now);
        metrics::counter!("herald_gossip_rounds_total", "node" => self.node()).increment(1);
        self.send(messages);
        self.changed(myself);
    }

    fn on_received(
        &mut self,
        myself: &ActorRef<GossipDriverMsg>,
        from: &NodeId,
        message: GossipMessage,
        bytes: usize,
    ) {
        let node = self.node();
        metrics::counter!("herald_gossip_bytes_received_total", "node" => node.clone())
            .increment(bytes as u64);
        metrics::counter!("herald_gossip_messages_received_total", "node" => node).increment(1);
        if !self.local_ready {
            // This node's own ads are not known yet: answering now could tell the member
            // this node has none. The member tries again next round.
            debug!(member = %from, "gossip before the pool's first view; not taken");
            return;
        }
        let now = self.args.clock.now();
        let handled = self.gossip.on_message(now, from, message);
        self.send(handled.replies);
        self.changed(myself);
    }

    fn on_members(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        let view = self.args.cluster.view();
        let members: Vec<_> = view
            .members
            .iter()
            .filter(|member| !member.is_self)
            // Members that described themselves without the peer role hold no ads.
            .filter(|member| member.roles.is_empty() || member.roles.contains(&Role::Peer))
            .map(|member| (member.node_id.clone(), member.state))
            .collect();
        let now = self.args.clock.now();
        let dropped = self.gossip.set_members(now, &members, &view.departed);
        for change in &dropped {
            info!(origin = %change.origin, "a member left: its ads are dropped");
        }
        self.changed(myself);
    }

    fn on_local(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        let pool = self.args.pool.latest();
        if !pool.ready {
            return;
        }
        let unchanged = self
            .local_taken
            .as_ref()
            .is_some_and(|taken| Arc::ptr_eq(taken, &pool.available));
        if !unchanged {
            let now = self.args.clock.now();
            // This node's public ads are the local registers of the pool's answer (the pool of
            // a node in a cluster holds no remote ads: they live here).
            let local: Vec<LocalRegister<'_>> = pool
                .available
                .iter()
                .filter_map(AvailableRegister::local_ad)
                .collect();
            let issued = self.gossip.set_local(&local, now);
            if issued > 0 {
                debug!(issued, "this node's public ads changed");
            }
            self.local_taken = Some(Arc::clone(&pool.available));
        }
        self.local_ready = true;
        self.changed(myself);
    }

    /// After anything that may have changed the state: publish the read side, count, and
    /// schedule a write of what changed.
    fn changed(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        self.publish();
        self.count();
        self.schedule_flush(myself);
    }

    /// Sends each message to its member's gateway, in a task; a member without a ready
    /// gateway now is skipped (the protocol tolerates loss).
    fn send(&mut self, messages: Vec<(NodeId, GossipMessage)>) {
        if messages.is_empty() {
            return;
        }
        let view = self.args.cluster.view();
        let deadline = self.args.settings.interval.max(Duration::from_secs(1));
        let node = self.node();
        for (member, message) in messages {
            let Some(gateway) = view.ready_gateway(&member) else {
                debug!(%member, "no ready gateway; gossip message dropped");
                continue;
            };
            metrics::counter!("herald_gossip_bytes_sent_total", "node" => node.clone())
                .increment(message.wire_size() as u64);
            metrics::counter!("herald_gossip_messages_sent_total", "node" => node.clone())
                .increment(1);
            let client = self.args.client.clone();
            let body = RequestBody::Gossip { message };
            self.sends.spawn(
                async move {
                    match client.call(&gateway, body, deadline).await {
                        Ok(Reply::Acknowledged) => {}
                        Ok(other) => debug!(%member, reply = ?other, "gossip not taken"),
                        Err(err) => debug!(%member, %err, "gossip not delivered"),
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// Publishes *Available Registers* merged with the gossip, when its inputs changed.
    fn publish(&mut self) {
        let pool = self.args.pool.latest();
        if !pool.ready {
            return;
        }
        let now = self.args.clock.now();
        let shown = self.gossip.shown_remote(now);
        let (remote_ads, stale_ads) =
            shown
                .iter()
                .fold((0, 0), |(remote, stale), (_, record, is_stale)| {
                    let ads = record.live_ads().count();
                    (remote + ads, stale + if *is_stale { ads } else { 0 })
                });
        let partitioned = stale_ads > 0
            && stale_ads as f64 >= self.args.settings.partitioned_share * remote_ads as f64;
        let status = GossipStatus {
            incarnation: self.gossip.incarnation(),
            remote_ads,
            stale_ads,
            partitioned,
            origins: shown.len(),
            refused_entries: self.gossip.counters().refused_entries,
            store_error: self.store_error.clone(),
        };
        let key = MergeKey {
            pool_tag: pool.available.tag,
            pool_version: pool.available.version,
            shown: shown
                .iter()
                .map(|(origin, record, stale)| {
                    (
                        (*origin).clone(),
                        record.incarnation(),
                        record.max(),
                        *stale,
                    )
                })
                .collect(),
            status: status.clone(),
        };
        let current = self.args.published.latest();
        // Laid over the pool's answer of now (a new answer of the pool under the same version,
        // a change only the gossip sees, must not leave the old one held here).
        let shared = current
            .available
            .base()
            .is_some_and(|base| Arc::ptr_eq(base, &pool.available));
        if shared && self.merged_from.as_ref() == Some(&key) {
            return;
        }
        // In chunks shared with the registers the current answer adds wherever they are the
        // same (all of them when only this node's ads changed).
        let changes = merge_remote(&pool.available, &shown, current.available.registers());
        let available = if shared && changes.shares_all(current.available.registers()) {
            Arc::clone(&current.available)
        } else {
            let mut next = AvailableView::over(
                Arc::clone(&pool.available),
                current.available.tag,
                current.available.version,
                changes,
            );
            // The version (and the ETag) follows what the answer shows, its JSON.
            if !next.shows_same(&current.available) {
                next.version += 1;
            }
            Arc::new(next)
        };
        let mut pool_status = pool.status.clone();
        pool_status.gossip = Some(status);
        let view = PoolView {
            ready: true,
            available,
            valid_until: pool.valid_until,
            status: pool_status,
        };
        if Arc::ptr_eq(&view.available, &current.available) {
            self.args.published.publish_if_changed(view);
        } else {
            // A new answer, even one equal to the last, replaces it (so the last one's base
            // is not kept).
            self.args.published.publish(view);
        }
        let node = self.node();
        metrics::gauge!("herald_gossip_remote_ads", "node" => node.clone()).set(remote_ads as f64);
        metrics::gauge!("herald_gossip_stale_ads", "node" => node.clone()).set(stale_ads as f64);
        metrics::gauge!("herald_gossip_origins", "node" => node.clone())
            .set(key.shown.len() as f64);
        metrics::gauge!("herald_gossip_partitioned", "node" => node).set(if partitioned {
            1.0
        } else {
            0.0
        });
        if partitioned {
            warn!(
                remote_ads,
                stale_ads, "partitioned: most remote ads shown are stale"
            );
        }
        self.merged_from = Some(key);
    }

    /// Counters of the protocol, as metrics.
    fn count(&mut self) {
        let now = self.gossip.counters();
        let before = std::mem::replace(&mut self.last_counters, now);
        let node = self.node();
        let refused = now.refused_entries - before.refused_entries;
        if refused > 0 {
            warn!(refused, "gossiped entries refused by validation");
            metrics::counter!("herald_gossip_refused_entries_total", "node" => node.clone())
                .increment(refused);
        }
        let frames = now.refused_frames - before.refused_frames;
        if frames > 0 {
            metrics::counter!("herald_gossip_refused_frames_total", "node" => node.clone())
                .increment(frames);
        }
        let unusable = now.unusable_deltas - before.unusable_deltas;
        if unusable > 0 {
            metrics::counter!("herald_gossip_unusable_deltas_total", "node" => node.clone())
                .increment(unusable);
        }
        let bumps = now.bumps - before.bumps;
        if bumps > 0 {
            info!(
                incarnation = self.gossip.incarnation(),
                "moved to a new incarnation: the cluster knew this node at a later state"
            );
            metrics::counter!("herald_gossip_bumps_total", "node" => node).increment(bumps);
        }
    }

    fn schedule_flush(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        if self.args.store.is_none() || self.write_in_flight || self.flush.is_pending() {
            return;
        }
        self.flush
            .after(myself, self.args.settings.persist_debounce, || {
                GossipDriverMsg::Flush
            });
    }

    /// Writes the records whose position changed since the last write, and deletes those no
    /// longer held, in one batch, in a task.
    fn on_flush(&mut self, myself: &ActorRef<GossipDriverMsg>) {
        self.flush.cancel();
        let Some(store) = self.args.store.clone() else {
            return;
        };
        if self.write_in_flight {
            return;
        }
        let persisted = self.gossip.persisted();
        let mut records: Vec<PersistedRecord> = Vec::with_capacity(persisted.remote.len() + 1);
        records.push(persisted.own);
        records.extend(persisted.remote);
        let positions: HashMap<NodeId, Position> = records
            .iter()
            .map(|record| (record.origin.clone(), stored_position(record)))
            .collect();
        let puts: Vec<PersistedRecord> = records
            .into_iter()
            .filter(|record| self.written.get(&record.origin) != Some(&stored_position(record)))
            .collect();
        let deletes: Vec<NodeId> = self
            .written
            .keys()
            .filter(|origin| !positions.contains_key(*origin))
            .cloned()
            .collect();
        if puts.is_empty() && deletes.is_empty() {
            return;
        }
        self.write_in_flight = true;
        let driver = myself.clone();
        let timeout = self.args.call_timeout;
        tokio::spawn(
            async move {
                let batch = GossipBatch {
                    puts: puts.iter().collect(),
                    deletes: deletes.iter().collect(),
                };
                let error = match tokio::time::timeout(timeout, store.write(&batch)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(err)) => Some(herald_actors::ports::error_chain(&err)),
                    Err(_) => Some(format!("no answer within {timeout:?}")),
                };
                debug!(
                    puts = puts.len(),
                    deletes = deletes.len(),
                    ?error,
                    "gossip records written"
                );
                let _ = driver.cast(GossipDriverMsg::Flushed {
                    written: positions,
                    error,
                });
            }
            .in_current_span(),
        );
    }

    fn on_flushed(
        &mut self,
        myself: &ActorRef<GossipDriverMsg>,
        written: HashMap<NodeId, Position>,
        error: Option<String>,
    ) {
        self.write_in_flight = false;
        match error {
            None => {
                self.written = written;
                if self.store_error.take().is_some() {
                    info!("gossip store writable again");
                }
            }
            Some(reason) => {
                if self.store_error.is_none() {
                    warn!(%reason, "gossip store unavailable; gossiping from memory");
                }
                metrics::counter!("herald_gossip_store_errors_total", "node" => self.node())
                    .increment(1);
                self.store_error = Some(reason);
            }
        }
        self.publish();
        // Whatever changed meanwhile (or failed) goes in the next write.
        self.schedule_flush(myself);
    }
}

/// *Available Registers*: the registers the remote ads the gossip shows add to the pool's
/// answer (this node's ads) or change in it, ordered by register; the driver lays them over the
/// pool's answer (shared, not copied: see `AvailableView::over`). Each register counts its
/// sources (`peerCount`, this node included when it serves it), those with a full replica
/// (`fullReplicaPeerCount`), and is `stale` when every source of it is stale; names and
/// descriptions come from this node first, then from origins in id order; versions are the
/// highest any source gives. Chunks of `like` that hold what a chunk would hold anew are
/// shared, not built again (`SharedRegisters::build_like`).
pub fn merge_remote(
    local: &AvailableView,
    shown: &[(&NodeId, &Record, bool)],
    like: &SharedRegisters,
) -> SharedRegisters {
    // Every shown remote ad with its origin's staleness, by register; a stable sort keeps the
    // origins' order within a register (names come from the first that has one).
    let mut remote: Vec<(&GossipAd, bool)> = shown
        .iter()
        .flat_map(|(_, record, stale)| record.live_ads().map(move |ad| (ad, *stale)))
        .collect();
    remote.sort_by(|a, b| a.0.register_id().cmp(b.0.register_id()));
    let by_register = remote.chunk_by(|a, b| a.0.register_id() == b.0.register_id());
    let merged = by_register.map(|sources| {
        let register_id = sources[0].0.register_id();
        let mut register = match local.get(register_id) {
            Some(register) => register.clone(),
            None => AvailableRegister {
                register_id: register_id.clone(),
                name: None,
                description: None,
                peer_count: 0,
                latest_version: 0,
                latest_docket_version: 0,
                is_public: true,
                full_replica_peer_count: 0,
                local: false,
                verified: true,
                stale: true,
                local_state: None,
            },
        };
        for (ad, stale) in sources {
            register.peer_count += 1;
            register.full_replica_peer_count += usize::from(ad.sync_state().is_full_replica());
            register.latest_version = register.latest_version.max(ad.latest_version());
            register.latest_docket_version = register
                .latest_docket_version
                .max(ad.latest_docket_version());
            if register.name.is_none() {
                register.name = ad.name().cloned();
            }
            if register.description.is_none() {
                register.description = ad.description().cloned();
            }
            register.stale &= *stale;
        }
        register
    });
    SharedRegisters::build_like(like, merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messages::{AdInput, GossipAd, GossipEntry, RegisterId, SyncState, Timestamp};

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    fn register(n: u8) -> RegisterId {
        RegisterId::parse(&format!("{n:032x}")).unwrap()
    }

    fn ad(n: u8, state: SyncState) -> GossipAd {
        let mut input = AdInput::public(register(n));
        input.name = Some(format!("remote {n}").into());
        input.latest_version = u64::from(n) * 10;
        GossipAd::from_input(&input, state).unwrap()
    }

    fn record(origin: &str, ads: Vec<GossipAd>) -> PersistedRecord {
        let entries: Vec<Arc<GossipEntry>> = ads
            .into_iter()
            .enumerate()
            .map(|(i, ad)| Arc::new(GossipEntry::live(i as u64 + 1, ad)))
            .collect();
        PersistedRecord {
            origin: node(origin),
            incarnation: 1,
            max: entries.len() as u64,
            floor: 0,
            entries: EntryRun::whole(Arc::from(entries)),
        }
    }

    fn local(n: u8) -> AvailableRegister {
        AvailableRegister {
            register_id: register(n),
            name: Some(format!("local {n}").into()),
            description: None,
            peer_count: 1,
            latest_version: 1,
            latest_docket_version: 0,
            is_public: true,
            full_replica_peer_count: 1,
            local: true,
            verified: true,
            stale: false,
            local_state: Some(SyncState::FullyReplicated),
        }
    }

    /// A state showing two origins' records (restored: live for one ad TTL), `stale-origin`
    /// unreachable.
    fn shown_state(now: Timestamp) -> GossipState {
        let settings = GossipSettings::defaults(Duration::from_secs(60));
        let persisted = PersistedGossip {
            own: record("me", Vec::new()),
            remote: vec![
                record(
                    "live-origin",
                    vec![ad(1, SyncState::Active), ad(2, SyncState::Syncing)],
                ),
                record(
                    "stale-origin",
                    vec![ad(2, SyncState::FullyReplicated), ad(3, SyncState::Active)],
                ),
            ],
        };
        let mut state =
            GossipState::restore(node("me"), settings.protocol, persisted, now, 7).unwrap();
        state.set_members(
            now,
            &[
                (node("live-origin"), herald_messages::MemberState::Ready),
                (
                    node("stale-origin"),
                    herald_messages::MemberState::Unreachable,
                ),
            ],
            &[],
        );
        state
    }

    /// The merged answer over a pool answer of `local`, as a list.
    fn merged_list(
        local: &[AvailableRegister],
        shown: &[(&NodeId, &Record, bool)],
    ) -> Vec<AvailableRegister> {
        let pool = Arc::new(AvailableView::new(1, 1, local.to_vec()));
        let view = AvailableView::over(
            Arc::clone(&pool),
            1,
            2,
            merge_remote(&pool, shown, &SharedRegisters::default()),
        );
        assert_eq!(view.len(), view.iter().count());
        view.iter().cloned().collect()
    }

    #[test]
    fn counts_sources_this_node_included_and_marks_registers_only_stale_origins_serve() {
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        let state = shown_state(now);
        let shown = state.shown_remote(now);
        let merged = merged_list(&[local(1)], &shown);
        let by_id = |n| {
            merged
                .iter()
                .find(|r| r.register_id == register(n))
                .unwrap()
        };
        assert_eq!(merged.len(), 3, "{merged:?}");
        // Served here and by a live origin: this node's name, both counted.
        let one = by_id(1);
        assert_eq!((one.peer_count, one.full_replica_peer_count), (2, 2));
        assert_eq!(one.name.as_deref(), Some("local 1"));
        assert!(one.local && !one.stale);
        assert_eq!(one.latest_version, 10);
        // A live origin syncing and a stale one with a full replica: not stale.
        let two = by_id(2);
        assert_eq!((two.peer_count, two.full_replica_peer_count), (2, 1));
        assert!(!two.local && !two.stale, "{two:?}");
        // Only the unreachable origin serves it: kept, stale.
        let three = by_id(3);
        assert_eq!((three.peer_count, three.full_replica_peer_count), (1, 1));
        assert!(three.stale, "{three:?}");
        // Ordered by register, this node's registers before, between and after the remote ones.
        let around = merged_list(&[local(0), local(2), local(9)], &shown);
        let ids: Vec<_> = around.iter().map(|r| r.register_id.clone()).collect();
        assert_eq!(ids, [0, 1, 2, 3, 9].map(register));
        assert_eq!(around[2].peer_count, 3, "served here and by both origins");
        assert!(around[0].local && around[4].local && !around[1].local);
    }

    #[test]
    fn an_unreachable_origins_ads_go_after_the_stale_grace() {
        let now = Timestamp::from_unix_millis(1_800_000_000_000);
        let state = shown_state(now);
        let later = now.saturating_add(Duration::from_secs(60 * 3 + 1));
        let merged = merged_list(&[], &state.shown_remote(later));
        // The live origin is still ready; the unreachable one is gone.
        let ids: Vec<_> = merged.iter().map(|r| r.register_id.clone()).collect();
        assert_eq!(ids, vec![register(1), register(2)]);
        assert!(merged.iter().all(|r| !r.stale && r.peer_count == 1));
    }

    mod driver {
        use super::*;
        use herald_actors::testing::{InMemoryGossipStore, ManualClock};
        use herald_messages::{MAX_NAME_LEN, MemberInfo, OriginDelta, PoolStatus, StoreHealth};

        use crate::cluster::ClusterShared;

        const START: i64 = 1_800_000_000_000;

        fn pool_view(local: &[u8]) -> PoolView {
            let mut view = PoolView::starting(node("me"), 1);
            view.ready = true;
            view.available = Arc::new(AvailableView::new(
                1,
                local.len() as u64,
                local.iter().map(|n| local_entry(*n)).collect::<Vec<_>>(),
            ));
            view.status = PoolStatus {
                loaded: true,
                store: StoreHealth::Healthy,
                ..view.status
            };
            view
        }

        fn local_entry(n: u8) -> AvailableRegister {
            AvailableRegister {
                name: Some(format!("remote {n}").into()),
                latest_version: u64::from(n) * 10,
                ..local(n)
            }
        }

        struct Fixture {
            pool: Published<PoolView>,
            merged: View<PoolView>,
            store: InMemoryGossipStore,
            driver: ActorRef<GossipDriverMsg>,
            _shared: Arc<ClusterShared>,
        }

        /// A driver on a clock the test sets, over a pool view the test publishes, restoring
        /// from a store that holds `other`'s record (registers 1 and 2).
        async fn fixture() -> Fixture {
            let clock = ManualClock::new(Timestamp::from_unix_millis(START));
            let store = InMemoryGossipStore::new();
            let stored = record(
                "other",
                vec![ad(1, SyncState::Active), ad(2, SyncState::Active)],
            );
            store
                .write(&GossipBatch {
                    puts: vec![&stored],
                    deletes: Vec::new(),
                })
                .await
                .unwrap();
            let (shared, cluster) = ClusterShared::new(MemberInfo {
                node_id: node("me"),
                incarnation: 42,
                revision: 1,
                roles: vec![Role::Peer],
                cluster_address: "127.0.0.1:1".into(),
                http_address: None,
                grpc_address: None,
                started_at: Timestamp::from_unix_millis(START),
                current_hub: None,
                hub_connection: None,
            });
            let pool = Published::new(pool_view(&[5]));
            let merged = Published::new(PoolView::starting(node("me"), 2));
            let clock: Arc<dyn Clock> = Arc::new(clock);
            let args = GossipDriverArgs {
                node_id: node("me"),
                settings: GossipSettings::defaults(Duration::from_secs(60)),
                client: GatewayClient::new(node("me"), 42, Arc::clone(&clock)),
                clock,
                cluster,
                pool: pool.view(),
                published: merged.clone(),
                store: Some(Arc::new(store.clone())),
                call_timeout: Duration::from_secs(5),
            };
            let (driver, _) = Actor::spawn(None, GossipDriver, args).await.unwrap();
            Fixture {
                pool,
                merged: merged.view(),
                store,
                driver,
                _shared: shared,
            }
        }

        async fn until(view: &View<PoolView>, ready: impl Fn(&PoolView) -> bool) -> Arc<PoolView> {
            tokio::time::timeout(Duration::from_secs(30), view.wait_for(ready))
                .await
                .expect("the merged view in time")
                .expect("the view's handle")
        }

        fn ids(view: &PoolView) -> Vec<RegisterId> {
            view.available
                .iter()
                .map(|register| register.register_id.clone())
                .collect()
        }

        #[tokio::test(start_paused = true)]
        async fn the_merged_answer_shares_the_pools_and_its_version_follows_what_it_shows() {
            let fixture = fixture().await;
            let first = until(&fixture.merged, |view| view.ready).await;
            let pool = fixture.pool.latest();
            assert!(Arc::ptr_eq(
                first.available.base().unwrap(),
                &pool.available
            ));
            // Only the origin's two registers are held here; the pool's one is shared.
            assert_eq!(first.available.registers().len(), 2);
            assert_eq!(first.available.len(), 3);

            // The pool's answer anew under its version, changed only where the gossip looks
            // (this node's sync state): laid over the new one, the version kept.
            let mut quiet = (*pool).clone();
            let mut registers: Vec<_> = pool.available.iter().cloned().collect();
            registers[0].local_state = Some(SyncState::Syncing);
            quiet.available = Arc::new(AvailableView::new(1, pool.available.version, registers));
            let quiet_answer = Arc::clone(&quiet.available);
            fixture.pool.publish(quiet);
            let view = until(&fixture.merged, |view| {
                view.available
                    .base()
                    .is_some_and(|base| Arc::ptr_eq(base, &quiet_answer))
            })
            .await;
            assert_eq!(view.available.version, first.available.version);
            assert_eq!(view.available.etag(), first.available.etag());

            // A change the answer shows: a new version.
            fixture.pool.publish(pool_view(&[5, 6]));
            let view = until(&fixture.merged, |view| view.available.len() == 4).await;
            assert_eq!(view.available.version, first.available.version + 1);
            fixture.driver.stop(None);
        }

        #[tokio::test(start_paused = true)]
        async fn restores_merges_persists_and_refuses_a_bad_entry() {
            let fixture = fixture().await;
            // The stored origin's registers beside this node's own, at once.
            let view = until(&fixture.merged, |view| view.ready).await;
            assert_eq!(ids(&view), vec![register(1), register(2), register(5)]);
            let gossip = view.status.gossip.clone().expect("the gossip's status");
            assert_eq!((gossip.remote_ads, gossip.origins), (2, 1));
            assert!(!gossip.partitioned);
            assert!(view.available.iter().all(|r| r.peer_count == 1));

            // This node's own record reaches the store after the debounce.
            tokio::time::sleep(Duration::from_secs(2)).await;
            let stored = fixture.store.records();
            let own = stored.get(&node("me")).expect("this node's record stored");
            // Where it stands, not its entries: a restart issues them anew from the pool.
            assert_eq!((own.max, own.entries.len()), (1, 0));
            assert!(stored.contains_key(&node("other")));

            // The origin continues its record: a good entry, then one over the name limit.
            let mut long = AdInput::public(register(4));
            long.name = Some("x".repeat(MAX_NAME_LEN + 1).into());
            let entries: Vec<Arc<GossipEntry>> = vec![
                Arc::new(GossipEntry::live(3, ad(3, SyncState::Active))),
                Arc::new(GossipEntry::live(
                    4,
                    GossipAd::from_input(&long, SyncState::Active).unwrap(),
                )),
            ];
            let delta = OriginDelta {
                origin: node("other"),
                incarnation: 1,
                from: 2,
                to: 4,
                sender_max: 4,
                floor: 0,
                entries: EntryRun::whole(Arc::from(entries)),
            };
            fixture
                .driver
                .cast(GossipDriverMsg::Received {
                    from: node("other"),
                    message: GossipMessage::Ack2 {
                        deltas: vec![delta],
                        bump: None,
                    },
                    bytes: 100,
                })
                .unwrap();
            let view = until(&fixture.merged, |view| {
                view.status
                    .gossip
                    .as_ref()
                    .is_some_and(|g| g.refused_entries == 1)
            })
            .await;
            // Counted, never applied; what was shown stays shown. (The good entry before it
            // waits, staged, for a sender that can complete the record: a cut record is not
            // exact, so it is not shown.)
            assert_eq!(ids(&view), vec![register(1), register(2), register(5)]);

            // A store outage is reported and written through once it ends.
            fixture.store.set_down(true);
            fixture.pool.publish(pool_view(&[5, 6]));
            let view = until(&fixture.merged, |view| {
                view.status
                    .gossip
                    .as_ref()
                    .is_some_and(|g| g.store_error.is_some())
            })
            .await;
            assert!(ids(&view).contains(&register(6)));
            fixture.store.set_down(false);
            until(&fixture.merged, |view| {
                view.status
                    .gossip
                    .as_ref()
                    .is_some_and(|g| g.store_error.is_none())
            })
            .await;
            let own = fixture.store.records()[&node("me")].clone();
            assert!(own.max >= 2 && own.entries.is_empty(), "{own:?}");
            fixture.driver.stop(None);
        }
    }
}
