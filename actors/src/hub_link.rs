//! `LocalHubLink`: a `HubLink` straight to `SystemRegisterAuthority` actors in this process,
//! through their slots. It serves embedded deployments where one host runs a hub and peers,
//! and the actor tests, which run whole hubs and peers on tokio's paused clock. The gRPC link
//! lives in `herald-runtime`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use herald_messages::{
    AuthorityError, BlueprintNotification, ConnectRequest, HeartbeatAck, HeartbeatRequest,
    HubEndpoint, NodeId, SessionGrant, SessionId, SyncQuery, SystemRegisterAuthorityMsg,
    SystemRegisterEntry,
};

use crate::ports::{HubLink, HubLinkError, SyncedEntries};
use crate::slot::ActorSlot;

/// Reaches the authorities of this process by hub id.
#[derive(Clone, Default)]
pub struct LocalHubLink {
    hubs: HashMap<NodeId, ActorSlot<SystemRegisterAuthorityMsg>>,
}

impl LocalHubLink {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes the hub `id` reachable through this link.
    pub fn with_hub(
        mut self,
        id: NodeId,
        authority: ActorSlot<SystemRegisterAuthorityMsg>,
    ) -> Self {
        self.hubs.insert(id, authority);
        self
    }

    fn authority(
        &self,
        hub: &HubEndpoint,
    ) -> Result<&ActorSlot<SystemRegisterAuthorityMsg>, HubLinkError> {
        self.hubs.get(&hub.id).ok_or_else(|| {
            HubLinkError::Unreachable(format!("no hub {} in this process", hub.id).into())
        })
    }

    async fn call<T: Send + 'static>(
        &self,
        hub: &HubEndpoint,
        request: impl FnOnce(
            ractor::RpcReplyPort<Result<T, AuthorityError>>,
        ) -> SystemRegisterAuthorityMsg,
        deadline: Duration,
    ) -> Result<T, HubLinkError> {
        let answer = self
            .authority(hub)?
            .call(request, deadline)
            .await
            .map_err(|err| HubLinkError::Unreachable(Box::new(err)))?;
        answer.map_err(link_error)
    }
}

#[async_trait]
impl HubLink for LocalHubLink {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError> {
        self.call(
            hub,
            |reply| SystemRegisterAuthorityMsg::Connect(request, reply),
            deadline,
        )
        .await
    }

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError> {
        self.call(
            hub,
            |reply| SystemRegisterAuthorityMsg::Heartbeat(beat, reply),
            deadline,
        )
        .await
    }

    async fn sync(
        &self,
        hub: &HubEndpoint,
        query: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError> {
        let set = self
            .call(
                hub,
                |reply| SystemRegisterAuthorityMsg::Entries { query, reply },
                deadline,
            )
            .await?;
        Ok(SyncedEntries {
            digest: set.last_digest(),
            entries: set
                .entries
                .iter()
                .map(|entry| SystemRegisterEntry::clone(entry))
                .collect(),
        })
    }

    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
        let (peer_id, session_id) = (peer_id.clone(), session_id.clone());
        let subscription = self
            .call(
                hub,
                |reply| SystemRegisterAuthorityMsg::Subscribe {
                    peer_id,
                    session_id,
                    reply,
                },
                Duration::from_secs(10),
            )
            .await?;
        let notifications = stream::unfold(subscription.notifications, |mut queue| async move {
            queue.recv().await.map(|notification| (notification, queue))
        });
        Ok(notifications.boxed())
    }

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError> {
        let (peer_id, session_id) = (peer_id.clone(), session_id.clone());
        self.call(
            hub,
            |reply| SystemRegisterAuthorityMsg::Disconnect {
                peer_id,
                session_id,
                reply,
            },
            Duration::from_secs(10),
        )
        .await
    }
}

fn link_error(err: AuthorityError) -> HubLinkError {
    match err {
        AuthorityError::UnknownSession { .. } | AuthorityError::NotConnected(_) => {
            HubLinkError::UnknownSession(err.to_string())
        }
        AuthorityError::NeedsFullSync(reason) => HubLinkError::NeedsFullSync(reason),
        AuthorityError::Unavailable(_) | AuthorityError::NotReady(_) => {
            HubLinkError::Unreachable(err.to_string().into())
        }
        other => HubLinkError::Refused(other.to_string()),
    }
}

