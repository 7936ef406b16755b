//! Unwrapped key versions kept in enclave memory, so a hot key is not unwrapped for every
//! signature. Bounded: when full, an entry is evicted (and its material zeroized as it drops).
//! An entry is used only for the very row it was unwrapped from: a row that differs in any
//! byte (a tampered public key, another blob) misses and is unwrapped, and refused, anew.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use keyward_keyring::KeyMaterial;
use keyward_proto::{KeyName, KeyVersion, WrappedKey};

/// Each cached version: the row it was unwrapped from and its material.
type Entries = HashMap<(KeyName, KeyVersion), (WrappedKey, Arc<KeyMaterial>)>;

/// The bounded cache.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        KeyCache { capacity, entries: Mutex::new(HashMap::with_capacity(capacity.min(1 << 16))) }
    }

    /// The material of `row`, if it was unwrapped from exactly this row.
    pub fn get(&self, row: &WrappedKey) -> Option<Arc<KeyMaterial>> {
        let entries = self.lock();
        let (cached_row, material) = entries.get(&(row.identity.name.clone(), row.identity.version))?;
        (cached_row == row).then(|| material.clone())
    }

    /// Remembers `material` for `row`, evicting another entry when full.
    pub fn put(&self, row: &WrappedKey, material: Arc<KeyMaterial>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        let key = (row.identity.name.clone(), row.identity.version);
        if !entries.contains_key(&key) && entries.len() >= self.capacity {
            // Any entry: HashMap iteration order is arbitrary, which is what a cache under a
            // uniform load needs, and O(1).
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(key, (row.clone(), material));
    }

    /// Forgets every key (a new root was loaded).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Each operation is a single get, insert or remove: a poisoned map is still whole.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use keyward_proto::{KeyFlags, KeyIdentity, KeyType, Origin, RootId};

    use super::*;

    fn row(name: &str) -> (WrappedKey, Arc<KeyMaterial>) {
        let material = KeyMaterial::from_secret(KeyType::Ed25519, &[3; 32]).unwrap();
        let row = WrappedKey {
            identity: KeyIdentity {
                name: KeyName::parse(name).unwrap(),
                version: KeyVersion::FIRST,
                key_type: KeyType::Ed25519,
                flags: KeyFlags { exportable: false, origin: Origin::Generated },
            },
            root_id: RootId([1; 16]),
            public_key: material.public_key().to_vec(),
            wrapped: vec![9; 61],
        };
        (row, Arc::new(material))
    }

    #[test]
    fn a_hit_needs_the_very_same_row() {
        let cache = KeyCache::new(4);
        let (stored, material) = row("k");
        cache.put(&stored, material);
        assert!(cache.get(&stored).is_some());
        let mut tampered = stored.clone();
        tampered.public_key[0] ^= 1;
        assert!(cache.get(&tampered).is_none(), "another public key misses");
        let mut other_blob = stored;
        other_blob.wrapped[5] ^= 1;
        assert!(cache.get(&other_blob).is_none(), "another blob misses");
    }

    #[test]
    fn the_cache_never_grows_past_its_capacity() {
        let cache = KeyCache::new(3);
        for i in 0..10 {
            let (r, m) = row(&format!("k{i}"));
            cache.put(&r, m);
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.len(), 3);
        cache.clear();
        assert!(cache.is_empty());
    }
}
