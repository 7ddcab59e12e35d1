//! A deterministic simulation of the gossip protocol (feature `testing`): many `GossipState`s
//! in one process, simulated time, and a simulated network that loses, delays, reorders,
//! duplicates and partitions messages; nodes crash and restart from what their store held a
//! while before the crash. An oracle follows every origin's history and checks, after every
//! change at every node, that the record shown is exact as of its version (so a withdrawn ad
//! that comes back, an ad that is lost, or a stale value are all caught), that positions never
//! go backwards, and that no private ad is on the wire. Used by the test suite
//! (`tests/actors/gossip_simulation.rs`) and the bench (`benches/gossip.rs`).
//!
//! Time is counted in ticks, `ticks_per_round` to a round; each node starts its rounds at its
//! own tick of the round. Everything random comes from one seed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use herald_messages::{
    AdSource, Advertisement, GossipAd, GossipMessage, MemberState, NodeId, PersistedGossip,
    RegisterId, SyncState, Timestamp,
};

use super::state::{GossipConfig, GossipState, OriginChange, SplitMix64, position_hash};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub ads_per_node: usize,
    /// Private ads each node also has (they must never leave it).
    pub private_per_node: usize,
    /// Registers are drawn from `nodes × ads_per_node / sharing` ids, so a register has about
    /// `sharing` sources.
    pub sharing: usize,
    pub seed: u64,
    pub gossip: GossipConfig,
    /// Simulated length of a round (the gossip interval).
    pub round: Duration,
    pub ticks_per_round: u64,
    /// Share of messages lost.
    pub loss: f64,
    /// Share of messages delivered twice.
    pub duplicate: f64,
    /// Delays are drawn from `1..=max_delay_ticks` (so messages overtake each other).
    pub max_delay_ticks: u64,
    /// Share of messages held back for `long_delay_rounds` (longer than the tombstone TTL).
    pub long_delay: f64,
    pub long_delay_rounds: std::ops::Range<u64>,
    /// Waves of changes after the bootstrap: each changes the ads of this share of the nodes.
    pub waves: usize,
    pub wave_share: f64,
    /// A partition of this share of the nodes for this many rounds (0: none), with a wave of
    /// changes on both sides while it lasts.
    pub partition_share: f64,
    pub partition_rounds: u64,
    /// Nodes that crash, stay down for `down_rounds`, and restart from the store as it was
    /// `store_lag_rounds` before the crash.
    pub crashes: usize,
    pub down_rounds: u64,
    pub store_lag_rounds: u64,
    /// Nodes that serve continuations over withdrawals they collected (stale or buggy
    /// senders): receivers must refuse what they send.
    pub careless_senders: usize,
    /// Give up waiting for convergence after this many rounds (the run then fails).
    pub patience_rounds: u64,
}

impl SimConfig {
    /// The configuration of the test suite's run for `nodes` nodes (faults included).
    pub fn standard(nodes: usize, seed: u64) -> Self {
        let round = Duration::from_secs(1);
        Self {
            nodes,
            ads_per_node: 100,
            private_per_node: 2,
            sharing: 3,
            seed,
            gossip: GossipConfig {
                fanout: 3,
                message_budget: 256 * 1024,
                ad_ttl: round * 30,
                stale_grace: round * 300,
                tombstone_ttl: round * 10,
                retention: round * 3600,
            },
            round,
            ticks_per_round: 10,
            loss: 0.10,
            duplicate: 0.02,
            max_delay_ticks: 12,
            long_delay: 0.002,
            long_delay_rounds: 22..30,
            waves: 2,
            wave_share: 0.05,
            partition_share: 0.2,
            partition_rounds: 30,
            crashes: (nodes / 50).clamp(2, 20),
            down_rounds: 8,
            store_lag_rounds: 3,
            careless_senders: (nodes / 50).max(1),
            patience_rounds: 400,
        }
    }
}

