//! Locks that outlive a panic: what they guard (framing and TLS state) is consistent between
//! calls, so a thread that panicked while holding one leaves nothing half-done.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, taking it over from a thread that panicked while holding it.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