#[cfg(any(test, feature = "testing"))]
pub use partition::PartitionableHubLink;

#[cfg(any(test, feature = "testing"))]
mod partition {
    use std::collections::{HashMap, HashSet};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use futures::stream::{BoxStream, StreamExt};

    use herald_messages::{
        BlueprintNotification, ConnectRequest, HeartbeatAck, HeartbeatRequest, HubEndpoint, NodeId,
        SessionGrant, SessionId, SyncQuery,
    };

    use crate::ports::{HubLink, HubLinkError, SyncedEntries};

    /// Wraps a `HubLink` and cuts chosen hubs off, playing a hub that died or a partition; a cut
    /// also ends the push streams of that hub (feature `testing`).
    pub struct PartitionableHubLink<L> {
        inner: Arc<L>,
        cut: Arc<Mutex<HashSet<NodeId>>>,
        calls: Arc<Mutex<HashMap<NodeId, u64>>>,
    }

    impl<L> Clone for PartitionableHubLink<L> {
        fn clone(&self) -> Self {
            Self {
                inner: Arc::clone(&self.inner),
                cut: Arc::clone(&self.cut),
                calls: Arc::clone(&self.calls),
            }
        }
    }

    impl<L: HubLink> PartitionableHubLink<L> {
        pub fn new(inner: L) -> Self {
            Self {
                inner: Arc::new(inner),
                cut: Arc::default(),
                calls: Arc::default(),
            }
        }

        /// Cuts (true) or restores (false) the way to hub `id`.
        pub fn set_cut(&self, id: &NodeId, cut: bool) {
            let mut hubs = self.cut.lock().expect("partition lock");
            if cut {
                hubs.insert(id.clone());
            } else {
                hubs.remove(id);
            }
        }

        /// Calls made to hub `id` so far (connects, heartbeats, syncs, subscriptions).
        pub fn calls_to(&self, id: &NodeId) -> u64 {
            self.calls
                .lock()
                .expect("calls lock")
                .get(id)
                .copied()
                .unwrap_or(0)
        }

        fn pass(&self, hub: &HubEndpoint) -> Result<(), HubLinkError> {
            *self
                .calls
                .lock()
                .expect("calls lock")
                .entry(hub.id.clone())
                .or_default() += 1;
            if self.is_cut(&hub.id) {
                return Err(HubLinkError::Unreachable(
                    format!("hub {} is cut off", hub.id).into(),
                ));
            }
            Ok(())
        }

        fn is_cut(&self, id: &NodeId) -> bool {
            self.cut.lock().expect("partition lock").contains(id)
        }
    }

    #[async_trait]
    impl<L: HubLink> HubLink for PartitionableHubLink<L> {
        async fn connect(
            &self,
            hub: &HubEndpoint,
            request: ConnectRequest,
            deadline: Duration,
        ) -> Result<SessionGrant, HubLinkError> {
            self.pass(hub)?;
            self.inner.connect(hub, request, deadline).await
        }

        async fn heartbeat(
            &self,
            hub: &HubEndpoint,
            beat: HeartbeatRequest,
            deadline: Duration,
        ) -> Result<HeartbeatAck, HubLinkError> {
            self.pass(hub)?;
            self.inner.heartbeat(hub, beat, deadline).await
        }

        async fn sync(
            &self,
            hub: &HubEndpoint,
            query: SyncQuery,
            deadline: Duration,
        ) -> Result<SyncedEntries, HubLinkError> {
            self.pass(hub)?;
            self.inner.sync(hub, query, deadline).await
        }

        async fn subscribe(
            &self,
            hub: &HubEndpoint,
            peer_id: &NodeId,
            session_id: &SessionId,
        ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
            self.pass(hub)?;
            let notifications = self.inner.subscribe(hub, peer_id, session_id).await?;
            let cut = Arc::clone(&self.cut);
            let hub_id = hub.id.clone();
            // The stream ends at the first notification after a cut.
            Ok(notifications
                .take_while(move |_| {
                    let is_cut = cut.lock().expect("partition lock").contains(&hub_id);
                    std::future::ready(!is_cut)
                })
                .boxed())
        }

        async fn disconnect(
            &self,
            hub: &HubEndpoint,
            peer_id: &NodeId,
            session_id: &SessionId,
        ) -> Result<(), HubLinkError> {
            self.pass(hub)?;
            self.inner.disconnect(hub, peer_id, session_id).await
        }
    }
}
