//! `GET /api/events`: the node's changes as server-sent events, for the operator's page and for
//! scripts (`curl -N`).
//!
//! Events (`event:` names, `data:` JSON in the REST shapes):
//! - `snapshot`: everything at once (`health`, `sync`, `connection`, `systemRegister`,
//!   `members`, `registers`, each `null` where the node has none): the first event of a stream,
//!   and of a stream that cannot resume;
//! - `registers`: `{"upserted":[AvailableRegister…],"removed":[registerId…]}`, what changed in
//!   *Available Registers* (from the pool's published view: every change, in order);
//! - `health`, `sync`, `connection`, `systemRegister`, `members`: the new whole answer of
//!   `/health`, `/api/sync/status`, `/api/connection/status`, `/api/system-register` and
//!   `/api/cluster/members`, sent when it differs from the last one sent (read every
//!   `POLL_INTERVAL` while someone listens).
//!
//! Every event has an id `<feed>-<n>`. A client that reconnects with `Last-Event-ID` gets the
//! events it missed when the feed still holds them (the last `RING_BYTES` of events, none
//! larger than `MAX_KEPT_BYTES`: a change of most of a large pool is sent to the readers
//! connected then, not kept), else a `snapshot`. A client that reads slower than the node changes is dropped (its stream ends
//! once it is `LAG_EVENTS` behind) rather than buffered without bound: it reconnects and
//! resumes or gets a snapshot. Comments (`:`) keep idle connections open.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::task::AbortOnDropHandle;
use tracing::debug;

use herald_messages::{AvailableRegister, AvailableView, PoolView};

use crate::api::NodeApi;
use crate::rest::RestState;
use crate::rest::ops::{health_report, sync_report};

/// How often the polled answers are read while someone listens.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far a reader may fall behind before it is dropped.
const LAG_EVENTS: usize = 256;
/// How much of the recent past the feed keeps for readers that resume.
const RING_BYTES: usize = 2 * 1024 * 1024;
/// The largest event kept for readers that resume (a `registers` event of about 2,000
/// registers). A larger one is sent to the readers connected then and ends what can be
/// resumed: a reader that missed it gets a snapshot. Keeping it cost its size in memory for
/// as long as the node stayed quiet (12 MB for a change of 100,000 registers, issue 11).
const MAX_KEPT_BYTES: usize = 512 * 1024;
/// Bytes of a register in a `registers` event, about: to tell an event too large to keep
/// before it is serialized.
const REGISTER_EVENT_BYTES: usize = 200;
/// A comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// One event, serialized once for every reader.
#[derive(Debug)]
struct FeedEvent {
    seq: u64,
    kind: &'static str,
    data: String,
}

/// What the producer and the readers share.
struct Shared {
    /// Random per feed: ids of another run of the node are not resumed.
    tag: u32,
    sender: broadcast::Sender<Arc<FeedEvent>>,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    events: VecDeque<Arc<FeedEvent>>,
    bytes: usize,
    /// The sequence number of the last event sent.
    last: u64,
}

impl Ring {
    /// Drops every kept event: no reader can resume from before `last`.
    fn forget(&mut self) {
        self.events.clear();
        self.bytes = 0;
    }

    /// The events after `from`, when the ring still holds every one of them.
    fn missed_since(&self, from: u64) -> Option<Vec<Arc<FeedEvent>>> {
        let oldest = self.events.front().map_or(self.last + 1, |event| event.seq);
        (from + 1 >= oldest && from <= self.last).then(|| {
            self.events
                .iter()
                .filter(|event| event.seq > from)
                .cloned()
                .collect()
        })
    }
}

/// The node's event feed: a producer task (stopped when the feed is dropped) and its readers.
pub(crate) struct EventFeed {
    shared: Arc<Shared>,
    _producer: AbortOnDropHandle<()>,
}

impl EventFeed {
    /// Starts following `api`'s node.
    pub(crate) fn start(api: NodeApi) -> Self {
        let (sender, _) = broadcast::channel(LAG_EVENTS);
        let shared = Arc::new(Shared {
            tag: rand::random(),
            sender,
            ring: Mutex::new(Ring::default()),
        });
        let producer = AbortOnDropHandle::new(tokio::spawn(produce(api, Arc::clone(&shared))));
        Self {
            shared,
            _producer: producer,
        }
    }
}

