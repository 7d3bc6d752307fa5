//! Small synchronisation helpers shared by the adapters.

use std::sync::{Mutex, MutexGuard};

/// Locks a mutex, carrying on past a poisoned lock: every critical section in this crate leaves
/// its state consistent before anything can panic.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
