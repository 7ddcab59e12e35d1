//! `NodeSupervisor`: the root of a node's supervision tree.
//!
//! ractor has no restart strategies and its default handler stops the supervisor when any child
//! exits (notes/ractor.md §2, §7). This supervisor restarts each failed child on its own
//! (one-for-one) after a jittered exponential backoff, counts failures in a sliding window and,
//! past the budget, stops the node and reports a `NodeFailure` to the host instead of looping.
//! A spawn that fails counts like a crash. Children are reached through `ActorSlot`s, so callers
//! never hold a dead reference. Shutdown stops the children in reverse start order, each after
//! draining its mailbox. It publishes each child's report after every change (`Published`), so
//! `/health` reads them without its mailbox.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, Message, SpawnErr, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{Instrument, error, info, warn};

use herald_messages::{ChildKind, ChildReport, NodeFailure, NodeId, NodeSupervisorMsg};

use crate::actor_kit::{MessageName, message_span};
use crate::backoff::{Backoff, BackoffConfig};
use crate::slot::ActorSlot;
use crate::view::Published;

/// How the supervisor restarts children.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestartPolicy {
    /// Delay before a restart: full jitter, doubling with each failure in the window.
    pub backoff: BackoffConfig,
    /// Failures of one child tolerated within `window`; one more stops the node.
    pub max_restarts: u32,
    pub window: Duration,
    /// How long a child may take to drain and stop at shutdown before it is killed.
    pub stop_timeout: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            backoff: BackoffConfig {
                base: Duration::from_millis(100),
                max: Duration::from_secs(10),
            },
            max_restarts: 5,
            window: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
        }
    }
}

type StartFn = dyn Fn(ActorCell) -> BoxFuture<'static, Result<ActorCell, SpawnErr>> + Send + Sync;

/// How to (re)start one child: a fresh handler and arguments each time, attached to its slot.
pub struct ChildSpec {
    kind: ChildKind,
    start: Arc<StartFn>,
    detach: Arc<dyn Fn() + Send + Sync>,
    close: Arc<dyn Fn() + Send + Sync>,
}

impl ChildSpec {
    /// `make` builds the handler and arguments for each start; the started actor is attached to
    /// `slot`, after its `pre_start` queued its own replay message.
    pub fn new<A, M>(
        slot: ActorSlot<M>,
        make: impl Fn() -> (A, A::Arguments) + Send + Sync + 'static,
    ) -> Self
    where
        A: Actor<Msg = M>,
        M: Message,
    {
        let kind = slot.kind();
        let make = Arc::new(make);
        let start_slot = slot.clone();
        let start = move |supervisor: ActorCell| {
            let (handler, arguments) = make();
            let slot = start_slot.clone();
            async move {
                let (actor, _join) =
                    Actor::spawn_linked(None, handler, arguments, supervisor).await?;
                slot.attach(actor.clone());
                Ok(actor.get_cell())
            }
            .boxed()
        };
        let detach_slot = slot.clone();
        Self {
            kind,
            start: Arc::new(start),
            detach: Arc::new(move || detach_slot.detach()),
            close: Arc::new(move || slot.close()),
        }
    }

    pub fn kind(&self) -> ChildKind {
        self.kind
    }
}

/// The supervisor actor.
pub struct NodeSupervisor;

pub struct NodeSupervisorArgs {
    pub node_id: NodeId,
    /// In start order.
    pub children: Vec<ChildSpec>,
    pub policy: RestartPolicy,
    /// Where the supervisor reports that it gave up.
    pub failure: watch::Sender<Option<NodeFailure>>,
    /// Where it publishes each child's report (read without its mailbox).
    pub children_view: Published<Vec<ChildReport>>,
}

pub struct NodeSupervisorState {
    node_id: NodeId,
    policy: RestartPolicy,
    children: Vec<Child>,
    failure: watch::Sender<Option<NodeFailure>>,
    children_view: Published<Vec<ChildReport>>,
    shutting_down: bool,
}

struct Child {
    spec: ChildSpec,
    cell: Option<ActorCell>,
    failures: VecDeque<Instant>,
    restarts: u32,
    last_failure: Option<String>,
}

/// What to do after a child failed.
#[derive(Debug, PartialEq, Eq)]
enum AfterFailure {
    RestartAfter(Duration),
    GiveUp(NodeFailure),
}

