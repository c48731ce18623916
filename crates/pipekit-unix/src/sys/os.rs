//! Per-OS differences of the socket calls: one module per family, each with the same items.

cfg_if::cfg_if! {
    if #[cfg(any(target_os = "linux", target_os = "android"))] {
        mod linux;
        pub(crate) use linux::*;
    } else if #[cfg(any(target_os = "macos", target_os = "ios", target_os = "tvos", target_os = "watchos", target_os = "visionos"))] {
        mod apple;
        mod no_seqpacket;
        pub(crate) use apple::*;
    } else {
        mod bsd;
        mod no_seqpacket;
        pub(crate) use bsd::*;
    }
}
