//! `ClusterGateway`: the one actor of a node that other nodes can reach. It decodes their
//! frames (fallibly: bad bytes are refused, logged with the member's name and counted), drops
//! requests that arrive after their deadline, and answers:
//!
//! - `Ping` and `Describe` at once, from the view the cluster link publishes (never through
//!   another mailbox, so a busy node still answers pings on time);
//! - `Leave` by telling the link (the member is forgotten, not suspected);
//! - `PoolPush` in a task, through this node's pool slot, so a long full sync never holds up a
//!   ping.
//!
//! Every handler is idempotent: a late duplicate of a ping or a description changes nothing, and
//! a repeated push is the same bulk request again (the pool's snapshot rules order full syncs).
//!
//! A request's age is measured without synchronized clocks: the gateway keeps, per member
//! incarnation, the smallest `receive time − sent time` of recent requests (transit plus clock
//! offset, as NTP's clock filter does) and takes anything beyond that as time the request spent
//! waiting: in a frozen process's socket buffer, or a stalled sender.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, debug, warn};

use herald_actors::ActorSlot;
use herald_actors::actor_kit::MessageName;
use herald_actors::ports::Clock;
use herald_messages::{AdvertisementPoolMsg, NodeId, Validate};

use super::gossip::GossipDriverMsg;
use super::view::ClusterView;
use super::wire::{
    self, Frame, GatewayMsg, KnownMember, MAX_REQUEST_BYTES, Reply, Request, RequestBody,
};

/// Requests sampled per member for the transit estimate.
const TRANSIT_SAMPLES: usize = 16;
/// A transfer whose call has not come within this is dropped.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(60);
/// Bytes of unfinished transfers held at most, from all members together.
const MAX_TRANSFER_BYTES: usize = 2 * MAX_REQUEST_BYTES;

/// The process-group scope and group every node's gateway joins.
pub const PG_SCOPE: &str = "herald";
pub const PG_GROUP: &str = "gateways";
const NAME_PREFIX: &str = "herald.gateway.";

/// The registered name of `node`'s gateway (ractor carries it to the other nodes).
pub fn gateway_name(node: &NodeId) -> String {
    format!("{NAME_PREFIX}{node}")
}

/// The node a gateway's name belongs to.
pub fn gateway_node(name: &str) -> Option<NodeId> {
    NodeId::parse(name.strip_prefix(NAME_PREFIX)?).ok()
}

pub struct ClusterGateway;

#[derive(Clone)]
pub struct GatewayArgs {
    pub node_id: NodeId,
    pub view: watch::Receiver<Arc<ClusterView>>,
    pub pool: Option<ActorSlot<AdvertisementPoolMsg>>,
    pub clock: Arc<dyn Clock>,
    /// Deadline of a call to the pool, at most the request's own.
    pub call_timeout: Duration,
    /// Told when a member says it is leaving.
    pub on_leave: Arc<dyn Fn(NodeId) + Send + Sync>,
    /// This node's gossip driver (peer role in a cluster), handed gossip messages by cast.
    pub gossip: Option<ActorSlot<GossipDriverMsg>>,
}

pub struct GatewayState {
    args: GatewayArgs,
    transit: HashMap<NodeId, Transit>,
    transfers: HashMap<(NodeId, u64), Transfer>,
    transfer_bytes: usize,
}

/// The smallest recent `receive − sent` of one member's requests.
struct Transit {
    incarnation: u64,
    samples: VecDeque<i64>,
}

struct Transfer {
    next_index: u32,
    bytes: Vec<u8>,
    started: Instant,
}