/// What a run measured. Violations are counted, not panicked on, so a test can assert them
/// and a bench can report them.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    pub nodes: usize,
    /// Rounds until every node held every origin, from empty.
    pub bootstrap_rounds: u64,
    pub bootstrap_bytes_per_node_round: f64,
    /// Rounds until every node held each wave of changes.
    pub wave_rounds: Vec<u64>,
    pub wave_bytes_per_node_round: f64,
    /// Rounds after the partition healed until everyone held everything again.
    pub heal_rounds: Option<u64>,
    /// Rounds after the last crashed node restarted until everyone held everything again.
    pub restart_rounds: Option<u64>,
    /// Bytes per node per round with nothing changing (digests only).
    pub steady_bytes_per_node_round: f64,
    pub messages: u64,
    pub bytes: u64,
    pub lost: u64,
    pub long_delayed: u64,
    /// Long-delayed messages delivered after the tombstone TTL had passed.
    pub delivered_after_ttl: u64,
    pub withdrawals: u64,
    pub withdrawals_collected: u64,
    pub rebuilds: u64,
    pub unusable_deltas: u64,
    pub bumps: u64,
    /// A shown record that was not exact as of its version.
    pub inexact_records: u64,
    /// Of those: a register the origin had withdrawn at that version shown live.
    pub resurrections: u64,
    /// A shown record whose position went backwards.
    pub regressions: u64,
    /// Private ads seen on the wire.
    pub private_leaks: u64,
    /// Sampled nodes whose per-register counts differed from the oracle's at the end.
    pub wrong_counts: u64,
    /// First violations, described.
    pub failures: Vec<String>,
}

impl SimReport {
    /// Whether every property held.
    pub fn is_clean(&self) -> bool {
        self.inexact_records == 0
            && self.resurrections == 0
            && self.regressions == 0
            && self.private_leaks == 0
            && self.wrong_counts == 0
    }
}

/// Why a run could not finish.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no convergence within {rounds} rounds during {phase}: {detail}")]
    NoConvergence {
        phase: &'static str,
        rounds: u64,
        detail: String,
    },
}

/// Runs the simulation.
pub fn run(config: &SimConfig) -> Result<SimReport, SimError> {
    Sim::new(config.clone()).run()
}

/// One message on the simulated wire.
struct Envelope {
    from: usize,
    to: usize,
    message: GossipMessage,
    sent_round: u64,
}

/// One origin's history per incarnation, for the checks.
#[derive(Default)]
struct History {
    /// By version (index 0: nothing): live ads and the sum of their fingerprints as of it.
    states: Vec<(usize, u64)>,
    /// By version: the register and whether the entry is live.
    events: Vec<(RegisterId, bool)>,
    current: HashMap<RegisterId, u64>,
}

struct Oracle {
    /// By origin index, by incarnation.
    histories: Vec<HashMap<u64, History>>,
    /// The last position of every origin the oracle followed.
    positions: Vec<(u64, u64)>,
}

impl Oracle {
    /// Follows `node`'s own record after anything that may have changed it.
    fn follow(&mut self, index: usize, node: &GossipState) {
        let own = node.own();
        let position = (own.incarnation(), own.max());
        if position == self.positions[index] {
            return;
        }
        let fresh = position.0 != self.positions[index].0;
        self.positions[index] = position;
        let history = self.histories[index].entry(position.0).or_default();
        if fresh {
            *history = History {
                states: vec![(0, 0)],
                ..History::default()
            };
        }
        let known = history.states.len() as u64 - 1;
        let (mut live, mut sum) = *history.states.last().expect("state 0");
        for entry in own.entries().iter().filter(|entry| entry.version() > known) {
            // The oracle follows a node after every call that may issue versions, and a call
            // issues at most one per register, so none was superseded unseen.
            assert_eq!(
                history.states.len() as u64,
                entry.version(),
                "the oracle missed a version of an origin"
            );
            if let Some(old) = history.current.remove(entry.register_id()) {
                live -= 1;
                sum = sum.wrapping_sub(old);
            }
            if !entry.is_withdrawal() {
                live += 1;
                sum = sum.wrapping_add(entry.fingerprint());
                history
                    .current
                    .insert(entry.register_id().clone(), entry.fingerprint());
            }
            history.states.push((live, sum));
            history
                .events
                .push((entry.register_id().clone(), !entry.is_withdrawal()));
        }
    }
}

struct Sim {
    config: SimConfig,
    rng: SplitMix64,
    ids: Vec<NodeId>,
    index_of: HashMap<NodeId, usize>,
    nodes: Vec<Option<GossipState>>,
    /// Each node's pool: its ads, private ones included.
    pools: Vec<Vec<Advertisement>>,
    /// Stores: what each node persisted, and when.
    stores: Vec<Option<PersistedGossip>>,
    /// Per node: which side of the partition it is on (0 when none).
    side: Vec<u8>,
    tick: u64,
    wire: BTreeMap<u64, Vec<Envelope>>,
    oracle: Oracle,
    report: SimReport,
    bytes_this_phase: u64,
    registers: usize,
    changes_made: u64,
    last_digest: Option<(Arc<herald_messages::Digest>, u64)>,
}

