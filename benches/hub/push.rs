//! Measurement 3: one publication pushed to 1,000 subscribers, on one connection and on a
//! connection each, beside raw streams fed by one broadcast.

use super::*;

impl Bench {
    pub(crate) async fn push(&mut self, report: &mut Report, layout: Layout) -> Result<()> {
        eprintln!(
            "push to {SUBSCRIBERS} subscribers, {} ...",
            layout.describe()
        );
        let started = Instant::now();
        let (herald_tx, mut herald_rx) = mpsc::unbounded_channel();
        let herald_subscribers = self.herald_subscribers(layout, herald_tx).await?;
        let herald_setup = started.elapsed();
        let started = Instant::now();
        let (floor_tx, mut floor_rx) = mpsc::unbounded_channel();
        let floor_subscribers = self.floor_subscribers(layout, floor_tx).await?;
        let floor_setup = started.elapsed();
        ensure!(
            self.floor.push.receiver_count() == SUBSCRIBERS,
            "{} floor subscriptions",
            self.floor.push.receiver_count()
        );
        report.note(format!(
            "Push, {}: the {SUBSCRIBERS} herald sessions connected and subscribed in {:.0} ms ({SETUP_CONCURRENCY} at a time), the {SUBSCRIBERS} floor streams opened in {:.0} ms.",
            layout.describe(),
            ms(herald_setup),
            ms(floor_setup)
        ));

        let mut herald = Samples::default();
        let mut herald_last = Samples::default();
        let mut herald_reply = Samples::default();
        let mut floor = Samples::default();
        let mut floor_last = Samples::default();
        let notification = self.floor_notification();
        for iteration in 0..WARMUP_ITERATIONS + self.iterations {
            let keep = iteration >= WARMUP_ITERATIONS;
            for case in rotated(2, iteration) {
                if case == 0 {
                    let request = publish_request(self.published)?;
                    self.published += 1;
                    let started = Instant::now();
                    let entry = self.hub.publish_blueprint(request).await?;
                    herald_reply.push_if(keep, started.elapsed());
                    self.version = entry.version;
                    let latencies = deliveries(&mut herald_rx, entry.version, started).await?;
                    herald_last.push_if(keep, latencies.max());
                    herald.extend_if(keep, latencies);
                } else {
                    let mut wire = notification.clone();
                    wire.version = i64::try_from(iteration + 1)?;
                    let started = Instant::now();
                    self.floor
                        .push
                        .send(wire)
                        .map_err(|_| anyhow!("no floor subscriber"))?;
                    let latencies =
                        deliveries(&mut floor_rx, iteration as u64 + 1, started).await?;
                    floor_last.push_if(keep, latencies.max());
                    floor.extend_if(keep, latencies);
                }
                tokio::time::sleep(PUSH_PAUSE).await;
            }
        }

        for task in herald_subscribers.tasks.iter().chain(&floor_subscribers) {
            task.abort();
        }
        stream::iter(herald_subscribers.sessions)
            .map(|(n, peer, session)| {
                let link =
                    Arc::clone(&herald_subscribers.links[n % herald_subscribers.links.len()]);
                let hub = self.hub_endpoint.clone();
                async move { link.disconnect(&hub, &peer, &session).await }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect::<Vec<()>>()
            .await?;
        // The floor's streams end as the server reads the resets of the aborted clients.
        let started = Instant::now();
        while self.floor.push.receiver_count() > 0 {
            ensure!(
                started.elapsed() < DELIVERY_DEADLINE,
                "{} floor subscriptions still open",
                self.floor.push.receiver_count()
            );
            tokio::time::sleep(POLL_PAUSE).await;
        }

        report.latency_section(format!(
            "Push to {SUBSCRIBERS} subscribers, {}: delivery latency of every notification (goal: p99 < 100 ms)",
            layout.describe()
        ));
        report.latency_row(
            "floor: one `broadcast` send → 1,000 raw tonic streams → raw clients",
            &floor,
            None,
        );
        report.latency_row(
            "herald: `publish_blueprint` call → 1,000 `HubLink::subscribe` streams",
            &herald,
            Some(&floor),
        );
        report.section(format!(
            "Push to {SUBSCRIBERS} subscribers, {}: per publication",
            layout.describe()
        ));
        report.row(
            "floor: until the last of the 1,000 subscribers has it",
            &floor_last,
            None,
        );
        report.row(
            "herald: until the last of the 1,000 subscribers has it",
            &herald_last,
            Some(&floor_last),
        );
        report.row(
            "part: the `publish_blueprint` call (until its reply)",
            &herald_reply,
            None,
        );
        Ok(())
    }

    /// 1,000 sessions of distinct peers, each subscribed, each forwarding its notifications'
    /// versions with their arrival time.
    pub(crate) async fn herald_subscribers(
        &self,
        layout: Layout,
        deliveries: mpsc::UnboundedSender<(u64, Instant)>,
    ) -> Result<HeraldSubscribers> {
        let links: Vec<Arc<GrpcHubLink>> = (0..layout.connections())
            .map(|n| {
                let peer = format!("push-link-{n:04}");
                Ok(Arc::new(GrpcHubLink::new(NodeId::parse(&peer)?, peer)))
            })
            .collect::<Result<_>>()?;
        let tag = layout.tag();
        let subscribed: Vec<(usize, NodeId, _, JoinHandle<()>)> = stream::iter(0..SUBSCRIBERS)
            .map(|n| {
                let link = Arc::clone(&links[n % links.len()]);
                let hub = self.hub_endpoint.clone();
                let deliveries = deliveries.clone();
                async move {
                    let peer = NodeId::parse(&format!("push-{tag}-{n:04}"))?;
                    let grant = link.connect(&hub, connect_request(&peer), DEADLINE).await?;
                    let mut notifications = link.subscribe(&hub, &peer, &grant.session_id).await?;
                    let task = tokio::spawn(async move {
                        while let Some(notification) = notifications.next().await {
                            let at = Instant::now();
                            if deliveries.send((notification.version, at)).is_err() {
                                break;
                            }
                        }
                    });
                    Ok::<_, anyhow::Error>((n, peer, grant.session_id, task))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let mut subscribers = HeraldSubscribers {
            links,
            sessions: Vec::with_capacity(SUBSCRIBERS),
            tasks: Vec::with_capacity(SUBSCRIBERS),
        };
        for (n, peer, session, task) in subscribed {
            subscribers.sessions.push((n, peer, session));
            subscribers.tasks.push(task);
        }
        Ok(subscribers)
    }

    /// 1,000 raw subscriptions to the floor server.
    pub(crate) async fn floor_subscribers(
        &self,
        layout: Layout,
        deliveries: mpsc::UnboundedSender<(u64, Instant)>,
    ) -> Result<Vec<JoinHandle<()>>> {
        let url = self.floor.url();
        let channels: Vec<Channel> = stream::iter(0..layout.connections())
            .map(|_| async { Ok::<_, anyhow::Error>(channel(&url)?.connect().await?) })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await?;
        let now = self.clock.now();
        stream::iter(0..SUBSCRIBERS)
            .map(|n| {
                let mut client =
                    SystemRegisterSyncClient::new(channels[n % channels.len()].clone());
                let deliveries = deliveries.clone();
                let request = convert::system_register::subscription_request_to_wire(
                    &self.peer_id,
                    &self.grant.session_id,
                    now,
                );
                async move {
                    let mut notifications = client
                        .subscribe_to_push_notifications(Request::new(request))
                        .await?
                        .into_inner();
                    Ok::<_, anyhow::Error>(tokio::spawn(async move {
                        while let Ok(Some(notification)) = notifications.message().await {
                            let at = Instant::now();
                            let version = u64::try_from(notification.version).unwrap_or(0);
                            if deliveries.send((version, at)).is_err() {
                                break;
                            }
                        }
                    }))
                }
            })
            .buffer_unordered(SETUP_CONCURRENCY)
            .try_collect()
            .await
    }

    /// A notification like the hub's (same fields and sizes) for the floor to broadcast.
    pub(crate) fn floor_notification(&self) -> v1::BlueprintNotification {
        let first = &self.wire_entries[1];
        convert::system_register::notification_to_wire(&BlueprintNotification {
            history_id: self.grant.history_id.clone(),
            blueprint_id: BlueprintId::seed(),
            version: 1,
            kind: EntryKind::Published,
            published_at: self.clock.now(),
            published_by: first.published_by.clone(),
            checksum: first.checksum.clone(),
            document_bytes: first.blueprint_document.len(),
            sequence: 1,
        })
    }
}

/// How the 1,000 subscribers reach the hub.
#[derive(Clone, Copy)]
pub(crate) enum Layout {
    /// One `GrpcHubLink`: one HTTP/2 connection carries the 1,000 streams.
    SharedConnection,
    /// One `GrpcHubLink` per subscriber, as 1,000 peer processes would have.
    ConnectionPerSubscriber,
}

impl Layout {
    fn connections(self) -> usize {
        match self {
            Layout::SharedConnection => 1,
            Layout::ConnectionPerSubscriber => SUBSCRIBERS,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Layout::SharedConnection => "shared",
            Layout::ConnectionPerSubscriber => "own",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Layout::SharedConnection => "all streams on one HTTP/2 connection",
            Layout::ConnectionPerSubscriber => "one connection per subscriber",
        }
    }
}

pub(crate) struct HeraldSubscribers {
    pub(crate) links: Vec<Arc<GrpcHubLink>>,
    /// Subscriber number (its link is `links[n % links.len()]`), peer and session.
    pub(crate) sessions: Vec<(usize, NodeId, SessionId)>,
    pub(crate) tasks: Vec<JoinHandle<()>>,
}

/// The delivery latency at each of the 1,000 subscribers of notification `key`, counted from
/// `started`.
pub(crate) async fn deliveries(
    received: &mut mpsc::UnboundedReceiver<(u64, Instant)>,
    key: u64,
    started: Instant,
) -> Result<Samples> {
    let mut latencies = Samples::default();
    let deadline = started + DELIVERY_DEADLINE;
    while latencies.len() < SUBSCRIBERS {
        let (version, at) = tokio::time::timeout_at(deadline, received.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "only {} of {SUBSCRIBERS} subscribers received version {key} within {DELIVERY_DEADLINE:?}",
                    latencies.len()
                )
            })?
            .context("every subscriber is gone")?;
        ensure!(
            version == key,
            "a subscriber received version {version} while {key} was expected"
        );
        latencies.push_if(true, at.duration_since(started));
    }
    Ok(latencies)
}
