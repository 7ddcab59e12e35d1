//! `Published` and `View`: how an actor serves reads without its mailbox.
//!
//! An actor that serves reads publishes an immutable snapshot (`Arc<T>`) of what it serves
//! after each change that alters it, once the change is as durable as the reply to it says;
//! readers take the latest snapshot without waiting for the actor. The `Published` handle is
//! made by the wiring and cloned into the actor's arguments, so it outlives the actor's
//! restarts: a restarted actor publishes into the same handle, and readers keep reading the
//! last snapshot of its predecessor until it publishes its own.
//!
//! This is a `tokio::sync::watch` of an `Arc`: a read is a shared lock held for an `Arc`
//! clone, a publication replaces the value. It does not decide what a snapshot holds, nor
//! when an actor publishes (each actor does).

use std::sync::Arc;

use tokio::sync::watch;

/// The writing side of a snapshot: held by the wiring, cloned into each start of the actor.
#[derive(Debug)]
pub struct Published<T> {
    sender: watch::Sender<Arc<T>>,
}

impl<T> Clone for Published<T> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Published<T> {
    /// A handle holding `initial` until the actor publishes.
    pub fn new(initial: T) -> Self {
        let (sender, _) = watch::channel(Arc::new(initial));
        Self { sender }
    }

    /// Replaces the snapshot readers see.
    pub fn publish(&self, value: T) {
        self.publish_arc(Arc::new(value));
    }

    /// Replaces the snapshot readers see with one already shared.
    pub fn publish_arc(&self, value: Arc<T>) {
        self.sender.send_replace(value);
    }

    /// Replaces the snapshot unless it is equal to the current one; says whether it did.
    pub fn publish_if_changed(&self, value: T) -> bool
    where
        T: PartialEq,
    {
        self.sender.send_if_modified(|current| {
            if **current == value {
                return false;
            }
            *current = Arc::new(value);
            true
        })
    }

    /// The snapshot readers see now.
    pub fn latest(&self) -> Arc<T> {
        Arc::clone(&self.sender.borrow())
    }

    /// A reader of this snapshot.
    pub fn view(&self) -> View<T> {
        View {
            receiver: self.sender.subscribe(),
        }
    }
}

/// The reading side of a snapshot: cheap to clone, never waits for the actor.
#[derive(Debug)]
pub struct View<T> {
    receiver: watch::Receiver<Arc<T>>,
}

impl<T> Clone for View<T> {
    fn clone(&self) -> Self {
        Self {
            receiver: self.receiver.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> View<T> {
    /// The latest published snapshot.
    pub fn latest(&self) -> Arc<T> {
        Arc::clone(&self.receiver.borrow())
    }

    /// The next snapshot published after the last one this reader took (`latest` does not
    /// count as taking); `None` when the handle is gone (the node was dropped).
    pub async fn changed(&mut self) -> Option<Arc<T>> {
        self.receiver.changed().await.ok()?;
        Some(Arc::clone(&self.receiver.borrow_and_update()))
    }

    /// The first snapshot (the current one included) for which `ready` holds. Waits only for
    /// publications, never for the actor's mailbox; `None` when the handle is gone (the node
    /// was dropped) before one did.
    pub async fn wait_for(&self, mut ready: impl FnMut(&T) -> bool) -> Option<Arc<T>> {
        let mut receiver = self.receiver.clone();
        let found = receiver.wait_for(|value| ready(value)).await.ok()?;
        Some(Arc::clone(&found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn readers_see_the_latest_publication_and_equal_ones_are_skipped() {
        let published = Published::new(1_u32);
        let view = published.view();
        assert_eq!(*view.latest(), 1);
        published.publish(2);
        assert_eq!(*view.latest(), 2);
        assert!(!published.publish_if_changed(2));
        assert!(published.publish_if_changed(3));
        assert_eq!(*view.clone().latest(), 3);
    }

    #[tokio::test]
    async fn a_reader_made_before_a_restart_sees_what_the_next_actor_publishes() {
        let published = Published::new(0_u32);
        let view = published.view();
        // Each start of the actor gets a clone of the handle.
        let first_start = published.clone();
        first_start.publish(1);
        drop(first_start);
        let second_start = published.clone();
        second_start.publish(2);
        assert_eq!(*view.latest(), 2);
    }

    #[tokio::test]
    async fn wait_for_returns_at_once_when_the_current_snapshot_is_ready() {
        let published = Published::new(5_u32);
        let view = published.view();
        assert_eq!(view.wait_for(|v| *v == 5).await.as_deref(), Some(&5));
        let waiter = tokio::spawn(async move { view.wait_for(|v| *v == 7).await });
        published.publish(6);
        published.publish(7);
        assert_eq!(waiter.await.unwrap().as_deref(), Some(&7));
    }
}
