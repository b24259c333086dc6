//! The charges this process is making right now. A charge in flight here is
//! never taken over (by a retry or by recovery); one whose row says this
//! process owns it but that is not here was abandoned by this process (its
//! request ended before the outcome was recorded) and may be finished.
use std::{collections::HashSet, sync::Mutex};

use paybind_shared::ids::PaymentId;

#[derive(Default)]
pub struct InFlight(Mutex<HashSet<PaymentId>>);

/// Holds a payment in flight until dropped.
pub struct Held<'a> {
    set: &'a InFlight,
    id: PaymentId,
}

impl InFlight {
    pub fn hold(&self, id: &PaymentId) -> Held<'_> {
        self.lock().insert(id.clone());
        Held {
            set: self,
            id: id.clone(),
        }
    }

    pub fn contains(&self, id: &PaymentId) -> bool {
        self.lock().contains(id)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<PaymentId>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_until_dropped() {
        let set = InFlight::default();
        let id = PaymentId::generate();
        {
            let _held = set.hold(&id);
            assert!(set.contains(&id));
        }
        assert!(!set.contains(&id));
    }
}
