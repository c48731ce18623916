//! The instance limit of a listener, shared by the backends.
//!
//! A listener with [`ListenerOptions::max_instances`](crate::ListenerOptions::max_instances)
//! set takes a [`Slot`] before each accept and hands it to the accepted stream, which gives it
//! back when it is dropped; [`Slots::acquire`] waits while every slot is taken.

use std::fmt;
use std::num::NonZeroU8;
use std::sync::{Arc, Condvar, Mutex};
use std::task::Waker;

/// Called with `true` when the last free slot is taken and with `false` when a slot is
/// given back to a full set, under the set's lock (so calls never overtake each other).
pub type FullHook = Box<dyn Fn(bool) + Send + Sync>;

/// How many accepted streams may be alive at once.
pub struct Slots {
    limit: usize,
    live: Mutex<usize>,
    freed: Condvar,
    /// Woken when a slot is given back (non-blocking listeners).
    waker: Mutex<Option<Waker>>,
    on_full: Option<FullHook>,
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("limit", &self.limit)
            .field("live", &self.live())
            .finish_non_exhaustive()
    }
}

impl Slots {
    /// A limit of `limit` live streams.
    pub fn new(limit: NonZeroU8) -> Arc<Slots> {
        Slots::build(limit, None)
    }

    /// A limit of `limit` live streams; `on_full` hears when the set becomes full and when
    /// it stops being full (a listener hides its name from new clients meanwhile).
    pub fn with_hook(limit: NonZeroU8, on_full: FullHook) -> Arc<Slots> {
        Slots::build(limit, Some(on_full))
    }

    fn build(limit: NonZeroU8, on_full: Option<FullHook>) -> Arc<Slots> {
        Arc::new(Slots {
            limit: usize::from(limit.get()),
            live: Mutex::new(0),
            freed: Condvar::new(),
            waker: Mutex::new(None),
            on_full,
        })
    }

    /// The limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes one slot; `live` is locked and below the limit.
    fn take(self: &Arc<Self>, live: &mut usize) -> Slot {
        *live += 1;
        if *live == self.limit
            && let Some(hook) = &self.on_full
        {
            hook(true);
        }
        Slot(Arc::new(Place(Arc::clone(self))))
    }

    /// Waits until fewer than the limit are taken, then takes one.
    pub fn acquire(self: &Arc<Self>) -> Slot {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while *live >= self.limit {
            live = self.freed.wait(live).unwrap_or_else(|e| e.into_inner());
        }
        self.take(&mut live)
    }

    /// Waits until fewer than the limit are taken, without taking one; with `nonblocking`,
    /// fails at once with `WouldBlock` ("all N instances are taken") instead of waiting.
    ///
    /// # Errors
    ///
    /// `WouldBlock`, as above.
    pub fn wait_free(&self, nonblocking: bool) -> std::io::Result<()> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        while *live >= self.limit {
            if nonblocking {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    format!("all {} instances are taken", self.limit),
                ));
            }
            live = self.freed.wait(live).unwrap_or_else(|e| e.into_inner());
        }
        Ok(())
    }

    /// Takes a slot if one is free now.
    pub fn try_acquire(self: &Arc<Self>) -> Option<Slot> {
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if *live >= self.limit {
            return None;
        }
        Some(self.take(&mut live))
    }

    /// Takes a slot if one is free now; otherwise `waker` (if any) is woken when one is given
    /// back. Only the last waker given is kept.
    pub fn try_acquire_or_wake(self: &Arc<Self>, waker: Option<&Waker>) -> Option<Slot> {
        let live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        if *live >= self.limit {
            if let Some(waker) = waker {
                // Set while `live` is locked, so a slot given back now cannot be missed.
                *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(waker.clone());
            }
            return None;
        }
        drop(live);
        self.try_acquire()
    }

    /// Admits the next client of a listener within the limit: waits for a free place
    /// ([`wait_free`](Self::wait_free); `WouldBlock` when `nonblocking`), takes the client
    /// from `next`, and only then takes the place, so that a listener waiting for a client
    /// never counts as full. A client that finds the last place taken by another thread
    /// meanwhile is dropped (closed) and the next one is awaited.
    ///
    /// # Errors
    ///
    /// `WouldBlock` as above; the errors of `next`.
    pub fn admit<T>(
        self: &Arc<Self>,
        nonblocking: bool,
        mut next: impl FnMut() -> std::io::Result<T>,
    ) -> std::io::Result<(T, Slot)> {
        loop {
            self.wait_free(nonblocking)?;
            let client = next()?;
            if let Some(slot) = self.try_acquire() {
                return Ok((client, slot));
            }
        }
    }

    /// How many slots are taken now.
    pub fn live(&self) -> usize {
        *self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One accepted stream's place under the limit, given back when it and every
/// [`share`](Slot::share) of it are dropped.
pub struct Slot(Arc<Place>);

/// The place itself; given back on drop.
struct Place(Arc<Slots>);

impl Slot {
    /// The same place, for a clone of the stream that holds it: the place is given back when
    /// the last of them is dropped.
    pub fn share(&self) -> Slot {
        Slot(Arc::clone(&self.0))
    }
}

impl fmt::Debug for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slot")
            .field("limit", &self.0.0.limit)
            .finish()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut live = self.0.live.lock().unwrap_or_else(|e| e.into_inner());
        if *live == self.0.limit
            && let Some(hook) = &self.0.on_full
        {
            hook(false);
        }
        *live -= 1;
        self.0.freed.notify_one();
        let waker = self
            .0
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(live);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn acquire_waits_for_a_freed_slot() {
        let slots = Slots::new(NonZeroU8::new(2).unwrap());
        let a = slots.acquire();
        let _b = slots.acquire();
        assert!(slots.try_acquire().is_none());
        let waiter = {
            let slots = Arc::clone(&slots);
            thread::spawn(move || slots.acquire())
        };
        drop(a);
        let _c = waiter.join().unwrap();
        assert_eq!(slots.live(), 2);
    }

    #[test]
    fn a_shared_slot_is_given_back_by_its_last_share() {
        let slots = Slots::new(NonZeroU8::new(1).unwrap());
        let a = slots.acquire();
        let b = a.share();
        drop(a);
        assert_eq!(slots.live(), 1);
        assert!(slots.try_acquire().is_none());
        drop(b);
        assert_eq!(slots.live(), 0);
        assert!(slots.try_acquire().is_some());
    }

    #[test]
    fn a_freed_slot_wakes_the_waker() {
        struct Flag(std::sync::atomic::AtomicBool);
        impl std::task::Wake for Flag {
            fn wake(self: Arc<Self>) {
                self.0.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let slots = Slots::new(NonZeroU8::new(1).unwrap());
        let flag = Arc::new(Flag(std::sync::atomic::AtomicBool::new(false)));
        let waker = Waker::from(Arc::clone(&flag));
        let a = slots.try_acquire_or_wake(Some(&waker)).unwrap();
        assert!(slots.try_acquire_or_wake(Some(&waker)).is_none());
        assert!(!flag.0.load(std::sync::atomic::Ordering::SeqCst));
        drop(a);
        assert!(flag.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(slots.try_acquire_or_wake(None).is_some());
    }
}
