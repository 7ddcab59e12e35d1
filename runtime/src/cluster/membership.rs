//! `Membership`: the pure part of the cluster link. Events in (a session became ready or was
//! lost, a ping was answered or missed, a member described itself, a dial failed, time passed),
//! actions out (dial this address, ping, ask for a description, close a suspected member's
//! session) and a log of state changes. Every method takes `now`; nothing here does I/O, so
//! the rules are tested without sockets or clocks.
//!
//! The rules, for each member other than this node:
//! - **Ready** once a session to it is authenticated and its handshake done; it stays ready
//!   while pings are answered. A ping missed while this process itself stalled is excused by
//!   the caller and never reaches `ping_missed`.
//! - **Suspect** after `suspect_after` pings missed in a row: its session is closed (so it gets
//!   no backlog when it wakes) and it is redialed with backoff.
//! - **Connecting** when it is first learned, and after a clean loss of its session (redialed at
//!   once).
//! - **Unreachable** when a dial fails, or when it has been suspect for `unreachable_after`.
//!   A member learned from others (not a seed) is forgotten after `forget_after` here.
//!
//! Discovery: a member's description lists the members it knows (`view`); unknown ones are
//! added and dialed, up to `max_members`. Every ping answer carries the member's description
//! revision and a hash of its view: when either changed, it is described again. So a node that
//! joins through one seed learns everyone the seed knows, and everyone learns it when it dials
//! them.
//!
//! Seeds are addresses: one is dialed until a session through it is ready, and the member
//! behind it is pinned (never forgotten).

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;

use herald_actors::{Backoff, BackoffConfig};
use herald_messages::{ClusterMember, MemberInfo, MemberState, NodeId};

/// How members are judged and redialed.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipConfig {
    /// Period of liveness pings (and of the `tick` that sends them).
    pub liveness_interval: Duration,
    /// Pings missed in a row before a member is suspected.
    pub suspect_after: u32,
    /// How long a member may stay suspect before it is called unreachable.
    pub unreachable_after: Duration,
    /// How long a learned member may stay unreachable before it is forgotten.
    pub forget_after: Duration,
    /// Deadline of one dial, from the connect to the ready session.
    pub connect_timeout: Duration,
    /// Delay between redials of one address.
    pub reconnect: BackoffConfig,
    /// Members this node connects to at most (the full mesh up to this size).
    pub max_members: usize,
}

/// What the caller should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a connection to `address` and report it as `dial` (`dial_failed` when it does not
    /// become a ready session).
    Dial { dial: DialId, address: String },
    /// Send a liveness ping; report `pong` or `ping_missed`.
    Ping { node: NodeId },
    /// Ask the member for its description and view; report `described` or `describe_failed`.
    Describe { node: NodeId },
    /// Close every session to the member (it is suspected).
    Close { node: NodeId },
}

/// A change of a member's state, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub node: NodeId,
    pub from: Option<MemberState>,
    pub to: Option<MemberState>,
    pub reason: &'static str,
}

/// Identifies one dial, so a late report of an old one is told from the current one.
pub type DialId = u64;

/// An answer to a ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pong {
    pub incarnation: u64,
    pub revision: u64,
    pub view_hash: u64,
    pub rtt: Duration,
}

/// One known member of the cluster (this node excluded).
#[derive(Debug, Clone)]
struct Member {
    address: Option<String>,
    seed: bool,
    info: Option<MemberInfo>,
    state: MemberState,
    since: Instant,
    /// A ready session exists.
    connected: bool,
    last_seen: Option<Instant>,
    misses: u32,
    ping_in_flight: bool,
    /// A tick came while a ping was in flight: the next ping goes out as soon as it ends, so
    /// a member is pinged every period even when each ping takes its whole deadline.
    ping_owed: bool,
    last_rtt: Option<Duration>,
    describe_in_flight: bool,
    /// The view hash of its last answer: a change asks for a new description.
    view_hash: Option<u64>,
    dial: Dialing,
}

/// Dial state of one address.
#[derive(Debug, Clone)]
struct Dialing {
    in_flight: Option<(DialId, Instant)>,
    next_at: Instant,
    backoff: Backoff,
}

