//! Names the OS families the code tells apart, once (as nix does): `linux_android` (native
//! `SOCK_SEQPACKET` messages, abstract names, `/proc`), `apple_targets`, `bsd`,
//! `sealed_memfd` (`memfd_create` with seals, for shared memory).

fn main() {
    cfg_aliases::cfg_aliases! {
        linux_android: { any(target_os = "linux", target_os = "android") },
        apple_targets: { any(target_os = "macos", target_os = "ios", target_os = "tvos", target_os = "watchos", target_os = "visionos") },
        bsd: { any(target_os = "freebsd", target_os = "netbsd", target_os = "openbsd", target_os = "dragonfly") },
        sealed_memfd: { any(target_os = "linux", target_os = "android", target_os = "freebsd") },
    }
}
