//! Measurements 1 and 2: the full sync of 10,001 entries and the incremental sync of 10, each
//! beside the raw tonic floor streaming the same wire entries; and the replica's own work.

use super::*;

impl Bench {
    pub(crate) async fn full_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("full sync of {FULL_ENTRIES} entries ...");
        // The entries as herald's server sends them: the floor streams these.
        let entries = self
            .link
            .sync(
                &self.hub_endpoint,
                self.sync_request(SyncScope::Full),
                DEADLINE,
            )
            .await?
            .entries;
        ensure!(entries.len() == FULL_ENTRIES, "{} entries", entries.len());
        // With a digest of the same size as the server's, so the floor streams the same bytes.
        self.wire_entries = entries
            .iter()
            .map(|entry| {
                convert::system_register::entry_to_wire(
                    entry,
                    &self.grant.history_id,
                    Some(RegisterDigest::EMPTY),
                )
            })
            .collect();
        let wire_bytes: usize = self.wire_entries.iter().map(|e| e.encoded_len()).sum();
        let document_bytes: usize = entries.iter().map(|e| e.document.len()).sum();
        report.note(format!(
            "Setup: {BLUEPRINTS} `publish_blueprint` calls ({SETUP_CONCURRENCY} in flight, in-memory store) took {:.0} ms, {:.0} per second.",
            ms(self.publications),
            BLUEPRINTS as f64 / self.publications.as_secs_f64()
        ));
        report.note(format!(
            "Full sync: {FULL_ENTRIES} entries, {:.1} MiB of protobuf ({} bytes per entry on average, {} of them the JSON document).",
            wire_bytes as f64 / (1024.0 * 1024.0),
            wire_bytes / FULL_ENTRIES,
            document_bytes / FULL_ENTRIES
        ));