impl Dialing {
    fn new(config: BackoffConfig, now: Instant) -> Self {
        Self {
            in_flight: None,
            next_at: now,
            backoff: Backoff::new(config),
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.in_flight.is_none() && self.next_at <= now
    }

    fn failed(&mut self, now: Instant) {
        self.in_flight = None;
        self.next_at = now + self.backoff.next_delay();
    }

    fn succeeded(&mut self, now: Instant) {
        self.in_flight = None;
        self.backoff.reset();
        self.next_at = now;
    }
}

#[derive(Debug, Clone)]
struct Seed {
    address: String,
    node: Option<NodeId>,
    dial: Dialing,
}

/// The membership as this node sees it.
#[derive(Debug)]
pub struct Membership {
    me: NodeId,
    my_address: String,
    config: MembershipConfig,
    members: BTreeMap<NodeId, Member>,
    seeds: Vec<Seed>,
    next_dial: DialId,
    transitions: Vec<Transition>,
    /// Members not added because `max_members` was reached (reported once each).
    over_limit: Vec<NodeId>,
    /// Members that left gracefully, and when: not dialed, not re-added from others' views
    /// (which may still list them) until `forget_after` has passed, unless they dial in again.
    departed: BTreeMap<NodeId, Instant>,
}

impl Membership {
    /// A membership that knows only `seeds` (addresses; this node's own is skipped).
    pub fn new(
        me: NodeId,
        my_address: String,
        seeds: &[String],
        config: MembershipConfig,
        now: Instant,
    ) -> Self {
        let mut unique: Vec<String> = Vec::new();
        for seed in seeds {
            if *seed != my_address && !unique.contains(seed) {
                unique.push(seed.clone());
            }
        }
        let seeds = unique
            .into_iter()
            .map(|address| Seed {
                address,
                node: None,
                dial: Dialing::new(config.reconnect, now),
            })
            .collect();
        Self {
            me,
            my_address,
            config,
            members: BTreeMap::new(),
            seeds,
            next_dial: 0,
            transitions: Vec::new(),
            over_limit: Vec::new(),
            departed: BTreeMap::new(),
        }
    }

    pub fn me(&self) -> &NodeId {
        &self.me
    }

    pub fn config(&self) -> &MembershipConfig {
        &self.config
    }

    /// The state changes since the last call, oldest first.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// Members learned but not added because `max_members` was reached, since the last call.
    pub fn take_over_limit(&mut self) -> Vec<NodeId> {
        std::mem::take(&mut self.over_limit)
    }

    pub fn state_of(&self, node: &NodeId) -> Option<MemberState> {
        self.members.get(node).map(|member| member.state)
    }

    pub fn is_connected(&self, node: &NodeId) -> bool {
        self.members
            .get(node)
            .is_some_and(|member| member.connected)
    }

    /// Time passed: pings to send, dials that are due or timed out, suspects that became
    /// unreachable, unreachable learned members to forget.
    pub fn tick(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        let mut forget = Vec::new();
        for (node, member) in &mut self.members {
            if let Some((_, deadline)) = member.dial.in_flight
                && deadline <= now
            {
                member.dial.failed(now);
                if !member.connected {
                    set_state(
                        &mut self.transitions,
                        node,
                        member,
                        MemberState::Unreachable,
                        now,
                        "dial timed out",
                    );
                }
            }
            if member.state == MemberState::Suspect
                && now.saturating_duration_since(member.since) >= self.config.unreachable_after
            {
                set_state(
                    &mut self.transitions,
                    node,
                    member,
                    MemberState::Unreachable,
                    now,
                    "suspect for too long",
                );
            }
            if member.state == MemberState::Unreachable
                && !member.seed
                && now.saturating_duration_since(member.since) >= self.config.forget_after
            {
                forget.push(node.clone());
                continue;
            }
            if member.connected {
                if member.ping_in_flight {
                    member.ping_owed = true;
                } else {
                    member.ping_in_flight = true;
                    actions.push(Action::Ping { node: node.clone() });
                }
            }
        }
        for node in forget {
            if let Some(member) = self.members.remove(&node) {
                self.transitions.push(Transition {
                    node,
                    from: Some(member.state),
                    to: None,
                    reason: "unreachable for too long: forgotten",
                });
            }
        }
        for seed in &mut self.seeds {
            if let Some((_, deadline)) = seed.dial.in_flight
                && deadline <= now
            {
                seed.dial.failed(now);
            }
        }
        let forget_after = self.config.forget_after;
        self.departed
            .retain(|_, left| now.saturating_duration_since(*left) < forget_after);
        self.due_dials(now, &mut actions);
        actions
    }

