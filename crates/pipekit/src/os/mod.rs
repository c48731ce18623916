//! Platform-specific extras.

#[cfg(unix)]
pub mod unix;