impl Child {
    /// Records a failure at `now` and decides: restart after a backoff, or give up.
    fn on_failure(&mut self, reason: String, now: Instant, policy: &RestartPolicy) -> AfterFailure {
        self.cell = None;
        self.last_failure = Some(reason.clone());
        self.failures.push_back(now);
        while let Some(&oldest) = self.failures.front() {
            if now.duration_since(oldest) <= policy.window {
                break;
            }
            self.failures.pop_front();
        }
        let in_window = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        if in_window > policy.max_restarts {
            return AfterFailure::GiveUp(NodeFailure {
                child: self.spec.kind,
                failures: in_window,
                window_secs: policy.window.as_secs(),
                last_error: reason,
            });
        }
        let mut backoff = Backoff::new(policy.backoff);
        for _ in 1..in_window {
            backoff.next_delay();
        }
        AfterFailure::RestartAfter(backoff.next_delay())
    }

    fn report(&self) -> ChildReport {
        ChildReport {
            kind: self.spec.kind,
            running: self.cell.is_some(),
            restarts: self.restarts,
            last_failure: self.last_failure.clone(),
        }
    }
}

impl NodeSupervisorState {
    fn publish_children(&self) {
        self.children_view
            .publish_if_changed(self.children.iter().map(Child::report).collect());
    }

    fn child_mut(&mut self, kind: ChildKind) -> Option<&mut Child> {
        self.children
            .iter_mut()
            .find(|child| child.spec.kind == kind)
    }

    fn child_of_cell(&mut self, cell: &ActorCell) -> Option<&mut Child> {
        let id = cell.get_id();
        self.children
            .iter_mut()
            .find(|child| child.cell.as_ref().is_some_and(|c| c.get_id() == id))
    }

    async fn start_child(&mut self, myself: &ActorRef<NodeSupervisorMsg>, kind: ChildKind) {
        let supervisor = myself.get_cell();
        let Some(child) = self.child_mut(kind) else {
            return;
        };
        match (child.spec.start)(supervisor).await {
            Ok(cell) => child.cell = Some(cell),
            Err(err) => {
                let reason = format!("spawn failed: {err}");
                self.on_child_exit(myself, kind, reason);
            }
        }
    }

    fn on_child_exit(
        &mut self,
        myself: &ActorRef<NodeSupervisorMsg>,
        kind: ChildKind,
        reason: String,
    ) {
        if self.shutting_down {
            return;
        }
        let node = self.node_id.clone();
        let policy = self.policy;
        let Some(child) = self.child_mut(kind) else {
            return;
        };
        (child.spec.detach)();
        match child.on_failure(reason.clone(), Instant::now(), &policy) {
            AfterFailure::RestartAfter(delay) => {
                warn!(%node, child = %kind, %reason, ?delay, "child failed; restarting after backoff");
                myself.send_after(delay, move || NodeSupervisorMsg::Restart(kind));
            }
            AfterFailure::GiveUp(failure) => {
                error!(%node, child = %kind, %failure, "restart budget exhausted; stopping the node");
                metrics::counter!("herald_node_failures_total", "node" => node.to_string(), "actor" => kind.as_str())
                    .increment(1);
                self.failure.send_replace(Some(failure.clone()));
                myself.stop(Some(failure.to_string()));
            }
        }
    }

    /// Stops every running child in reverse start order; returns those that had to be killed.
    async fn stop_children(&mut self) -> Vec<ChildKind> {
        self.shutting_down = true;
        let mut killed = Vec::new();
        for child in self.children.iter_mut().rev() {
            (child.spec.close)();
            let Some(cell) = child.cell.take() else {
                continue;
            };
            if cell
                .drain_and_wait(Some(self.policy.stop_timeout))
                .await
                .is_err()
            {
                warn!(node = %self.node_id, child = %child.spec.kind, "child did not stop in time; killing it");
                let _ = cell.kill_and_wait(Some(self.policy.stop_timeout)).await;
                killed.push(child.spec.kind);
            }
        }
        killed
    }
}

