//! What every actor here shares, written once: the name of a message for its span, the span an
//! actor handles one message in, and the timers and tasks it owns.
//!
//! Timers and tasks are aborted when their owner (the actor's state) is dropped: on a stop, a
//! kill and a failure alike (ractor runs `post_stop` only on a stop), so a restarted actor never
//! inherits its predecessor's ticks.

use std::time::Duration;

use ractor::{ActorRef, Message};
use tokio::task::{AbortHandle, JoinHandle};
use tracing::Span;

use herald_messages::NodeId;

/// The variant name of a message, for spans and logs.
pub trait MessageName {
    fn name(&self) -> &'static str;
}

/// The span an actor handles one message in: which actor, on which node, which message.
pub fn message_span(actor: &'static str, node: &NodeId, msg: &impl MessageName) -> Span {
    tracing::debug_span!("actor", actor, node = %node, msg = msg.name())
}

/// The periodic timers and background tasks of one actor, aborted together when dropped.
#[derive(Debug, Default)]
pub struct Timers {
    handles: Vec<AbortHandle>,
}

impl Timers {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `message()` to `actor` every `period`; the first one after a full period.
    pub fn every<M: Message>(
        &mut self,
        actor: &ActorRef<M>,
        period: Duration,
        message: impl Fn() -> M + Send + 'static,
    ) {
        let ticks = actor.send_interval(period, message);
        self.handles.push(ticks.abort_handle());
    }

    /// Keeps a background task (a watch, a forwarding loop) to abort with the timers.
    pub fn keep<T>(&mut self, task: &JoinHandle<T>) {
        self.handles.push(task.abort_handle());
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        for handle in &self.handles {
            handle.abort();
        }
    }
}

/// At most one pending one-shot timer or task (a retry, the next attempt, the current push
/// subscription): setting a new one aborts the previous; dropping aborts it.
#[derive(Debug, Default)]
pub struct Pending {
    handle: Option<AbortHandle>,
}

impl Pending {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends `message()` to `actor` after `delay`, replacing what was pending.
    pub fn after<M: Message>(
        &mut self,
        actor: &ActorRef<M>,
        delay: Duration,
        message: impl FnOnce() -> M + Send + 'static,
    ) {
        let timer = actor.send_after(delay, message);
        self.replace(timer.abort_handle());
    }

    /// Holds `task`, replacing (and aborting) what was pending.
    pub fn task<T>(&mut self, task: &JoinHandle<T>) {
        self.replace(task.abort_handle());
    }

    /// Aborts what is pending, if anything.
    pub fn cancel(&mut self) {
        if let Some(previous) = self.handle.take() {
            previous.abort();
        }
    }

    /// Whether something was set and not cancelled since: a fired timer stays pending until
    /// its owner handles the message and cancels it (its message may still be queued).
    pub fn is_pending(&self) -> bool {
        self.handle.is_some()
    }

    fn replace(&mut self, handle: AbortHandle) {
        self.cancel();
        self.handle = Some(handle);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.cancel();
    }
}