impl Actor for ClusterGateway {
    type Msg = GatewayMsg;
    type State = GatewayState;
    type Arguments = GatewayArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<GatewayMsg>,
        args: GatewayArgs,
    ) -> Result<GatewayState, ActorProcessingErr> {
        ractor::pg::join_scoped(
            PG_SCOPE.to_owned(),
            PG_GROUP.to_owned(),
            vec![myself.get_cell()],
        );
        Ok(GatewayState {
            args,
            transit: HashMap::new(),
            transfers: HashMap::new(),
            transfer_bytes: 0,
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<GatewayMsg>,
        msg: GatewayMsg,
        state: &mut GatewayState,
    ) -> Result<(), ActorProcessingErr> {
        let span = tracing::debug_span!("actor", actor = "cluster_gateway", node = %state.args.node_id, msg = msg.name());
        async move {
            match msg {
                GatewayMsg::Part(bytes) => state.on_part(&bytes),
                GatewayMsg::Call(bytes, reply) => state.on_call(&bytes, reply),
            }
        }
        .instrument(span)
        .await;
        Ok(())
    }
}

impl MessageName for GatewayMsg {
    fn name(&self) -> &'static str {
        match self {
            GatewayMsg::Part(_) => "part",
            GatewayMsg::Call(..) => "call",
        }
    }
}

impl GatewayState {
    fn on_part(&mut self, bytes: &[u8]) {
        self.drop_old_transfers();
        let (from, frame) = match wire::decode(bytes) {
            Ok(decoded) => decoded,
            Err(err) => return refused(err.from.as_ref(), &err.reason),
        };
        let Frame::Part {
            transfer,
            index,
            bytes,
        } = frame
        else {
            return refused(Some(&from), "a part message that is not a part");
        };
        let key = (from.clone(), transfer);
        if index == 0 {
            if let Some(old) = self.transfers.remove(&key) {
                self.transfer_bytes -= old.bytes.len();
            }
            self.transfers.insert(
                key.clone(),
                Transfer {
                    next_index: 0,
                    bytes: Vec::new(),
                    started: Instant::now(),
                },
            );
        }
        let Some(entry) = self.transfers.get_mut(&key) else {
            return refused(Some(&from), "a part of a transfer that did not start");
        };
        let too_big = entry.bytes.len() + bytes.len() > MAX_REQUEST_BYTES
            || self.transfer_bytes + bytes.len() > MAX_TRANSFER_BYTES;
        if entry.next_index != index || too_big {
            let reason = if too_big {
                "a transfer over the size limit"
            } else {
                "a part out of order"
            };
            if let Some(old) = self.transfers.remove(&key) {
                self.transfer_bytes -= old.bytes.len();
            }
            return refused(Some(&from), reason);
        }
        entry.next_index += 1;
        self.transfer_bytes += bytes.len();
        entry.bytes.extend_from_slice(&bytes);
    }

    fn on_call(&mut self, bytes: &[u8], reply: RpcReplyPort<Vec<u8>>) {
        let me = self.args.node_id.clone();
        let (from, request) = match self.request_of(bytes) {
            Ok(decoded) => decoded,
            Err((from, reason)) => {
                refused(from.as_ref(), &reason);
                let _ = reply.send(wire::encode_reply(&me, &Reply::Refused { reason }));
                return;
            }
        };
        let size = bytes.len();
        let kind = request.body.name();
        if let Some(age) = self.stale(&from, &request) {
            debug!(member = %from, request = kind, age_ms = age, deadline_ms = request.deadline_ms, "request arrived after its deadline; not applied");
            metrics::counter!("herald_cluster_stale_requests_total", "node" => me.to_string(), "member" => from.to_string()).increment(1);
            let _ = reply.send(wire::encode_reply(&me, &Reply::Stale { age_ms: age }));
            return;
        }
        let view = Arc::clone(&self.args.view.borrow());
        match request.body {
            RequestBody::Ping => {
                let answer = Reply::Pong {
                    incarnation: view.me.incarnation,
                    revision: view.me.revision,
                    view_hash: view.view_hash,
                };
                let _ = reply.send(wire::encode_reply(&me, &answer));
            }
            RequestBody::Describe => {
                let answer = Reply::Described {
                    info: view.me.clone(),
                    view: view
                        .known
                        .iter()
                        .map(|(node_id, address)| KnownMember {
                            node_id: node_id.clone(),
                            address: address.clone(),
                        })
                        .collect(),
                    view_hash: view.view_hash,
                };
                let _ = reply.send(wire::encode_reply(&me, &answer));
            }
            RequestBody::Leave => {
                (self.args.on_leave)(from);
                let _ = reply.send(wire::encode_reply(&me, &Reply::Acknowledged));
            }
            RequestBody::Gossip { message } => {
                // Handed over by cast: a ping behind it is never held up by the gossip, and
                // the driver validates every entry (a bad one refused alone, and counted).
                let answer = match &self.args.gossip {
                    None => Reply::Refused {
                        reason: "this node does not gossip: it does not run the peer role"
                            .to_owned(),
                    },
                    Some(driver) => match driver.cast(GossipDriverMsg::Received {
                        from,
                        message,
                        bytes: size,
                    }) {
                        Ok(()) => Reply::Acknowledged,
                        Err(err) => Reply::Unavailable {
                            reason: format!("the gossip driver is not running: {err}"),
                        },
                    },
                };
                let _ = reply.send(wire::encode_reply(&me, &answer));
            }
            RequestBody::PoolPush { request: push } => {
                let pool = self.args.pool.clone();
                let deadline =
                    Duration::from_millis(request.deadline_ms).min(self.args.call_timeout);
                tokio::spawn(
                    async move {
                        let answer = push_to_pool(pool, push, deadline).await;
                        if let Reply::Refused { reason } = &answer {
                            warn!(member = %from, %reason, "push refused");
                        }
                        let _ = reply.send(wire::encode_reply(&me, &answer));
                    }
                    .in_current_span(),
                );
            }
        }
    }

