//! The pause between connect attempts while a client waits for a server: 1 ms, doubling up
//! to 50 ms, never past the deadline. Both backends' `connect` loops use it.

use std::time::{Duration, Instant};

/// The longest pause between two attempts.
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Pauses between connect attempts until a deadline. It only computes them (the caller
/// sleeps), so this crate stays free of OS calls.
///
/// # Examples
///
/// ```
/// use std::time::{Duration, Instant};
/// use pipekit_core::backoff::Backoff;
///
/// let mut backoff = Backoff::until(Instant::now() + Duration::from_secs(1));
/// assert_eq!(backoff.next_pause(), Some(Duration::from_millis(1)));
/// assert_eq!(backoff.next_pause(), Some(Duration::from_millis(2)));
/// let mut over = Backoff::until(Instant::now());
/// assert_eq!(over.next_pause(), None);
/// ```
#[derive(Clone, Debug)]
pub struct Backoff {
    deadline: Instant,
    pause: Duration,
}

impl Backoff {
    /// Pauses until `deadline`.
    pub fn until(deadline: Instant) -> Backoff {
        Backoff {
            deadline,
            pause: Duration::from_millis(1),
        }
    }

    /// The next pause (cut to the time left), or `None` once the deadline has passed.
    pub fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Some(pause)
    }
}