    /// A session to `node` is ready (authenticated, handshake done). `dialed` is the address
    /// this node dialed for it (`None` when the member dialed in).
    pub fn session_ready(
        &mut self,
        node: &NodeId,
        dialed: Option<&str>,
        now: Instant,
    ) -> Vec<Action> {
        if *node == self.me {
            return Vec::new();
        }
        self.departed.remove(node);
        if let Some(address) = dialed {
            for seed in &mut self.seeds {
                if seed.address == address {
                    seed.node = Some(node.clone());
                    seed.dial.succeeded(now);
                }
            }
        }
        let seeded = self
            .seeds
            .iter()
            .any(|seed| seed.node.as_ref() == Some(node));
        let config = self.config.reconnect;
        let member = self
            .members
            .entry(node.clone())
            .or_insert_with(|| Member::new(None, config, now));
        if member.address.is_none() {
            member.address = dialed.map(str::to_owned);
        }
        member.seed |= seeded;
        member.connected = true;
        member.misses = 0;
        member.ping_in_flight = false;
        member.ping_owed = false;
        member.last_seen = Some(now);
        member.dial.succeeded(now);
        set_state(
            &mut self.transitions,
            node,
            member,
            MemberState::Ready,
            now,
            "session ready",
        );
        let mut actions = vec![Action::Ping { node: node.clone() }];
        member.ping_in_flight = true;
        if !member.describe_in_flight {
            member.describe_in_flight = true;
            actions.push(Action::Describe { node: node.clone() });
        }
        actions
    }

    /// `node` said it is leaving (a graceful shutdown): it is forgotten at once, not suspected,
    /// not redialed (unless it is a seed, whose address is dialed again with backoff).
    pub fn departed(&mut self, node: &NodeId, now: Instant) {
        if let Some(member) = self.members.remove(node) {
            self.transitions.push(Transition {
                node: node.clone(),
                from: Some(member.state),
                to: None,
                reason: "left the cluster",
            });
        }
        for seed in &mut self.seeds {
            if seed.node.as_ref() == Some(node) {
                seed.node = None;
                seed.dial.failed(now);
            }
        }
        self.departed.insert(node.clone(), now);
    }

    /// Members that left gracefully within `forget_after`.
    pub fn departed_members(&self) -> Vec<NodeId> {
        self.departed.keys().cloned().collect()
    }

    /// Every session to `node` is gone.
    pub fn session_lost(&mut self, node: &NodeId, now: Instant) -> Vec<Action> {
        let Some(member) = self.members.get_mut(node) else {
            return Vec::new();
        };
        member.connected = false;
        member.ping_in_flight = false;
        member.ping_owed = false;
        member.describe_in_flight = false;
        if member.state == MemberState::Ready {
            // A clean loss: redial at once (a kill shows as unreachable when that fails).
            member.dial.next_at = now;
            set_state(
                &mut self.transitions,
                node,
                member,
                MemberState::Connecting,
                now,
                "session lost",
            );
        }
        let mut actions = Vec::new();
        self.due_dials(now, &mut actions);
        actions
    }

    /// A dial ended without a ready session (refused, timed out, handshake failed). Returns
    /// the address and how many dials to it failed in a row, unless the dial was superseded.
    pub fn dial_failed(&mut self, dial: DialId, now: Instant) -> Option<(String, u32)> {
        let mut failed = None;
        for (node, member) in &mut self.members {
            if member.dial.in_flight.map(|(id, _)| id) == Some(dial) {
                member.dial.failed(now);
                failed = member
                    .address
                    .clone()
                    .map(|address| (address, member.dial.backoff.attempts()));
                if !member.connected && member.state != MemberState::Suspect {
                    set_state(
                        &mut self.transitions,
                        node,
                        member,
                        MemberState::Unreachable,
                        now,
                        "dial failed",
                    );
                }
            }
        }
        for seed in &mut self.seeds {
            if seed.dial.in_flight.map(|(id, _)| id) == Some(dial) {
                seed.dial.failed(now);
                failed = Some((seed.address.clone(), seed.dial.backoff.attempts()));
            }
        }
        failed
    }