impl Shared {
    /// Numbers `data` as the next event, keeps it for resuming readers and sends it.
    fn emit(&self, kind: &'static str, data: String) {
        let mut ring = self.ring.lock().expect("the event ring is never poisoned");
        ring.last += 1;
        let event = Arc::new(FeedEvent {
            seq: ring.last,
            kind,
            data,
        });
        if event.data.len() > MAX_KEPT_BYTES {
            ring.forget();
        } else {
            ring.bytes += event.data.len();
            ring.events.push_back(Arc::clone(&event));
            while ring.bytes > RING_BYTES && ring.events.len() > 1 {
                if let Some(old) = ring.events.pop_front() {
                    ring.bytes -= old.data.len();
                }
            }
        }
        // Sent under the lock, so a reader that subscribes and reads the ring under it sees
        // every event exactly once.
        let _ = self.sender.send(event);
    }

    /// Counts an event nobody receives (no reader is connected) and that is too large to
    /// keep: it is never serialized, and a reader that resumes from before it gets a snapshot.
    fn skip(&self) {
        let mut ring = self.ring.lock().expect("the event ring is never poisoned");
        ring.last += 1;
        ring.forget();
    }

    fn id(&self, seq: u64) -> String {
        format!("{:08x}-{seq}", self.tag)
    }

    /// The sequence number in a `Last-Event-ID` of this feed.
    fn parse_id(&self, id: &str) -> Option<u64> {
        let (tag, seq) = id.split_once('-')?;
        (u32::from_str_radix(tag, 16).ok()? == self.tag)
            .then(|| seq.parse().ok())
            .flatten()
    }
}

/// Follows the pool's publications (every change) and reads the other answers while readers
/// listen, emitting what changed.
async fn produce(api: NodeApi, shared: Arc<Shared>) {
    let mut pool = api.pool_changes();
    let mut registers: Option<Arc<AvailableView>> = pool
        .as_ref()
        .map(|view| Arc::clone(&view.latest().available));
    let mut polled = Polled::default();
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = next_pool_view(&mut pool) => {
                let Some(view) = changed else {
                    pool = None;
                    continue;
                };
                let Some(previous) = registers.replace(Arc::clone(&view.available)) else {
                    continue;
                };
                if previous.version == view.available.version && previous.tag == view.available.tag {
                    continue;
                }
                let (upserted, removed) = diff(previous.iter(), view.available.iter());
                let too_large = (upserted.len() + removed.len()) * REGISTER_EVENT_BYTES > MAX_KEPT_BYTES;
                if too_large && shared.sender.receiver_count() == 0 {
                    shared.skip();
                } else if !upserted.is_empty() || !removed.is_empty() {
                    // Serialized straight from the registers: a `json!` tree of a 10,000-ad
                    // change was tens of MB on the heap for a moment (issue 11, the scale curve).
                    let data = serde_json::to_string(&RegistersChanged { upserted, removed })
                        .expect("available registers always serialize");
                    shared.emit("registers", data);
                }
            }
            _ = ticker.tick() => {
                if shared.sender.receiver_count() == 0 {
                    // Nobody listens: forget what was sent, so the next reader's first
                    // poll sends everything that changed meanwhile.
                    polled = Polled::default();
                    continue;
                }
                polled.poll(&api, &shared).await;
            }
        }
    }
}

/// The data of a `registers` event.
#[derive(Serialize)]
struct RegistersChanged<'a> {
    upserted: Vec<&'a AvailableRegister>,
    removed: Vec<String>,
}

async fn next_pool_view(pool: &mut Option<herald_actors::View<PoolView>>) -> Option<Arc<PoolView>> {
    match pool {
        Some(view) => view.changed().await,
        None => std::future::pending().await,
    }
}

/// The last answer sent of each polled kind (as JSON).
#[derive(Default)]
struct Polled {
    health: Option<Value>,
    sync: Option<Value>,
    connection: Option<Value>,
    system_register: Option<Value>,
    members: Option<Value>,
}

