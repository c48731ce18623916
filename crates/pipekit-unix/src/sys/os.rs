//! Per-OS differences of the socket calls: one module per family, each with the same items.

cfg_if::cfg_if! {
    if #[cfg(linux_android)] {
        mod linux;
        pub(crate) use linux::*;
    } else if #[cfg(apple_targets)] {
        mod apple;
        mod not_linux;
        pub(crate) use apple::*;
    } else {
        mod bsd;
        mod not_linux;
        pub(crate) use bsd::*;
    }
}
