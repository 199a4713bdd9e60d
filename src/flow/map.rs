//! HOT PATH. The open-addressing map under [`super::FlowTable`].
//!
//! Why not hashbrown: a busy span port keeps hundreds of thousands of
//! connections live, far more than the CPU caches hold, so nearly every
//! packet's lookup is a trip to DRAM. The engine decodes a batch of packets
//! ahead and asks for their slots to be loaded ([`FlowMap::prefetch`]), so
//! that those loads overlap instead of queueing. That needs the address of a
//! key's slot before the probe, which hashbrown does not give.
//!
//! The layout makes that one prefetch almost always enough: linear probing
//! (a miss runs on into the next, adjacent slot), never more than half full
//! (a hit is in its home slot about three times in four), and each slot one
//! key and its value, aligned to two cache lines. Deletion shifts the rest
//! of the run back (Knuth vol. 3 §6.4, algorithm R): no tombstones, so a
//! long run of connections opening and closing does not rot the table.
//!
//! The hash is seeded per process (foldhash, hashbrown's default): the keys
//! come from the wire, and a fixed hash would let whoever sends the packets
//! pile their tuples into one long probe run.

use std::hash::{BuildHasher, Hash};

/// One key and its value, on cache-line boundaries: a slot never straddles
/// more lines than its size needs.
#[repr(align(64))]
struct Slot<K, V>(Option<(K, V)>);

/// A hash map from `K` to `V` with a prefetch; see the module docs.
pub struct FlowMap<K, V> {
    slots: Box<[Slot<K, V>]>,
    /// Slot count minus one (the count is a power of two).
    mask: usize,
    len: usize,
    hasher: hashbrown::DefaultHashBuilder,
}

/// Fewest slots a map has (a power of two).
const MIN_SLOTS: usize = 16;

impl<K: Eq + Hash, V> FlowMap<K, V> {
    /// A map for `n` entries before it first grows.
    pub fn with_capacity(n: usize) -> Self {
        let slots = n.saturating_mul(2).next_power_of_two().max(MIN_SLOTS);
        FlowMap { slots: empty_slots(slots), mask: slots - 1, len: 0, hasher: Default::default() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of one slot: the per-entry memory is twice this at most.
    #[cfg(test)]
    pub const SLOT_BYTES: usize = std::mem::size_of::<Slot<K, V>>();

    #[inline]
    fn home(&self, k: &K) -> usize {
        self.hasher.hash_one(k) as usize & self.mask
    }

    /// Starts loading `k`'s home slot and the one after into the cache;
    /// changes nothing. The second because a probe runs on into it about
    /// one time in three (a taken home slot, or a new key looking for room);
    /// measured: 6 % less time on the 10 M-packet capture than the home
    /// slot alone.
    #[inline]
    pub fn prefetch(&self, k: &K) {
        let i = self.home(k);
        prefetch_lines(&self.slots[i]);
        prefetch_lines(&self.slots[(i + 1) & self.mask]);
    }

    /// The slot index of `k`, if present.
    #[inline]
    pub fn find(&self, k: &K) -> Option<usize> {
        let mut i = self.home(k);
        // Ends: the map is never more than half full, so an empty slot comes.
        loop {
            match &self.slots[i].0 {
                None => return None,
                Some((key, _)) if key == k => return Some(i),
                Some(_) => i = (i + 1) & self.mask,
            }
        }
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_some()
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).map(|i| self.value(i))
    }

    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.find(k).map(|i| self.value_mut(i))
    }

    /// The value in slot `i`, which [`FlowMap::find`] or
    /// [`FlowMap::insert_new`] returned with no removal since.
    #[inline]
    pub fn value(&self, i: usize) -> &V {
        match &self.slots[i].0 {
            Some((_, v)) => v,
            None => unreachable!("slot {i} is empty: an index kept across a removal"),
        }
    }

    /// See [`FlowMap::value`].
    #[inline]
    pub fn value_mut(&mut self, i: usize) -> &mut V {
        match &mut self.slots[i].0 {
            Some((_, v)) => v,
            None => unreachable!("slot {i} is empty: an index kept across a removal"),
        }
    }

    /// Inserts `k`, which must not be present; returns its slot index.
    #[inline]
    pub fn insert_new(&mut self, k: K, v: V) -> usize {
        debug_assert!(!self.contains_key(&k));
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        let i = self.vacant_from(self.home(&k));
        self.slots[i].0 = Some((k, v));
        self.len += 1;
        i
    }

    /// The first empty slot at or after `i`.
    #[inline]
    fn vacant_from(&self, mut i: usize) -> usize {
        while self.slots[i].0.is_some() {
            i = (i + 1) & self.mask;
        }
        i
    }

    #[cold]
    fn grow(&mut self) {
        let n = self.slots.len() * 2;
        let old = std::mem::replace(&mut self.slots, empty_slots(n));
        self.mask = n - 1;
        for (k, v) in old.into_vec().into_iter().filter_map(|s| s.0) {
            let i = self.vacant_from(self.home(&k));
            self.slots[i].0 = Some((k, v));
        }
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.find(k).map(|i| self.remove_at(i).1)
    }

