//! Physical references: two single-producer single-consumer rings in POSIX shared memory,
//! one each way. No kernel crossing per message, so they show how far above the kernel
//! transports memory bandwidth lies.
//!
//! Two ways to wait: `shm-ring` polls (spins, then yields), burning a CPU on each side while
//! it waits; `shm-futex` (Linux) spins briefly, then sleeps on a futex in the ring that the
//! other side wakes — the cost a blocking shared-memory channel pays.

// The rings live in memory the kernel knows nothing about: every access is raw.
#![allow(unsafe_code)]

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
#[cfg(target_os = "linux")]
use std::sync::atomic::fence;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::cleanup;
use crate::transport::{Conn, Listen, Transport};
use crate::transports::wrap::Single;

/// Bytes of data in each ring.
const CAP: usize = 4 << 20;
/// One ring's header, a cache line (64 bytes) each: the writer's `head` (bytes written) and
/// `head_seq` (bumped on every write, a futex word); the reader's `tail` and `tail_seq`; the
/// flags "reader waiting" and "writer waiting". Then the data.
const HEAD: usize = 0;
const HEAD_SEQ: usize = 8;
const TAIL: usize = 64;
const TAIL_SEQ: usize = 72;
const READER_WAITING: usize = 128;
const WRITER_WAITING: usize = 192;
const HEADER: usize = 256;
const RING: usize = HEADER + CAP;

/// How a side waits for the other.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Spin, then yield, forever.
    Poll,
    /// Spin briefly, then sleep on a futex.
    #[cfg(target_os = "linux")]
    Futex,
}

/// The shared-memory ring transport.
pub(crate) struct Shm(pub(crate) Wait);

impl Transport for Shm {
    fn name(&self) -> &'static str {
        match self.0 {
            Wait::Poll => "shm-ring",
            #[cfg(target_os = "linux")]
            Wait::Futex => "shm-futex",
        }
    }

    fn about(&self) -> &'static str {
        match self.0 {
            Wait::Poll => "two 4 MiB SPSC rings in POSIX shared memory, polled (spin, yield)",
            #[cfg(target_os = "linux")]
            Wait::Futex => "two 4 MiB SPSC rings in POSIX shared memory, futex wake-ups",
        }
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        format!("/{unique}")
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let fd = shm_open(
            addr,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::from_bits_truncate(0o600),
        )?;
        let name = addr.to_string();
        let guard = cleanup::on_exit(move || {
            let _ = shm_unlink(name.as_str());
        });
        nix::unistd::ftruncate(&fd, (2 * RING) as i64)?;
        let map = Map::new(&fd)?;
        let conn = Rings {
            map,
            rx: 0,
            tx: RING,
            wait: self.0,
            unlink: Some((addr.to_string(), guard)),
        };
        Ok(Single::boxed(Box::new(conn), addr))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let fd = shm_open(addr, OFlag::O_RDWR, Mode::empty())?;
        let map = Map::new(&fd)?;
        // Both ends have the region now: its name can go, so that nothing is left behind
        // even if a peer is killed (the mappings stay valid until unmapped).
        let _ = shm_unlink(addr);
        Ok(Box::new(Rings {
            map,
            rx: RING,
            tx: 0,
            wait: self.0,
            unlink: None,
        }))
    }
}

/// The shared mapping of both rings.
struct Map(NonNull<u8>);

// SAFETY: the mapping is plain shared memory; all access goes through atomics (the header)
// and the SPSC discipline (one writer and one reader per ring, each region touched by one
// side at a time), so moving the handle to another thread is sound.
unsafe impl Send for Map {}

impl Map {
    fn new(fd: &std::os::fd::OwnedFd) -> io::Result<Map> {
        let len = NonZeroUsize::new(2 * RING).expect("non-zero");
        // SAFETY: a fresh shared mapping of the whole object; no other mapping in this process
        // aliases it, and it is unmapped once, on drop.
        let ptr = unsafe {
            mmap(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            )?
        };
        Ok(Map(ptr.cast()))
    }

    /// The address `offset` bytes into the mapping (`offset < 2 * RING`).
    fn at(&self, offset: usize) -> *mut u8 {
        debug_assert!(offset < 2 * RING);
        // SAFETY: every caller's offset lies within the mapping of `2 * RING` bytes.
        unsafe { self.0.as_ptr().add(offset) }
    }

    fn u64_at(&self, ring: usize, offset: usize) -> &AtomicU64 {
        let p = self.at(ring + offset).cast::<AtomicU64>();
        // SAFETY: `ring + offset` is 8-aligned (page-aligned base, 8-aligned offsets) and
        // inside the mapping, which lives as long as `self`; the other process only touches
        // it atomically too.
        unsafe { &*p }
    }

    fn u32_at(&self, ring: usize, offset: usize) -> &AtomicU32 {
        let p = self.at(ring + offset).cast::<AtomicU32>();
        // SAFETY: as `u64_at`, 4-aligned.
        unsafe { &*p }
    }

    fn data(&self, ring: usize) -> *mut u8 {
        self.at(ring + HEADER)
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: the pointer and length of the mapping made in `Map::new`.
        let _ = unsafe { munmap(self.0.cast(), 2 * RING) };
    }
}

struct Rings {
    map: Map,
    rx: usize,
    tx: usize,
    wait: Wait,
    /// The listening end removes the segment's name (if the other end has not yet).
    unlink: Option<(String, cleanup::Guard)>,
}