impl Sim {
    fn new(config: SimConfig) -> Self {
        let ids: Vec<NodeId> = (0..config.nodes)
            .map(|index| NodeId::parse(&format!("node-{index:05}")).expect("a valid node id"))
            .collect();
        let index_of = ids
            .iter()
            .enumerate()
            .map(|(index, id)| (id.clone(), index))
            .collect();
        let registers = (config.nodes * config.ads_per_node / config.sharing.max(1)).max(1);
        let nodes = config.nodes;
        Self {
            rng: SplitMix64(config.seed),
            ids,
            index_of,
            nodes: (0..nodes).map(|_| None).collect(),
            pools: vec![Vec::new(); nodes],
            stores: vec![None; nodes],
            side: vec![0; nodes],
            tick: 0,
            wire: BTreeMap::new(),
            oracle: Oracle {
                histories: (0..nodes).map(|_| HashMap::new()).collect(),
                positions: vec![(0, 0); nodes],
            },
            report: SimReport {
                nodes,
                ..SimReport::default()
            },
            bytes_this_phase: 0,
            registers,
            changes_made: 0,
            last_digest: None,
            config,
        }
    }

    fn now(&self) -> Timestamp {
        // Start well after the epoch, so clock incarnations are large.
        let millis = self.tick * self.tick_millis();
        Timestamp::from_unix_millis(1_700_000_000_000 + millis as i64)
    }

    fn tick_millis(&self) -> u64 {
        (self.config.round.as_millis() as u64 / self.config.ticks_per_round).max(1)
    }

    fn round(&self) -> u64 {
        self.tick / self.config.ticks_per_round
    }

    fn run(mut self) -> Result<SimReport, SimError> {
        let now = self.now();
        for index in 0..self.config.nodes {
            for _ in 0..self.config.ads_per_node {
                let ad = self.public_ad(index, now);
                self.pools[index].push(ad);
            }
            for private in 0..self.config.private_per_node {
                self.pools[index].push(private_ad(index, private, now));
            }
            let seed = self.rng.next_u64();
            let mut node = GossipState::new(self.ids[index].clone(), self.config.gossip, now, seed);
            if index < self.config.careless_senders {
                node.serve_carelessly();
            }
            node.set_local(&public_of(&self.pools[index]), now);
            self.oracle.follow(index, &node);
            self.nodes[index] = Some(node);
        }
        self.publish_members();

        // Bootstrap: from nothing to everything.
        let (rounds, bytes) = self.until_converged("bootstrap")?;
        self.report.bootstrap_rounds = rounds;
        self.report.bootstrap_bytes_per_node_round = bytes;

        // Steady state: nothing changes.
        let steady = 5;
        self.bytes_this_phase = 0;
        for _ in 0..steady * self.config.ticks_per_round {
            self.step();
        }
        self.report.steady_bytes_per_node_round =
            self.bytes_this_phase as f64 / (steady as f64 * self.config.nodes as f64);

        // Waves of changes.
        let mut wave_bytes = 0.0;
        for _ in 0..self.config.waves {
            self.change_wave(self.config.wave_share);
            let (rounds, bytes) = self.until_converged("a wave of changes")?;
            self.report.wave_rounds.push(rounds);
            wave_bytes += bytes;
        }
        if self.config.waves > 0 {
            self.report.wave_bytes_per_node_round = wave_bytes / self.config.waves as f64;
        }

        if self.config.partition_rounds > 0 && self.config.partition_share > 0.0 {
            self.partition();
        }
        if self.config.crashes > 0 {
            self.crash_and_restart()?;
        }
        // Wait for the long-delayed messages to land, then check the end state again.
        let last_landing = self.config.long_delay_rounds.end + 1;
        for _ in 0..last_landing * self.config.ticks_per_round {
            self.step();
        }
        self.until_converged("the end")?;
        self.check_counts();
        let mut report = self.report;
        for node in self.nodes.iter().flatten() {
            let counters = node.counters();
            report.withdrawals_collected += counters.withdrawals_collected;
            report.rebuilds += counters.rebuilds_started;
            report.unusable_deltas += counters.unusable_deltas;
            report.bumps += counters.bumps;
        }
        Ok(report)
    }

