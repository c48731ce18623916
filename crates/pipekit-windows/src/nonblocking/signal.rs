//! The second thing an operation's end wakes, beside a task: a mio registration.

/// What an operation's end must tell besides a task's waker: the mio waker.
pub(crate) trait Signal: Send + Sync + 'static {
    /// Makes the registered source ready.
    fn raise(&self);
    /// Takes the readiness back, so that the next `raise` makes a new event.
    fn drain(&self);
    /// The signal's state, for `Debug`.
    fn describe(&self) -> String;
    #[cfg(feature = "mio")]
    /// The signal as its own type.
    fn into_any(self: std::sync::Arc<Self>) -> std::sync::Arc<dyn std::any::Any + Send + Sync>;
}
