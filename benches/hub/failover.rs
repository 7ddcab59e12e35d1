//! Measurement 4: a peer's failover from a hub that stops or hangs (a TCP proxy that stops
//! forwarding), at phases spread over the heartbeat interval.

use super::*;

pub(crate) async fn failover(runs: usize, report: &mut Report) -> Result<()> {
    eprintln!("failover, {runs} runs per way of stopping the hub ...");
    let dir = tempfile::Builder::new()
        .prefix("herald-bench-failover-")
        .tempdir()
        .context("create a data directory")?;
    // Each register is shared by its n0 and n1, with a watch, like the Redis store two hubs
    // share: one holding the seeded blueprint only, one holding 10,001 blueprints.
    let small = FailoverHubs::start(dir.path().join("small"), 0).await?;
    let large = FailoverHubs::start(dir.path().join("large"), BLUEPRINTS).await?;
    let mut stopped = Samples::default();
    let mut shutdowns = Samples::default();
    let mut hung = Samples::default();
    let mut hung_large = Samples::default();
    let interval = Duration::from_millis(HEARTBEAT_MS);
    for run in 0..runs {
        // The stop falls at phases spread evenly over the heartbeat interval.
        let phase = interval.mul_f64(run as f64 / runs as f64);
        for case in rotated(3, run) {
            let started = Instant::now();
            let (way, elapsed) = match case {
                0 => {
                    let (elapsed, shutdown) = small.on_stop(run, phase).await?;
                    stopped.push_if(true, elapsed);
                    shutdowns.push_if(true, shutdown);
                    ("stop", elapsed)
                }
                1 => {
                    let elapsed = small.on_hang(run, phase).await?;
                    hung.push_if(true, elapsed);
                    ("hang", elapsed)
                }
                _ => {
                    let elapsed = large.on_hang(run, phase).await?;
                    hung_large.push_if(true, elapsed);
                    ("hang, 10,001 blueprints", elapsed)
                }
            };
            eprintln!(
                "  {way}, phase {:.0} ms: on n1 after {:.0} ms (run with set-up and teardown: {:.0} ms)",
                ms(phase),
                ms(elapsed),
                ms(started.elapsed())
            );
        }
    }
    small.stop().await;
    large.stop().await;
    report.failover_section(format!(
        "Failover, heartbeat every {HEARTBEAT_MS} ms, deadline {HEARTBEAT_MS} ms, {MISSED_HEARTBEATS} misses (until `connection_status()` names n1; polled every {} ms)",
        POLL_PAUSE.as_millis()
    ));
    report.failover_row(
        "n0 stopped (`NodeHandle::shutdown`: its port refuses connections); register of 1 blueprint",
        &stopped,
    );
    report.failover_row(
        "part: `NodeHandle::shutdown` of n0 itself (inside the row above)",
        &shutdowns,
    );
    report.failover_row(
        "n0 hangs (a proxy in front of it stops forwarding; connections stay open); register of 1 blueprint",
        &hung,
    );
    report.failover_row(
        "n0 hangs, register (and the peer's replica) of 10,001 blueprints",
        &hung_large,
    );
    Ok(())
}

/// Hub n1, running through the whole measurement, and what a new n0 needs.
pub(crate) struct FailoverHubs {
    pub(crate) dir: std::path::PathBuf,
    n1: NodeHandle,
    n1_url: String,
    pub(crate) store: Arc<InMemoryBlueprintStore>,
    /// Blueprints in the register (the seeded one included): what the peer's replica holds
    /// before n0 goes away.
    pub(crate) blueprints: usize,
}

impl FailoverHubs {
    /// n1 on a new shared register, into which it publishes `blueprints` benchmark blueprints.
    async fn start(dir: std::path::PathBuf, blueprints: usize) -> Result<Self> {
        let store = Arc::new(InMemoryBlueprintStore::new());
        let n1 = start_hub("n1", &dir, store.clone()).await?;
        for n in 0..blueprints {
            n1.publish_blueprint(publish_request(n)?).await?;
        }
        Ok(Self {
            dir,
            n1_url: endpoint_of("n1", &n1)?.url,
            n1,
            store,
            blueprints: blueprints + 1,
        })
    }

    async fn stop(self) {
        self.n1.shutdown().await;
    }

    /// A new n0 and a new peer on it; n0 is shut down `phase` into the heartbeat interval (after
    /// `SETTLE_BEFORE_STOP`). Returns the time until the peer is on n1, and that of the
    /// shutdown itself.
    async fn on_stop(&self, run: usize, phase: Duration) -> Result<(Duration, Duration)> {
        let n0 = start_hub("n0", &self.dir, self.store.clone()).await?;
        let n0_url = endpoint_of("n0", &n0)?.url;
        let hubs = [("n0", n0_url.as_str()), ("n1", self.n1_url.as_str())];
        let peer = start_peer(&format!("failover-stop-{run}"), &self.dir, &hubs, None).await?;
        self.wait_until_replicated(&peer).await?;
        tokio::time::sleep(SETTLE_BEFORE_STOP + phase).await;
        let started = Instant::now();
        n0.shutdown().await;
        let shutdown = started.elapsed();
        wait_for_hub(&peer, "n1").await?;
        let elapsed = started.elapsed();
        peer.shutdown().await;
        Ok((elapsed, shutdown))
    }

