//! The wire vocabulary of the gossip of public advertisements between peers (issue 9): what an
//! origin says about one of its public ads (`GossipAd`), one versioned entry of its state
//! (`GossipEntry`, a live ad or a withdrawal), a run of entries (`EntryRun`, shared, never
//! copied), digests, deltas, the three messages of one exchange (`GossipMessage`) and what a
//! node persists (`PersistedGossip`).
//!
//! Plain data with serde, validation and exact JSON sizes (the protocol bounds every message
//! by a byte budget, so each value knows how many bytes it takes as JSON). The protocol itself
//! (who sends what, and when a delta may be applied) lives in `herald-actors`' `gossip` module.
//!
//! Private ads cannot be represented: a `GossipAd` has no `is_public` flag, and the only ways
//! to build one from the pool's types refuse a private ad (`NotPublic`).

use std::ops::Range;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pool::check_ad_text;
use crate::{
    AdInput, Advertisement, AvailableRegister, InvalidInput, NodeId, RegisterId, SyncState,
};

/// Largest incarnation or version accepted: 2^53 - 1, the largest integer every JSON client
/// reads exactly. An origin issuing a million versions a second needs 285 years to get there.
pub const MAX_GOSSIP_NUMBER: u64 = (1 << 53) - 1;

/// A private ad offered to the gossip: refused, it never leaves its node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("register {0} is not public: private ads never enter the gossip")]
pub struct NotPublic(pub RegisterId);

/// What an origin says about one of its public ads: it serves the register, in this sync state.
/// Public by construction (there is no flag to get wrong).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GossipAd {
    register_id: RegisterId,
    sync_state: SyncState,
    latest_version: u64,
    latest_docket_version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<Arc<str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<Arc<str>>,
}

impl GossipAd {
    /// The gossiped form of a pool's ad; a private one is refused.
    pub fn from_advertisement(ad: &Advertisement) -> Result<Self, NotPublic> {
        if !ad.is_public {
            return Err(NotPublic(ad.register_id.clone()));
        }
        Ok(Self {
            register_id: ad.register_id.clone(),
            sync_state: ad.sync_state,
            latest_version: ad.latest_version,
            latest_docket_version: ad.latest_docket_version,
            name: ad.name.clone(),
            description: ad.description.clone(),
        })
    }

    /// The gossiped form of an advertise request with the origin's sync state for the
    /// register; a withdrawal (`is_public = false`) is refused.
    pub fn from_input(input: &AdInput, sync_state: SyncState) -> Result<Self, NotPublic> {
        if !input.is_public {
            return Err(NotPublic(input.register_id.clone()));
        }
        Ok(Self {
            register_id: input.register_id.clone(),
            sync_state,
            latest_version: input.latest_version,
            latest_docket_version: input.latest_docket_version,
            name: input.name.clone(),
            description: input.description.clone(),
        })
    }

    #[inline]
    pub fn register_id(&self) -> &RegisterId {
        &self.register_id
    }

    #[inline]
    pub fn sync_state(&self) -> SyncState {
        self.sync_state
    }

    pub fn latest_version(&self) -> u64 {
        self.latest_version
    }

    pub fn latest_docket_version(&self) -> u64 {
        self.latest_docket_version
    }

    /// The register's name, shared (a clone is a count, not a copy).
    pub fn name(&self) -> Option<&Arc<str>> {
        self.name.as_ref()
    }

    /// The register's description, shared.
    pub fn description(&self) -> Option<&Arc<str>> {
        self.description.as_ref()
    }

    /// The rules of a REST advertisement (text lengths; the register id is checked by its type).
    pub fn validate(&self, at: &str) -> Result<(), InvalidInput> {
        check_ad_text(at, self.name.as_deref(), self.description.as_deref())
    }

    /// Bytes of this value as JSON.
    pub fn wire_size(&self) -> usize {
        let mut fields = vec![
            ("registerId", RegisterId::LEN + 2),
            ("syncState", sync_state_name(self.sync_state).len() + 2),
            ("latestVersion", digits(self.latest_version)),
            ("latestDocketVersion", digits(self.latest_docket_version)),
        ];
        if let Some(name) = &self.name {
            fields.push(("name", string_size(name)));
        }
        if let Some(description) = &self.description {
            fields.push(("description", string_size(description)));
        }
        object_size(&fields)
    }
}

