//! The cluster's wire: what one node's gateway sends another's, and how bytes become that.
//!
//! The only remotable actor of a node is its gateway; its message enum (`GatewayMsg`) carries
//! opaque bytes, decoded here, fallibly, inside the handler: bad bytes are an error value,
//! never a panic. Every frame starts with a small binary header (magic, version, the sender's
//! node id) so that a body that fails to decode can still be blamed on a member. Bodies are
//! JSON (`Request`, `Reply`), versioned by `WIRE_VERSION`: a frame of another version is refused.
//!
//! A request larger than `PART_BYTES` (a big full sync) is sent as parts (`Part` casts, in
//! order on one connection) followed by a call that names the transfer (`Frame::Assembled`):
//! ractor_cluster drops a whole session on a frame over its 16 MiB inbound limit.

use serde::{Deserialize, Serialize};

use herald_messages::{BulkAdvertise, BulkOutcome, GossipMessage, MemberInfo, NodeId};

/// Version of the cluster protocol spoken here.
pub const WIRE_VERSION: u8 = 1;
const MAGIC: &[u8; 4] = b"HRLD";
/// A request larger than this is sent in parts of this size.
pub const PART_BYTES: usize = 4 * 1024 * 1024;
/// The largest request a gateway assembles (a full sync at the REST body limit, with room).
pub const MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;

const KIND_REQUEST: u8 = 1;
const KIND_REPLY: u8 = 2;
const KIND_PART: u8 = 3;
const KIND_ASSEMBLED: u8 = 4;

/// The remotable gateway's messages: bytes in, bytes out.
#[derive(ractor_cluster::RactorClusterMessage)]
pub enum GatewayMsg {
    /// One part of a large request (`Frame::Part`).
    Part(Vec<u8>),
    /// A request (`Frame::Request` or `Frame::Assembled`), answered with a `Frame::Reply`.
    #[rpc]
    Call(Vec<u8>, ractor::RpcReplyPort<Vec<u8>>),
}

/// A request from one member to another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Request {
    /// The sender's incarnation.
    pub incarnation: u64,
    /// The sender's clock when it sent this (milliseconds since the epoch): with the offset
    /// measured on earlier requests, the receiver tells how long it travelled.
    pub sent_at_ms: i64,
    /// The sender gives up after this long: a request older than that is not applied.
    pub deadline_ms: u64,
    pub body: RequestBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum RequestBody {
    /// Liveness: answered with `Reply::Pong`.
    Ping,
    /// Answered with `Reply::Described`.
    Describe,
    /// A push to the receiver's advertisement pool (register role to peer role).
    PoolPush { request: BulkAdvertise },
    /// The sender is shutting down: forget it now rather than suspect it. Answered with
    /// `Reply::Acknowledged`.
    Leave,
    /// One message of a gossip exchange (issue 9), for the receiver's gossip driver. Answered
    /// with `Reply::Acknowledged` once handed over (never after it was applied: the answer,
    /// `Ack` or `Ack2`, comes back as a request of its own), `Reply::Refused` by a node
    /// without the peer role.
    Gossip { message: GossipMessage },
}

impl RequestBody {
    pub fn name(&self) -> &'static str {
        match self {
            RequestBody::Ping => "ping",
            RequestBody::Describe => "describe",
            RequestBody::PoolPush { .. } => "pool_push",
            RequestBody::Leave => "leave",
            RequestBody::Gossip { .. } => "gossip",
        }
    }
}

/// A member known to the sender: id and cluster address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KnownMember {
    pub node_id: NodeId,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Reply {
    #[serde(rename_all = "camelCase")]
    Pong {
        incarnation: u64,
        revision: u64,
        view_hash: u64,
    },
    #[serde(rename_all = "camelCase")]
    Described {
        info: MemberInfo,
        view: Vec<KnownMember>,
        view_hash: u64,
    },
    Pushed {
        outcome: BulkOutcome,
    },
    /// Taken note of (a leave).
    Acknowledged,
    /// The request breaks a rule (bad bytes, invalid input): retrying it will not help.
    Refused {
        reason: String,
    },
    /// The receiver cannot serve it now (no pool role, pool restarting): retry later.
    Unavailable {
        reason: String,
    },
    /// The request arrived after its deadline and was not applied.
    #[serde(rename_all = "camelCase")]
    Stale {
        age_ms: u64,
    },
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Request(Request),
    Reply(Reply),
    Part {
        transfer: u64,
        index: u32,
        bytes: Vec<u8>,
    },
    Assembled {
        transfer: u64,
        parts: u32,
    },
}

/// Bytes that are not a frame of this version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct WireError {
    /// The sender named in the header, when the header was readable.
    pub from: Option<NodeId>,
    pub reason: String,
}

impl WireError {
    fn new(from: Option<&NodeId>, reason: impl Into<String>) -> Self {
        Self {
            from: from.cloned(),
            reason: reason.into(),
        }
    }
}