    /// A partition of `partition_share` of the nodes, with changes on both sides, longer than
    /// the tombstone TTL; then it heals.
    fn partition(&mut self) {
        let share = self.config.partition_share;
        for index in 0..self.config.nodes {
            self.side[index] = if self.rng.chance(share) { 1 } else { 2 };
        }
        self.publish_members();
        let rounds = self.config.partition_rounds;
        for round in 0..rounds {
            if round == rounds / 3 {
                self.change_wave(self.config.wave_share);
            }
            for _ in 0..self.config.ticks_per_round {
                self.step();
            }
        }
        self.side.iter_mut().for_each(|side| *side = 0);
        self.publish_members();
        if let Ok((rounds, _)) = self.until_converged("healing a partition") {
            self.report.heal_rounds = Some(rounds);
        }
    }

    /// Crashes nodes (each restarts from its store as it was `store_lag_rounds` before the
    /// crash, so versions it issued since are lost with it), then crashes the first of them
    /// again and brings it back on the store of before its first crash with its clock an hour
    /// behind: it takes an incarnation others have seen exceeded, and must be told to bump.
    fn crash_and_restart(&mut self) -> Result<(), SimError> {
        let mut crashed: Vec<usize> = (0..self.config.crashes)
            .map(|_| self.rng.below(self.config.nodes))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        crashed.sort_unstable();
        for &index in &crashed {
            self.stores[index] = self.persisted(index);
        }
        let first_store = self.stores[crashed[0]].clone();
        // Changes the store will not hold.
        for &index in &crashed {
            self.change_node(index);
        }
        self.crash(&crashed);
        let now = self.now();
        for &index in &crashed {
            let store = self.stores[index].take();
            self.restart(index, store, now);
        }
        self.publish_members();
        let (rounds, _) = self.until_converged("restarts")?;
        self.report.restart_rounds = Some(rounds);

        let again = crashed[0];
        self.crash(&[again]);
        let behind = self.now().saturating_sub(Duration::from_secs(3600));
        self.restart(again, first_store, behind);
        self.publish_members();
        self.until_converged("a restart on an old store")?;
        Ok(())
    }

    /// Stops `nodes` after `store_lag_rounds`, and keeps them down for `down_rounds`.
    fn crash(&mut self, nodes: &[usize]) {
        for _ in 0..self.config.store_lag_rounds * self.config.ticks_per_round {
            self.step();
        }
        for &index in nodes {
            self.nodes[index] = None;
        }
        self.publish_members();
        for _ in 0..self.config.down_rounds * self.config.ticks_per_round {
            self.step();
        }
    }

    /// Starts `index` again from `store` (or from nothing), its clock reading `clock`.
    fn restart(&mut self, index: usize, store: Option<PersistedGossip>, clock: Timestamp) {
        let seed = self.rng.next_u64();
        let id = self.ids[index].clone();
        let mut node = match store {
            Some(store) => GossipState::restore(id, self.config.gossip, store, clock, seed)
                .expect("the store is this node's"),
            None => GossipState::new(id, self.config.gossip, clock, seed),
        };
        if index < self.config.careless_senders {
            node.serve_carelessly();
        }
        self.oracle.follow(index, &node);
        node.set_local(&public_of(&self.pools[index]), clock);
        self.oracle.follow(index, &node);
        self.nodes[index] = Some(node);
    }

    fn persisted(&self, index: usize) -> Option<PersistedGossip> {
        self.nodes[index].as_ref().map(GossipState::persisted)
    }

    /// Runs until every running node holds every origin's latest position; returns the
    /// rounds it took and the bytes per node per round meanwhile.
    fn until_converged(&mut self, phase: &'static str) -> Result<(u64, f64), SimError> {
        self.bytes_this_phase = 0;
        let start = self.round();
        loop {
            let rounds = self.round() - start;
            if self.converged() {
                let running = self.nodes.iter().flatten().count().max(1);
                let per_node_round =
                    self.bytes_this_phase as f64 / (rounds.max(1) as f64 * running as f64);
                return Ok((rounds, per_node_round));
            }
            if rounds >= self.config.patience_rounds {
                return Err(SimError::NoConvergence {
                    phase,
                    rounds,
                    detail: self.lagging(),
                });
            }
            for _ in 0..self.config.ticks_per_round {
                self.step();
            }
        }
    }