/// This node's own public ad of a register, read from its *Available Registers*: what the
/// gossip compares with the ad it issued last, and copies into a `GossipAd` only when they
/// differ. The pool of a node in a cluster receives no remote ads (those live in the gossip),
/// so a local register's fields are its local ad's. The one exception: remote ads a pool
/// reloads from a store written by an older version, served for one `ad_ttl` until they
/// expire; a register served by one of them and locally shows the higher version and the
/// first name of the two, and the gossip tells that until they expire.
#[derive(Debug, Clone, Copy)]
pub struct LocalRegister<'a> {
    register: &'a AvailableRegister,
    sync_state: SyncState,
}

impl AvailableRegister {
    /// This node's own ad of the register (`None` when only remote sources serve it).
    pub fn local_ad(&self) -> Option<LocalRegister<'_>> {
        self.local_state.map(|sync_state| LocalRegister {
            register: self,
            sync_state,
        })
    }
}

impl LocalRegister<'_> {
    #[inline]
    pub fn register_id(&self) -> &RegisterId {
        &self.register.register_id
    }

    /// Whether `ad` says what this register's local ad says.
    pub fn is(&self, ad: &GossipAd) -> bool {
        let register = self.register;
        ad.register_id == register.register_id
            && ad.sync_state == self.sync_state
            && ad.latest_version == register.latest_version
            && ad.latest_docket_version == register.latest_docket_version
            && ad.name == register.name
            && ad.description == register.description
    }

    /// The gossiped form (its name and description shared, not copied).
    pub fn gossip_ad(&self) -> GossipAd {
        let register = self.register;
        GossipAd {
            register_id: register.register_id.clone(),
            sync_state: self.sync_state,
            latest_version: register.latest_version,
            latest_docket_version: register.latest_docket_version,
            name: register.name.clone(),
            description: register.description.clone(),
        }
    }
}

/// One entry of an origin's state: at `version` the origin advertises the ad, or withdrew the
/// register (a tombstone). An origin holds one entry per register: its latest.
///
/// JSON: `{"version":3,"live":{…}}` or `{"version":4,"withdrawn":"<register id>"}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "WireEntry")]
pub struct GossipEntry {
    version: u64,
    state: EntryState,
    /// Hash of version and content (never sent; recomputed on arrival).
    fingerprint: u64,
    /// Bytes of this entry as JSON.
    wire_size: usize,
}

/// A live ad or a withdrawal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryState {
    Live(GossipAd),
    Withdrawn(RegisterId),
}

/// The JSON form of an entry, as read.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEntry {
    version: u64,
    #[serde(default)]
    live: Option<GossipAd>,
    #[serde(default)]
    withdrawn: Option<RegisterId>,
}

/// The JSON form of an entry, as written (borrowed).
#[derive(Serialize)]
struct WireEntryRef<'a> {
    version: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    live: Option<&'a GossipAd>,
    #[serde(skip_serializing_if = "Option::is_none")]
    withdrawn: Option<&'a RegisterId>,
}

impl TryFrom<WireEntry> for GossipEntry {
    type Error = String;

    fn try_from(wire: WireEntry) -> Result<Self, String> {
        match (wire.live, wire.withdrawn) {
            (Some(ad), None) => Ok(GossipEntry::live(wire.version, ad)),
            (None, Some(register_id)) => Ok(GossipEntry::withdrawn(wire.version, register_id)),
            _ => Err("an entry is either `live` or `withdrawn`".to_owned()),
        }
    }
}

impl Serialize for GossipEntry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let (live, withdrawn) = match &self.state {
            EntryState::Live(ad) => (Some(ad), None),
            EntryState::Withdrawn(register_id) => (None, Some(register_id)),
        };
        WireEntryRef {
            version: self.version,
            live,
            withdrawn,
        }
        .serialize(serializer)
    }
}

impl PartialEq for GossipEntry {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.state == other.state
    }
}

impl Eq for GossipEntry {}

impl GossipEntry {
    pub fn new(version: u64, state: EntryState) -> Self {
        let mut hasher = Fnv::new();
        hasher.write_u64(version);
        let wire_size = match &state {
            EntryState::Live(ad) => {
                hasher.write(b"L");
                hasher.write(ad.register_id.as_str().as_bytes());
                hasher.write(sync_state_name(ad.sync_state).as_bytes());
                hasher.write_u64(ad.latest_version);
                hasher.write_u64(ad.latest_docket_version);
                hasher.write_text(ad.name.as_deref());
                hasher.write_text(ad.description.as_deref());
                object_size(&[("version", digits(version)), ("live", ad.wire_size())])
            }
            EntryState::Withdrawn(register_id) => {
                hasher.write(b"W");
                hasher.write(register_id.as_str().as_bytes());
                object_size(&[
                    ("version", digits(version)),
                    ("withdrawn", RegisterId::LEN + 2),
                ])
            }
        };
        Self {
            version,
            state,
            fingerprint: hasher.finish(),
            wire_size,
        }
    }