/// Encodes a request from `from`.
pub fn encode_request(from: &NodeId, request: &Request) -> Vec<u8> {
    let mut bytes = header(from, KIND_REQUEST);
    serde_json::to_writer(&mut bytes, request).expect("a request serializes");
    bytes
}

/// Encodes a reply from `from`.
pub fn encode_reply(from: &NodeId, reply: &Reply) -> Vec<u8> {
    let mut bytes = header(from, KIND_REPLY);
    serde_json::to_writer(&mut bytes, reply).expect("a reply serializes");
    bytes
}

/// Splits an encoded request (`encode_request`) into parts and the call that assembles them.
pub fn split_request(from: &NodeId, request: &[u8], transfer: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let body = &request[header_len(from)..];
    let parts: Vec<Vec<u8>> = body
        .chunks(PART_BYTES)
        .enumerate()
        .map(|(index, chunk)| {
            let mut bytes = header(from, KIND_PART);
            bytes.extend_from_slice(&transfer.to_be_bytes());
            bytes.extend_from_slice(&u32::try_from(index).unwrap_or(u32::MAX).to_be_bytes());
            bytes.extend_from_slice(chunk);
            bytes
        })
        .collect();
    let mut call = header(from, KIND_ASSEMBLED);
    call.extend_from_slice(&transfer.to_be_bytes());
    call.extend_from_slice(&u32::try_from(parts.len()).unwrap_or(u32::MAX).to_be_bytes());
    (parts, call)
}

/// Decodes one frame.
pub fn decode(bytes: &[u8]) -> Result<(NodeId, Frame), WireError> {
    let (from, kind, rest) = read_header(bytes)?;
    let frame = match kind {
        KIND_REQUEST => Frame::Request(decode_request_body(&from, rest)?),
        KIND_REPLY => Frame::Reply(
            serde_json::from_slice(rest)
                .map_err(|err| WireError::new(Some(&from), format!("reply: {err}")))?,
        ),
        KIND_PART => {
            let (transfer, rest) = read_u64(&from, rest)?;
            let (index, rest) = read_u32(&from, rest)?;
            Frame::Part {
                transfer,
                index,
                bytes: rest.to_vec(),
            }
        }
        KIND_ASSEMBLED => {
            let (transfer, rest) = read_u64(&from, rest)?;
            let (parts, rest) = read_u32(&from, rest)?;
            if !rest.is_empty() {
                return Err(WireError::new(Some(&from), "trailing bytes"));
            }
            Frame::Assembled { transfer, parts }
        }
        other => {
            return Err(WireError::new(
                Some(&from),
                format!("unknown frame kind {other}"),
            ));
        }
    };
    Ok((from, frame))
}

/// Decodes the JSON body of a request (whole, or assembled from parts).
pub fn decode_request_body(from: &NodeId, body: &[u8]) -> Result<Request, WireError> {
    serde_json::from_slice(body)
        .map_err(|err| WireError::new(Some(from), format!("request: {err}")))
}

fn header(from: &NodeId, kind: u8) -> Vec<u8> {
    let id = from.as_str().as_bytes();
    let mut bytes = Vec::with_capacity(header_len(from) + 64);
    bytes.extend_from_slice(MAGIC);
    bytes.push(WIRE_VERSION);
    // A node id is at most 64 bytes.
    bytes.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
    bytes.extend_from_slice(id);
    bytes.push(kind);
    bytes
}

fn header_len(from: &NodeId) -> usize {
    MAGIC.len() + 2 + from.as_str().len() + 1
}

fn read_header(bytes: &[u8]) -> Result<(NodeId, u8, &[u8]), WireError> {
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| WireError::new(None, "not a herald frame (bad magic)"))?;
    let [version, id_len, rest @ ..] = rest else {
        return Err(WireError::new(None, "truncated header"));
    };
    let id_len = usize::from(*id_len);
    if rest.len() < id_len + 1 {
        return Err(WireError::new(None, "truncated header"));
    }
    let (id, rest) = rest.split_at(id_len);
    let from = std::str::from_utf8(id)
        .ok()
        .and_then(|id| NodeId::parse(id).ok())
        .ok_or_else(|| WireError::new(None, "the sender's node id is not valid"))?;
    if *version != WIRE_VERSION {
        return Err(WireError::new(
            Some(&from),
            format!("wire version {version}, this node speaks {WIRE_VERSION}"),
        ));
    }
    let (kind, rest) = rest.split_first().expect("length checked above");
    Ok((from, *kind, rest))
}

fn read_u64<'a>(from: &NodeId, bytes: &'a [u8]) -> Result<(u64, &'a [u8]), WireError> {
    match bytes.split_first_chunk::<8>() {
        Some((value, rest)) => Ok((u64::from_be_bytes(*value), rest)),
        None => Err(WireError::new(Some(from), "truncated frame")),
    }
}