    /// `node` answered a ping.
    pub fn pong(&mut self, node: &NodeId, pong: Pong, now: Instant) -> Vec<Action> {
        let Some(member) = self.members.get_mut(node) else {
            return Vec::new();
        };
        let mut actions = member.ping_ended(node);
        member.misses = 0;
        member.last_seen = Some(now);
        member.last_rtt = Some(pong.rtt);
        if member.connected && member.state != MemberState::Ready {
            set_state(
                &mut self.transitions,
                node,
                member,
                MemberState::Ready,
                now,
                "answered a ping",
            );
        }
        let stale = match &member.info {
            Some(info) => info.incarnation != pong.incarnation || info.revision != pong.revision,
            None => true,
        } || member.view_hash != Some(pong.view_hash);
        if stale && !member.describe_in_flight {
            member.describe_in_flight = true;
            actions.push(Action::Describe { node: node.clone() });
        }
        actions
    }

    /// A ping to `node` was not answered in time (and this process did not stall meanwhile).
    pub fn ping_missed(&mut self, node: &NodeId, now: Instant) -> Vec<Action> {
        let Some(member) = self.members.get_mut(node) else {
            return Vec::new();
        };
        let next = member.ping_ended(node);
        if !member.connected {
            return Vec::new();
        }
        member.misses = member.misses.saturating_add(1);
        if member.misses < self.config.suspect_after || member.state != MemberState::Ready {
            return next;
        }
        member.ping_owed = false;
        member.ping_in_flight = false;
        set_state(
            &mut self.transitions,
            node,
            member,
            MemberState::Suspect,
            now,
            "pings missed",
        );
        vec![Action::Close { node: node.clone() }]
    }

    /// A ping to `node` failed while this process itself stalled: not held against it.
    pub fn ping_excused(&mut self, node: &NodeId) -> Vec<Action> {
        match self.members.get_mut(node) {
            Some(member) => member.ping_ended(node),
            None => Vec::new(),
        }
    }

    /// `node` described itself and the members it knows (`view`: id and cluster address).
    pub fn described(
        &mut self,
        node: &NodeId,
        info: MemberInfo,
        view: &[(NodeId, String)],
        view_hash: u64,
        now: Instant,
    ) -> Vec<Action> {
        if let Some(member) = self.members.get_mut(node) {
            member.describe_in_flight = false;
            member.address = Some(info.cluster_address.clone());
            member.view_hash = Some(view_hash);
            member.info = Some(info);
        }
        for (id, address) in view {
            if *id == self.me || *address == self.my_address || self.departed.contains_key(id) {
                continue;
            }
            let known = self.members.len();
            match self.members.get_mut(id) {
                Some(member) => {
                    if member.address.is_none() {
                        member.address = Some(address.clone());
                    }
                }
                None if known >= self.config.max_members => {
                    if !self.over_limit.contains(id) {
                        self.over_limit.push(id.clone());
                    }
                }
                None => {
                    let member = Member::new(Some(address.clone()), self.config.reconnect, now);
                    self.transitions.push(Transition {
                        node: id.clone(),
                        from: None,
                        to: Some(member.state),
                        reason: "learned from a member",
                    });
                    self.members.insert(id.clone(), member);
                }
            }
        }
        let mut actions = Vec::new();
        self.due_dials(now, &mut actions);
        actions
    }

    /// A description could not be had; the next ping answer asks again.
    pub fn describe_failed(&mut self, node: &NodeId) {
        if let Some(member) = self.members.get_mut(node) {
            member.describe_in_flight = false;
            member.view_hash = None;
        }
    }

    /// The members known, with their addresses, in id order (the view this node describes).
    pub fn view(&self) -> Vec<(NodeId, String)> {
        self.members
            .iter()
            .filter_map(|(id, member)| Some((id.clone(), member.address.clone()?)))
            .collect()
    }