    pub fn live(version: u64, ad: GossipAd) -> Self {
        Self::new(version, EntryState::Live(ad))
    }

    pub fn withdrawn(version: u64, register_id: RegisterId) -> Self {
        Self::new(version, EntryState::Withdrawn(register_id))
    }

    #[inline]
    pub fn version(&self) -> u64 {
        self.version
    }

    #[inline]
    pub fn state(&self) -> &EntryState {
        &self.state
    }

    #[inline]
    pub fn register_id(&self) -> &RegisterId {
        match &self.state {
            EntryState::Live(ad) => &ad.register_id,
            EntryState::Withdrawn(register_id) => register_id,
        }
    }

    /// The ad, unless this entry is a withdrawal.
    #[inline]
    pub fn ad(&self) -> Option<&GossipAd> {
        match &self.state {
            EntryState::Live(ad) => Some(ad),
            EntryState::Withdrawn(_) => None,
        }
    }

    #[inline]
    pub fn is_withdrawal(&self) -> bool {
        matches!(self.state, EntryState::Withdrawn(_))
    }

    /// A hash of the version and the content, the same on every node: records compare by the
    /// sum of their live entries' fingerprints.
    #[inline]
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Bytes of this entry as JSON.
    #[inline]
    pub fn wire_size(&self) -> usize {
        self.wire_size
    }

    /// The rules of an entry that need no context: a version in `1..=MAX_GOSSIP_NUMBER`, and
    /// the ad's rules (those of a REST advertisement).
    pub fn validate(&self, at: &str) -> Result<(), InvalidInput> {
        if self.version == 0 || self.version > MAX_GOSSIP_NUMBER {
            return Err(InvalidInput::new(
                format!("{at}.version"),
                format!("must be 1 to {MAX_GOSSIP_NUMBER}, got {}", self.version),
            ));
        }
        match &self.state {
            // The field's name is built only for an error: this runs for every entry received.
            EntryState::Live(ad) => ad
                .validate("")
                .map_err(|err| InvalidInput::new(format!("{at}.live{}", err.field), err.reason)),
            EntryState::Withdrawn(_) => Ok(()),
        }
    }
}

/// A run of an origin's entries, ordered by version: a range of a shared array. Cloning one or
/// cutting a range never copies the entries, so a node answers many requests for the same
/// origin from one array; on the wire it is a JSON array.
#[derive(Debug, Clone)]
pub struct EntryRun {
    entries: Arc<[Arc<GossipEntry>]>,
    range: Range<usize>,
}

impl EntryRun {
    /// The whole array.
    pub fn whole(entries: Arc<[Arc<GossipEntry>]>) -> Self {
        let range = 0..entries.len();
        Self { entries, range }
    }

    /// `range` of the array (clamped to it).
    pub fn part(entries: Arc<[Arc<GossipEntry>]>, range: Range<usize>) -> Self {
        let end = range.end.min(entries.len());
        let start = range.start.min(end);
        Self {
            entries,
            range: start..end,
        }
    }

    pub fn empty() -> Self {
        Self::whole(Arc::from(Vec::new()))
    }

    #[inline]
    pub fn as_slice(&self) -> &[Arc<GossipEntry>] {
        &self.entries[self.range.clone()]
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.range.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }

    /// Whether this run is its whole shared array (so a receiver may keep the array as is).
    #[inline]
    pub fn is_whole(&self) -> bool {
        self.range.start == 0 && self.range.end == self.entries.len()
    }

    /// The shared array behind the run.
    #[inline]
    pub fn shared(&self) -> &Arc<[Arc<GossipEntry>]> {
        &self.entries
    }

    /// Bytes of this run as a JSON array.
    pub fn wire_size(&self) -> usize {
        let entries: usize = self.as_slice().iter().map(|entry| entry.wire_size).sum();
        2 + entries + self.len().saturating_sub(1)
    }
}

impl PartialEq for EntryRun {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for EntryRun {}

impl Serialize for EntryRun {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.as_slice().iter().map(|entry| &**entry))
    }
}

impl<'de> Deserialize<'de> for EntryRun {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let entries = Vec::<GossipEntry>::deserialize(deserializer)?;
        Ok(Self::whole(entries.into_iter().map(Arc::new).collect()))
    }
}

