//! Bounded maps for the projection cache: a map of two generations (what
//! the last batches used is kept, the rest is dropped) and a fixed-size
//! Bloom filter of the keys dropped (see `cache.rs`, "Memory").
//!
//! Written here rather than taken from a crate: the generations are rotated
//! at the cache's flush points (not by a size or time policy an LRU crate
//! offers), and the Bloom filter must hash the cache's own tagged keys; both
//! are a few dozen lines.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

/// A fast hasher for the cache's keys (UUIDs, job ids): they are not
/// chosen by an adversary who could gain anything from collisions, and
/// SipHash showed in profiles.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        key_hash(0, self.0 as u128)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.0 =
                (self.0.rotate_left(23) ^ u64::from_le_bytes(b)).wrapping_mul(0x9e3779b97f4a7c15);
        }
    }

    fn write_u32(&mut self, i: u32) {
        self.write_u64(i.into());
    }

    fn write_i32(&mut self, i: i32) {
        self.write_u64(i as u32 as u64);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = (self.0.rotate_left(23) ^ i).wrapping_mul(0x9e3779b97f4a7c15);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
}

pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// A map of two generations (see the module documentation), kept as one
/// map whose entries carry the generation in which they were last used.
pub struct Gen<K, V> {
    map: FastMap<K, (u32, V)>,
    /// The current generation.
    gen: u32,
    /// Entries used in the current generation.
    current: usize,
}

impl<K: Hash + Eq + Copy, V> Default for Gen<K, V> {
    fn default() -> Self {
        Gen::new()
    }
}

impl<K: Hash + Eq + Copy, V> Gen<K, V> {
    pub fn new() -> Self {
        Gen {
            map: FastMap::default(),
            gen: 0,
            current: 0,
        }
    }

    /// The entry, marked as used in the current generation.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let (g, v) = self.map.get_mut(k)?;
        if *g != self.gen {
            *g = self.gen;
            self.current += 1;
        }
        Some(v)
    }

    /// Sets the entry (replacing any), marked as used.
    pub fn insert(&mut self, k: K, v: V) -> &mut V {
        let gen = self.gen;
        match self.map.entry(k) {
            std::collections::hash_map::Entry::Occupied(mut o) => {
                if o.get().0 != gen {
                    self.current += 1;
                }
                o.insert((gen, v));
                &mut o.into_mut().1
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                self.current += 1;
                &mut e.insert((gen, v)).1
            }
        }
    }

    /// Removes the entry.
    pub fn remove(&mut self, k: &K) {
        if let Some((g, _)) = self.map.remove(k) {
            if g == self.gen {
                self.current = self.current.saturating_sub(1);
            }
        }
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = (&K, &mut V)> {
        self.map.iter_mut().map(|(k, (_, v))| (k, v))
    }

    /// When the current generation holds `capacity` entries: drops the
    /// entries not used in it (passing each dropped key to `dropped`) and
    /// starts the next one.
    pub fn rotate(&mut self, capacity: usize, mut dropped: impl FnMut(&K)) {
        if self.current >= capacity {
            let gen = self.gen;
            self.map.retain(|k, (g, _)| {
                let keep = *g == gen;
                if !keep {
                    dropped(k);
                }
                keep
            });
            self.gen = gen.wrapping_add(1);
            self.current = 0;
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// A fixed-size Bloom filter of evicted keys (1 MiB, 3 probes).
pub struct Bloom {
    bits: Vec<u64>,
}

pub const BLOOM_BITS: u64 = 1 << 23;

impl Default for Bloom {
    fn default() -> Self {
        Bloom::new()
    }
}

impl Bloom {
    pub fn new() -> Bloom {
        Bloom {
            bits: vec![0; (BLOOM_BITS / 64) as usize],
        }
    }

    fn probes(h: u64) -> [u64; 3] {
        let h2 = (h >> 32) | 1;
        [h, h.wrapping_add(h2), h.wrapping_add(h2.wrapping_mul(2))].map(|x| x % BLOOM_BITS)
    }

    pub fn insert(&mut self, h: u64) {
        for p in Self::probes(h) {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    pub fn may_contain(&self, h: u64) -> bool {
        Self::probes(h)
            .iter()
            .all(|p| self.bits[(p / 64) as usize] & (1 << (p % 64)) != 0)
    }
}

/// A well-mixed hash of a tagged key (splitmix64 finaliser).
pub fn key_hash(tag: u64, key: u128) -> u64 {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58476d1ce4e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d049bb133111eb);
        z ^ (z >> 31)
    };
    mix(mix(key as u64 ^ tag.wrapping_mul(0x9e3779b97f4a7c15)) ^ (key >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_keep_what_is_used_and_bound_the_rest() {
        let mut g: Gen<u32, u32> = Gen::new();
        let mut dropped = Vec::new();
        for i in 0..10 {
            g.insert(i, i);
        }
        g.rotate(10, |k| dropped.push(*k));
        assert!(dropped.is_empty());
        assert_eq!(g.get_mut(&3).copied(), Some(3)); // used again
        *g.insert(4, 40) += 1; // replaced
        for i in 10..18 {
            g.insert(i, i);
        }
        g.rotate(10, |k| dropped.push(*k));
        dropped.sort();
        assert_eq!(dropped, vec![0, 1, 2, 5, 6, 7, 8, 9]);
        assert_eq!(g.get_mut(&3).copied(), Some(3));
        assert_eq!(g.get_mut(&4).copied(), Some(41));
        assert_eq!(g.get_mut(&0), None);
        assert_eq!(g.len(), 10);
    }

    #[test]
    fn bloom_has_no_false_negatives() {
        let mut b = Bloom::new();
        let keys: Vec<u64> = (0..10_000u128).map(|k| key_hash(7, k)).collect();
        for h in &keys {
            b.insert(*h);
        }
        assert!(keys.iter().all(|h| b.may_contain(*h)));
        let false_positives = (10_000..110_000u128)
            .filter(|k| b.may_contain(key_hash(7, *k)))
            .count();
        assert!(false_positives < 100, "{false_positives}");
    }
}
