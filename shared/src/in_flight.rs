//! What this process is doing right now, by key: held while the work runs,
//! gone when its guard drops (the work finished, failed or was cancelled).
//! payment-svc holds the charges it is making (never taken over while
//! here).
use std::{collections::HashSet, hash::Hash, sync::Mutex};

pub struct InFlight<K>(Mutex<HashSet<K>>);

impl<K> Default for InFlight<K> {
    fn default() -> Self {
        Self(Mutex::new(HashSet::new()))
    }
}

/// Holds a key in flight until dropped.
pub struct Held<'a, K: Eq + Hash> {
    set: &'a InFlight<K>,
    key: K,
}

impl<K: Eq + Hash + Clone> InFlight<K> {
    pub fn hold(&self, key: &K) -> Held<'_, K> {
        self.lock().insert(key.clone());
        Held {
            set: self,
            key: key.clone(),
        }
    }

    pub fn contains(&self, key: &K) -> bool {
        self.lock().contains(key)
    }
}

impl<K> InFlight<K> {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<K>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<K: Eq + Hash> Drop for Held<'_, K> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_dropped() {
        let set = InFlight::<String>::default();
        let id = "pay_1".to_owned();
        {
            let _held = set.hold(&id);
            assert!(set.contains(&id));
            assert!(!set.contains(&"pay_2".to_owned()));
        }
        assert!(!set.contains(&id));
    }
}