/// Where a node stands on an origin it is rebuilding (a delta too large for one message, or a
/// rebuild from scratch): the incarnation, how far the rebuild got (`position`), the version
/// its entries are exact as of (`as_of`: a continuation must come from a sender that still
/// holds every withdrawal above it), and the newest sender state it continued with (`target`:
/// parts from older senders are refused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StagingMark {
    pub incarnation: u64,
    pub position: u64,
    pub as_of: u64,
    pub target: u64,
}

/// What a node holds of one origin: the incarnation and highest version of the state it
/// shows (both 0 when it shows none), and its rebuild in progress if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DigestEntry {
    pub origin: NodeId,
    pub incarnation: u64,
    pub max: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub staging: Option<StagingMark>,
}

impl DigestEntry {
    /// Bytes of this entry as JSON.
    pub fn wire_size(&self) -> usize {
        let mut fields = vec![
            ("origin", self.origin.as_str().len() + 2),
            ("incarnation", digits(self.incarnation)),
            ("max", digits(self.max)),
        ];
        if let Some(staging) = &self.staging {
            let staging_size = object_size(&[
                ("incarnation", digits(staging.incarnation)),
                ("position", digits(staging.position)),
                ("asOf", digits(staging.as_of)),
                ("target", digits(staging.target)),
            ]);
            fields.push(("staging", staging_size));
        }
        object_size(&fields)
    }

    /// Where the sender of this entry wants deltas to start: its rebuild if it has one, else
    /// the state it shows; as `(incarnation, position, as_of)`.
    pub fn position(&self) -> (u64, u64, u64) {
        match self.staging {
            Some(staging) => (staging.incarnation, staging.position, staging.as_of),
            None => (self.incarnation, self.max, self.max),
        }
    }
}

/// A node's digest: its entries for the origins from `from` through `through` (by node id,
/// both inclusive; `None` is unbounded), sorted by origin. An origin in that range that the
/// digest does not list is one the sender holds nothing of. A digest larger than the budget
/// covers a range, and the next round continues after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Digest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub through: Option<NodeId>,
    pub entries: Vec<DigestEntry>,
}

impl Digest {
    /// Whether `origin` is in the range this digest speaks for.
    pub fn covers(&self, origin: &NodeId) -> bool {
        self.from.as_ref().is_none_or(|from| origin >= from)
            && self
                .through
                .as_ref()
                .is_none_or(|through| origin <= through)
    }

    /// Bytes of this digest as JSON.
    pub fn wire_size(&self) -> usize {
        let mut fields = Vec::with_capacity(3);
        if let Some(from) = &self.from {
            fields.push(("from", from.as_str().len() + 2));
        }
        if let Some(through) = &self.through {
            fields.push(("through", through.as_str().len() + 2));
        }
        fields.push((
            "entries",
            list_size(self.entries.iter().map(DigestEntry::wire_size)),
        ));
        object_size(&fields)
    }

    /// The rules of a digest: entries sorted by origin without repeats, inside the range,
    /// numbers in range.
    pub fn validate(&self) -> Result<(), InvalidInput> {
        for (index, entry) in self.entries.iter().enumerate() {
            check_digest_entry(entry, "").map_err(|err| {
                InvalidInput::new(format!("digest.entries[{index}]{}", err.field), err.reason)
            })?;
            if !self.covers(&entry.origin) {
                return Err(InvalidInput::new(
                    format!("digest.entries[{index}].origin"),
                    format!("{} is outside the digest's range", entry.origin),
                ));
            }
            if index > 0 && self.entries[index - 1].origin >= entry.origin {
                return Err(InvalidInput::new(
                    format!("digest.entries[{index}].origin"),
                    "entries must be sorted by origin, without repeats",
                ));
            }
        }
        Ok(())
    }
}

/// Checks one digest entry's numbers; `at` names it in the error.
pub fn check_digest_entry(entry: &DigestEntry, at: &str) -> Result<(), InvalidInput> {
    let numbers = [("incarnation", entry.incarnation), ("max", entry.max)];
    for (field, value) in numbers {
        if value > MAX_GOSSIP_NUMBER {
            return Err(InvalidInput::new(
                format!("{at}.{field}"),
                format!("{value} is beyond {MAX_GOSSIP_NUMBER}"),
            ));
        }
    }
    if let Some(staging) = entry.staging {
        let ordered = staging.position <= staging.target && staging.as_of <= staging.target;
        let in_range = staging.incarnation <= MAX_GOSSIP_NUMBER
            && staging.target <= MAX_GOSSIP_NUMBER
            && staging.incarnation > 0;
        if !(ordered && in_range) {
            return Err(InvalidInput::new(
                format!("{at}.staging"),
                "needs an incarnation of 1 to 2^53 - 1 and position, asOf <= target <= 2^53 - 1",
            ));
        }
    }
    Ok(())
}