    /// The first node behind on an origin, and where each stands.
    fn lagging(&self) -> String {
        for (index, node) in self.nodes.iter().enumerate() {
            let Some(node) = node else { continue };
            for (origin, position) in self.oracle.positions.iter().enumerate() {
                let mine = node.position_of(&self.ids[origin]);
                let shown = mine.as_ref().map(|entry| (entry.incarnation, entry.max));
                if shown != Some(*position) {
                    let holder = self.nodes[origin].as_ref().map(|origin| {
                        let own = origin.own();
                        (own.incarnation(), own.max(), own.floor())
                    });
                    return format!(
                        "node {index} holds {mine:?} of origin {origin}, which is at {position:?} \
                         (own record {holder:?}); counters {:?}",
                        node.counters()
                    );
                }
            }
        }
        "nobody lags (a node's knowledge hash is off)".to_owned()
    }

    fn converged(&self) -> bool {
        let expected = self.oracle.positions.iter().enumerate().fold(
            0u64,
            |sum, (index, (incarnation, max))| {
                sum.wrapping_add(position_hash(&self.ids[index], *incarnation, *max))
            },
        );
        self.nodes
            .iter()
            .flatten()
            .all(|node| node.knowledge_hash() == expected)
    }

    /// One tick: deliver what is due, then start the rounds of the nodes whose turn it is.
    fn step(&mut self) {
        let now = self.now();
        let due = self.wire.remove(&self.tick).unwrap_or_default();
        let mut due = due;
        for index in (1..due.len()).rev() {
            let pick = self.rng.below(index + 1);
            due.swap(index, pick);
        }
        for envelope in due {
            self.deliver(envelope, now);
        }
        let phase = self.tick % self.config.ticks_per_round;
        for index in 0..self.config.nodes {
            if index as u64 % self.config.ticks_per_round != phase {
                continue;
            }
            let Some(node) = self.nodes[index].as_mut() else {
                continue;
            };
            let sends = node.on_round(now);
            for (to, message) in sends {
                let to = self.index_of[&to];
                self.send(index, to, message);
            }
        }
        self.tick += 1;
    }

    fn deliver(&mut self, envelope: Envelope, now: Timestamp) {
        let Envelope {
            from,
            to,
            message,
            sent_round,
        } = envelope;
        if self.separated(from, to) {
            return;
        }
        if self.round() > sent_round + tombstone_rounds(&self.config) * 2 {
            self.report.delivered_after_ttl += 1;
        }
        let Some(node) = self.nodes[to].as_mut() else {
            return;
        };
        let handled = node.on_message(now, &self.ids[from], message);
        self.oracle
            .follow(to, self.nodes[to].as_ref().expect("running"));
        for change in &handled.changes {
            self.check(to, change);
        }
        for (reply_to, message) in handled.replies {
            let reply_to = self.index_of[&reply_to];
            self.send(to, reply_to, message);
        }
    }

    fn send(&mut self, from: usize, to: usize, message: GossipMessage) {
        self.report.messages += 1;
        // A round sends one digest to several members: measure it once.
        let size = match &message {
            GossipMessage::Syn { digest, .. } => {
                let same = self
                    .last_digest
                    .as_ref()
                    .is_some_and(|(last, _)| Arc::ptr_eq(last, digest));
                if !same {
                    self.last_digest = Some((Arc::clone(digest), message.wire_size() as u64));
                }
                self.last_digest.as_ref().expect("just set").1
            }
            _ => message.wire_size() as u64,
        };
        self.report.bytes += size;
        self.bytes_this_phase += size;
        for delta in message.deltas() {
            let leaked = delta
                .entries
                .as_slice()
                .iter()
                .filter(|entry| is_private(entry.register_id()))
                .count();
            self.report.private_leaks += leaked as u64;
        }
        if self.rng.chance(self.config.loss) {
            self.report.lost += 1;
            return;
        }
        let copies = if self.rng.chance(self.config.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = if self.rng.chance(self.config.long_delay) {
                self.report.long_delayed += 1;
                let range = &self.config.long_delay_rounds;
                let rounds =
                    range.start + self.rng.below((range.end - range.start) as usize) as u64;
                rounds * self.config.ticks_per_round
            } else {
                1 + self.rng.below(self.config.max_delay_ticks as usize) as u64
            };
            let message = message.clone();
            let sent_round = self.round();
            self.wire
                .entry(self.tick + delay)
                .or_default()
                .push(Envelope {
                    from,
                    to,
                    message,
                    sent_round,
                });
        }
    }