impl Polled {
    async fn poll(&mut self, api: &NodeApi, shared: &Shared) {
        let snapshot = Snapshot::read(api, false).await;
        for (kind, last, now) in [
            ("health", &mut self.health, snapshot.health),
            ("sync", &mut self.sync, snapshot.sync),
            ("connection", &mut self.connection, snapshot.connection),
            (
                "systemRegister",
                &mut self.system_register,
                snapshot.system_register,
            ),
            ("members", &mut self.members, snapshot.members),
        ] {
            // A kind this node does not have (null) is not worth an event of its own.
            let unchanged = match last {
                Some(last) => *last == now,
                None => now.is_null(),
            };
            if !unchanged {
                shared.emit(kind, now.to_string());
            }
            *last = Some(now);
        }
    }
}

/// Everything at once, as the REST answers give it (`null` where the node has none).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Snapshot {
    health: Value,
    sync: Value,
    connection: Value,
    system_register: Value,
    members: Value,
    #[serde(skip_serializing_if = "Value::is_null")]
    registers: Value,
}

impl Snapshot {
    async fn read(api: &NodeApi, with_registers: bool) -> Snapshot {
        let ((_, health), sync, connection, system_register) = tokio::join!(
            health_report(api),
            sync_report(api),
            api.connection_status(),
            api.system_register(),
        );
        let registers = match with_registers {
            true => api
                .available_view()
                .await
                .map(|view| json!(view.iter()))
                .unwrap_or(Value::Null),
            false => Value::Null,
        };
        Snapshot {
            health: json!(health),
            sync: sync.map(|report| json!(report)).unwrap_or(Value::Null),
            connection: connection
                .map(|status| json!(status))
                .unwrap_or(Value::Null),
            system_register: system_register
                .map(|view| json!(view))
                .unwrap_or(Value::Null),
            members: api
                .cluster_members()
                .map(|members| json!(members))
                .unwrap_or(Value::Null),
            registers,
        }
    }
}

/// What changed from `before` to `after` (both ordered by register id).
fn diff<'a>(
    before: impl Iterator<Item = &'a AvailableRegister>,
    after: impl Iterator<Item = &'a AvailableRegister>,
) -> (Vec<&'a AvailableRegister>, Vec<String>) {
    let (mut upserted, mut removed) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (before.peekable(), after.peekable());
    loop {
        match (old.peek(), new.peek()) {
            (None, None) => break,
            (Some(gone), None) => {
                removed.push(gone.register_id.to_string());
                old.next();
            }
            (None, Some(added)) => {
                upserted.push(*added);
                new.next();
            }
            (Some(a), Some(b)) => match a.register_id.cmp(&b.register_id) {
                std::cmp::Ordering::Less => {
                    removed.push(a.register_id.to_string());
                    old.next();
                }
                std::cmp::Ordering::Greater => {
                    upserted.push(*b);
                    new.next();
                }
                std::cmp::Ordering::Equal => {
                    if !a.shows_same(b) {
                        upserted.push(*b);
                    }
                    old.next();
                    new.next();
                }
            },
        }
    }
    (upserted, removed)
}

/// `GET /api/events`.
pub async fn events(
    State(state): State<RestState>,
    headers: HeaderMap,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let shared = Arc::clone(&state.events.shared);
    let resume_from = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|id| shared.parse_id(id));
    // Subscribe and read the ring under its lock: nothing is missed or sent twice.
    let (receiver, missed, last) = {
        let ring = shared
            .ring
            .lock()
            .expect("the event ring is never poisoned");
        let receiver = shared.sender.subscribe();
        let missed = resume_from.and_then(|from| ring.missed_since(from));
        (receiver, missed, ring.last)
    };
    debug!(resumed = missed.is_some(), "events reader connected");
    let first = match missed {
        Some(missed) => Start::Missed(missed),
        None => Start::Snapshot(Box::new(state.api.clone()), last),
    };
    let stream = futures::stream::unfold(
        Reader {
            shared,
            first: Some(first),
            backlog: VecDeque::new(),
            receiver,
        },
        Reader::next,
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
}

enum Start {
    /// Resume: these, then the live events.
    Missed(Vec<Arc<FeedEvent>>),
    /// A snapshot (named as of this sequence number), then the live events.
    Snapshot(Box<NodeApi>, u64),
}

struct Reader {
    shared: Arc<Shared>,
    first: Option<Start>,
    backlog: VecDeque<Arc<FeedEvent>>,
    receiver: broadcast::Receiver<Arc<FeedEvent>>,
}