/// A part of an origin's state, from the sender's record of it: every entry the sender holds
/// with a version in `(from, to]`, ordered by version. The sender's record is at
/// `(incarnation, sender_max)`, and may lack withdrawals up to `floor` (collected). `to ==
/// sender_max` when the part is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OriginDelta {
    pub origin: NodeId,
    pub incarnation: u64,
    pub from: u64,
    pub to: u64,
    pub sender_max: u64,
    pub floor: u64,
    pub entries: EntryRun,
}

impl OriginDelta {
    /// Whether this part reaches the sender's highest version.
    pub fn is_complete(&self) -> bool {
        self.to == self.sender_max
    }

    /// Bytes of this delta as JSON.
    pub fn wire_size(&self) -> usize {
        object_size(&[
            ("origin", self.origin.as_str().len() + 2),
            ("incarnation", digits(self.incarnation)),
            ("from", digits(self.from)),
            ("to", digits(self.to)),
            ("senderMax", digits(self.sender_max)),
            ("floor", digits(self.floor)),
            ("entries", self.entries.wire_size()),
        ])
    }

    /// The rules of a delta's frame (not of its entries, which are refused one by one):
    /// numbers in range, `floor <= sender_max`, `from <= to <= sender_max`.
    pub fn validate_frame(&self, at: &str) -> Result<(), InvalidInput> {
        if self.incarnation == 0 || self.incarnation > MAX_GOSSIP_NUMBER {
            return Err(InvalidInput::new(
                format!("{at}.incarnation"),
                format!("must be 1 to {MAX_GOSSIP_NUMBER}, got {}", self.incarnation),
            ));
        }
        if self.sender_max > MAX_GOSSIP_NUMBER {
            return Err(InvalidInput::new(
                format!("{at}.senderMax"),
                format!("{} is beyond {MAX_GOSSIP_NUMBER}", self.sender_max),
            ));
        }
        if !(self.from <= self.to && self.to <= self.sender_max && self.floor <= self.sender_max) {
            return Err(InvalidInput::new(
                at.to_owned(),
                format!(
                    "needs from <= to <= senderMax and floor <= senderMax, got from {} to {} \
                     senderMax {} floor {}",
                    self.from, self.to, self.sender_max, self.floor
                ),
            ));
        }
        Ok(())
    }
}

/// "You are known at a later state than you claim": sent to an origin whose own digest entry
/// is older than what the sender holds of it (it restarted from an older store, or reused an
/// incarnation). The origin moves to a higher incarnation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Bump {
    pub incarnation: u64,
    pub max: u64,
}

/// One gossip exchange: the initiator sends `Syn` with its digest; the receiver answers `Ack`
/// with what the initiator lacks and a digest of what it lacks itself (`wants`); the initiator
/// answers `Ack2` with that. Each message stays within the byte budget; the rest goes next
/// round.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
pub enum GossipMessage {
    Syn {
        #[serde(with = "shared")]
        digest: Arc<Digest>,
        /// A hash of every position the sender shows: a receiver whose own is equal holds
        /// the same versions of the same origins, and answers nothing without reading the
        /// digest (the steady state costs no comparison).
        knowledge: u64,
    },
    Ack {
        deltas: Vec<OriginDelta>,
        wants: Vec<DigestEntry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bump: Option<Bump>,
    },
    Ack2 {
        deltas: Vec<OriginDelta>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bump: Option<Bump>,
    },
}

impl GossipMessage {
    /// Bytes of this message as JSON.
    pub fn wire_size(&self) -> usize {
        match self {
            GossipMessage::Syn { digest, knowledge } => object_size(&[
                ("kind", 5),
                ("digest", digest.wire_size()),
                ("knowledge", digits(*knowledge)),
            ]),
            GossipMessage::Ack {
                deltas,
                wants,
                bump,
            } => {
                let mut fields = vec![
                    ("kind", 5),
                    (
                        "deltas",
                        list_size(deltas.iter().map(OriginDelta::wire_size)),
                    ),
                    ("wants", list_size(wants.iter().map(DigestEntry::wire_size))),
                ];
                if let Some(bump) = bump {
                    fields.push(("bump", bump_size(bump)));
                }
                object_size(&fields)
            }
            GossipMessage::Ack2 { deltas, bump } => {
                let mut fields = vec![
                    ("kind", 6),
                    (
                        "deltas",
                        list_size(deltas.iter().map(OriginDelta::wire_size)),
                    ),
                ];
                if let Some(bump) = bump {
                    fields.push(("bump", bump_size(bump)));
                }
                object_size(&fields)
            }
        }
    }