    fn separated(&self, a: usize, b: usize) -> bool {
        self.side[a] != self.side[b]
    }

    /// Tells every running node how the membership sees the others: ready when running and on
    /// its side, unreachable otherwise.
    fn publish_members(&mut self) {
        let now = self.now();
        let lists: Vec<Vec<(NodeId, MemberState)>> = [0u8, 1, 2]
            .iter()
            .map(|&side| {
                (0..self.config.nodes)
                    .map(|other| {
                        let reachable = self.nodes[other].is_some() && (self.side[other] == side);
                        let state = if reachable {
                            MemberState::Ready
                        } else {
                            MemberState::Unreachable
                        };
                        (self.ids[other].clone(), state)
                    })
                    .collect()
            })
            .collect();
        for index in 0..self.config.nodes {
            let side = usize::from(self.side[index]);
            if let Some(node) = self.nodes[index].as_mut() {
                node.set_members(now, &lists[side], &[]);
            }
        }
    }

    /// Changes the ads of `share` of the running nodes (at least one).
    fn change_wave(&mut self, share: f64) {
        let mut changed = 0;
        for index in 0..self.config.nodes {
            if self.nodes[index].is_some() && self.rng.chance(share) {
                self.change_node(index);
                changed += 1;
            }
        }
        if changed == 0
            && let Some(index) = (0..self.config.nodes).find(|&index| self.nodes[index].is_some())
        {
            self.change_node(index);
        }
    }

    /// Withdraws two ads, updates two, adds one (some re-adding a register withdrawn before).
    fn change_node(&mut self, index: usize) {
        let now = self.now();
        let publics: Vec<usize> = (0..self.pools[index].len())
            .filter(|&at| self.pools[index][at].is_public)
            .collect();
        for _ in 0..2 {
            let at = publics[self.rng.below(publics.len())];
            let ad = &mut self.pools[index][at];
            if !is_private(&ad.register_id) && ad.is_public {
                ad.is_public = false;
                self.report.withdrawals += 1;
            }
        }
        for _ in 0..2 {
            let at = publics[self.rng.below(publics.len())];
            self.pools[index][at].latest_version += 1;
        }
        let withdrawn: Vec<usize> = (0..self.pools[index].len())
            .filter(|&at| {
                let ad = &self.pools[index][at];
                !ad.is_public && !is_private(&ad.register_id)
            })
            .collect();
        if !withdrawn.is_empty() && self.rng.chance(0.5) {
            let at = withdrawn[self.rng.below(withdrawn.len())];
            self.pools[index][at].is_public = true;
        } else {
            let ad = self.public_ad(index, now);
            self.pools[index].push(ad);
        }
        self.changes_made += 1;
        if let Some(node) = self.nodes[index].as_mut() {
            node.set_local(&public_of(&self.pools[index]), now);
            self.oracle
                .follow(index, self.nodes[index].as_ref().expect("running"));
        }
    }

    /// A new public ad for `node`'s pool, of a register it does not have yet.
    fn public_ad(&mut self, node: usize, now: Timestamp) -> Advertisement {
        let (register, register_id) = loop {
            let register = self.rng.below(self.registers) as u64;
            let mut bytes = [0u8; 16];
            bytes[..8].copy_from_slice(&register.to_be_bytes());
            let register_id = RegisterId::from_bytes(bytes); // never the private prefix
            if !self.pools[node]
                .iter()
                .any(|ad| ad.register_id == register_id)
            {
                break (register, register_id);
            }
        };
        let sync_state = if self.rng.chance(0.7) {
            SyncState::FullyReplicated
        } else {
            SyncState::Syncing
        };
        Advertisement {
            register_id,
            source: AdSource::Local,
            sync_state,
            is_public: true,
            latest_version: self.rng.below(1_000_000) as u64,
            latest_docket_version: 1,
            name: Some(format!("register-{register}").into()),
            description: None,
            refreshed_at: now,
            changed_at: now,
        }
    }