fn read_u32<'a>(from: &NodeId, bytes: &'a [u8]) -> Result<(u32, &'a [u8]), WireError> {
    match bytes.split_first_chunk::<4>() {
        Some((value, rest)) => Ok((u32::from_be_bytes(*value), rest)),
        None => Err(WireError::new(Some(from), "truncated frame")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_messages::{AdInput, RegisterId};

    fn node(id: &str) -> NodeId {
        NodeId::parse(id).expect("valid node id")
    }

    fn request(body: RequestBody) -> Request {
        Request {
            incarnation: 3,
            sent_at_ms: 1_700_000_000_000,
            deadline_ms: 500,
            body,
        }
    }

    #[test]
    fn requests_and_replies_round_trip() {
        let ping = request(RequestBody::Ping);
        let bytes = encode_request(&node("peer-a"), &ping);
        assert_eq!(
            decode(&bytes),
            Ok((node("peer-a"), Frame::Request(ping.clone())))
        );
        let reply = Reply::Pong {
            incarnation: 1,
            revision: 2,
            view_hash: 3,
        };
        let bytes = encode_reply(&node("peer-b"), &reply);
        assert_eq!(decode(&bytes), Ok((node("peer-b"), Frame::Reply(reply))));
    }

    #[test]
    fn bad_bytes_are_errors_that_name_the_sender_when_they_can() {
        assert_eq!(decode(b"").unwrap_err().from, None);
        assert_eq!(decode(b"GET / HTTP/1.1").unwrap_err().from, None);
        assert_eq!(decode(b"HRLD\x01\xff").unwrap_err().from, None);
        let mut bytes = encode_request(&node("peer-a"), &request(RequestBody::Ping));
        bytes.truncate(bytes.len() - 3);
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err.from, Some(node("peer-a")));
        assert!(err.reason.starts_with("request:"), "{err}");
        let mut other_version = encode_request(&node("peer-a"), &request(RequestBody::Ping));
        other_version[4] = 9;
        let err = decode(&other_version).unwrap_err();
        assert_eq!(err.from, Some(node("peer-a")));
        assert!(err.reason.contains("wire version 9"), "{err}");
        let mut unknown_kind = header(&node("peer-a"), 77);
        unknown_kind.extend_from_slice(b"{}");
        assert!(decode(&unknown_kind).is_err());
        // Every prefix of a valid frame is refused or decoded, never a panic.
        let whole = encode_request(&node("peer-a"), &request(RequestBody::Describe));
        for end in 0..whole.len() {
            let _ = decode(&whole[..end]);
        }
    }

    #[test]
    fn unknown_fields_and_request_types_are_refused() {
        let mut bytes = header(&node("peer-a"), KIND_REQUEST);
        bytes.extend_from_slice(
            br#"{"incarnation":1,"sentAtMs":0,"deadlineMs":1,"body":{"type":"launchMissiles"}}"#,
        );
        assert!(decode(&bytes).is_err());
        let mut bytes = header(&node("peer-a"), KIND_REQUEST);
        bytes.extend_from_slice(
            br#"{"incarnation":1,"sentAtMs":0,"deadlineMs":1,"body":{"type":"ping"},"extra":1}"#,
        );
        assert!(decode(&bytes).is_err());
    }

    #[test]
    fn a_large_request_splits_into_parts_that_reassemble() {
        let ads: Vec<AdInput> = (0..60_000u32)
            .map(|i| {
                let mut input = AdInput::withdraw(
                    RegisterId::parse(&format!("{i:032x}")).expect("valid register id"),
                );
                input.name = Some(format!("register number {i} with a long enough name").into());
                input
            })
            .collect();
        let push = request(RequestBody::PoolPush {
            request: BulkAdvertise {
                advertisements: ads,
                full_sync: true,
                snapshot: None,
            },
        });
        let from = node("reg-a");
        let whole = encode_request(&from, &push);
        assert!(whole.len() > PART_BYTES, "{} bytes", whole.len());
        let (parts, call) = split_request(&from, &whole, 42);
        assert_eq!(parts.len(), whole.len().div_ceil(PART_BYTES));
        let mut body = Vec::new();
        for (expected, part) in parts.iter().enumerate() {
            let (sender, frame) = decode(part).expect("a part decodes");
            assert_eq!(sender, from);
            let Frame::Part {
                transfer,
                index,
                bytes,
            } = frame
            else {
                panic!("not a part: {frame:?}");
            };
            assert_eq!((transfer, index as usize), (42, expected));
            body.extend_from_slice(&bytes);
        }
        assert_eq!(
            decode(&call),
            Ok((
                from.clone(),
                Frame::Assembled {
                    transfer: 42,
                    parts: u32::try_from(parts.len()).expect("few parts")
                }
            ))
        );
        assert_eq!(decode_request_body(&from, &body), Ok(push));
    }
}