    /// The request in `bytes`, whole or assembled from its parts.
    fn request_of(&mut self, bytes: &[u8]) -> Result<(NodeId, Request), (Option<NodeId>, String)> {
        let (from, frame) = wire::decode(bytes).map_err(|err| (err.from, err.reason))?;
        match frame {
            Frame::Request(request) => Ok((from, request)),
            Frame::Assembled { transfer, parts } => {
                let Some(entry) = self.transfers.remove(&(from.clone(), transfer)) else {
                    return Err((Some(from), format!("transfer {transfer} has no parts here")));
                };
                self.transfer_bytes -= entry.bytes.len();
                if entry.next_index != parts {
                    return Err((
                        Some(from),
                        format!(
                            "transfer {transfer}: {} of {parts} parts arrived",
                            entry.next_index
                        ),
                    ));
                }
                let request = wire::decode_request_body(&from, &entry.bytes)
                    .map_err(|err| (Some(from.clone()), err.reason))?;
                Ok((from, request))
            }
            Frame::Reply(_) | Frame::Part { .. } => {
                Err((Some(from), "a call that is not a request".to_owned()))
            }
        }
    }

    /// How long the request waited beyond the member's usual transit, if longer than its
    /// deadline. Samples the request either way.
    fn stale(&mut self, from: &NodeId, request: &Request) -> Option<u64> {
        let now = self.args.clock.now().as_unix_millis();
        let sample = now.saturating_sub(request.sent_at_ms);
        let transit = self.transit.entry(from.clone()).or_insert_with(|| Transit {
            incarnation: request.incarnation,
            samples: VecDeque::with_capacity(TRANSIT_SAMPLES),
        });
        if transit.incarnation != request.incarnation {
            // A restarted member: its clock may be another.
            transit.incarnation = request.incarnation;
            transit.samples.clear();
        }
        let usual = transit.samples.iter().copied().min().unwrap_or(sample);
        if transit.samples.len() == TRANSIT_SAMPLES {
            transit.samples.pop_front();
        }
        transit.samples.push_back(sample);
        let waited = u64::try_from(sample.saturating_sub(usual)).unwrap_or(0);
        (waited > request.deadline_ms).then_some(waited)
    }

    fn drop_old_transfers(&mut self) {
        let now = Instant::now();
        let mut freed = 0;
        self.transfers.retain(|(from, transfer), entry| {
            let keep = now.saturating_duration_since(entry.started) < TRANSFER_TIMEOUT;
            if !keep {
                debug!(member = %from, transfer, "dropping a transfer whose call never came");
                freed += entry.bytes.len();
            }
            keep
        });
        self.transfer_bytes -= freed;
    }
}