    /// Checks a change of the record `node` shows of `change.origin` against the oracle.
    fn check(&mut self, node: usize, change: &OriginChange) {
        let Some(after) = &change.after else {
            return;
        };
        let summary = after.summary();
        if let Some(before) = &change.before
            && (before.incarnation(), before.max()) > (summary.incarnation, summary.max)
        {
            self.report.regressions += 1;
            self.fail(format!(
                "node {node} moved {} back from {:?} to {:?}",
                change.origin,
                (before.incarnation(), before.max()),
                (summary.incarnation, summary.max)
            ));
        }
        let origin = self.index_of[&change.origin];
        let expected = self.oracle.histories[origin]
            .get(&summary.incarnation)
            .and_then(|history| history.states.get(summary.max as usize))
            .copied();
        if expected == Some((summary.live, summary.fingerprint)) {
            return;
        }
        self.report.inexact_records += 1;
        // Describe it: which shown ads are withdrawn at that version (resurrections)?
        let mut resurrected = Vec::new();
        if let Some(history) = self.oracle.histories[origin].get(&summary.incarnation) {
            for ad in after.live_ads() {
                let last = history.events[..(summary.max as usize).min(history.events.len())]
                    .iter()
                    .rev()
                    .find(|(register, _)| register == ad.register_id());
                if let Some((_, false)) = last {
                    resurrected.push(ad.register_id().clone());
                }
            }
        }
        if !resurrected.is_empty() {
            self.report.resurrections += resurrected.len() as u64;
        }
        self.fail(format!(
            "node {node} shows {} at {:?} with {} live (fingerprint {:x}), expected {:?}; \
             withdrawn but shown: {resurrected:?}",
            change.origin,
            (summary.incarnation, summary.max),
            summary.live,
            summary.fingerprint,
            expected
        ));
    }

    /// Compares a few nodes' per-register counts with the oracle's.
    fn check_counts(&mut self) {
        let mut expected: BTreeMap<RegisterId, (usize, usize)> = BTreeMap::new();
        for pool in &self.pools {
            for ad in pool.iter().filter(|ad| ad.is_public) {
                let counts = expected.entry(ad.register_id.clone()).or_default();
                counts.0 += 1;
                counts.1 += usize::from(ad.sync_state.is_full_replica());
            }
        }
        let now = self.now();
        let running: Vec<usize> = (0..self.config.nodes)
            .filter(|&index| self.nodes[index].is_some())
            .collect();
        for sample in 0..3.min(running.len()) {
            let index = running[(sample * 7919) % running.len()];
            let view = self.nodes[index].as_ref().expect("running").view(now);
            let seen: BTreeMap<RegisterId, (usize, usize)> = view
                .registers
                .iter()
                .map(|sources| {
                    (
                        sources.register_id.clone(),
                        (sources.peer_count, sources.full_replica_peer_count),
                    )
                })
                .collect();
            if seen != expected {
                self.report.wrong_counts += 1;
                let wrong = expected
                    .iter()
                    .find(|(register, counts)| seen.get(*register) != Some(counts))
                    .map(|(register, counts)| (register.clone(), *counts, seen.get(register)));
                self.fail(format!("node {index} counts differ, first: {wrong:?}"));
            }
        }
    }

    fn fail(&mut self, description: String) {
        if self.report.failures.len() < 10 {
            self.report.failures.push(description);
        }
    }
}

fn tombstone_rounds(config: &SimConfig) -> u64 {
    (config.gossip.tombstone_ttl.as_millis() / config.round.as_millis().max(1)) as u64
}

/// The public ads of a pool, as the gossip takes them: private ones cannot pass.
fn public_of(pool: &[Advertisement]) -> Vec<GossipAd> {
    pool.iter()
        .filter_map(|ad| GossipAd::from_advertisement(ad).ok())
        .collect()
}

/// Private register ids start with `ff` (public ones never do), so the wire check is cheap.
fn private_ad(node: usize, which: usize, now: Timestamp) -> Advertisement {
    let mut bytes = [0xff; 16];
    bytes[8..16].copy_from_slice(&((node * 1000 + which) as u64).to_be_bytes());
    Advertisement {
        register_id: RegisterId::from_bytes(bytes),
        source: AdSource::Local,
        sync_state: SyncState::Active,
        is_public: false,
        latest_version: 1,
        latest_docket_version: 1,
        name: Some("private".into()),
        description: None,
        refreshed_at: now,
        changed_at: now,
    }
}

fn is_private(register_id: &RegisterId) -> bool {
    // Public ids start with `00` (registers are numbered below 2^56).
    register_id.as_bytes()[0] == b'f'
}
