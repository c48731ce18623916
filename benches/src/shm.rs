//! A physical reference: two single-producer single-consumer rings in POSIX shared memory,
//! one each way, polled (spinning, then yielding). No kernel crossing per message, so it
//! shows how far above the kernel transports memory bandwidth lies.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap, shm_open, shm_unlink};
use nix::sys::stat::Mode;

use crate::transports::{Conn, Listen, Transport};

/// Bytes of data in each ring.
const CAP: usize = 4 << 20;
/// One ring: `head` (bytes written) and `tail` (bytes read) on their own cache lines, then data.
const HEADER: usize = 128;
const RING: usize = HEADER + CAP;

/// The shared-memory ring transport.
pub(crate) struct ShmRing;

impl Transport for ShmRing {
    fn name(&self) -> &'static str {
        "shm-ring"
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
        nix::unistd::ftruncate(&fd, (2 * RING) as i64)?;
        let map = Map::new(&fd)?;
        struct L(Option<Box<dyn Conn>>, String);
        impl Listen for L {
            fn addr(&self) -> String {
                self.1.clone()
            }
            fn accept(&mut self) -> io::Result<Box<dyn Conn>> {
                self.0.take().ok_or_else(|| {
                    io::Error::new(io::ErrorKind::Unsupported, "one session per ring pair")
                })
            }
        }
        let conn = Rings {
            map,
            rx: 0,
            tx: RING,
            unlink: Some(addr.to_string()),
        };
        Ok(Box::new(L(Some(Box::new(conn)), addr.to_string())))
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
            unlink: None,
        }))
    }
}

/// The shared mapping of both rings.
struct Map(NonNull<u8>);

// SAFETY: the mapping is plain shared memory; all access goes through atomics (head/tail) and
// the SPSC discipline (one writer and one reader per ring, each region touched by one side at
// a time), so moving the handle to another thread is sound.
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

    fn counter(&self, ring: usize, offset: usize) -> &AtomicU64 {
        // SAFETY: `ring + offset` is 8-aligned (page-aligned base, 64-byte offsets) and inside
        // the mapping, which lives as long as `self`; the other process only touches it
        // atomically too.
        unsafe { &*self.0.as_ptr().add(ring + offset).cast::<AtomicU64>() }
    }

    fn data(&self, ring: usize) -> *mut u8 {
        // SAFETY: within the mapping.
        unsafe { self.0.as_ptr().add(ring + HEADER) }
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
    unlink: Option<String>,
}

fn backoff(spins: &mut u32) {
    *spins += 1;
    if *spins < 256 {
        std::hint::spin_loop();
    } else {
        std::thread::yield_now();
    }
}

impl Conn for Rings {
    fn send(&mut self, mut buf: &[u8]) -> io::Result<()> {
        let head = self.map.counter(self.tx, 0);
        let tail = self.map.counter(self.tx, 64);
        let data = self.map.data(self.tx);
        let mut spins = 0;
        while !buf.is_empty() {
            let h = head.load(Ordering::Relaxed);
            let free = CAP - (h - tail.load(Ordering::Acquire)) as usize;
            if free == 0 {
                backoff(&mut spins);
                continue;
            }
            let at = h as usize % CAP;
            let n = buf.len().min(free).min(CAP - at);
            // SAFETY: `at..at + n` is inside the data area and free (the reader is past it).
            unsafe { std::ptr::copy_nonoverlapping(buf.as_ptr(), data.add(at), n) };
            head.store(h + n as u64, Ordering::Release);
            buf = &buf[n..];
        }
        Ok(())
    }

    fn recv_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        let head = self.map.counter(self.rx, 0);
        let tail = self.map.counter(self.rx, 64);
        let data = self.map.data(self.rx);
        let mut spins = 0;
        while !buf.is_empty() {
            let t = tail.load(Ordering::Relaxed);
            let ready = (head.load(Ordering::Acquire) - t) as usize;
            if ready == 0 {
                backoff(&mut spins);
                continue;
            }
            let at = t as usize % CAP;
            let n = buf.len().min(ready).min(CAP - at);
            // SAFETY: `at..at + n` is inside the data area and written (the writer is past it).
            unsafe { std::ptr::copy_nonoverlapping(data.add(at), buf.as_mut_ptr(), n) };
            tail.store(t + n as u64, Ordering::Release);
            buf = &mut buf[n..];
        }
        Ok(())
    }

    fn settings(&self) -> String {
        format!("two {} MiB rings, polled", CAP >> 20)
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        if let Some(name) = &self.unlink {
            let _ = shm_unlink(name.as_str());
        }
    }
}