    /// As `on_stop`, but n0 hangs instead: the proxy the peer reaches it through stops
    /// forwarding. Returns the time until the peer is on n1.
    async fn on_hang(&self, run: usize, phase: Duration) -> Result<Duration> {
        let n0 = start_hub("n0", &self.dir, self.store.clone()).await?;
        let proxy = HangingProxy::start(n0.grpc_addr().context("n0 serves gRPC")?).await?;
        let proxy_url = format!("http://{}", proxy.addr);
        let hubs = [("n0", proxy_url.as_str()), ("n1", self.n1_url.as_str())];
        let peer = start_peer(&format!("failover-hang-{run}"), &self.dir, &hubs, None).await?;
        self.wait_until_replicated(&peer).await?;
        tokio::time::sleep(SETTLE_BEFORE_STOP + phase).await;
        let started = Instant::now();
        proxy.hang();
        wait_for_hub(&peer, "n1").await?;
        let elapsed = started.elapsed();
        // The proxy goes first: while it hangs, n0's graceful HTTP/2 shutdown would wait its
        // whole stop timeout (10 s) for the silent connection.
        proxy.stop();
        peer.shutdown().await;
        n0.shutdown().await;
        Ok(elapsed)
    }

    /// Waits until the peer is on n0 and its replica holds the whole register.
    async fn wait_until_replicated(&self, peer: &NodeHandle) -> Result<()> {
        wait_for_hub(peer, "n0").await?;
        let started = Instant::now();
        while peer.replica_status().await?.total_blueprints < self.blueprints {
            ensure!(
                started.elapsed() < FAILOVER_DEADLINE,
                "the replica did not get the register's {} blueprints",
                self.blueprints
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }
        Ok(())
    }
}

pub(crate) async fn start_peer(
    id: &str,
    dir: &std::path::Path,
    hubs: &[(&str, &str)],
    hub_link: Option<Arc<dyn HubLink>>,
) -> Result<NodeHandle> {
    let config = RawNodeConfig {
        node_id: id.into(),
        data_dir: Some(dir.join(id)),
        peer: Some(RawPeerConfig {
            hubs: hubs
                .iter()
                .map(|(id, url)| RawHubEndpoint {
                    id: (*id).into(),
                    url: (*url).into(),
                    priority: None,
                })
                .collect(),
            heartbeat_interval_ms: Some(HEARTBEAT_MS),
            heartbeat_timeout_ms: Some(HEARTBEAT_MS),
            missed_heartbeats: Some(MISSED_HEARTBEATS),
            ..RawPeerConfig::default()
        }),
        ..RawNodeConfig::default()
    }
    .validate()?;
    let overrides = StoreOverrides {
        ad_store: Some(Arc::new(InMemoryAdStore::new())),
        replica_store: Some(Arc::new(InMemoryReplicaStore::new())),
        hub_link,
        ..StoreOverrides::default()
    };
    Ok(Node::start_with(config, overrides).await?)
}

/// Polls until the peer is connected to hub `id`.
pub(crate) async fn wait_for_hub(peer: &NodeHandle, id: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let status = peer.connection_status().await?;
        if status.state == ConnectionState::Connected
            && status.hub_id.as_ref().is_some_and(|hub| hub.as_str() == id)
        {
            return Ok(());
        }
        ensure!(
            started.elapsed() < FAILOVER_DEADLINE,
            "the peer is not on {id} after {FAILOVER_DEADLINE:?}: {status:?}"
        );
        tokio::time::sleep(POLL_PAUSE).await;
    }
}

/// A TCP proxy in front of a hub that can play the hub hanging: once `hang` is called, bytes
/// in either direction vanish and every connection stays open (new ones are accepted too).
pub(crate) struct HangingProxy {
    pub(crate) addr: SocketAddr,
    pub(crate) hung: Arc<AtomicBool>,
    pub(crate) accept: JoinHandle<()>,
}

impl HangingProxy {
    async fn start(target: SocketAddr) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let hung = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&hung);
        let accept = tokio::spawn(async move {
            // Dropped with this task: aborting it ends every connection.
            let mut connections = JoinSet::new();
            while let Ok((inbound, _)) = listener.accept().await {
                let flag = Arc::clone(&flag);
                connections.spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (from_peer, to_peer) = inbound.into_split();
                    let (from_hub, to_hub) = outbound.into_split();
                    tokio::join!(
                        pipe(from_peer, to_hub, Arc::clone(&flag)),
                        pipe(from_hub, to_peer, flag)
                    );
                });
            }
        });
        Ok(Self { addr, hung, accept })
    }

    fn hang(&self) {
        self.hung.store(true, Ordering::SeqCst);
    }

    fn stop(self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to` until the proxy hangs; then swallows everything and never closes.
pub(crate) async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, hung: Arc<AtomicBool>) {
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if hung.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            break;
        }
    }
    if hung.load(Ordering::SeqCst) {
        // A hung hub never closes its side either.
        std::future::pending::<()>().await;
    }
}