async fn push_to_pool(
    pool: Option<ActorSlot<AdvertisementPoolMsg>>,
    push: herald_messages::BulkAdvertise,
    deadline: Duration,
) -> Reply {
    let Some(pool) = pool else {
        return Reply::Refused {
            reason: "this node does not run the peer role".to_owned(),
        };
    };
    let push = match push.validated() {
        Ok(push) => push,
        Err(err) => {
            return Reply::Refused {
                reason: err.to_string(),
            };
        }
    };
    match pool
        .call(|reply| AdvertisementPoolMsg::Bulk(push, reply), deadline)
        .await
    {
        Ok(Ok(outcome)) => Reply::Pushed { outcome },
        // Invalid input or a stale snapshot: the pool decided.
        Ok(Err(err)) => Reply::Refused {
            reason: err.to_string(),
        },
        Err(err) => Reply::Unavailable {
            reason: format!("the pool did not answer: {err}"),
        },
    }
}

/// Logs and counts bytes a member sent that are not a valid request.
fn refused(from: Option<&NodeId>, reason: &str) {
    let member = from.map_or_else(|| "unknown".to_owned(), NodeId::to_string);
    warn!(%member, %reason, "refused a cluster message");
    metrics::counter!("herald_cluster_refused_messages_total", "member" => member).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_actors::testing::{InMemoryAdStore, ManualClock};
    use herald_actors::{AdvertisementPool, AdvertisementPoolArgs, PoolConfig};
    use herald_messages::{
        AdInput, BulkAdvertise, ChildKind, MemberInfo, RegisterId, Role, Timestamp,
    };

    use crate::cluster::ClusterShared;
    use crate::cluster::wire::{Frame, PART_BYTES};

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).unwrap()
    }

    struct Fixture {
        args: GatewayArgs,
        gateway: ActorRef<GatewayMsg>,
        store: Arc<InMemoryAdStore>,
        clock: ManualClock,
        _shared: Arc<ClusterShared>,
    }

    /// A real gateway in front of a real pool (in-memory store), on a clock the test sets.
    async fn fixture(me: &str) -> Fixture {
        let clock = ManualClock::new(Timestamp::from_unix_millis(1_800_000_000_000));
        let store = Arc::new(InMemoryAdStore::new());
        let pool = ActorSlot::new(ChildKind::AdvertisementPool);
        let (actor, _) = Actor::spawn(
            None,
            AdvertisementPool,
            AdvertisementPoolArgs {
                node_id: node(me),
                config: PoolConfig::default(),
                store: store.clone(),
                clock: Arc::new(clock.clone()),
                view: herald_actors::Published::new(herald_messages::PoolView::starting(
                    node(me),
                    1,
                )),
            },
        )
        .await
        .unwrap();
        pool.attach(actor);
        let (shared, _) = ClusterShared::new(MemberInfo {
            node_id: node(me),
            incarnation: 42,
            revision: 3,
            roles: vec![Role::Peer],
            cluster_address: "127.0.0.1:1".into(),
            http_address: None,
            grpc_address: None,
            started_at: clock.now(),
            current_hub: None,
            hub_connection: None,
        });
        let args = GatewayArgs {
            node_id: node(me),
            view: shared.subscribe(),
            pool: Some(pool),
            clock: Arc::new(clock.clone()),
            call_timeout: Duration::from_secs(5),
            on_leave: Arc::new(|_| {}),
            gossip: None,
        };
        let (gateway, _) =
            Actor::spawn(Some(gateway_name(&node(me))), ClusterGateway, args.clone())
                .await
                .unwrap();
        Fixture {
            args,
            gateway,
            store,
            clock,
            _shared: shared,
        }
    }

    impl Fixture {
        async fn send(&self, bytes: Vec<u8>) -> Reply {
            let answer = self
                .gateway
                .call(
                    |reply| GatewayMsg::Call(bytes, reply),
                    Some(Duration::from_secs(5)),
                )
                .await
                .unwrap();
            let ractor::rpc::CallResult::Success(bytes) = answer else {
                panic!("no answer");
            };
            match wire::decode(&bytes).unwrap() {
                (_, Frame::Reply(reply)) => reply,
                (_, other) => panic!("not a reply: {other:?}"),
            }
        }

        /// A request from `from` that left its sender `age` ago by the sender's clock.
        fn request(
            &self,
            from: &str,
            incarnation: u64,
            age: Duration,
            body: RequestBody,
        ) -> Vec<u8> {
            let sent_at = self.clock.now().saturating_sub(age);
            wire::encode_request(
                &node(from),
                &Request {
                    incarnation,
                    sent_at_ms: sent_at.as_unix_millis(),
                    deadline_ms: 1_000,
                    body,
                },
            )
        }
    }

    fn push(ids: std::ops::Range<u32>) -> RequestBody {
        RequestBody::PoolPush {
            request: BulkAdvertise {
                advertisements: ids
                    .map(|i| AdInput::public(RegisterId::parse(&format!("{i:032x}")).unwrap()))
                    .collect(),
                full_sync: false,
                snapshot: None,
            },
        }
    }

    /// Gossip is handed to the driver by cast (`Acknowledged` at once); a node without one
    /// (no peer role) refuses it, and a body that is not a gossip message is refused whole.
    #[tokio::test]
    async fn gossip_is_handed_over_or_refused() {
        let fixture = fixture("gw-gossip").await;
        let syn = RequestBody::Gossip {
            message: herald_messages::GossipMessage::Ack2 {
                deltas: Vec::new(),
                bump: None,
            },
        };
        let reply = fixture
            .send(fixture.request("m1", 1, Duration::ZERO, syn.clone()))
            .await;
        assert!(
            matches!(&reply, Reply::Refused { reason } if reason.contains("does not gossip")),
            "{reply:?}"
        );
        let mut bytes = header_of("m1");
        bytes.extend_from_slice(
            br#"{"incarnation":1,"sentAtMs":0,"deadlineMs":1000,"body":{"type":"gossip","message":{"kind":"ack2","deltas":[{"origin":"not valid!"}]}}}"#,
        );
        let reply = fixture.send(bytes).await;
        assert!(matches!(reply, Reply::Refused { .. }), "{reply:?}");

        let (driver, mut received) = tokio::sync::mpsc::unbounded_channel();
        let slot = ActorSlot::new(ChildKind::GossipDriver);
        let (actor, _) = Actor::spawn(None, Recorder(driver), ()).await.unwrap();
        slot.attach(actor);
        let mut args = GatewayArgs {
            gossip: Some(slot),
            ..fixture.args.clone()
        };
        args.node_id = node("gw-gossip-2");
        let (gateway, _) = Actor::spawn(None, ClusterGateway, args).await.unwrap();
        let with_driver = Fixture { gateway, ..fixture };
        let reply = with_driver
            .send(with_driver.request("m1", 1, Duration::ZERO, syn))
            .await;
        assert_eq!(reply, Reply::Acknowledged);
        let (from, bytes) = received.recv().await.expect("handed to the driver");
        assert_eq!(from, node("m1"));
        assert!(bytes > 0);
    }

    /// Stands in for the gossip driver: reports what the gateway hands over.
    struct Recorder(tokio::sync::mpsc::UnboundedSender<(NodeId, usize)>);

    impl Actor for Recorder {
        type Msg = GossipDriverMsg;
        type State = ();
        type Arguments = ();

        async fn pre_start(
            &self,
            _: ActorRef<GossipDriverMsg>,
            (): (),
        ) -> Result<(), ActorProcessingErr> {
            Ok(())
        }

        async fn handle(
            &self,
            _: ActorRef<GossipDriverMsg>,
            msg: GossipDriverMsg,
            (): &mut (),
        ) -> Result<(), ActorProcessingErr> {
            if let GossipDriverMsg::Received { from, bytes, .. } = msg {
                let _ = self.0.send((from, bytes));
            }
            Ok(())
        }
    }

    fn header_of(from: &str) -> Vec<u8> {
        let mut bytes = wire::encode_request(
            &node(from),
            &Request {
                incarnation: 1,
                sent_at_ms: 0,
                deadline_ms: 1,
                body: RequestBody::Ping,
            },
        );
        let body = br#"{"incarnation":1,"sentAtMs":0,"deadlineMs":1,"body":{"type":"ping"}}"#;
        assert!(bytes.ends_with(body));
        bytes.truncate(bytes.len() - body.len());
        bytes
    }

    #[tokio::test]
    async fn answers_pings_from_the_published_view() {
        let fixture = fixture("gw-ping").await;
        let reply = fixture
            .send(fixture.request("m1", 1, Duration::ZERO, RequestBody::Ping))
            .await;
        assert_eq!(
            reply,
            Reply::Pong {
                incarnation: 42,
                revision: 3,
                view_hash: crate::cluster::membership::view_hash(&[]),
            }
        );
    }

    #[tokio::test]
    async fn bad_bytes_are_refused_and_the_gateway_keeps_serving() {
        let fixture = fixture("gw-bad").await;
        for garbage in [
            Vec::new(),
            b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            vec![0xff; 4096],
            {
                let mut cut = fixture.request("m1", 1, Duration::ZERO, push(0..3));
                cut.truncate(cut.len() / 2);
                cut
            },
        ] {
            let reply = fixture.send(garbage).await;
            assert!(matches!(reply, Reply::Refused { .. }), "{reply:?}");
        }
        let part = wire::split_request(
            &node("m1"),
            &fixture.request("m1", 1, Duration::ZERO, RequestBody::Ping),
            9,
        )
        .1;
        let reply = fixture.send(part).await;
        assert!(
            matches!(&reply, Reply::Refused { reason } if reason.contains("no parts")),
            "{reply:?}"
        );
        let reply = fixture
            .send(fixture.request("m1", 1, Duration::ZERO, RequestBody::Ping))
            .await;
        assert!(matches!(reply, Reply::Pong { .. }), "{reply:?}");
        assert!(fixture.store.stored().is_empty(), "nothing applied");
    }

    #[tokio::test]
    async fn a_request_that_waited_past_its_deadline_is_not_applied() {
        let fixture = fixture("gw-stale").await;
        // The member's usual transit: its clock is 30 s behind ours, requests take no time.
        let behind = Duration::from_secs(30);
        let reply = fixture
            .send(fixture.request("m1", 1, behind, RequestBody::Ping))
            .await;
        assert!(matches!(reply, Reply::Pong { .. }));
        let reply = fixture
            .send(fixture.request("m1", 1, behind, push(0..1)))
            .await;
        assert!(
            matches!(reply, Reply::Pushed { outcome } if outcome.added == 1),
            "{reply:?}"
        );
        // One that sat 5 s in a socket buffer (deadline 1 s): refused as stale.
        let late = behind + Duration::from_secs(5);
        let reply = fixture
            .send(fixture.request("m1", 1, late, push(1..2)))
            .await;
        assert!(
            matches!(reply, Reply::Stale { age_ms } if age_ms >= 5_000),
            "{reply:?}"
        );
        assert_eq!(
            fixture.store.stored().len(),
            1,
            "the stale push was not applied"
        );
        // A restarted member (new incarnation) may run on another clock: measured afresh.
        let reply = fixture
            .send(fixture.request("m1", 2, late, push(2..3)))
            .await;
        assert!(matches!(reply, Reply::Pushed { .. }), "{reply:?}");
    }

    #[tokio::test]
    async fn a_request_larger_than_a_frame_arrives_in_parts() {
        let fixture = fixture("gw-parts").await;
        let mut body = push(0..10_000);
        if let RequestBody::PoolPush { request } = &mut body {
            for ad in &mut request.advertisements {
                ad.description = Some("d".repeat(500).into());
            }
        }
        let whole = fixture.request("m1", 1, Duration::ZERO, body);
        assert!(whole.len() > PART_BYTES);
        let (parts, call) = wire::split_request(&node("m1"), &whole, 7);
        for part in parts {
            fixture.gateway.cast(GatewayMsg::Part(part)).unwrap();
        }
        let reply = fixture.send(call).await;
        assert!(
            matches!(reply, Reply::Pushed { outcome } if outcome.added == 10_000),
            "{reply:?}"
        );
    }
}
