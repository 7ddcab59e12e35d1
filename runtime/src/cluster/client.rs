//! Calling another member's gateway: one request, a deadline, a decoded reply. A request too
//! large for one frame goes as parts first (`wire::split_request`).

use std::sync::Arc;
use std::time::Duration;

use ractor::ActorRef;
use ractor::rpc::CallResult;

use herald_actors::ports::Clock;
use herald_messages::NodeId;

use super::wire::{self, Frame, GatewayMsg, PART_BYTES, Reply, Request, RequestBody};

/// Why a call got no reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The member's session is gone (or went while waiting).
    #[error("the member is not connected: {0}")]
    Disconnected(String),
    #[error("the member answered bytes that are not a reply: {0}")]
    BadReply(String),
}

/// This node as a caller: its id and incarnation, and the clock that stamps requests.
#[derive(Clone)]
pub struct GatewayClient {
    me: NodeId,
    incarnation: u64,
    clock: Arc<dyn Clock>,
}

impl GatewayClient {
    pub fn new(me: NodeId, incarnation: u64, clock: Arc<dyn Clock>) -> Self {
        Self {
            me,
            incarnation,
            clock,
        }
    }

    /// Sends `body` to `gateway` and waits up to `deadline` for its reply; the receiver does
    /// not apply it once `deadline` has passed.
    pub async fn call(
        &self,
        gateway: &ActorRef<GatewayMsg>,
        body: RequestBody,
        deadline: Duration,
    ) -> Result<Reply, CallError> {
        let request = Request {
            incarnation: self.incarnation,
            sent_at_ms: self.clock.now().as_unix_millis(),
            deadline_ms: u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX),
            body,
        };
        let bytes = wire::encode_request(&self.me, &request);
        let bytes = if bytes.len() > PART_BYTES {
            let (parts, call) = wire::split_request(&self.me, &bytes, rand::random());
            for part in parts {
                gateway
                    .cast(GatewayMsg::Part(part))
                    .map_err(|err| CallError::Disconnected(err.to_string()))?;
            }
            call
        } else {
            bytes
        };
        let answer = gateway
            .call(|reply| GatewayMsg::Call(bytes, reply), Some(deadline))
            .await
            .map_err(|err| CallError::Disconnected(err.to_string()))?;
        let bytes = match answer {
            CallResult::Success(bytes) => bytes,
            CallResult::Timeout => return Err(CallError::Timeout(deadline)),
            CallResult::SenderError => {
                return Err(CallError::Disconnected(
                    "the session closed before the reply".to_owned(),
                ));
            }
        };
        match wire::decode(&bytes) {
            Ok((_, Frame::Reply(reply))) => Ok(reply),
            Ok(_) => Err(CallError::BadReply(
                "a frame that is not a reply".to_owned(),
            )),
            Err(err) => Err(CallError::BadReply(err.reason)),
        }
    }
}
