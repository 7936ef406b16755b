//! Replay protection: a signed request is accepted once, and only near its timestamp. The
//! enclave remembers the ids of requests inside the window; outside it, the timestamp alone
//! refuses them. A restarted enclave forgets the ids, so a request may be replayed to it within
//! its window: the window bounds that, and operations that must never repeat carry their own
//! state checks (a rotation names the version it rotates from).

use std::collections::{BTreeMap, HashMap};

/// Why a request was refused as a replay or out of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Older than the window.
    #[error("the request was signed {age} s ago; requests are accepted for {window} s")]
    Stale { age: u64, window: u64 },
    /// Further ahead than the clocks' allowed skew.
    #[error("the request is dated {ahead} s in the future")]
    FromTheFuture { ahead: u64 },
    /// Seen before.
    #[error("the request was already accepted once")]
    Replayed,
}

impl ReplayError {
    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            ReplayError::Stale { .. } | ReplayError::FromTheFuture { .. } => "request_expired",
            ReplayError::Replayed => "request_replayed",
        }
    }
}

/// The ids of accepted requests inside the window.
#[derive(Debug)]
pub struct ReplayGuard {
    window: u64,
    seen: HashMap<[u8; 16], u64>,
    /// Expiry → ids, to forget old ids in order.
    expiries: BTreeMap<u64, Vec<[u8; 16]>>,
}

impl ReplayGuard {
    /// Requests older than `window` seconds (or as far ahead) are refused.
    pub fn new(window: u64) -> Self {
        ReplayGuard { window, seen: HashMap::new(), expiries: BTreeMap::new() }
    }

    /// Accepts `request_id` signed at `timestamp` once, at time `now`.
    pub fn accept(&mut self, request_id: [u8; 16], timestamp: u64, now: u64) -> Result<(), ReplayError> {
        self.forget_before(now);
        self.check_time(timestamp, now)?;
        if self.seen.contains_key(&request_id) {
            return Err(ReplayError::Replayed);
        }
        let expiry = timestamp + self.window;
        self.seen.insert(request_id, expiry);
        self.expiries.entry(expiry).or_default().push(request_id);
        Ok(())
    }

    /// Checks only the time window, for requests whose repeat changes nothing (their ids are
    /// not remembered, so signing at full speed does not fill memory).
    pub fn check_time(&self, timestamp: u64, now: u64) -> Result<(), ReplayError> {
        if timestamp > now + self.window {
            return Err(ReplayError::FromTheFuture { ahead: timestamp - now });
        }
        if now > timestamp + self.window {
            return Err(ReplayError::Stale { age: now - timestamp, window: self.window });
        }
        Ok(())
    }

    /// Ids remembered now.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    fn forget_before(&mut self, now: u64) {
        let keep = self.expiries.split_off(&now);
        for id in std::mem::replace(&mut self.expiries, keep).into_values().flatten() {
            self.seen.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_is_accepted_once_and_only_inside_its_window() {
        let mut guard = ReplayGuard::new(300);
        assert_eq!(guard.accept([1; 16], 1000, 1000), Ok(()));
        assert_eq!(guard.accept([1; 16], 1000, 1001), Err(ReplayError::Replayed));
        assert_eq!(guard.accept([2; 16], 600, 1000), Err(ReplayError::Stale { age: 400, window: 300 }));
        assert_eq!(guard.accept([3; 16], 1400, 1000), Err(ReplayError::FromTheFuture { ahead: 400 }));
        assert_eq!(guard.accept([4; 16], 1250, 1000), Ok(()), "clock skew inside the window");
        assert_eq!(ReplayError::Replayed.code(), "request_replayed");
    }

    #[test]
    fn ids_are_forgotten_once_their_timestamp_alone_refuses_them() {
        let mut guard = ReplayGuard::new(300);
        guard.accept([1; 16], 1000, 1000).unwrap();
        guard.accept([2; 16], 1100, 1100).unwrap();
        assert_eq!(guard.len(), 2);
        // At 1350 the first id's window is over: it is forgotten, and a replay of it is stale.
        assert_eq!(guard.accept([1; 16], 1000, 1350), Err(ReplayError::Stale { age: 350, window: 300 }));
        assert_eq!(guard.len(), 1);
        assert_eq!(guard.accept([2; 16], 1100, 1350), Err(ReplayError::Replayed));
    }
}