/// Polling: spin a while, then yield.
fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 256 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

/// How many times a futex side checks before it sleeps.
#[cfg(target_os = "linux")]
const SPINS_BEFORE_SLEEP: u32 = 200;

impl Rings {
    /// Waits until `ready()` (the other side's progress) holds. Futex mode: announce the
    /// wait in `waiting`, check again, and sleep on `seq` unless it moved — the other side
    /// bumps `seq` after each step and wakes a waiter it sees announced, so a step between
    /// the check and the sleep changes `seq` and the sleep returns at once.
    fn wait_for(&self, ready: impl Fn() -> bool, seq: &AtomicU32, waiting: &AtomicU32) {
        let mut spins = 0;
        match self.wait {
            Wait::Poll => {
                while !ready() {
                    backoff(&mut spins);
                }
            }
            #[cfg(target_os = "linux")]
            Wait::Futex => {
                while !ready() {
                    spins += 1;
                    if spins < SPINS_BEFORE_SLEEP {
                        std::hint::spin_loop();
                        continue;
                    }
                    let seen = seq.load(Ordering::SeqCst);
                    waiting.store(1, Ordering::SeqCst);
                    if ready() {
                        waiting.store(0, Ordering::SeqCst);
                        return;
                    }
                    futex::wait(seq, seen);
                }
            }
        }
        let _ = (seq, waiting);
    }

    /// After a step: bump `seq`, and wake the other side if it said it waits (futex mode;
    /// polling needs nothing beyond the release store of the step).
    fn announce(&self, seq: &AtomicU32, waiting: &AtomicU32) {
        #[cfg(target_os = "linux")]
        if self.wait == Wait::Futex {
            // The step's store comes before the flag is read, in every thread's view.
            fence(Ordering::SeqCst);
            seq.fetch_add(1, Ordering::SeqCst);
            if waiting.swap(0, Ordering::SeqCst) == 1 {
                futex::wake(seq);
            }
        }
        let _ = (seq, waiting);
    }
}

impl Conn for Rings {
    fn send(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let (ring, map) = (self.tx, &self.map);
        let head = map.u64_at(ring, HEAD);
        let tail = map.u64_at(ring, TAIL);
        let data = map.data(ring);
        while !buf.is_empty() {
            let h = head.load(Ordering::Relaxed);
            let free = || CAP - (h - tail.load(Ordering::Acquire)) as usize;
            if free() == 0 {
                self.wait_for(
                    || free() > 0,
                    map.u32_at(ring, TAIL_SEQ),
                    map.u32_at(ring, WRITER_WAITING),
                );
            }
            let at = h as usize % CAP;
            let n = buf.len().min(free()).min(CAP - at);
            let dst = data.wrapping_add(at);
            // SAFETY: `dst..dst + n` is inside the data area and free (the reader is past it).
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), dst, n) };
            head.store(h + n as u64, Ordering::Release);
            self.announce(map.u32_at(ring, HEAD_SEQ), map.u32_at(ring, READER_WAITING));
            buf = &buf[n..];
        }
        Ok(())
    }

    fn recv_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        let (ring, map) = (self.rx, &self.map);
        let head = map.u64_at(ring, HEAD);
        let tail = map.u64_at(ring, TAIL);
        let data = map.data(ring);
        while !buf.is_empty() {
            let t = tail.load(Ordering::Relaxed);
            let ready = || (head.load(Ordering::Acquire) - t) as usize;
            if ready() == 0 {
                self.wait_for(
                    || ready() > 0,
                    map.u32_at(ring, HEAD_SEQ),
                    map.u32_at(ring, READER_WAITING),
                );
            }
            let at = t as usize % CAP;
            let n = buf.len().min(ready()).min(CAP - at);
            let src = data.wrapping_add(at);
            // SAFETY: `src..src + n` is inside the data area and written (the writer is past it).
            unsafe { std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), n) };
            tail.store(t + n as u64, Ordering::Release);
            self.announce(map.u32_at(ring, TAIL_SEQ), map.u32_at(ring, WRITER_WAITING));
            buf = &mut buf[n..];
        }
        Ok(())
    }

    fn settings(&self) -> String {
        let how = match self.wait {
            Wait::Poll => "polled",
            #[cfg(target_os = "linux")]
            Wait::Futex => "futex wake-ups",
        };
        format!("two {} MiB rings, {how}", CAP >> 20)
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        if let Some((name, _)) = &self.unlink {
            let _ = shm_unlink(name.as_str());
        }
    }
}

/// The futex calls on a word in shared memory (so not `FUTEX_PRIVATE_FLAG`).
#[cfg(target_os = "linux")]
mod futex {
    use std::sync::atomic::AtomicU32;

    /// Sleeps while `word` holds `seen`, for at most 100 ms (a missed wake-up can only cost
    /// that much; the caller checks again either way).
    pub(super) fn wait(word: &AtomicU32, seen: u32) {
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        // SAFETY: `word` is a valid, aligned u32 for the life of the call; the timeout is a
        // valid timespec; the other arguments are unused by FUTEX_WAIT.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &timeout as *const libc::timespec,
                std::ptr::null::<u32>(),
                0,
            );
        }
    }

    /// Wakes one sleeper on `word`.
    pub(super) fn wake(word: &AtomicU32) {
        // SAFETY: `word` is a valid, aligned u32; FUTEX_WAKE reads no other argument.
        unsafe {
            libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, 1);
        }
    }
}
