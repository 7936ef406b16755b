//! Admission to the enclave's link: how many peers may wait to authenticate, and how many may
//! hold an authenticated connection.
//!
//! Anyone on the parent instance can open a vsock connection, so unauthenticated connections
//! are bounded and short-lived: at most [`MAX_PENDING`] at once, each with a deadline, and when
//! another arrives the oldest waiting one is evicted. A flood of connections therefore cannot
//! lock the gateway out (its connection authenticates within a round trip of arriving) and
//! never touches established, authenticated connections, of which there are at most
//! [`MAX_AUTHENTICATED`] (only holders of the link key get one).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Connections that may be waiting to authenticate at once.
pub const MAX_PENDING: usize = 8;
/// Authenticated connections at once (a gateway keeps one; a restarting gateway briefly two).
pub const MAX_AUTHENTICATED: usize = 8;

/// Shared by every connection of one listener.
#[derive(Debug)]
pub struct Gate {
    pending: Mutex<Queue>,
    authenticated: Arc<Semaphore>,
    max_pending: usize,
}

#[derive(Debug, Default)]
struct Queue {
    next_id: u64,
    waiting: VecDeque<(u64, oneshot::Sender<()>)>,
}

/// A connection that has not authenticated yet. Dropping it leaves the queue.
#[derive(Debug)]
pub struct Pending {
    id: u64,
    gate: Arc<Gate>,
    evicted: oneshot::Receiver<()>,
}

impl Gate {
    pub fn new(max_pending: usize, max_authenticated: usize) -> Arc<Self> {
        Arc::new(Gate {
            pending: Mutex::new(Queue::default()),
            authenticated: Arc::new(Semaphore::new(max_authenticated)),
            max_pending,
        })
    }

    /// Admits a new connection to the waiting queue, evicting the oldest waiter when full.
    pub fn admit(self: &Arc<Self>) -> Pending {
        let (tx, evicted) = oneshot::channel();
        let mut queue = self.lock();
        let id = queue.next_id;
        queue.next_id += 1;
        while queue.waiting.len() >= self.max_pending {
            if let Some((_, oldest)) = queue.waiting.pop_front() {
                let _ = oldest.send(());
            }
        }
        queue.waiting.push_back((id, tx));
        Pending { id, gate: self.clone(), evicted }
    }

    /// An authenticated connection's slot, or `None` when all are taken.
    pub fn authenticated(&self, pending: Pending) -> Option<OwnedSemaphorePermit> {
        drop(pending);
        self.authenticated.clone().try_acquire_owned().ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        // Every operation on the queue is a single push, pop or retain.
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }
}

impl Pending {
    /// Resolves when this connection is evicted to make room for a newer one.
    pub async fn evicted(&mut self) {
        // The sender lives in the queue until it is used to evict us (or we leave the queue,
        // after which nobody awaits this), so an error means the same as a message.
        let _ = (&mut self.evicted).await;
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let id = self.id;
        self.gate.lock().waiting.retain(|(waiting, _)| *waiting != id);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_oldest_waiter_is_evicted_when_the_queue_is_full() {
        let gate = Gate::new(2, 1);
        let mut first = gate.admit();
        let mut second = gate.admit();
        assert_eq!(gate.waiting(), 2);
        let _third = gate.admit();
        tokio::time::timeout(Duration::from_secs(1), first.evicted()).await.expect("the oldest is evicted");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), second.evicted()).await.is_err(),
            "the second is still waiting"
        );
        assert_eq!(gate.waiting(), 2);
    }

    #[tokio::test]
    async fn authenticated_connections_are_capped_and_leave_the_queue() {
        let gate = Gate::new(4, 1);
        let one = gate.authenticated(gate.admit()).expect("a slot");
        assert_eq!(gate.waiting(), 0);
        assert!(gate.authenticated(gate.admit()).is_none(), "the only slot is taken");
        drop(one);
        assert!(gate.authenticated(gate.admit()).is_some(), "a freed slot is reused");
    }
}