    /// Every delta the message carries.
    pub fn deltas(&self) -> &[OriginDelta] {
        match self {
            GossipMessage::Syn { .. } => &[],
            GossipMessage::Ack { deltas, .. } | GossipMessage::Ack2 { deltas, .. } => deltas,
        }
    }
}

/// One origin's record as a node keeps it in its store (its own included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistedRecord {
    pub origin: NodeId,
    pub incarnation: u64,
    pub max: u64,
    pub floor: u64,
    pub entries: EntryRun,
}

impl PersistedRecord {
    /// Bytes of the record as JSON, at least (its entries' sizes are known; the numbers are
    /// counted at their widest): what a store sizes its buffer with, so that a record of
    /// 100,000 entries (17 MB) is not encoded into a buffer grown by doubling to 32 MB.
    pub fn json_size_hint(&self) -> usize {
        /// `{"origin":"","incarnation":,"max":,"floor":,"entries":}` and three u64s at 20 digits.
        const FIXED: usize = 56 + 3 * 20;
        FIXED + self.origin.as_str().len() + self.entries.wire_size()
    }
}

/// What a node's gossip persists with its remote ads: its own record (so a restart never
/// reuses a version: it moves to a higher incarnation) and the records it holds of others,
/// withdrawals and floors included (so a restart does not reopen the door to a delayed
/// message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PersistedGossip {
    pub own: PersistedRecord,
    pub remote: Vec<PersistedRecord>,
}

// ---- sizes ----

fn sync_state_name(state: SyncState) -> &'static str {
    match state {
        SyncState::Subscribing => "subscribing",
        SyncState::Syncing => "syncing",
        SyncState::FullyReplicated => "fullyReplicated",
        SyncState::Active => "active",
        SyncState::Error => "error",
    }
}

fn bump_size(bump: &Bump) -> usize {
    object_size(&[
        ("incarnation", digits(bump.incarnation)),
        ("max", digits(bump.max)),
    ])
}

