//! Key use through a database outage. A gateway reads a key's rows for every operation, so
//! that a key disabled or rotated through another node of a fleet is seen at once. When the
//! database cannot be reached, the rows this gateway read for the same request within the
//! last `grace` serve instead: keys in use keep working, while writes (creation, rotation,
//! state, policies) fail with `database_unavailable`. This gateway's own writes evict the rows
//! they change before they are sent (and a read that raced with one is not kept), so only a
//! change another node made less than `grace` before the outage may go unseen here until the
//! database is back (docs/operations.md, "When the database fails"). Only failures to reach
//! the database count (`database_unavailable`, `database_busy`): an error the database
//! answered is never covered up. `grace` zero turns it off.

use std::{
    collections::HashMap,
    sync::{
        Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use keyward_store::{KeyRow, VersionRow};

use crate::db::Policies;

/// Rows kept at most; past it the cache starts over (memory stays bounded whatever the
/// number of keys; the keys in use are read again within moments).
const MAX_ENTRIES: usize = 65_536;

/// What one key operation reads.
pub(crate) type Found = (KeyRow, Option<VersionRow>, Policies);
/// Name, version asked for, with policies.
pub(crate) type Asked = (String, Option<i64>, bool);

#[derive(Debug)]
pub(crate) struct OutageCache {
    grace: Duration,
    rows: Mutex<HashMap<Asked, (Instant, Found)>>,
    serving: AtomicBool,
    /// Bumped by every eviction: a read that began before one is not kept.
    evictions: AtomicU64,
}

impl OutageCache {
    pub(crate) fn new(grace: Duration) -> Self {
        OutageCache {
            grace,
            rows: Mutex::new(HashMap::new()),
            serving: AtomicBool::new(false),
            evictions: AtomicU64::new(0),
        }
    }

    /// Taken before a read; [`Self::remember`] keeps the read only if no eviction came since.
    pub(crate) fn ticket(&self) -> u64 {
        self.evictions.load(Ordering::SeqCst)
    }

    /// Evicts the rows of every key `changes` names, before a write to them is sent (sent,
    /// since a write whose answer is lost may still have been applied).
    pub(crate) fn forget(&self, changes: impl Fn(&str) -> bool) {
        let mut rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.evictions.fetch_add(1, Ordering::SeqCst);
        rows.retain(|asked, _| !changes(&asked.0));
    }

    /// Keeps a fresh read (taken with `ticket`); ends an outage.
    pub(crate) fn remember(&self, asked: Asked, found: &Found, ticket: u64) {
        if self.serving.swap(false, Ordering::Relaxed) {
            tracing::warn!("database reachable again: key rows are read from it again");
        }
        let mut rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.evictions.load(Ordering::SeqCst) != ticket {
            return;
        }
        if rows.len() >= MAX_ENTRIES && !rows.contains_key(&asked) {
            rows.clear();
        }
        rows.insert(asked, (Instant::now(), found.clone()));
    }

    /// Whether any key can be served through an outage now: a row was read within the grace.
    pub(crate) fn can_serve(&self) -> bool {
        self.can_serve_at(Instant::now())
    }

    fn can_serve_at(&self, now: Instant) -> bool {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        rows.values().any(|(read_at, _)| now.saturating_duration_since(*read_at) <= self.grace)
    }

    /// The rows read for `asked` within the grace period, while the database is unreachable.
    pub(crate) fn recall(&self, asked: &Asked, code: &str) -> Option<Found> {
        self.recall_at(asked, code, Instant::now())
    }

    fn recall_at(&self, asked: &Asked, code: &str, now: Instant) -> Option<Found> {
        let rows = self.rows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (read_at, found) = rows.get(asked)?;
        if now.saturating_duration_since(*read_at) > self.grace {
            return None;
        }
        if !self.serving.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                code,
                grace_s = self.grace.as_secs(),
                "database unreachable: keys in use are served from rows read in the last {} s; writes fail until it is back",
                self.grace.as_secs()
            );
        }
        Some(found.clone())
    }
}

/// Failures that mean "the database is not there right now", not "the answer is no".
pub fn is_outage(code: &str) -> bool {
    matches!(code, "database_unavailable" | "database_busy")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str) -> Found {
        let mut key = keyward_store::conformance::new_key(name);
        key.key.revision = 7;
        (key.key, Some(key.version), Policies::default())
    }

    #[test]
    fn rows_serve_only_within_the_grace_and_only_for_the_same_request() {
        let cache = OutageCache::new(Duration::from_secs(3600));
        let asked: Asked = ("k".into(), None, true);
        assert!(cache.recall(&asked, "database_unavailable").is_none(), "nothing read yet");
        cache.remember(asked.clone(), &found("k"), cache.ticket());
        assert_eq!(cache.recall(&asked, "database_unavailable").map(|f| f.0.revision), Some(7));
        assert!(cache.recall(&("k".into(), Some(1), true), "database_unavailable").is_none(), "another version");
        assert!(cache.recall(&("k".into(), None, false), "database_unavailable").is_none(), "without policies");
        let later = Instant::now() + Duration::from_secs(3601);
        assert!(cache.recall_at(&asked, "database_unavailable", later).is_none(), "past the grace");
        assert!(
            cache.can_serve() && !cache.can_serve_at(later),
            "a node serves through an outage within the grace only"
        );
        assert!(!OutageCache::new(Duration::from_secs(3600)).can_serve(), "nothing read, nothing to serve");
    }

    #[test]
    fn memory_is_bounded_and_only_unreachability_counts_as_an_outage() {
        let cache = OutageCache::new(Duration::from_secs(3600));
        for i in 0..MAX_ENTRIES + 10 {
            cache.remember((format!("k{i}"), None, false), &found("k"), cache.ticket());
        }
        assert!(cache.rows.lock().unwrap().len() <= MAX_ENTRIES);
        assert!(is_outage("database_unavailable") && is_outage("database_busy"));
        for code in ["key_exists", "key_conflict", "database_not_keyward", "database_read_only", "database_full"] {
            assert!(!is_outage(code), "{code}");
        }
    }

    #[test]
    fn a_write_evicts_its_keys_and_a_read_that_raced_with_it_is_not_kept() {
        let cache = OutageCache::new(Duration::from_secs(3600));
        for name in ["a", "acme/a", "acme/b"] {
            cache.remember((name.into(), None, false), &found(name), cache.ticket());
        }
        cache.forget(|name| name.starts_with("acme/"));
        assert!(cache.recall(&("acme/a".into(), None, false), "database_unavailable").is_none());
        assert!(cache.recall(&("acme/b".into(), None, false), "database_unavailable").is_none());
        assert!(cache.recall(&("a".into(), None, false), "database_unavailable").is_some(), "another keystore's stays");
        // A read that began before an eviction ends after it: its rows may predate the write.
        let before = cache.ticket();
        cache.forget(|name| name == "a");
        cache.remember(("a".into(), None, false), &found("a"), before);
        assert!(cache.recall(&("a".into(), None, false), "database_unavailable").is_none());
    }
}
