//! The floor: a plain tonic server of the generated `SystemRegisterSync`, streaming prepared
//! wire messages, nothing else.

use super::*;

/// A tonic server implementing the generated `SystemRegisterSync` with no authority and no
/// conversion: the syncs stream batches prepared before the call, the push streams forward a
/// broadcast.
pub(crate) struct FloorServer {
    pub(crate) addr: SocketAddr,
    pub(crate) prepared: Arc<Prepared>,
    pub(crate) push: broadcast::Sender<v1::BlueprintNotification>,
    pub(crate) stop: oneshot::Sender<()>,
    pub(crate) join: JoinHandle<()>,
}

#[derive(Default)]
pub(crate) struct Prepared {
    pub(crate) full: Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
    pub(crate) incremental: Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
}

#[derive(Clone)]
pub(crate) struct FloorSync {
    pub(crate) prepared: Arc<Prepared>,
    pub(crate) push: broadcast::Sender<v1::BlueprintNotification>,
}

impl FloorServer {
    pub(crate) async fn start() -> Result<Self> {
        let incoming = TcpIncoming::bind("127.0.0.1:0".parse()?)
            .context("bind the floor server")?
            .with_nodelay(Some(true));
        let addr = incoming.local_addr()?;
        let prepared = Arc::new(Prepared::default());
        let (push, _) = broadcast::channel(16);
        let service = FloorSync {
            prepared: Arc::clone(&prepared),
            push: push.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let join = tokio::spawn(async move {
            let served = Server::builder()
                .add_service(SystemRegisterSyncServer::new(service))
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("hub bench: the floor server failed: {err}");
            }
        });
        Ok(Self {
            addr,
            prepared,
            push,
            stop,
            join,
        })
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The entries the next call of `rpc` streams.
    pub(crate) fn prepare(&self, rpc: Rpc, entries: Vec<v1::SystemRegisterEntry>) {
        let batches = match rpc {
            Rpc::Full => &self.prepared.full,
            Rpc::Incremental => &self.prepared.incremental,
        };
        batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(entries);
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let mut join = self.join;
        if tokio::time::timeout(Duration::from_secs(2), &mut join)
            .await
            .is_err()
        {
            join.abort();
        }
    }
}

type EntryStream = BoxStream<'static, Result<v1::SystemRegisterEntry, Status>>;

impl FloorSync {
    pub(crate) fn take(
        batches: &Mutex<Vec<Vec<v1::SystemRegisterEntry>>>,
    ) -> Result<Response<EntryStream>, Status> {
        let entries = batches
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop()
            .ok_or_else(|| Status::failed_precondition("no batch prepared"))?;
        Ok(Response::new(
            stream::iter(entries.into_iter().map(Ok)).boxed(),
        ))
    }
}

#[async_trait::async_trait]
impl SystemRegisterSync for FloorSync {
    type FullSyncStream = EntryStream;
    type IncrementalSyncStream = EntryStream;
    type SubscribeToPushNotificationsStream =
        BoxStream<'static, Result<v1::BlueprintNotification, Status>>;

    async fn full_sync(
        &self,
        _request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        Self::take(&self.prepared.full)
    }

    async fn incremental_sync(
        &self,
        _request: Request<v1::SyncRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        Self::take(&self.prepared.incremental)
    }

    async fn subscribe_to_push_notifications(
        &self,
        _request: Request<v1::SubscriptionRequest>,
    ) -> Result<Response<Self::SubscribeToPushNotificationsStream>, Status> {
        let receiver = self.push.subscribe();
        let notifications = stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(notification) => return Some((Ok(notification), receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        });
        Ok(Response::new(notifications.boxed()))
    }

    async fn get_sync_checkpoint(
        &self,
        _request: Request<v1::CheckpointRequest>,
    ) -> Result<Response<v1::SyncCheckpoint>, Status> {
        Err(Status::unimplemented("not part of the floor"))
    }
}