    /// Empties slot `i` and closes the gap: each later entry of the run that
    /// may live in the hole (its home is not between the hole and it) moves
    /// back into it.
    fn remove_at(&mut self, i: usize) -> (K, V) {
        let Some(out) = self.slots[i].0.take() else {
            unreachable!("slot {i} is empty: an index kept across a removal")
        };
        self.len -= 1;
        let mut hole = i;
        let mut j = (i + 1) & self.mask;
        while let Some((k, _)) = &self.slots[j].0 {
            let home = self.home(k);
            if j.wrapping_sub(home) & self.mask >= j.wrapping_sub(hole) & self.mask {
                self.slots[hole].0 = self.slots[j].0.take();
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        out
    }

    /// Keeps the entries for which `keep` says so; each entry is offered once.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        if self.len == 0 {
            return;
        }
        // Start after an empty slot: no run crosses it, so an entry moved
        // back by a removal comes from further on and is still to be seen.
        let start = self.vacant_from(0);
        let mut i = (start + 1) & self.mask;
        let mut seen = 0;
        while seen < self.slots.len() {
            let kept = match &mut self.slots[i].0 {
                Some((k, v)) => keep(k, v),
                None => true,
            };
            if kept {
                i = (i + 1) & self.mask;
                seen += 1;
            } else {
                // Stay: the next entry of the run may have moved into `i`.
                self.remove_at(i);
            }
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.slots.iter().filter_map(|s| s.0.as_ref().map(|(k, v)| (k, v)))
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.slots.iter().filter_map(|s| s.0.as_ref().map(|(_, v)| v))
    }

    /// Takes every entry out, leaving the map empty (its slots stay).
    pub fn drain(&mut self) -> impl Iterator<Item = (K, V)> + '_ {
        self.len = 0;
        self.slots.iter_mut().filter_map(|s| s.0.take())
    }
}

fn empty_slots<K, V>(n: usize) -> Box<[Slot<K, V>]> {
    let mut v: Vec<Slot<K, V>> = Vec::with_capacity(n);
    advise_huge_pages(v.as_ptr() as usize, n * std::mem::size_of::<Slot<K, V>>());
    v.extend((0..n).map(|_| Slot(None)));
    v.into_boxed_slice()
}

/// Asks Linux to back the 2 MiB-aligned part of a fresh, untouched
/// allocation with huge pages. A table of 64 MiB is 16 384 pages of 4 KiB,
/// far more than the TLB holds, so without this nearly every lookup also
/// walks the page table (and a prefetch waits for that walk); with it, 32
/// entries. Only where transparent huge pages are `madvise` or `always`
/// (/sys/kernel/mm/transparent_hugepage/enabled); elsewhere a no-op.
fn advise_huge_pages(addr: usize, len: usize) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, end) = (addr.next_multiple_of(HUGE), (addr + len) / HUGE * HUGE);
        if start < end {
            // SAFETY: the range lies inside an allocation this map owns and
            // has not handed out; MADV_HUGEPAGE changes how it is backed,
            // never its contents. Failure (THP off) is harmless: ignored.
            #[allow(unsafe_code)]
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE)
            };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (addr, len);
}

/// Asks the CPU to load the cache lines of `slot`.
#[inline(always)]
fn prefetch_lines<T>(slot: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = slot as *const T as *const i8;
        for line in (0..std::mem::size_of::<T>()).step_by(64) {
            // SAFETY: PREFETCHT0 is a hint: it cannot fault and its result
            // is not observable by the program; the address is that of a
            // live slot (`wrapping_add` stays inside it). SSE, which the
            // intrinsic needs, is part of the x86_64 baseline.
            #[allow(unsafe_code)]
            unsafe {
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(line))
            };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = slot;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hasher-independent model check: random inserts and removals
    /// (including long runs that wrap around the end) agree with a std map.
    #[test]
    fn agrees_with_a_std_map_under_churn() {
        let mut m: FlowMap<u64, u64> = FlowMap::with_capacity(4);
        let mut model = std::collections::HashMap::new();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for step in 0..200_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = x % 5000;
            match x % 5 {
                0 | 1 => {
                    if let Some(i) = m.find(&k) {
                        *m.value_mut(i) = step;
                    } else {
                        m.insert_new(k, step);
                    }
                    model.insert(k, step);
                }
                2 | 3 => assert_eq!(m.remove(&k), model.remove(&k)),
                _ => {
                    let cut = x % 7;
                    m.retain(|k, _| k % 7 != cut);
                    model.retain(|k, _| k % 7 != cut);
                }
            }
            assert_eq!(m.len(), model.len());
        }
        for (k, v) in &model {
            assert_eq!(m.get(k), Some(v));
        }
        let mut all: Vec<_> = m.drain().collect();
        all.sort();
        let mut want: Vec<_> = model.into_iter().collect();
        want.sort();
        assert_eq!(all, want);
        assert!(m.is_empty() && m.get(&want[0].0).is_none());
    }

    #[test]
    fn retain_offers_each_entry_once() {
        let mut m: FlowMap<u32, u32> = FlowMap::with_capacity(1000);
        for k in 0..1000 {
            m.insert_new(k, 0);
        }
        m.retain(|_, v| {
            *v += 1;
            true
        });
        assert!(m.values().all(|&v| v == 1));
        let mut offered = 0;
        m.retain(|k, _| {
            offered += 1;
            k % 2 == 0
        });
        assert_eq!((offered, m.len()), (1000, 500));
    }
}
