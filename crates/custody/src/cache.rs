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

type Key = (KeyName, KeyVersion);

/// One cached version: the row it was unwrapped from and its material.
#[derive(Debug)]
struct Slot {
    key: Key,
    row: WrappedKey,
    material: Arc<KeyMaterial>,
}

/// The entries, in a vector so that a victim is picked in O(1), with an index by key.
#[derive(Debug, Default)]
struct Entries {
    slots: Vec<Slot>,
    index: HashMap<Key, usize>,
    /// State of the victim picker (splitmix64); it needs to be spread, not secret.
    picker: u64,
}

impl Entries {
    /// A slot to overwrite, uniformly at random: under uniform load every policy hits
    /// alike, and random replacement costs O(1) with no bookkeeping per hit.
    fn victim(&mut self) -> usize {
        self.picker = self.picker.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.picker;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) % self.slots.len() as u64) as usize
    }
}

/// The bounded cache.
#[derive(Debug)]
pub struct KeyCache {
    capacity: usize,
    entries: Mutex<Entries>,
}

impl KeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        let reserve = capacity.min(1 << 16);
        let entries = Entries { slots: Vec::with_capacity(reserve), index: HashMap::with_capacity(reserve), picker: 0 };
        KeyCache { capacity, entries: Mutex::new(entries) }
    }

    /// The material of `row`, if it was unwrapped from exactly this row.
    pub fn get(&self, row: &WrappedKey) -> Option<Arc<KeyMaterial>> {
        let entries = self.lock();
        let slot = &entries.slots[*entries.index.get(&(row.identity.name.clone(), row.identity.version))?];
        (slot.row == *row).then(|| slot.material.clone())
    }

    /// Remembers `material` for `row`, replacing a random entry when full.
    pub fn put(&self, row: &WrappedKey, material: Arc<KeyMaterial>) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.lock();
        let key = (row.identity.name.clone(), row.identity.version);
        let slot = Slot { key: key.clone(), row: row.clone(), material };
        if let Some(&at) = entries.index.get(&key) {
            // The same version from another row (a rejected tamper is never put): replace it.
            entries.slots[at] = slot;
        } else if entries.slots.len() < self.capacity {
            let at = entries.slots.len();
            entries.slots.push(slot);
            entries.index.insert(key, at);
        } else {
            let at = entries.victim();
            let old = std::mem::replace(&mut entries.slots[at], slot);
            entries.index.remove(&old.key);
            entries.index.insert(key, at);
            // `old` drops here, and its material is zeroized when no signer holds it any more.
        }
    }

    /// Forgets every key (a new root was loaded).
    pub fn clear(&self) {
        let mut entries = self.lock();
        entries.slots.clear();
        entries.index.clear();
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.lock().slots.len()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // Each operation leaves the vector and its index in step before it can panic (the
        // only allocation happens before either changes): a poisoned map is still whole.
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

    #[test]
    fn every_entry_held_is_found_and_an_evicted_one_is_not() {
        let cache = KeyCache::new(8);
        let rows: Vec<_> = (0..100).map(|i| row(&format!("k{i}"))).collect();
        for (r, m) in &rows {
            cache.put(r, m.clone());
            assert!(cache.get(r).is_some(), "just put");
        }
        let held = rows.iter().filter(|(r, _)| cache.get(r).is_some()).count();
        assert_eq!(held, 8, "exactly the capacity is held, and the index agrees with the slots");
        // Evictions are spread: over many puts, most early keys are gone.
        assert!(cache.get(&rows[0].0).is_none() || cache.get(&rows[1].0).is_none());
    }
}
