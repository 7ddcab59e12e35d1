//! The hub under measurement, the requests the bench sends, and the raw generated clients on
//! `GrpcHubLink`'s own channel settings.

use super::*;

/// A hub node on a free loopback port over `store`.
pub(crate) async fn start_hub(
    id: &str,
    dir: &std::path::Path,
    store: Arc<InMemoryBlueprintStore>,
) -> Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(dir.join(id)),
        hub: Some(RawHubConfig {
            grpc_addr: "127.0.0.1:0".into(),
            heartbeat_interval_ms: Some(HEARTBEAT_MS),
            heartbeat_timeout_ms: Some(HEARTBEAT_MS),
            // The push subscribers send no heartbeats: keep their sessions for the whole run.
            session_expiry_ms: Some(600_000),
            // The shared-connection push puts 1,000 subscriptions on one HTTP/2 connection: the
            // default cap of 100 streams per connection would queue the other 900.
            max_concurrent_streams: Some(2 * SUBSCRIBERS as u32),
            ..RawHubConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let overrides = StoreOverrides {
        blueprint_store: Some(store),
        ..StoreOverrides::default()
    };
    Ok(Node::start_with(config, overrides).await?)
}

pub(crate) fn endpoint_of(id: &str, hub: &NodeHandle) -> Result<HubEndpoint> {
    let addr = hub.grpc_addr().context("a hub serves gRPC")?;
    Ok(HubEndpoint {
        id: NodeId::parse(id)?,
        url: format!("http://{addr}"),
        priority: 0,
    })
}

pub(crate) fn connect_request(peer: &NodeId) -> ConnectRequest {
    ConnectRequest {
        peer_id: peer.clone(),
        node_type: NodeType::Peer,
        address: String::new(),
        last_known_version: 0,
        last_known_digest: None,
    }
}

/// Blueprint `bench-<n>` with a 2,048-byte JSON document.
pub(crate) fn publish_request(n: usize) -> Result<PublishRequest> {
    Ok(PublishRequest {
        blueprint_id: BlueprintId::parse(&format!("bench-{n:06}"))?,
        document: document(n)?.into(),
        published_by: "bench-admin".into(),
        metadata: BTreeMap::new(),
    })
}

/// A workflow-like JSON document of exactly `DOCUMENT_BYTES` bytes.
pub(crate) fn document(n: usize) -> Result<String> {
    let mut text = format!(
        r#"{{"id":"bench-{n:06}","title":"Benchmark blueprint {n}","version":1,"participants":[{{"id":"requester","role":"initiator"}},{{"id":"approver","role":"approver"}}],"actions":["#
    );
    let closing_room = r#"],"note":""}"#.len();
    for action in 0.. {
        let sender = if action % 2 == 0 {
            "requester"
        } else {
            "approver"
        };
        let next = format!(
            r#"{{"id":{action},"title":"Step {action} of blueprint {n}","sender":"{sender}","fields":["amount","currency","reference","approvedBy"]}}"#
        );
        if text.len() + 1 + next.len() + closing_room > DOCUMENT_BYTES {
            break;
        }
        if action > 0 {
            text.push(',');
        }
        text.push_str(&next);
    }
    let padding = DOCUMENT_BYTES - text.len() - closing_room;
    text.push_str(r#"],"note":""#);
    text.push_str(&"x".repeat(padding));
    text.push_str(r#""}"#);
    ensure!(
        text.len() == DOCUMENT_BYTES,
        "document of {} bytes",
        text.len()
    );
    serde_json::from_str::<serde_json::Value>(&text).context("the bench's document is not JSON")?;
    Ok(text)
}

/// The channel settings of `GrpcHubLink`, from the client itself (so the floor cannot drift).
pub(crate) fn channel(url: &str) -> Result<Endpoint> {
    Ok(hub_endpoint(url)?)
}

/// The generated client on its own, connected channel.
pub(crate) async fn raw_client(url: &str) -> Result<SystemRegisterSyncClient<Channel>> {
    let channel = channel(url)?
        .connect()
        .await
        .with_context(|| format!("connect to {url}"))?;
    Ok(SystemRegisterSyncClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES))
}

/// A request carrying its deadline, as the link sends it.
pub(crate) fn timed<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(DEADLINE);
    request
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rpc {
    Full,
    Incremental,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Collect the wire entries as they come.
    Collect,
    /// Convert and validate each as the link does (`entry_from_wire`).
    Validate,
    /// The same validation on a second task, `VALIDATION_BATCH` entries at a time, while the
    /// reading goes on: what verifying in parallel would give.
    Pipelined,
}

/// One sync through the generated client, collected into a `Vec`: its time and its length.
pub(crate) async fn raw_sync(
    client: &mut SystemRegisterSyncClient<Channel>,
    rpc: Rpc,
    request: Request<v1::SyncRequest>,
    check: Check,
) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let response = match rpc {
        Rpc::Full => client.full_sync(request).await?,
        Rpc::Incremental => client.incremental_sync(request).await?,
    };
    let mut stream = response.into_inner();
    let count = match check {
        Check::Collect => {
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(entry);
            }
            entries.len()
        }
        Check::Validate => {
            let mut entries = Vec::new();
            while let Some(entry) = stream.message().await? {
                entries.push(convert::system_register::entry_from_wire(entry)?.entry);
            }
            entries.len()
        }
        Check::Pipelined => {
            let (batches, mut received) = mpsc::channel::<Vec<v1::SystemRegisterEntry>>(8);
            let validator = tokio::spawn(async move {
                let mut entries = Vec::new();
                while let Some(batch) = received.recv().await {
                    for entry in batch {
                        entries.push(convert::system_register::entry_from_wire(entry)?.entry);
                    }
                }
                Ok::<_, anyhow::Error>(entries)
            });
            let mut batch = Vec::with_capacity(VALIDATION_BATCH);
            while let Some(entry) = stream.message().await? {
                batch.push(entry);
                if batch.len() == VALIDATION_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(VALIDATION_BATCH));
                    batches.send(full).await?;
                }
            }
            batches.send(batch).await?;
            drop(batches);
            validator.await??.len()
        }
    };
    Ok((started.elapsed(), count))
}
