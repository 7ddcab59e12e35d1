//! Registers ordered by id, held in shared chunks: the next answer is built beside the one it
//! replaces and shares every chunk of it that did not change (issue 11, memory: a write that
//! changes a tenth of 100,000 registers allocated a second copy of all of them, held beside the
//! first until it was published).
//!
//! Chunk boundaries follow the registers' ids (a chunk ends after an id whose hash has its
//! top `BOUNDARY_BITS` bits clear), not their positions, so a register added or removed changes
//! only its own chunk and the chunks after it line up as before.

use std::sync::Arc;

use crate::{AvailableRegister, RegisterId};

/// A chunk holds 2^`BOUNDARY_BITS` registers on average (512: about 50 KB).
const BOUNDARY_BITS: u32 = 9;
/// No chunk holds more (the odds of a run this long without a boundary are below 1 in 3,000).
const MAX_CHUNK: usize = 4096;

/// Registers ordered by id in shared chunks (none empty). Two are equal when they hold equal
/// registers, however chunked.
#[derive(Debug, Clone, Default)]
pub struct SharedRegisters {
    chunks: Vec<Arc<[AvailableRegister]>>,
    len: usize,
}

impl SharedRegisters {
    /// The registers `sorted` yields (ordered by id), sharing each chunk of `like` that holds
    /// exactly the registers it would hold anew.
    pub fn build_like(
        like: &SharedRegisters,
        sorted: impl IntoIterator<Item = AvailableRegister>,
    ) -> Self {
        let mut builder = Builder {
            like: &like.chunks,
            next_like: 0,
            pending: Vec::new(),
            built: SharedRegisters::default(),
        };
        for register in sorted {
            builder.push(register);
        }
        builder.seal();
        builder.built
    }

    /// Whether every chunk of `self` is one of `other`'s, in the same order (`other` built
    /// again unchanged): cheaper than comparing, and false for equal registers chunked anew.
    pub fn shares_all(&self, other: &SharedRegisters) -> bool {
        self.chunks.len() == other.chunks.len()
            && self
                .chunks
                .iter()
                .zip(&other.chunks)
                .all(|(a, b)| Arc::ptr_eq(a, b))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every register, ordered by id.
    pub fn iter(&self) -> Iter<'_> {
        self.iter_after(None)
    }

    /// The registers with ids after `after` (all of them without it), ordered by id.
    pub fn iter_after(&self, after: Option<&RegisterId>) -> Iter<'_> {
        let Some(after) = after else {
            return Iter {
                chunks: self.chunks.iter(),
                current: [].iter(),
                remaining: self.len,
            };
        };
        // The first chunk that holds an id after `after`, and the first such id in it.
        let first = self.chunks.partition_point(|chunk| last_id(chunk) <= after);
        let before: usize = self.chunks[..first].iter().map(|chunk| chunk.len()).sum();
        let (current, rest, before) = match self.chunks.get(first) {
            Some(chunk) => {
                let within = chunk.partition_point(|register| register.register_id <= *after);
                (
                    chunk[within..].iter(),
                    &self.chunks[first + 1..],
                    before + within,
                )
            }
            None => ([].iter(), &[][..], before),
        };
        Iter {
            chunks: rest.iter(),
            current,
            remaining: self.len - before,
        }
    }

    /// The register with this id, if held.
    pub fn get(&self, register_id: &RegisterId) -> Option<&AvailableRegister> {
        let chunk = self.chunks.get(
            self.chunks
                .partition_point(|chunk| last_id(chunk) < register_id),
        )?;
        chunk
            .binary_search_by(|register| register.register_id.cmp(register_id))
            .ok()
            .map(|index| &chunk[index])
    }
}

fn last_id(chunk: &[AvailableRegister]) -> &RegisterId {
    &chunk[chunk.len() - 1].register_id
}

/// Whether a chunk ends after this id: its hash's top `BOUNDARY_BITS` bits are clear.
fn ends_chunk(register_id: &RegisterId) -> bool {
    let bytes = register_id.as_bytes();
    let half = |range: std::ops::Range<usize>| {
        u64::from_le_bytes(bytes[range].try_into().expect("eight bytes"))
    };
    let mixed = (half(0..8) ^ half(8..16).rotate_left(17) ^ half(16..24).rotate_left(31))
        .wrapping_add(half(24..32))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    mixed >> (u64::BITS - BOUNDARY_BITS) == 0
}

impl PartialEq for SharedRegisters {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for SharedRegisters {}

impl From<Vec<AvailableRegister>> for SharedRegisters {
    fn from(registers: Vec<AvailableRegister>) -> Self {
        debug_assert!(registers.is_sorted_by(|a, b| a.register_id < b.register_id));
        Self::build_like(&SharedRegisters::default(), registers)
    }
}

struct Builder<'a> {
    like: &'a [Arc<[AvailableRegister]>],
    /// The first chunk of `like` that may still line up with a chunk being built.
    next_like: usize,
    pending: Vec<AvailableRegister>,
    built: SharedRegisters,
}

impl Builder<'_> {
    fn push(&mut self, register: AvailableRegister) {
        debug_assert!(
            self.pending
                .last()
                .or_else(|| self
                    .built
                    .chunks
                    .last()
                    .map(|chunk| &chunk[chunk.len() - 1]))
                .is_none_or(|last| last.register_id < register.register_id),
            "registers out of order"
        );
        let ends = ends_chunk(&register.register_id);
        self.pending.push(register);
        if ends || self.pending.len() == MAX_CHUNK {
            self.seal();
        }
    }

    /// Ends the chunk being built: `like`'s chunk that starts with the same register, when it
    /// holds the same registers, or a new one.
    fn seal(&mut self) {
        let Some(first) = self.pending.first() else {
            return;
        };
        while self
            .like
            .get(self.next_like)
            .is_some_and(|chunk| chunk[0].register_id < first.register_id)
        {
            self.next_like += 1;
        }
        let chunk = match self.like.get(self.next_like) {
            Some(same) if **same == *self.pending => {
                self.next_like += 1;
                self.pending.clear();
                Arc::clone(same)
            }
            // Allocated at its size (`pending` keeps its buffer for the next chunk).
            _ => self.pending.drain(..).collect(),
        };
        self.built.len += chunk.len();
        self.built.chunks.push(chunk);
    }
}