        let mut herald = Samples::default();
        let mut herald_server = Samples::default();
        let mut floor = Samples::default();
        let mut floor_validated = Samples::default();
        let mut validation = Samples::default();
        let mut checksums = Samples::default();
        let mut replicated = Samples::default();
        let mut peer_started = Samples::default();
        let mut replica_work = Samples::default();
        let mut floor_pipelined = Samples::default();
        let mut replica_stall = Samples::default();
        let mut replica_view = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(9, iteration) {
                match case {
                    0 => {
                        herald.push_if(keep, self.herald_sync(SyncScope::Full, FULL_ENTRIES).await?)
                    }
                    1 => {
                        let request = self.wire_sync_request(SyncScope::Full);
                        let mut client = self.raw_hub.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, Check::Collect).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        herald_server.push_if(keep, elapsed);
                    }
                    2 | 3 | 8 => {
                        let check = match case {
                            2 => Check::Collect,
                            3 => Check::Validate,
                            _ => Check::Pipelined,
                        };
                        self.floor.prepare(Rpc::Full, self.wire_entries.clone());
                        let request = self.wire_sync_request(SyncScope::Full);
                        let mut client = self.raw_floor.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Full, request, check).await?;
                        ensure!(count == FULL_ENTRIES, "{count} entries");
                        match check {
                            Check::Collect => floor.push_if(keep, elapsed),
                            Check::Validate => floor_validated.push_if(keep, elapsed),
                            Check::Pipelined => floor_pipelined.push_if(keep, elapsed),
                        }
                    }
                    4 => {
                        let wire = self.wire_entries.clone();
                        let started = Instant::now();
                        let mut entries = Vec::new();
                        for entry in wire {
                            entries.push(convert::system_register::entry_from_wire(entry)?.entry);
                        }
                        validation.push_if(keep, started.elapsed());
                        ensure!(entries.len() == FULL_ENTRIES);
                    }
                    5 => {
                        let replication = self.replicate(iteration, None).await?;
                        peer_started.push_if(keep, replication.node_started);
                        replicated.push_if(keep, replication.replicated);
                        replica_stall.push_if(keep, replication.longest_status_call);
                        replica_view.push_if(keep, replication.view_call);
                    }
                    6 => {
                        let link = PreparedSyncLink::shared(entries.clone())?;
                        let replication = self.replicate(iteration, Some(link)).await?;
                        replica_work.push_if(keep, replication.replicated);
                    }
                    _ => {
                        let started = Instant::now();
                        let mut matching = 0;
                        for entry in &self.wire_entries {
                            let checksum =
                                SystemRegisterEntry::checksum_of(&entry.blueprint_document);
                            matching += usize::from(checksum == entry.checksum);
                        }
                        checksums.push_if(keep, started.elapsed());
                        ensure!(matching == FULL_ENTRIES, "{matching} checksums match");
                    }
                }
            }
        }
        report.section(format!(
            "Full sync of {FULL_ENTRIES} entries of ~2 KB over loopback (until the `Vec` is returned)"
        ));
        report.row(
            "floor: raw tonic `FullSync` stream of the same 10,001 pre-built entries → raw client, `Vec`",
            &floor,
            None,
        );
        report.row(
            "herald: `GrpcHubLink::sync(Full)` against the hub node",
            &herald,
            Some(&floor),
        );
        report.row(
            "part: herald's hub server → raw client (no validation on the client)",
            &herald_server,
            Some(&floor),
        );
        report.row(
            "part: floor + the link's validation (`entry_from_wire` per entry: formats and sizes; the replica verifies the checksums)",
            &floor_validated,
            Some(&floor),
        );
        report.row(
            "what-if: floor + the same validation on a second task, 256 entries at a time (pipelined with the reading)",
            &floor_pipelined,
            Some(&floor),
        );
        report.row(
            "end to end: a new peer node (`Node::start`, in-memory stores) until its replica holds the 10,001 blueprints",
            &replicated,
            None,
        );
        report.row(
            "part: `Node::start` of that peer (the connection dials after)",
            &peer_started,
            None,
        );
        report.row(
            "part: the same, its link's full sync answering at once with the 10,001 entries (start, connect, the replica's own work)",
            &replica_work,
            None,
        );
        report.row(
            "part: the longest `replica_status()` call while it replicates (the replica actor busy with the entries)",
            &replica_stall,
            None,
        );
        report.row(
            "part: one `system_register()` call on that peer after (the replica's `View`)",
            &replica_view,
            None,
        );
        report.row(
            "part: `entry_from_wire` of the 10,001 entries alone, in memory",
            &validation,
            None,
        );
        report.row(
            "part: SHA-256 of the 10,001 documents alone, in memory",
            &checksums,
            None,
        );
        Ok(())
    }

    /// Starts a new peer node on the hub (over `link` when given, else gRPC) and waits until
    /// its replica holds every blueprint, asking its status every `REPLICA_POLL`.
    pub(crate) async fn replicate(
        &self,
        iteration: usize,
        link: Option<Arc<dyn HubLink>>,
    ) -> Result<Replication> {
        let hubs = [("bench-hub", self.hub_endpoint.url.as_str())];
        let id = format!("replica-{iteration}");
        let started = Instant::now();
        let peer = start_peer(&id, self.dir.path(), &hubs, link).await?;
        let node_started = started.elapsed();
        let mut longest_status_call = Duration::ZERO;
        loop {
            let asked = Instant::now();
            let status = peer.replica_status().await?;
            longest_status_call = longest_status_call.max(asked.elapsed());
            if status.total_blueprints >= FULL_ENTRIES {
                break;
            }
            ensure!(
                started.elapsed() < DELIVERY_DEADLINE,
                "the replica holds {} blueprints after {DELIVERY_DEADLINE:?}: {status:?}",
                status.total_blueprints
            );
            tokio::time::sleep(REPLICA_POLL).await;
        }
        let replicated = started.elapsed();
        let asked = Instant::now();
        let view = peer.system_register().await?;
        let view_call = asked.elapsed();
        ensure!(view.total_blueprints == FULL_ENTRIES, "{view:?}");
        peer.shutdown().await;
        // Freeing the peer's replica does not overlap the next measurement.
        tokio::time::sleep(SETTLE).await;
        Ok(Replication {
            node_started,
            replicated,
            longest_status_call,
            view_call,
        })
    }

    pub(crate) async fn incremental_sync(&mut self, report: &mut Report) -> Result<()> {
        eprintln!("incremental sync of {INCREMENT} new entries ...");
        let batch: Vec<v1::SystemRegisterEntry> = self.wire_entries[1..=INCREMENT].to_vec();
        let mut herald = Samples::default();
        let mut herald_server = Samples::default();
        let mut floor = Samples::default();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            let before = self.version;
            for _ in 0..INCREMENT {
                self.publish_next().await?;
            }
            ensure!(self.version == before + INCREMENT as u64);
            for case in rotated(3, iteration) {
                match case {
                    0 => herald.push_if(
                        keep,
                        self.herald_sync(SyncScope::After(before), INCREMENT)
                            .await?,
                    ),
                    1 => {
                        let request = self.wire_sync_request(SyncScope::After(before));
                        let mut client = self.raw_hub.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Incremental, request, Check::Collect)
                                .await?;
                        ensure!(count == INCREMENT, "{count} entries");
                        herald_server.push_if(keep, elapsed);
                    }
                    _ => {
                        self.floor.prepare(Rpc::Incremental, batch.clone());
                        let request = self.wire_sync_request(SyncScope::After(before));
                        let mut client = self.raw_floor.clone();
                        let (elapsed, count) =
                            raw_sync(&mut client, Rpc::Incremental, request, Check::Collect)
                                .await?;
                        ensure!(count == INCREMENT, "{count} entries");
                        floor.push_if(keep, elapsed);
                    }
                }
            }
        }
        report.section(format!(
            "Incremental sync of {INCREMENT} new entries of ~2 KB (until the `Vec` is returned)"
        ));
        report.row(
            "floor: raw tonic `IncrementalSync` stream of 10 pre-built entries → raw client",
            &floor,
            None,
        );
        report.row(
            "herald: `GrpcHubLink::sync(After(v))` against the hub node",
            &herald,
            Some(&floor),
        );
        report.row(
            "part: herald's hub server → raw client",
            &herald_server,
            Some(&floor),
        );
        Ok(())
    }
}