    /// The members as `GET /api/cluster/members` lists them (this node excluded).
    pub fn members(&self, now: Instant) -> Vec<ClusterMember> {
        self.members
            .iter()
            .map(|(id, member)| {
                let info = member.info.as_ref();
                ClusterMember {
                    node_id: id.clone(),
                    roles: info.map(|info| info.roles.clone()).unwrap_or_default(),
                    address: member.address.clone(),
                    state: member.state,
                    last_seen_ms: member.last_seen.map(|seen| {
                        u64::try_from(now.saturating_duration_since(seen).as_millis())
                            .unwrap_or(u64::MAX)
                    }),
                    is_self: false,
                    seed: member.seed,
                    current_hub: info.and_then(|info| info.current_hub.clone()),
                    hub_connection: info.and_then(|info| info.hub_connection.clone()),
                    http_address: info.and_then(|info| info.http_address.clone()),
                    grpc_address: info.and_then(|info| info.grpc_address.clone()),
                    started_at: info.map(|info| info.started_at),
                    incarnation: info.map(|info| info.incarnation),
                    missed_pings: member.misses,
                    ping_ms: member.last_rtt.map(|rtt| rtt.as_secs_f64() * 1_000.0),
                }
            })
            .collect()
    }

    /// Seeds not yet answered by a member: address and whether a dial is on its way.
    pub fn pending_seeds(&self) -> Vec<(String, bool)> {
        self.seeds
            .iter()
            .filter(|seed| seed.node.is_none())
            .map(|seed| (seed.address.clone(), seed.dial.in_flight.is_some()))
            .collect()
    }

    /// Dials that are due: members not connected whose address is known, and seeds not
    /// answered yet (or whose member is not connected and is known at another address).
    fn due_dials(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let deadline = now + self.config.connect_timeout;
        for member in self.members.values_mut() {
            if member.connected || !member.dial.due(now) {
                continue;
            }
            let Some(address) = member.address.clone() else {
                continue;
            };
            let dial = self.next_dial;
            self.next_dial += 1;
            member.dial.in_flight = Some((dial, deadline));
            actions.push(Action::Dial { dial, address });
        }
        for seed in &mut self.seeds {
            let covered = seed.node.as_ref().is_some_and(|node| {
                self.members.get(node).is_some_and(|member| {
                    member.connected || member.address.as_deref() == Some(&seed.address)
                })
            });
            if covered || !seed.dial.due(now) {
                continue;
            }
            let dial = self.next_dial;
            self.next_dial += 1;
            seed.dial.in_flight = Some((dial, deadline));
            actions.push(Action::Dial {
                dial,
                address: seed.address.clone(),
            });
        }
    }
}

impl Member {
    /// A ping ended: the owed one goes out now, if a tick came meanwhile.
    fn ping_ended(&mut self, node: &NodeId) -> Vec<Action> {
        self.ping_in_flight = false;
        if self.ping_owed && self.connected {
            self.ping_owed = false;
            self.ping_in_flight = true;
            return vec![Action::Ping { node: node.clone() }];
        }
        Vec::new()
    }