/// The registers of a `SharedRegisters`, ordered by id.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    chunks: std::slice::Iter<'a, Arc<[AvailableRegister]>>,
    current: std::slice::Iter<'a, AvailableRegister>,
    remaining: usize,
}

impl Iter<'_> {
    /// No registers.
    pub fn empty() -> Self {
        Self {
            chunks: [].iter(),
            current: [].iter(),
            remaining: 0,
        }
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a AvailableRegister;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(register) = self.current.next() {
                self.remaining -= 1;
                return Some(register);
            }
            self.current = self.chunks.next()?.iter();
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(n: u128, version: u64) -> AvailableRegister {
        AvailableRegister {
            // Spread like random ids, but ordered by `n`.
            register_id: RegisterId::from_bytes(
                ((n + 1) << 64 | n.wrapping_mul(0x2545_f491)).to_be_bytes(),
            ),
            name: Some(format!("register {n}").into()),
            description: None,
            peer_count: 1,
            latest_version: version,
            latest_docket_version: 0,
            is_public: true,
            full_replica_peer_count: 0,
            local: true,
            verified: true,
            stale: false,
            local_state: None,
        }
    }

    fn registers(range: std::ops::Range<u128>) -> Vec<AvailableRegister> {
        range.map(|n| register(n, 1)).collect()
    }

    /// How many chunks of `a` are `b`'s.
    fn shared(a: &SharedRegisters, b: &SharedRegisters) -> usize {
        a.chunks
            .iter()
            .filter(|chunk| b.chunks.iter().any(|other| Arc::ptr_eq(chunk, other)))
            .count()
    }

    #[test]
    fn reads_as_the_ordered_registers_it_was_built_from() {
        let all = registers(0..20_000);
        let shared = SharedRegisters::from(all.clone());
        assert!(shared.chunks.len() > 10, "{} chunks", shared.chunks.len());
        assert!(
            shared
                .chunks
                .iter()
                .all(|chunk| !chunk.is_empty() && chunk.len() <= MAX_CHUNK)
        );
        assert_eq!(shared.len(), all.len());
        assert_eq!(shared.iter().len(), all.len());
        assert!(shared.iter().eq(all.iter()));
        for n in [0, 1, 511, 512, 9_999, 19_999] {
            let id = &all[n].register_id;
            assert_eq!(shared.get(id), Some(&all[n]));
            let after: Vec<_> = shared.iter_after(Some(id)).collect();
            assert_eq!(after.len(), all.len() - n - 1);
            assert!(after.iter().copied().eq(all[n + 1..].iter()));
            assert_eq!(shared.iter_after(Some(id)).len(), after.len());
        }
        // Ids it does not hold: before the first, between two, after the last.
        let missing = register(20_000, 1).register_id;
        assert_eq!(shared.get(&missing), None);
        assert_eq!(shared.iter_after(Some(&missing)).count(), 0);
        let mut before_all = RegisterId::from_bytes([0; 16]);
        assert_eq!(shared.iter_after(Some(&before_all)).count(), all.len());
        before_all = RegisterId::from_bytes([0xff; 16]);
        assert_eq!(shared.iter_after(Some(&before_all)).len(), 0);
        assert_eq!(SharedRegisters::default().iter().count(), 0);
    }

    #[test]
    fn the_next_registers_share_every_chunk_a_change_did_not_touch() {
        let old = SharedRegisters::from(registers(0..20_000));
        let chunks = old.chunks.len();

        let again = SharedRegisters::build_like(&old, registers(0..20_000));
        assert!(again.shares_all(&old));

        let mut changed = registers(0..20_000);
        changed[7_000].latest_version = 2;
        let next = SharedRegisters::build_like(&old, changed.clone());
        assert!(!next.shares_all(&old));
        assert_eq!(shared(&next, &old), chunks - 1);
        assert!(next.iter().eq(changed.iter()));

        // Added or removed: the chunks after it line up as before.
        let mut added = registers(0..20_000);
        added.insert(7_001, register(7_000, 1));
        added[7_001].register_id = RegisterId::from_bytes({
            let mut id = [0; 16];
            id[..8].copy_from_slice(&7_001u64.to_be_bytes());
            id[8..].copy_from_slice(&u64::MAX.to_be_bytes());
            id
        });
        assert!(added[7_000].register_id < added[7_001].register_id);
        assert!(added[7_001].register_id < added[7_002].register_id);
        let next = SharedRegisters::build_like(&old, added.clone());
        assert_eq!(next.len(), 20_001);
        assert!(
            shared(&next, &old) >= chunks - 2,
            "{} of {chunks}",
            shared(&next, &old)
        );
        assert!(next.iter().eq(added.iter()));
        let mut removed = registers(0..20_000);
        removed.remove(12_345);
        let next = SharedRegisters::build_like(&old, removed.clone());
        assert!(
            shared(&next, &old) >= chunks - 2,
            "{} of {chunks}",
            shared(&next, &old)
        );
        assert!(next.iter().eq(removed.iter()));

        // Equal however chunked.
        assert_eq!(SharedRegisters::from(registers(0..20_000)), old);
        assert_ne!(SharedRegisters::from(changed), old);
    }
}