/// How a new peer node replicated the system register.
pub(crate) struct Replication {
    /// `Node::start` returned (the connection dials after).
    pub(crate) node_started: Duration,
    /// The replica holds every blueprint.
    pub(crate) replicated: Duration,
    /// The longest `replica_status()` call meanwhile: how long the replica actor was busy.
    pub(crate) longest_status_call: Duration,
    /// One `system_register()` call after (the replica's `View`).
    pub(crate) view_call: Duration,
}

/// A `HubLink` whose first full sync answers at once with prepared entries; every other call
/// goes to the hub over gRPC. It shows what the peer does with a full sync besides the link.
pub(crate) struct PreparedSyncLink {
    pub(crate) grpc: GrpcHubLink,
    pub(crate) prepared: Mutex<Option<Vec<SystemRegisterEntry>>>,
}

impl PreparedSyncLink {
    fn shared(entries: Vec<SystemRegisterEntry>) -> Result<Arc<dyn HubLink>> {
        let peer = NodeId::parse("prepared-link")?;
        Ok(Arc::new(Self {
            grpc: GrpcHubLink::new(peer, "prepared-link.local:7000".into()),
            prepared: Mutex::new(Some(entries)),
        }))
    }
}

#[async_trait::async_trait]
impl HubLink for PreparedSyncLink {
    async fn connect(
        &self,
        hub: &HubEndpoint,
        request: ConnectRequest,
        deadline: Duration,
    ) -> Result<SessionGrant, HubLinkError> {
        self.grpc.connect(hub, request, deadline).await
    }

    async fn heartbeat(
        &self,
        hub: &HubEndpoint,
        beat: HeartbeatRequest,
        deadline: Duration,
    ) -> Result<HeartbeatAck, HubLinkError> {
        self.grpc.heartbeat(hub, beat, deadline).await
    }

    async fn sync(
        &self,
        hub: &HubEndpoint,
        request: SyncQuery,
        deadline: Duration,
    ) -> Result<SyncedEntries, HubLinkError> {
        let prepared = match request.scope {
            SyncScope::Full => self
                .prepared
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .take(),
            SyncScope::After(_) => None,
        };
        match prepared {
            Some(entries) => Ok(SyncedEntries {
                entries,
                digest: None,
            }),
            None => self.grpc.sync(hub, request, deadline).await,
        }
    }

    async fn subscribe(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<BoxStream<'static, BlueprintNotification>, HubLinkError> {
        self.grpc.subscribe(hub, peer_id, session_id).await
    }

    async fn disconnect(
        &self,
        hub: &HubEndpoint,
        peer_id: &NodeId,
        session_id: &SessionId,
    ) -> Result<(), HubLinkError> {
        self.grpc.disconnect(hub, peer_id, session_id).await
    }
}
