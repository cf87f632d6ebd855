//! The host lookup of link translation: internal host names (exact, or a
//! wildcard app's suffix) to the prefixes published under them.

use super::*;

/// Host names → prefixes: open addressing over a hash of the host folded
/// to lower case. The maps are
/// built from the configuration and only looked up from response bodies —
/// nothing a backend sends is ever inserted — so an unkeyed hash buys
/// speed at no flooding risk. A bit set of the key lengths turns most
/// foreign hosts away before any comparison.
#[derive(Debug, Default)]
pub(super) struct HostMap {
    /// (high half of the hash, index + 1 into `keys`), index 0 for empty;
    /// a power of two long. A probe compares the stored hash before it
    /// touches a key.
    slots: Vec<(u32, u32)>,
    /// Host names (or wildcard suffixes) folded (see [`FOLD`]), back to
    /// back in `arena`, as (start, end).
    keys: Vec<(u32, u32)>,
    arena: Vec<u8>,
    lists: Vec<Vec<Entry>>,
    /// Bit n set: some key is n bytes long (n < 128).
    lens: u128,
}

/// A host character folded to lower case. `| 0x20` lowers A-Z and leaves
/// digits, `-` and `.` alone; `_` becomes DEL, which no host holds. Keys are
/// stored folded, so comparing folded bytes is comparing hosts without
/// regard to case.
pub(super) const FOLD: u64 = 0x2020_2020_2020_2020;

/// Eight bytes of `s` from `i` (fewer at the end, zero-padded), folded.
#[inline]
pub(super) fn word(s: &[u8], i: usize) -> u64 {
    if let Some(w) = s.get(i..i + 8) {
        return u64::from_le_bytes(w.try_into().expect("eight bytes")) | FOLD;
    }
    let mut w = 0u64;
    for (k, &b) in s[i..].iter().enumerate() {
        w |= u64::from(b | 0x20) << (8 * k);
    }
    w
}

/// A hash of a host folded to lower case, eight bytes at a time.
#[inline]
pub(super) fn hash_host(host: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = host.len() as u64;
    let mut i = 0;
    while i < host.len() {
        h = (h.rotate_left(23) ^ word(host, i)).wrapping_mul(K);
        i += 8;
    }
    h ^ (h >> 29)
}

/// Whether `host` folded is `key` (stored folded).
#[inline]
pub(super) fn same_host(key: &[u8], host: &[u8]) -> bool {
    if key.len() != host.len() {
        return false;
    }
    let mut i = 0;
    while i < host.len() {
        if word(host, i) != word(key, i) {
            return false;
        }
        i += 8;
    }
    true
}

impl HostMap {
    fn key(&self, i: usize) -> &[u8] {
        let (a, b) = self.keys[i];
        &self.arena[a as usize..b as usize]
    }

    pub(super) fn list_mut(&mut self, key: &[u8]) -> &mut Vec<Entry> {
        if let Some(i) = self.find(key) {
            return &mut self.lists[i];
        }
        let start = self.arena.len() as u32;
        self.arena.extend(key.iter().map(|b| b | 0x20));
        self.keys.push((start, self.arena.len() as u32));
        self.lists.push(Vec::new());
        if key.len() < 128 {
            self.lens |= 1 << key.len();
        }
        // Rebuilt at each insert: tables are small and built once per
        // snapshot; the load stays at most a quarter.
        let n = (self.keys.len() * 4).next_power_of_two();
        self.slots = vec![(0, 0); n];
        for i in 0..self.keys.len() {
            let h = hash_host(self.key(i));
            let mut at = h as usize & (n - 1);
            while self.slots[at].1 != 0 {
                at = (at + 1) & (n - 1);
            }
            self.slots[at] = ((h >> 32) as u32, i as u32 + 1);
        }
        self.lists.last_mut().expect("just pushed")
    }

    /// Where `host` (any case) is among the keys. The length check comes
    /// before the hash, so most foreign hosts cost one bit test.
    #[inline]
    pub(super) fn find(&self, host: &[u8]) -> Option<usize> {
        if self.slots.is_empty() || host.len() >= 128 || self.lens & (1 << host.len()) == 0 {
            return None;
        }
        let h = hash_host(host);
        let mask = self.slots.len() - 1;
        let mut at = h as usize & mask;
        loop {
            let (high, s) = self.slots[at];
            if s == 0 {
                return None;
            }
            let i = s as usize - 1;
            if high == (h >> 32) as u32 && same_host(self.key(i), host) {
                return Some(i);
            }
            at = (at + 1) & mask;
        }
    }

    pub(super) fn get(&self, host: &[u8]) -> Option<&Vec<Entry>> {
        self.find(host).map(|i| &self.lists[i])
    }

    pub(super) fn lists_mut(&mut self) -> impl Iterator<Item = &mut Vec<Entry>> {
        self.lists.iter_mut()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// Which bytes a host name is made of.
pub(super) static HOST_CHAR: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_';
        i += 1;
    }
    t
};