impl Actor for NodeSupervisor {
    type Msg = NodeSupervisorMsg;
    type State = NodeSupervisorState;
    type Arguments = NodeSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<NodeSupervisorMsg>,
        args: NodeSupervisorArgs,
    ) -> Result<NodeSupervisorState, ActorProcessingErr> {
        let mut state = NodeSupervisorState {
            node_id: args.node_id,
            policy: args.policy,
            children: args
                .children
                .into_iter()
                .map(|spec| Child {
                    spec,
                    cell: None,
                    failures: VecDeque::new(),
                    restarts: 0,
                    last_failure: None,
                })
                .collect(),
            failure: args.failure,
            children_view: args.children_view,
            shutting_down: false,
        };
        let kinds: Vec<ChildKind> = state.children.iter().map(|c| c.spec.kind).collect();
        for kind in kinds {
            state.start_child(&myself, kind).await;
        }
        state.publish_children();
        info!(node = %state.node_id, children = state.children.len(), "node supervisor started");
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<NodeSupervisorMsg>,
        msg: NodeSupervisorMsg,
        state: &mut NodeSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let span = message_span("node_supervisor", &state.node_id, &msg);
        async move {
            match msg {
                NodeSupervisorMsg::Restart(kind) => {
                    if state.shutting_down {
                        return;
                    }
                    state.start_child(&myself, kind).await;
                    let node = state.node_id.to_string();
                    if let Some(child) = state.child_mut(kind).filter(|c| c.cell.is_some()) {
                        child.restarts += 1;
                        metrics::counter!("herald_actor_restarts_total", "node" => node.clone(), "actor" => kind.as_str())
                            .increment(1);
                        info!(%node, child = %kind, restarts = child.restarts, "child restarted");
                    }
                }
                NodeSupervisorMsg::Kill(kind, reply) => {
                    let cell = state.child_mut(kind).and_then(|child| child.cell.clone());
                    if let Some(cell) = &cell {
                        warn!(node = %state.node_id, child = %kind, "killing child on request");
                        cell.kill();
                    }
                    let _ = reply.send(cell.is_some());
                }
                NodeSupervisorMsg::Children(reply) => {
                    let _ = reply.send(state.children.iter().map(Child::report).collect());
                }
                NodeSupervisorMsg::Shutdown(reply) => {
                    let killed = state.stop_children().await;
                    info!(node = %state.node_id, "node stopped");
                    state.publish_children();
                    let _ = reply.send(killed);
                    myself.stop(None);
                }
            }
            state.publish_children();
        }
        .instrument(span)
        .await;
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<NodeSupervisorMsg>,
        event: SupervisionEvent,
        state: &mut NodeSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, reason) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, format!("failed: {err}")),
            SupervisionEvent::ActorTerminated(cell, _, reason) => (
                cell,
                format!("stopped: {}", reason.unwrap_or_else(|| "no reason".into())),
            ),
            _ => return Ok(()),
        };
        let Some(kind) = state.child_of_cell(&cell).map(|child| child.spec.kind) else {
            return Ok(());
        };
        state.on_child_exit(&myself, kind, reason);
        state.publish_children();
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<NodeSupervisorMsg>,
        state: &mut NodeSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        // Stopped without a Shutdown (the budget ran out): stop the others gracefully rather
        // than let ractor kill them.
        if !state.shutting_down {
            state.stop_children().await;
        }
        Ok(())
    }
}

impl MessageName for NodeSupervisorMsg {
    fn name(&self) -> &'static str {
        match self {
            NodeSupervisorMsg::Restart(_) => "restart",
            NodeSupervisorMsg::Kill(..) => "kill",
            NodeSupervisorMsg::Children(_) => "children",
            NodeSupervisorMsg::Shutdown(_) => "shutdown",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child() -> Child {
        Child {
            spec: ChildSpec {
                kind: ChildKind::AdvertisementPool,
                start: Arc::new(|_| {
                    async { Err(SpawnErr::StartupFailed("unused".into())) }.boxed()
                }),
                detach: Arc::new(|| {}),
                close: Arc::new(|| {}),
            },
            cell: None,
            failures: VecDeque::new(),
            restarts: 0,
            last_failure: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_after_the_budget_within_the_window_only() {
        let policy = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            ..RestartPolicy::default()
        };
        let mut child = child();
        let start = Instant::now();
        for i in 0..3 {
            let decision =
                child.on_failure(format!("boom {i}"), start + Duration::from_secs(i), &policy);
            assert!(
                matches!(decision, AfterFailure::RestartAfter(_)),
                "{decision:?}"
            );
        }
        // Failures spread beyond the window never exhaust the budget.
        let later = start + Duration::from_secs(120);
        assert!(matches!(
            child.on_failure("late".into(), later, &policy),
            AfterFailure::RestartAfter(_)
        ));
        for i in 1..3 {
            child.on_failure("again".into(), later + Duration::from_secs(i), &policy);
        }
        let AfterFailure::GiveUp(failure) =
            child.on_failure("last".into(), later + Duration::from_secs(3), &policy)
        else {
            panic!("the fourth failure within the window gives up");
        };
        assert_eq!(failure.failures, 4);
        assert_eq!(failure.last_error, "last");
    }

    #[tokio::test(start_paused = true)]
    async fn restart_delay_grows_with_failures_in_the_window() {
        let policy = RestartPolicy {
            max_restarts: 20,
            ..RestartPolicy::default()
        };
        let mut child = child();
        let now = Instant::now();
        let mut delays = Vec::new();
        for _ in 0..10 {
            if let AfterFailure::RestartAfter(delay) = child.on_failure("x".into(), now, &policy) {
                delays.push(delay);
            }
        }
        assert!(delays[0] <= policy.backoff.base);
        assert!(delays.iter().all(|d| *d <= policy.backoff.max));
    }
}
