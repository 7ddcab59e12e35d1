//! herald's domain types and every actor's message enum.
//!
//! Plain data with serde and validation: register and node identifiers, timestamps,
//! advertisements, registers, and the messages the actors exchange. No I/O and no behaviour
//! beyond validating a value when it is built; ractor appears only for reply ports and the
//! `RactorMessage` derive (ractor's `cluster` feature is on for the whole workspace).

mod advertisement;
mod cluster;
mod gossip;
mod hub;
mod ids;
mod pool;
mod register;
mod resync;
mod shared_registers;
mod signature;
mod supervisor;
mod system_register;
mod time;
mod valid;

pub use advertisement::{AdKey, AdSource, Advertisement, SyncState};
pub use cluster::{ClusterMember, ClusterSummary, MemberInfo, MemberState, Role};
pub use gossip::{
    Bump, Digest, DigestEntry, EntryRun, EntryState, GossipAd, GossipEntry, GossipMessage,
    LocalRegister, MAX_GOSSIP_NUMBER, NotPublic, OriginDelta, PersistedGossip, PersistedRecord,
    StagingMark, check_digest_entry,
};
pub use hub::{
    AttemptReport, AuthorityError, BeatFailure, BeatReport, CentralNodeConnectionMsg,
    CheckpointState, ConnectRequest, ConnectionState, ConnectionStatus, ConnectionView, EntrySet,
    HeartbeatAck, HeartbeatHealth, HeartbeatMonitorMsg, HeartbeatReport, HeartbeatRequest,
    HubEndpoint, HubPeer, HubReport, HubSession, HubStatus, NodeType, PeerCheckpoint,
    PeerHeartbeatStatus, RecommendedAction, RegisterState, ReplicaPosition, ReplicaStatus,
    ReplicaView, SessionGrant, SessionId, Subscription, SyncFailure, SyncQuery, SyncReport,
    SyncScope, SyncTrigger, SystemRegisterAuthorityMsg, SystemRegisterReplicaMsg,
};
pub use ids::{GroundTruthEpoch, InvalidId, NodeId, RegisterId};
pub use pool::{
    AdInput, AdvertisementPoolMsg, AvailableRegister, AvailableRegisters, AvailableView,
    BulkAdvertise, BulkOutcome, GossipStatus, InvalidInput, MAX_BULK_ITEMS, MAX_DESCRIPTION_LEN,
    MAX_NAME_LEN, MAX_SNAPSHOT_SEQ, MAX_SNAPSHOT_SEQ_RATE, PoolError, PoolMeta, PoolStatus,
    PoolView, SNAPSHOT_SEQ_SLACK, Snapshot, StoreHealth,
};
pub use register::{NewRegister, Register, RegisterError, RegisterPatch};
pub use resync::{AdvertisementSyncState, PushReport, ResyncDriverMsg, SyncStatus};
pub use shared_registers::SharedRegisters;
pub use signature::{
    EntrySignature, EntrySigner, KeyError, KeyId, PAYLOAD_DOMAIN, SignatureError, TrustedKey,
    TrustedKeys, signed_payload,
};
pub use supervisor::{ChildKind, ChildReport, NodeFailure, NodeSupervisorMsg};
pub use system_register::{
    BlueprintId, BlueprintNotification, BlueprintSummary, Checkpoint, EntryDraft, EntryKind,
    Genesis, HistoryId, MAX_DOCUMENT_BYTES, MAX_METADATA_BYTES, MAX_SUMMARY_BYTES,
    NotificationFilter, PublishRequest, RegisterDigest, SEED_BLUEPRINT_ID, SystemRegisterEntry,
    SystemRegisterView,
};
pub use time::Timestamp;
pub use valid::{Valid, Validate};
