//! `ActorSlot`: the stable address of a supervised actor.
//!
//! ractor gives a restarted actor a new `ActorRef` and a new mailbox, so a reference held by a
//! caller dies with the actor it named. Callers (the REST API, the resync driver, the host) hold
//! a slot instead: while the actor runs, the slot forwards to it; between a crash and the
//! restart, the slot keeps the messages in order and hands them to the new actor when the
//! supervisor attaches it, after the new actor's own replay message. Nothing sent while the
//! actor restarts is lost. Messages already in the crashed actor's mailbox are lost with it;
//! a caller waiting on one of them gets `SlotError::Dropped`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ractor::{ActorRef, Message, MessagingErr, RpcReplyPort};
use tokio::sync::oneshot;

use herald_messages::ChildKind;

/// Most messages a slot holds for an actor that is restarting.
pub const SLOT_BUFFER_LIMIT: usize = 100_000;

/// Why a message could not be delivered or answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("{0} is stopped")]
    Stopped(ChildKind),
    #[error("{0} did not answer within {1:?}")]
    Timeout(ChildKind, Duration),
    #[error("{0} failed before it answered")]
    Dropped(ChildKind),
    #[error("{0} is restarting and already holds {SLOT_BUFFER_LIMIT} waiting messages")]
    Overloaded(ChildKind),
}

enum Inner<M> {
    Live(ActorRef<M>),
    Waiting(VecDeque<M>),
    Closed,
}

/// The stable address of one supervised actor. Cheap to clone.
pub struct ActorSlot<M: Message> {
    kind: ChildKind,
    inner: Arc<Mutex<Inner<M>>>,
}

impl<M: Message> Clone for ActorSlot<M> {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<M: Message> std::fmt::Debug for ActorSlot<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &*self.lock() {
            Inner::Live(actor) => format!("live({})", actor.get_id()),
            Inner::Waiting(queue) => format!("waiting({})", queue.len()),
            Inner::Closed => "closed".to_owned(),
        };
        write!(f, "ActorSlot({}, {state})", self.kind)
    }
}

impl<M: Message> ActorSlot<M> {
    /// An empty slot: messages wait until an actor is attached.
    pub fn new(kind: ChildKind) -> Self {
        Self {
            kind,
            inner: Arc::new(Mutex::new(Inner::Waiting(VecDeque::new()))),
        }
    }

    pub fn kind(&self) -> ChildKind {
        self.kind
    }

    /// Sends without waiting for an answer.
    pub fn cast(&self, message: M) -> Result<(), SlotError> {
        let mut inner = self.lock();
        let message = match &*inner {
            Inner::Live(actor) => match actor.cast(message) {
                Ok(()) => return Ok(()),
                // The actor is gone; keep the message for its successor.
                Err(MessagingErr::SendErr(message)) => message,
                Err(_) => return Err(SlotError::Stopped(self.kind)),
            },
            Inner::Waiting(_) => message,
            Inner::Closed => return Err(SlotError::Stopped(self.kind)),
        };
        if let Inner::Live(_) = &*inner {
            *inner = Inner::Waiting(VecDeque::new());
        }
        let Inner::Waiting(queue) = &mut *inner else {
            unreachable!("the slot was set to waiting above");
        };
        if queue.len() >= SLOT_BUFFER_LIMIT {
            return Err(SlotError::Overloaded(self.kind));
        }
        queue.push_back(message);
        Ok(())
    }

    /// Sends a request built around a reply port and waits up to `timeout` for the answer.
    pub async fn call<T: Send + 'static>(
        &self,
        request: impl FnOnce(RpcReplyPort<T>) -> M,
        timeout: Duration,
    ) -> Result<T, SlotError> {
        let (reply, answer) = oneshot::channel();
        self.cast(request(RpcReplyPort::from((reply, timeout))))?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(SlotError::Dropped(self.kind)),
            Err(_) => Err(SlotError::Timeout(self.kind, timeout)),
        }
    }

    /// The running actor, if any.
    pub fn actor(&self) -> Option<ActorRef<M>> {
        match &*self.lock() {
            Inner::Live(actor) => Some(actor.clone()),
            _ => None,
        }
    }

    /// Points the slot at a (re)started actor and hands it the waiting messages, in order.
    pub fn attach(&self, actor: ActorRef<M>) {
        let mut inner = self.lock();
        if let Inner::Waiting(queue) = &mut *inner {
            for message in queue.drain(..) {
                // A fresh actor accepts; if it already died, later sends find out.
                let _ = actor.cast(message);
            }
        }
        if !matches!(*inner, Inner::Closed) {
            *inner = Inner::Live(actor);
        }
    }

    /// The actor stopped or failed: hold messages until `attach`.
    pub fn detach(&self) {
        let mut inner = self.lock();
        if let Inner::Live(_) = &*inner {
            *inner = Inner::Waiting(VecDeque::new());
        }
    }

    /// The node is stopping: refuse messages from now on and drop the waiting ones (their
    /// callers get `Dropped`).
    pub fn close(&self) {
        *self.lock() = Inner::Closed;
    }

    fn lock(&self) -> MutexGuard<'_, Inner<M>> {
        // A panic while holding this lock leaves the data consistent (every branch is one
        // assignment), so a poisoned lock is safe to reuse.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
