//! Gossip of public advertisements between peers (issue 9): scuttlebutt delta anti-entropy as
//! a pure state type (`GossipState`: takes `now`, a seeded generator, no I/O), and a
//! deterministic simulation of it (`simulation`, feature `testing`). The runtime's
//! `GossipDriver` drives it on a peer in a cluster (this module is the protocol core); the
//! wire types live in
//! `herald-messages` (`GossipMessage` and friends) because they cross nodes and are validated
//! like REST input.
//!
//! # Why scuttlebutt
//! Sending every ad to every member every round costs O(N² × ads). Scuttlebutt (Cassandra,
//! quickwit's chitchat) sends a digest — per origin, the incarnation and highest version held —
//! and each side of an exchange sends only the entries the other lacks, bounded per message
//! (the rest goes next round). With nothing changing, a round costs digests only. We did not
//! take the `chitchat` crate: the membership layer is our own (over ractor_cluster, not UDP),
//! and the rule below that keeps delayed messages from resurrecting a withdrawal needs control
//! over how a receiver applies a partial state.
//!
//! # State
//! Each node owns its public ads (`GossipAd`: private ads cannot be represented) under
//! `(origin, incarnation, version)`: every change of an ad, a withdrawal included, takes the
//! origin's next version; a withdrawal is an entry too (a tombstone). A node holds one
//! `Record` per origin: the latest entry of every register, ordered by version, the record's
//! `max` (highest version), and its `floor` (withdrawals at or below it may have been
//! collected). Every record a node *shows* is **exact as of its `max`**: it holds the latest
//! entry of every register the origin had at `max`, except withdrawals at or below `floor`.
//! The simulation checks exactly this, against an oracle, after every change of every node.
//!
//! # One exchange
//! A round picks `fanout` random ready members and sends each `Syn` (the digest; a digest
//! larger than the budget covers a range of origins, and the next round the next range). The
//! receiver answers `Ack`: deltas of what the sender lacks, and `wants`, its own digest entries
//! where the sender is ahead; the sender answers `Ack2` with those deltas. A delta is a run of
//! the sender's record, `(from, to]`, with the sender's `max` and `floor`. Every message stays
//! within `message_budget` bytes of JSON; a delta cut by the budget is a *part*.
//!
//! # The apply rule (why nothing withdrawn comes back)
//! A receiver at position `p` (its shown record's `max`, or its rebuild's) applies a delta
//! from a sender at `(incarnation, sender_max, floor)` only when one of these holds:
//! - **continuation**: same incarnation, `from <= p < to`, **`floor <= p`** (the sender still
//!   holds every withdrawal above `p`, so no withdrawal the receiver needs is missing from the
//!   run), and `sender_max >= target` (not older than the sender a rebuild in progress started
//!   from). Only entries above `p` are applied.
//! - **rebuild**: `from = 0` and the sender's `(incarnation, sender_max)` is newer than what
//!   the receiver shows (and not older than its rebuild in progress): a fresh record, whose
//!   floor is the sender's.
//!
//! A complete delta (`to == sender_max`) makes the result the shown record. A part goes to a
//! *staging* record that is neither shown nor served, and is promoted only when a complete
//! part reaches its target. Why parts must wait: a part of the sender's record up to `to` can
//! lack a register whose version at `to` was superseded later (the sender holds the later
//! one), so a part alone is not exact; parts from senders at least as new as the target, each
//! holding every withdrawal above where the previous part ended, add up to an exact record.
//!
//! A previous attempt, lost, let a stale sender's continuation extend a rebuild past a
//! withdrawal the sender no longer held: the withdrawal was collected everywhere, and the ad
//! came back. Here that continuation is refused (`floor > p`), and a rebuild restarts from a
//! sender that can serve it. The same rule makes delayed, reordered and duplicated messages
//! harmless: a delta is a self-consistent description of `(from, to]` of one incarnation, and
//! it applies only where it fits; an older incarnation is ignored.
//!
//! # Tombstone TTL versus message delay
//! A node collects a withdrawal `tombstone_ttl` to `2 × tombstone_ttl` after it learned it
//! (on its own clock) and raises its floor to it. Safety does not rest on that time: a message
//! delayed past it is refused by the floor rule, never applied blindly (the simulation keeps
//! some messages longer than the TTL to prove it). The TTL is a cost bound: a member further
//! behind than the collected floors needs a rebuild (its whole record of that origin again)
//! instead of a delta, so the TTL should exceed the longest partition or outage that should
//! heal by deltas (the configuration should keep it well above the round interval × log N and
//! above the cluster's reconnect backoff).
//!
//! # Incarnations
//! A node takes a new incarnation at every start: the larger of its stored one + 1 and its
//! clock in milliseconds, and re-issues its ads from version 1 (a restart from its store must
//! not reuse versions that never reached the store). A node that meets a member holding a later
//! state of itself than it claims (a store older than its last run) is told (`Bump`) or sees it
//! in a digest or delta, and moves above it. Receivers drop an older incarnation's record
//! when the newer one is complete, so the ads stay shown through a restart.
//!
//! # Liveness (the receiver's clock only)
//! An origin's ads are live while the membership calls it ready; otherwise they live
//! `ad_ttl` from the last confirmation (the membership saying ready, or a message from the
//! origin itself), measured on this node's clock. An origin the membership calls unreachable
//! is kept and marked stale until `stale_grace` after its last confirmation; a departed one is
//! dropped at once and its deltas are ignored until it is a member again. `view()` gives the
//! counts per register (this node included) and the stale share (`partitioned_ratio`).
//!
//! # Integration (the runtime's `GossipDriver`)
//! `set_members` on every membership change; `on_round(now)` every `gossip_interval`;
//! `on_message(now, from, message)`; `set_local(ads, now)` when the pool's public ads change;
//! `view(now)` for the pool's read side; `persisted()` to the store with the remote ads, and
//! `GossipState::restore` at start.

mod record;
#[cfg(any(test, feature = "testing"))]
pub mod simulation;
mod state;

pub use record::{Entries, Record, RecordSummary};
pub use state::{
    GossipConfig, GossipCounters, GossipState, GossipView, Handled, Liveness, LocalAd,
    OriginChange, RegisterSources, RestoreError, SplitMix64, position_hash,
};
