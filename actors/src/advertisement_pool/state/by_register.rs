//! `ByRegister`: values that carry their own register id, found by it, with the id stored
//! once (in the value) rather than again as a map key.
//!
//! At 100,000 local ads a `HashMap<RegisterId, Entry>` held every 32-byte id twice, 4 MB
//! (issue 11, memory); a `hashbrown::HashTable` keyed by the value's own id does not.

use std::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry as Slot;

use herald_messages::RegisterId;

/// A value found by the register id it holds.
pub(super) trait KeyedByRegister {
    fn register_id(&self) -> &RegisterId;
}

/// A set of values, at most one per register id, found by that id.
#[derive(Debug, Clone)]
pub(super) struct ByRegister<T> {
    table: HashTable<T>,
    hasher: foldhash::fast::RandomState,
}

impl<T> Default for ByRegister<T> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl<T: KeyedByRegister> ByRegister<T> {
    fn hash(&self, id: &RegisterId) -> u64 {
        self.hasher.hash_one(id)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn reserve(&mut self, additional: usize) {
        let hasher = self.hasher.clone();
        self.table
            .reserve(additional, |value| hasher.hash_one(value.register_id()));
    }

    pub(super) fn get(&self, id: &RegisterId) -> Option<&T> {
        self.table
            .find(self.hash(id), |value| value.register_id() == id)
    }

    pub(super) fn get_mut(&mut self, id: &RegisterId) -> Option<&mut T> {
        let hash = self.hash(id);
        self.table.find_mut(hash, |value| value.register_id() == id)
    }

    pub(super) fn contains_key(&self, id: &RegisterId) -> bool {
        self.get(id).is_some()
    }

    /// Puts `value` in, replacing the value of the same id; returns the replaced one.
    pub(super) fn insert(&mut self, value: T) -> Option<T> {
        let hash = self.hash(value.register_id());
        let hasher = self.hasher.clone();
        match self.table.entry(
            hash,
            |held| held.register_id() == value.register_id(),
            |held| hasher.hash_one(held.register_id()),
        ) {
            Slot::Occupied(mut slot) => Some(std::mem::replace(slot.get_mut(), value)),
            Slot::Vacant(slot) => {
                slot.insert(value);
                None
            }
        }
    }

    pub(super) fn remove(&mut self, id: &RegisterId) -> Option<T> {
        let hash = self.hash(id);
        match self
            .table
            .find_entry(hash, |value| value.register_id() == id)
        {
            Ok(slot) => Some(slot.remove().0),
            Err(_) => None,
        }
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.table.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    struct Named(RegisterId, &'static str);

    impl KeyedByRegister for Named {
        fn register_id(&self) -> &RegisterId {
            &self.0
        }
    }

    fn id(n: u8) -> RegisterId {
        RegisterId::from_bytes([n; 16])
    }

    #[test]
    fn values_are_found_replaced_and_removed_by_their_own_id() {
        let mut set = ByRegister::default();
        assert_eq!(set.insert(Named(id(1), "one")), None);
        assert_eq!(set.insert(Named(id(2), "two")), None);
        assert_eq!(
            set.insert(Named(id(1), "uno")),
            Some(Named(id(1), "one")),
            "the same id replaces"
        );
        assert_eq!(set.len(), 2);
        assert_eq!(set.get(&id(1)).map(|n| n.1), Some("uno"));
        set.get_mut(&id(2)).expect("held").1 = "dos";
        assert_eq!(set.remove(&id(2)), Some(Named(id(2), "dos")));
        assert_eq!(set.remove(&id(2)), None);
        assert!(!set.contains_key(&id(2)));
        set.reserve(1_000);
        for n in 3..=200 {
            set.insert(Named(id(n), "many"));
        }
        assert_eq!(set.len(), 199, "growing keeps every value findable");
        assert!((3..=200).all(|n| set.get(&id(n)).is_some()) && set.contains_key(&id(1)));
        assert_eq!(set.values().count(), 199);
    }
}