    fn new(address: Option<String>, reconnect: BackoffConfig, now: Instant) -> Self {
        Self {
            address,
            seed: false,
            info: None,
            state: MemberState::Connecting,
            since: now,
            connected: false,
            last_seen: None,
            misses: 0,
            ping_in_flight: false,
            ping_owed: false,
            last_rtt: None,
            describe_in_flight: false,
            view_hash: None,
            dial: Dialing::new(reconnect, now),
        }
    }
}

fn set_state(
    transitions: &mut Vec<Transition>,
    node: &NodeId,
    member: &mut Member,
    to: MemberState,
    now: Instant,
    reason: &'static str,
) {
    if member.state == to {
        return;
    }
    transitions.push(Transition {
        node: node.clone(),
        from: Some(member.state),
        to: Some(to),
        reason,
    });
    member.state = to;
    member.since = now;
}

/// A stable 64-bit hash of a view (FNV-1a over the ids and addresses in order): the same view
/// hashes the same in every process and version.
pub fn view_hash(view: &[(NodeId, String)]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let mut hash = OFFSET;
    for (id, address) in view {
        for byte in id
            .as_str()
            .bytes()
            .chain([0])
            .chain(address.bytes())
            .chain([0])
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(PRIME);
        }
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messages::{Role, Timestamp};

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).expect("valid node id")
    }

    fn config() -> MembershipConfig {
        MembershipConfig {
            liveness_interval: Duration::from_millis(100),
            suspect_after: 3,
            unreachable_after: Duration::from_secs(2),
            forget_after: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            reconnect: BackoffConfig {
                base: Duration::from_millis(100),
                max: Duration::from_secs(1),
            },
            max_members: 8,
        }
    }

    fn info(id: &str, address: &str, revision: u64) -> MemberInfo {
        MemberInfo {
            node_id: node(id),
            incarnation: 7,
            revision,
            roles: vec![Role::Peer],
            cluster_address: address.to_owned(),
            http_address: None,
            grpc_address: None,
            started_at: Timestamp::from_unix_millis(0),
            current_hub: None,
            hub_connection: None,
        }
    }

    fn dials(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|action| match action {
                Action::Dial { address, .. } => Some(address.clone()),
                _ => None,
            })
            .collect()
    }

    fn dial_id(actions: &[Action], to: &str) -> DialId {
        actions
            .iter()
            .find_map(|action| match action {
                Action::Dial { dial, address } if address == to => Some(*dial),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no dial to {to} in {actions:?}"))
    }

    fn pong(revision: u64, view_hash: u64) -> Pong {
        Pong {
            incarnation: 7,
            revision,
            view_hash,
            rtt: Duration::from_millis(1),
        }
    }

    /// A membership of `a` whose seed `b` (at b:1) is ready and described.
    fn joined(now: Instant) -> Membership {
        let mut membership =
            Membership::new(node("a"), "a:1".into(), &["b:1".into()], config(), now);
        membership.tick(now);
        membership.session_ready(&node("b"), Some("b:1"), now);
        membership.described(&node("b"), info("b", "b:1", 1), &[], view_hash(&[]), now);
        membership.pong(&node("b"), pong(1, view_hash(&[])), now);
        membership.take_transitions();
        membership
    }

    #[test]
    fn seeds_are_dialed_once_and_never_this_nodes_own_address() {
        let now = Instant::now();
        let mut membership = Membership::new(
            node("a"),
            "a:1".into(),
            &["a:1".into(), "b:1".into(), "b:1".into()],
            config(),
            now,
        );
        assert_eq!(dials(&membership.tick(now)), ["b:1"]);
        assert!(
            dials(&membership.tick(now)).is_empty(),
            "a dial in flight is not repeated"
        );
    }

    #[test]
    fn a_failed_seed_dial_is_retried_within_the_backoff_cap() {
        let mut now = Instant::now();
        let mut membership =
            Membership::new(node("a"), "a:1".into(), &["b:1".into()], config(), now);
        let cap = config().reconnect.max;
        for _ in 0..10 {
            let actions = membership.tick(now);
            membership.dial_failed(dial_id(&actions, "b:1"), now);
            now += cap;
        }
    }

    #[test]
    fn joining_through_one_seed_dials_every_member_it_knows() {
        let now = Instant::now();
        let mut membership =
            Membership::new(node("a"), "a:1".into(), &["b:1".into()], config(), now);
        membership.tick(now);
        let actions = membership.session_ready(&node("b"), Some("b:1"), now);
        assert!(actions.contains(&Action::Describe { node: node("b") }));
        assert_eq!(membership.state_of(&node("b")), Some(MemberState::Ready));
        let view = vec![
            (node("a"), "a:1".to_owned()),
            (node("c"), "c:1".to_owned()),
            (node("d"), "d:1".to_owned()),
        ];
        let actions = membership.described(
            &node("b"),
            info("b", "b:1", 1),
            &view,
            view_hash(&view),
            now,
        );
        let mut dialed = dials(&actions);
        dialed.sort();
        assert_eq!(dialed, ["c:1", "d:1"], "itself is not dialed");
        assert_eq!(
            membership.state_of(&node("c")),
            Some(MemberState::Connecting)
        );
        let listed: Vec<_> = membership
            .members(now)
            .into_iter()
            .map(|member| (member.node_id.to_string(), member.seed))
            .collect();
        assert_eq!(
            listed,
            [("b".into(), true), ("c".into(), false), ("d".into(), false)]
        );
    }

    #[test]
    fn a_member_that_dials_in_is_listed_and_described() {
        let now = Instant::now();
        let mut membership = Membership::new(node("b"), "b:1".into(), &[], config(), now);
        let actions = membership.session_ready(&node("a"), None, now);
        assert!(actions.contains(&Action::Describe { node: node("a") }));
        assert_eq!(membership.state_of(&node("a")), Some(MemberState::Ready));
        membership.described(&node("a"), info("a", "a:1", 1), &[], 0, now);
        assert_eq!(membership.view(), [(node("a"), "a:1".to_owned())]);
    }

    #[test]
    fn missed_pings_suspect_a_member_and_close_its_session() {
        let now = Instant::now();
        let mut membership = joined(now);
        let mut closes = Vec::new();
        for round in 1..=3u32 {
            let at = now + config().liveness_interval * round;
            assert!(
                membership
                    .tick(at)
                    .contains(&Action::Ping { node: node("b") })
            );
            closes.extend(membership.ping_missed(&node("b"), at));
            if round < 3 {
                assert_eq!(membership.state_of(&node("b")), Some(MemberState::Ready));
            }
        }
        assert_eq!(closes, [Action::Close { node: node("b") }]);
        assert_eq!(membership.state_of(&node("b")), Some(MemberState::Suspect));
        let transitions = membership.take_transitions();
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].to, Some(MemberState::Suspect));
    }

    #[test]
    fn a_ping_that_takes_its_whole_deadline_does_not_slow_the_pings_down() {
        let now = Instant::now();
        let mut membership = joined(now);
        let period = config().liveness_interval;
        // The tick comes just before the ping's deadline ends: the ping is owed, not skipped.
        membership.tick(now + period);
        assert!(
            membership.tick(now + period * 2).is_empty(),
            "one ping in flight"
        );
        assert_eq!(
            membership.ping_missed(&node("b"), now + period * 2),
            [Action::Ping { node: node("b") }],
            "the owed ping goes out when the missed one ends"
        );
        membership.ping_missed(&node("b"), now + period * 3);
        assert_eq!(
            membership.ping_missed(&node("b"), now + period * 3),
            [Action::Close { node: node("b") }],
            "3 misses in 3 periods"
        );
    }

    #[test]
    fn an_answered_ping_resets_the_count() {
        let now = Instant::now();
        let mut membership = joined(now);
        for round in 1..=10u32 {
            let at = now + config().liveness_interval * round;
            membership.tick(at);
            if round % 2 == 0 {
                membership.pong(&node("b"), pong(1, view_hash(&[])), at);
            } else {
                membership.ping_missed(&node("b"), at);
            }
        }
        assert_eq!(membership.state_of(&node("b")), Some(MemberState::Ready));
    }

    #[test]
    fn a_suspect_becomes_unreachable_then_ready_again_when_it_reconnects() {
        let now = Instant::now();
        let mut membership = joined(now);
        for _ in 0..3 {
            membership.ping_missed(&node("b"), now);
        }
        let later = now + Duration::from_millis(10);
        let actions = membership.session_lost(&node("b"), later);
        assert_eq!(dials(&actions), ["b:1"], "redialed");
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Suspect),
            "and suspect while the dial is on its way"
        );
        let much_later = now + config().unreachable_after;
        membership.tick(much_later);
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Unreachable)
        );
        membership.session_ready(&node("b"), Some("b:1"), much_later);
        assert_eq!(membership.state_of(&node("b")), Some(MemberState::Ready));
    }

    #[test]
    fn a_lost_session_is_redialed_at_once_and_a_refused_dial_is_unreachable() {
        let now = Instant::now();
        let mut membership = joined(now);
        let actions = membership.session_lost(&node("b"), now);
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Connecting)
        );
        let dial = dial_id(&actions, "b:1");
        membership.dial_failed(dial, now);
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Unreachable)
        );
    }

    #[test]
    fn a_dial_that_never_becomes_ready_times_out() {
        let now = Instant::now();
        let mut membership = joined(now);
        membership.session_lost(&node("b"), now);
        let later = now + config().connect_timeout;
        membership.tick(later);
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Unreachable)
        );
    }

    #[test]
    fn learned_members_are_forgotten_after_a_while_unreachable_seeds_never() {
        let now = Instant::now();
        let mut membership = joined(now);
        let view = vec![(node("c"), "c:1".to_owned())];
        let actions = membership.described(
            &node("b"),
            info("b", "b:1", 1),
            &view,
            view_hash(&view),
            now,
        );
        membership.dial_failed(dial_id(&actions, "c:1"), now);
        let b_dial = dial_id(&membership.session_lost(&node("b"), now), "b:1");
        membership.dial_failed(b_dial, now);
        assert_eq!(
            membership.state_of(&node("c")),
            Some(MemberState::Unreachable)
        );
        let mut at = now;
        while at < now + config().forget_after + Duration::from_secs(1) {
            at += Duration::from_millis(100);
            for action in membership.tick(at) {
                if let Action::Dial { dial, .. } = action {
                    membership.dial_failed(dial, at);
                }
            }
        }
        assert_eq!(membership.state_of(&node("c")), None, "c is forgotten");
        assert_eq!(
            membership.state_of(&node("b")),
            Some(MemberState::Unreachable),
            "b, a seed, is kept"
        );
    }

    #[test]
    fn a_changed_revision_or_view_asks_for_a_new_description() {
        let now = Instant::now();
        let mut membership = joined(now);
        assert!(
            membership
                .pong(&node("b"), pong(1, view_hash(&[])), now)
                .is_empty()
        );
        assert_eq!(
            membership.pong(&node("b"), pong(2, view_hash(&[])), now),
            [Action::Describe { node: node("b") }]
        );
        assert!(
            membership.pong(&node("b"), pong(3, 99), now).is_empty(),
            "one description at a time"
        );
        membership.describe_failed(&node("b"));
        assert_eq!(
            membership.pong(&node("b"), pong(3, 99), now),
            [Action::Describe { node: node("b") }]
        );
    }

    #[test]
    fn members_beyond_the_limit_are_not_added() {
        let now = Instant::now();
        let mut membership = joined(now);
        let view: Vec<_> = (0..20)
            .map(|i| (node(&format!("m{i:02}")), format!("m{i:02}:1")))
            .collect();
        membership.described(&node("b"), info("b", "b:1", 1), &view, 1, now);
        assert_eq!(membership.members(now).len(), config().max_members);
        assert_eq!(
            membership.take_over_limit().len(),
            20 - (config().max_members - 1)
        );
    }

    #[test]
    fn a_member_that_leaves_is_forgotten_at_once_and_not_relearned_from_others() {
        let now = Instant::now();
        let mut membership = joined(now);
        let view = vec![(node("c"), "c:1".to_owned())];
        membership.described(
            &node("b"),
            info("b", "b:1", 1),
            &view,
            view_hash(&view),
            now,
        );
        membership.session_ready(&node("c"), Some("c:1"), now);
        membership.take_transitions();
        membership.departed(&node("c"), now);
        assert_eq!(membership.state_of(&node("c")), None);
        let transitions = membership.take_transitions();
        assert_eq!(transitions[0].reason, "left the cluster");
        assert!(dials(&membership.tick(now)).is_empty(), "not redialed");
        // b still lists c for a while: c is not added back.
        membership.described(
            &node("b"),
            info("b", "b:1", 2),
            &view,
            view_hash(&view),
            now,
        );
        assert_eq!(membership.state_of(&node("c")), None);
        assert_eq!(membership.departed_members(), [node("c")]);
        // c restarts and dials in: a member again.
        membership.session_ready(&node("c"), None, now);
        assert_eq!(membership.state_of(&node("c")), Some(MemberState::Ready));
        assert!(membership.departed_members().is_empty());
    }

    #[test]
    fn a_seed_that_leaves_is_dialed_again_by_its_address() {
        let now = Instant::now();
        let mut membership = joined(now);
        membership.departed(&node("b"), now);
        assert_eq!(membership.state_of(&node("b")), None);
        let later = now + config().reconnect.max;
        assert_eq!(dials(&membership.tick(later)), ["b:1"]);
    }

    #[test]
    fn view_hash_is_stable_and_tells_views_apart() {
        let one = vec![(node("a"), "a:1".to_owned())];
        let two = vec![(node("a"), "a:2".to_owned())];
        assert_eq!(view_hash(&one), view_hash(&one.clone()));
        assert_ne!(view_hash(&one), view_hash(&two));
        assert_eq!(view_hash(&[]), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn a_late_report_of_an_old_dial_changes_nothing() {
        let now = Instant::now();
        let mut membership = joined(now);
        let first = dial_id(&membership.session_lost(&node("b"), now), "b:1");
        membership.session_ready(&node("b"), Some("b:1"), now);
        membership.dial_failed(first, now);
        assert_eq!(membership.state_of(&node("b")), Some(MemberState::Ready));
    }
}
