//! Admission to the enclave's link: how many peers may wait to authenticate, and how many may
//! hold an authenticated connection.
//!
//! Anyone on the parent instance can open a vsock connection, so unauthenticated connections
//! are bounded and short-lived: at most [`MAX_PENDING`] at once, each with a deadline, and when
//! another arrives a *randomly chosen* waiting one is evicted. A flood never touches
//! established, authenticated connections, of which there are at most [`MAX_AUTHENTICATED`]
//! (only holders of the link key get one). A gateway that connects during a flood needs about
//! two round trips to authenticate; with random eviction it survives each later arrival with
//! probability 7/8, and it retries at once when evicted, so a flood delays its reconnection
//! but cannot shut it out for good (with oldest-first eviction, eight quick connections would).

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
            let victim = random_index(queue.waiting.len());
            if let Some((_, evicted)) = queue.waiting.remove(victim) {
                let _ = evicted.send(());
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

/// A uniformly random index below `len` (which is at most a few).
fn random_index(len: usize) -> usize {
    let mut bytes = [0u8; 8];
    // Without randomness the first waiter goes: still a bounded queue, only more predictable.
    let _ = getrandom::fill(&mut bytes);
    (u64::from_le_bytes(bytes) % len.max(1) as u64) as usize
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
    use super::*;

    /// Whether `pending` has been told to leave.
    fn was_evicted(pending: &mut Pending) -> bool {
        !matches!(pending.evicted.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }

    #[test]
    fn a_full_queue_evicts_one_waiter_per_arrival_and_never_grows() {
        let gate = Gate::new(2, 1);
        let mut first = gate.admit();
        let mut second = gate.admit();
        assert_eq!(gate.waiting(), 2);
        let mut third = gate.admit();
        let evicted = usize::from(was_evicted(&mut first)) + usize::from(was_evicted(&mut second));
        assert_eq!(evicted, 1, "exactly one of the two earlier waiters made room");
        assert!(!was_evicted(&mut third), "the newcomer waits");
        assert_eq!(gate.waiting(), 2);
    }

    #[test]
    fn any_waiter_may_be_evicted_not_only_the_oldest() {
        // Under a flood, oldest-first would always evict a gateway that arrived just before
        // eight attacker connections; a random choice lets it stay with probability 7/8 each.
        let mut oldest_survived = 0;
        for _ in 0..200 {
            let gate = Gate::new(8, 1);
            let mut oldest = gate.admit();
            let _rest: Vec<_> = (0..7).map(|_| gate.admit()).collect();
            let _newcomer = gate.admit();
            if !was_evicted(&mut oldest) {
                oldest_survived += 1;
            }
        }
        // Expected 175 of 200; the chance of fewer than 140 is negligible.
        assert!(oldest_survived > 140, "the oldest survived only {oldest_survived} of 200 times");
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