/// Decimal digits of `value`.
fn digits(value: u64) -> usize {
    value.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Bytes of `text` as a JSON string, quotes included (as serde_json escapes it).
fn string_size(text: &str) -> usize {
    let escaped: usize = text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    escaped + 2
}

/// Bytes of a JSON object with these field names and value sizes.
fn object_size(fields: &[(&str, usize)]) -> usize {
    let members: usize = fields
        .iter()
        .map(|(name, value)| name.len() + 3 + value)
        .sum();
    2 + members + fields.len().saturating_sub(1)
}

/// Bytes of a JSON array of values of these sizes.
fn list_size(values: impl Iterator<Item = usize>) -> usize {
    let (count, sum) = values.fold((0, 0), |(count, sum), size| (count + 1, sum + size));
    2 + sum + usize::saturating_sub(count, 1)
}

/// FNV-1a, finished with a mix: a fingerprint that is the same on every node and every run.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.write(&value.to_le_bytes());
    }

    fn write_text(&mut self, text: Option<&str>) {
        match text {
            Some(text) => {
                self.write_u64(text.len() as u64);
                self.write(text.as_bytes());
            }
            None => self.write(b"-"),
        }
    }

    fn finish(&self) -> u64 {
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// serde for an `Arc<T>` field (the workspace builds serde without its `rc` feature).
mod shared {
    use std::sync::Arc;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(
        value: &Arc<T>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        T::serialize(value, serializer)
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Arc<T>, D::Error> {
        T::deserialize(deserializer).map(Arc::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn id(byte: u8) -> RegisterId {
        RegisterId::from_bytes([byte; 16])
    }

    fn node(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn ad(byte: u8, name: Option<&str>, description: Option<&str>) -> GossipAd {
        let input = AdInput {
            name: name.map(Into::into),
            description: description.map(Into::into),
            latest_version: 12_345,
            latest_docket_version: 7,
            ..AdInput::public(id(byte))
        };
        GossipAd::from_input(&input, SyncState::FullyReplicated).unwrap()
    }

    fn json_len<T: Serialize>(value: &T) -> usize {
        serde_json::to_string(value).unwrap().len()
    }

    /// A register of the answer served here and nowhere else, as the pool builds it.
    fn served_here(ad: &GossipAd) -> AvailableRegister {
        AvailableRegister {
            register_id: ad.register_id.clone(),
            name: ad.name.clone(),
            description: ad.description.clone(),
            peer_count: 1,
            latest_version: ad.latest_version,
            latest_docket_version: ad.latest_docket_version,
            is_public: true,
            full_replica_peer_count: 1,
            local: true,
            verified: true,
            stale: false,
            local_state: Some(ad.sync_state),
        }
    }

    #[test]
    fn a_local_register_gives_its_ad_and_tells_every_difference() {
        let ad = ad(1, Some("name"), Some("description"));
        let register = served_here(&ad);
        let local = register.local_ad().expect("served here");
        assert_eq!(local.gossip_ad(), ad);
        assert!(local.is(&ad));
        // The name is shared, not copied.
        assert!(Arc::ptr_eq(
            local.gossip_ad().name().unwrap(),
            register.name.as_ref().unwrap()
        ));
        let differing = [
            GossipAd {
                register_id: id(2),
                ..ad.clone()
            },
            GossipAd {
                sync_state: SyncState::Syncing,
                ..ad.clone()
            },
            GossipAd {
                latest_version: 1,
                ..ad.clone()
            },
            GossipAd {
                latest_docket_version: 1,
                ..ad.clone()
            },
            GossipAd {
                name: None,
                ..ad.clone()
            },
            GossipAd {
                description: Some("other".into()),
                ..ad.clone()
            },
        ];
        for other in differing {
            assert!(!local.is(&other), "{other:?}");
        }
        // What the answer shows is all but the local sync state.
        let syncing = AvailableRegister {
            local_state: Some(SyncState::Syncing),
            ..register.clone()
        };
        assert!(syncing.shows_same(&register) && syncing != register);
        let counted = AvailableRegister {
            peer_count: 2,
            ..register.clone()
        };
        assert!(!counted.shows_same(&register));
        let remote_only = AvailableRegister {
            local: false,
            local_state: None,
            ..register
        };
        assert!(remote_only.local_ad().is_none());
        // Not in the answer's JSON (Sorcha's shape).
        let json = serde_json::to_string(&remote_only).unwrap();
        assert!(!json.contains("localState"), "{json}");
    }

    #[test]
    fn private_ads_cannot_become_gossip() {
        let private = AdInput::withdraw(id(1));
        assert_eq!(
            GossipAd::from_input(&private, SyncState::Active),
            Err(NotPublic(id(1)))
        );
        let stored = Advertisement {
            register_id: id(2),
            source: crate::AdSource::Local,
            sync_state: SyncState::Active,
            is_public: false,
            latest_version: 1,
            latest_docket_version: 1,
            name: None,
            description: None,
            refreshed_at: Timestamp::EPOCH,
            changed_at: Timestamp::EPOCH,
        };
        assert_eq!(GossipAd::from_advertisement(&stored), Err(NotPublic(id(2))));
        let public = Advertisement {
            is_public: true,
            ..stored
        };
        assert_eq!(
            GossipAd::from_advertisement(&public).unwrap().register_id(),
            &id(2)
        );
    }

    #[test]
    fn a_persisted_records_size_hint_covers_its_json_and_little_more() {
        for (entries, incarnation) in [(0_u8, 1_u64), (3, u64::MAX), (200, 1 << 40)] {
            let run: Vec<Arc<GossipEntry>> = (0..entries)
                .map(|n| {
                    Arc::new(GossipEntry::live(
                        u64::from(n) + 1,
                        ad(n, Some("a \"quoted\" name"), None),
                    ))
                })
                .collect();
            let record = PersistedRecord {
                origin: node("peer-a"),
                incarnation,
                max: u64::from(entries),
                floor: 0,
                entries: EntryRun::whole(run.into()),
            };
            let actual = json_len(&record);
            let hint = record.json_size_hint();
            assert!(
                (actual..=actual + 64).contains(&hint),
                "{entries} entries: {actual} bytes, hint {hint}"
            );
        }
    }

    /// The byte budget is only as good as the sizes: they must be those serde_json writes,
    /// escapes and non-ASCII text included.
    #[test]
    fn wire_sizes_are_the_json_lengths() {
        let entries: Vec<Arc<GossipEntry>> = vec![
            Arc::new(GossipEntry::live(1, ad(1, None, None))),
            Arc::new(GossipEntry::live(
                22,
                ad(2, Some("ledger \"main\"\n\t\\"), Some("réserve \u{1} ✓")),
            )),
            Arc::new(GossipEntry::withdrawn(9_007_199_254_740_991, id(3))),
        ];
        for entry in &entries {
            assert_eq!(entry.wire_size(), json_len(&**entry), "{entry:?}");
        }
        let shared: Arc<[Arc<GossipEntry>]> = entries.into();
        let delta = OriginDelta {
            origin: node("peer-a"),
            incarnation: 1_700_000_000_000,
            from: 0,
            to: 22,
            sender_max: 30,
            floor: 0,
            entries: EntryRun::part(Arc::clone(&shared), 0..2),
        };
        assert_eq!(delta.wire_size(), json_len(&delta));
        let digest = Digest {
            from: Some(node("a")),
            through: None,
            entries: vec![
                DigestEntry {
                    origin: node("a"),
                    incarnation: 3,
                    max: 0,
                    staging: None,
                },
                DigestEntry {
                    origin: node("b-1"),
                    incarnation: 3,
                    max: 10,
                    staging: Some(StagingMark {
                        incarnation: 4,
                        position: 2,
                        as_of: 50,
                        target: 99,
                    }),
                },
            ],
        };
        assert_eq!(digest.wire_size(), json_len(&digest));
        let messages = [
            GossipMessage::Syn {
                digest: Arc::new(digest.clone()),
                knowledge: u64::MAX,
            },
            GossipMessage::Ack {
                deltas: vec![delta.clone(), delta.clone()],
                wants: digest.entries.clone(),
                bump: Some(Bump {
                    incarnation: 5,
                    max: 6,
                }),
            },
            GossipMessage::Ack {
                deltas: Vec::new(),
                wants: Vec::new(),
                bump: None,
            },
            GossipMessage::Ack2 {
                deltas: vec![delta],
                bump: None,
            },
        ];
        for message in &messages {
            assert_eq!(message.wire_size(), json_len(message), "{message:?}");
        }
    }

    #[test]
    fn messages_round_trip_and_entries_keep_their_fingerprints() {
        let entry = GossipEntry::live(4, ad(9, Some("n"), None));
        let message = GossipMessage::Ack2 {
            deltas: vec![OriginDelta {
                origin: node("o"),
                incarnation: 1,
                from: 3,
                to: 4,
                sender_max: 4,
                floor: 0,
                entries: EntryRun::whole(Arc::from(vec![Arc::new(entry.clone())])),
            }],
            bump: None,
        };
        let json = serde_json::to_string(&message).unwrap();
        let back: GossipMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(back, message);
        let arrived = &back.deltas()[0].entries.as_slice()[0];
        assert_eq!(arrived.fingerprint(), entry.fingerprint());
        assert_eq!(arrived.wire_size(), entry.wire_size());
        let other = GossipEntry::live(5, ad(9, Some("n"), None));
        assert_ne!(other.fingerprint(), entry.fingerprint());
        assert!(
            serde_json::from_str::<GossipMessage>(r#"{"kind":"ack2","deltas":[],"extra":1}"#)
                .is_err()
        );
    }

    #[test]
    fn entries_and_frames_are_validated_like_rest_input() {
        let long_name = "x".repeat(crate::MAX_NAME_LEN + 1);
        let entry = GossipEntry::live(1, ad(1, Some(&long_name), None));
        let err = entry.validate("deltas[0].entries[0]").unwrap_err();
        assert_eq!(err.field, "deltas[0].entries[0].live.name");
        assert!(GossipEntry::withdrawn(0, id(1)).validate("e").is_err());
        let frame = OriginDelta {
            origin: node("o"),
            incarnation: 1,
            from: 5,
            to: 4,
            sender_max: 9,
            floor: 0,
            entries: EntryRun::empty(),
        };
        assert!(frame.validate_frame("deltas[0]").is_err());
        let beyond = OriginDelta {
            from: 0,
            sender_max: MAX_GOSSIP_NUMBER + 1,
            ..frame
        };
        assert_eq!(
            beyond.validate_frame("deltas[0]").unwrap_err().field,
            "deltas[0].senderMax"
        );
        let unsorted = Digest {
            from: None,
            through: None,
            entries: vec![
                DigestEntry {
                    origin: node("b"),
                    incarnation: 1,
                    max: 1,
                    staging: None,
                },
                DigestEntry {
                    origin: node("a"),
                    incarnation: 1,
                    max: 1,
                    staging: None,
                },
            ],
        };
        assert!(unsorted.validate().is_err());
    }
}