impl Reader {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Reader)> {
        match self.first.take() {
            Some(Start::Snapshot(api, seq)) => {
                let snapshot = Snapshot::read(&api, true).await;
                let data = serde_json::to_string(&snapshot).unwrap_or_default();
                let event = Event::default()
                    .id(self.shared.id(seq))
                    .event("snapshot")
                    .data(data);
                return Some((Ok(event), self));
            }
            Some(Start::Missed(missed)) => self.backlog.extend(missed),
            None => {}
        }
        let event = match self.backlog.pop_front() {
            Some(event) => event,
            None => match self.receiver.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(behind)) => {
                    debug!(behind, "events reader too slow: dropped");
                    metrics::counter!("herald_events_readers_dropped_total").increment(1);
                    return None;
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            },
        };
        let out = Event::default()
            .id(self.shared.id(event.seq))
            .event(event.kind)
            .data(event.data.as_str());
        Some((Ok(out), self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messages::RegisterId;

    fn register(n: u8, version: u64) -> AvailableRegister {
        AvailableRegister {
            register_id: RegisterId::from_bytes([n; 16]),
            name: None,
            description: None,
            peer_count: 1,
            latest_version: version,
            latest_docket_version: 0,
            is_public: true,
            full_replica_peer_count: 1,
            local: true,
            verified: true,
            stale: false,
            local_state: Some(herald_messages::SyncState::FullyReplicated),
        }
    }

    #[test]
    fn the_diff_names_what_was_added_changed_and_removed() {
        let before = [register(1, 1), register(2, 1), register(4, 1)];
        let after = [register(2, 2), register(3, 1), register(4, 1)];
        let (upserted, removed) = diff(before.iter(), after.iter());
        let upserted: Vec<_> = upserted.into_iter().cloned().collect();
        assert_eq!(upserted, [register(2, 2), register(3, 1)]);
        assert_eq!(removed, [RegisterId::from_bytes([1; 16]).to_string()]);
    }

    fn seqs(events: Option<Vec<Arc<FeedEvent>>>) -> Option<Vec<u64>> {
        events.map(|events| events.iter().map(|event| event.seq).collect())
    }

    #[test]
    fn an_event_too_large_to_keep_is_sent_but_resuming_across_it_gets_a_snapshot() {
        let (sender, mut reader) = broadcast::channel(4);
        let shared = Shared {
            tag: 1,
            sender,
            ring: Mutex::new(Ring::default()),
        };
        shared.emit("health", "{}".to_owned());
        shared.emit("sync", "{}".to_owned());
        assert_eq!(
            seqs(shared.ring.lock().unwrap().missed_since(0)),
            Some(vec![1, 2])
        );
        shared.emit("registers", "x".repeat(MAX_KEPT_BYTES + 1));
        // The connected reader got it.
        let sent: Vec<u64> = std::iter::from_fn(|| reader.try_recv().ok())
            .map(|event| event.seq)
            .collect();
        assert_eq!(sent, [1, 2, 3]);
        let ring = shared.ring.lock().unwrap();
        assert_eq!(ring.bytes, 0, "nothing kept");
        // Missed it: a snapshot (None). Saw it: nothing missed.
        assert_eq!(seqs(ring.missed_since(2)), None);
        assert_eq!(seqs(ring.missed_since(3)), Some(vec![]));
        drop(ring);
        // Skipped (nobody listening): counted, so a reader from before it gets a snapshot.
        shared.skip();
        shared.emit("health", "{}".to_owned());
        let ring = shared.ring.lock().unwrap();
        assert_eq!(seqs(ring.missed_since(3)), None);
        assert_eq!(seqs(ring.missed_since(4)), Some(vec![5]));
    }

    #[test]
    fn ids_of_another_feed_are_not_resumed() {
        let (sender, _) = broadcast::channel(4);
        let shared = Shared {
            tag: 0xabc,
            sender,
            ring: Mutex::new(Ring::default()),
        };
        assert_eq!(shared.parse_id(&shared.id(7)), Some(7));
        assert_eq!(shared.parse_id("00000abd-7"), None);
        assert_eq!(shared.parse_id("garbage"), None);
    }
}
