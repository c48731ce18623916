//! The system side of shared-memory connections: an anonymous segment (a sealed `memfd`
//! where the OS has one, else `shm_open` unlinked at once), its mapping and the raw accesses
//! to it, the wake-up socket pairs, and passing descriptors over a socket.

use std::ffi::CStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, AtomicU64};

use nix::sys::mman::{MapFlags, ProtFlags, mmap, munmap};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags, SockType};

use pipekit_core::ring::Segment;

use super::{cvt, os, set_nonblocking};

/// A new segment of `len` bytes (zeroed by the OS), reachable by no name, sealed against
/// shrinking and growing where the OS has seals: a peer can then never make our mapping
/// point past the end of its file.
pub(crate) fn create_segment(len: usize) -> io::Result<OwnedFd> {
    let fd = anonymous(c"pipekit-shm")?;
    cvt(nix::unistd::ftruncate(&fd, len as i64))?;
    #[cfg(sealed_memfd)]
    {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let seals = SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL;
        cvt(fcntl(&fd, FcntlArg::F_ADD_SEALS(seals)))?;
    }
    Ok(fd)
}

#[cfg(sealed_memfd)]
fn anonymous(name: &CStr) -> io::Result<OwnedFd> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    cvt(memfd_create(
        name,
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    ))
}

#[cfg(not(sealed_memfd))]
fn anonymous(_name: &CStr) -> io::Result<OwnedFd> {
    use nix::fcntl::OFlag;
    use nix::sys::mman::{shm_open, shm_unlink};
    use nix::sys::stat::Mode;
    loop {
        let name = format!("/pk{}", unique_suffix());
        match shm_open(
            name.as_str(),
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => {
                // Gone from the namespace at once: only descriptors reach it from now on.
                cvt(shm_unlink(name.as_str()))?;
                super::fd_cloexec(fd.as_fd())?;
                return Ok(fd);
            }
            Err(nix::errno::Errno::EEXIST) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// A name part no other call in this process returns, and unlikely in another (the pid,
/// a counter, the clock's nanoseconds).
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}-{:x}-{nanos:x}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The size of a segment a peer passed, after checking that it is a regular shared-memory
/// object and, where the OS has seals, that it cannot shrink under our mapping.
///
/// # Errors
///
/// `InvalidData` for an object that is not sealed against shrinking; the OS error of `fstat`.
pub(crate) fn received_segment_len(fd: BorrowedFd<'_>) -> io::Result<usize> {
    #[cfg(sealed_memfd)]
    {
        use nix::fcntl::{FcntlArg, SealFlag, fcntl};
        let seals = SealFlag::from_bits_truncate(cvt(fcntl(fd, FcntlArg::F_GET_SEALS))?);
        if !seals.contains(SealFlag::F_SEAL_SHRINK) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the peer's shared-memory segment is not sealed against shrinking",
            ));
        }
    }
    let st = cvt(nix::sys::stat::fstat(fd))?;
    usize::try_from(st.st_size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer's shared-memory segment has a negative size",
        )
    })
}

/// A shared mapping of a whole segment, unmapped on drop.
///
/// Every access takes an offset and a length that the caller computed from its own indices
/// and checked; the accessors check them against the mapping again (a failure there is a bug
/// in this crate, not something a peer can cause) and never hand out memory outside it.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory shared with another process; all access goes through
// atomics (indices and flags) or through byte copies of regions the ring protocol gives one
// side at a time, so handles on it may move and be shared between threads.
unsafe impl Send for Mapping {}
// SAFETY: as for `Send`: no access relies on being on one thread.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps all `len` bytes of `fd`, readable and writable, shared.
    pub(crate) fn new(fd: BorrowedFd<'_>, len: usize) -> io::Result<Mapping> {
        let size = NonZeroUsize::new(len).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "empty shared-memory segment")
        })?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no address hint), aliasing no
        // Rust object; it is unmapped once, in `drop`. The object is at least `len` bytes
        // (checked by the callers: created so, or `fstat` and a seal on receipt).
        let ptr = unsafe {
            cvt(mmap(
                None,
                size,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                fd,
                0,
            ))?
        };
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    fn at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        assert!(
            offset <= self.len && len <= self.len - offset && offset.is_multiple_of(align),
            "shared-memory access out of bounds: {len} bytes at {offset} of {}",
            self.len
        );
        // SAFETY: `offset` is within the mapping (checked above).
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Segment for Mapping {
    /// The 8-aligned word at `offset`.
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let p = self.at(offset, 8, 8).cast::<AtomicU64>();
        // SAFETY: in bounds and aligned (checked by `at`; the mapping is page-aligned), valid
        // for the life of `self`; the other process touches it only atomically too, and any
        // bit pattern is a valid `u64`.
        unsafe { &*p }
    }

    /// The 4-aligned word at `offset`.
    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let p = self.at(offset, 4, 4).cast::<AtomicU32>();
        // SAFETY: as `u64_at`.
        unsafe { &*p }
    }

    /// Copies `src` into the mapping at `offset`.
    fn copy_in(&self, offset: usize, src: &[u8]) {
        let dst = self.at(offset, src.len(), 1);
        // SAFETY: `dst..dst + len` lies in the mapping (checked by `at`) and cannot overlap
        // `src`, a Rust slice outside it. The ring protocol gives this region to the writer
        // alone until it publishes it.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    /// Copies from the mapping at `offset` into `dst`.
    fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let src = self.at(offset, dst.len(), 1);
        // SAFETY: as `copy_in`; the region is the reader's until it hands it back. Shared
        // memory is always initialised (the OS zeroes it), so every byte read is defined.
        unsafe { std::ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    /// Calls `f` on `len` bytes at `offset`, in place.
    ///
    /// The caller holds the region by the ring protocol (it is published and not yet handed
    /// back): a peer that keeps the protocol does not write it meanwhile, and one that breaks
    /// it can only change the bytes `f` sees.
    fn with_slice<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let p = self.at(offset, len, 1);
        // SAFETY: in bounds (checked by `at`), initialised (the OS zeroes shared memory);
        // the region is the reader's by the ring protocol for the duration of `f`.
        f(unsafe { std::slice::from_raw_parts(p, len) })
    }

    /// Calls `f` on `len` writable bytes at `offset`, in place. The caller holds the region
    /// by the ring protocol (free, and not yet published), under its side's write lock, so
    /// no other slice of it exists in this process.
    fn with_slice_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let p = self.at(offset, len, 1);
        // SAFETY: in bounds (checked by `at`), initialised; no other reference to the region
        // exists in this process (the caller's write lock), and the peer does not read it
        // before it is published.
        f(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the address and length of the mapping made in `new`; no reference into it
        // outlives `self` (all accessors borrow `self`).
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}

/// A connected pair of non-blocking, close-on-exec stream sockets for wake-ups (a byte
/// written to one end makes the other readable; closing one end, or the death of its owner,
/// makes the other readable at end of stream).
pub(crate) fn bell_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let (a, b) = cvt(socket::socketpair(
        socket::AddressFamily::Unix,
        SockType::Stream,
        None,
        os::SOCKET_FLAGS,
    ))?;
    for fd in [&a, &b] {
        super::fd_cloexec(fd.as_fd())?;
        os::after_socket(fd, SockType::Stream)?;
        set_nonblocking(fd.as_fd(), true)?;
    }
    Ok((a, b))
}

/// Sends `bytes` with the descriptors `fds` attached (`SCM_RIGHTS`), whole or not at all
/// (the socket's send buffer is empty when this is called: it opens the connection).
pub(crate) fn send_fds(fd: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let sent = loop {
        match socket::sendmsg::<()>(
            fd.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsg,
            os::SEND_FLAGS | MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break cvt(other)?,
        }
    };
    if sent != bytes.len() {
        return Err(io::Error::new(
            io::ErrorKind::WriteZero,
            format!(
                "only {sent} of {} bytes of the offer were sent",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

/// What [`recv_fds`] found first on the socket.
pub(crate) struct Received {
    /// Bytes received (or seen, with `peek`) into the buffer.
    pub(crate) bytes: usize,
    /// Descriptors attached to them (a peek installs copies too; they close on drop).
    pub(crate) fds: Vec<OwnedFd>,
    /// The control data did not fit (descriptors may be missing).
    pub(crate) truncated: bool,
}

/// Receives (with `peek`, looks at) what comes first on `fd` into `buf`, with any
/// descriptors attached to it; `wait: false` never blocks (`WouldBlock` when nothing is
/// there), `wait: true` blocks as the socket does (its timeout gives `EAGAIN`).
pub(crate) fn recv_fds(
    fd: BorrowedFd<'_>,
    buf: &mut [u8],
    peek: bool,
    wait: bool,
) -> io::Result<Received> {
    // Linux: message sockets carry credentials on every message (`SO_PASSCRED`).
    #[cfg(linux_android)]
    let mut cmsg = nix::cmsg_space!(socket::UnixCredentials, [RawFd; 8]);
    #[cfg(not(linux_android))]
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let mut flags = os::RECV_CLOEXEC;
    if peek {
        flags |= MsgFlags::MSG_PEEK;
    }
    if !wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match socket::recvmsg::<()>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), flags) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break cvt(other)?,
        }
    };
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    let mut fds = Vec::new();
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::ScmRights(raw) = c {
                for raw in raw {
                    // SAFETY: the kernel installed `raw` in this process for this `recvmsg`
                    // alone and nothing else knows it: this `OwnedFd` is its only owner.
                    fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                }
            }
        }
    }
    for fd in &fds {
        // Where the OS has no `MSG_CMSG_CLOEXEC`, no child is started between the receive
        // and this call by pipekit itself.
        super::fd_cloexec(fd.as_fd())?;
    }
    Ok(Received {
        bytes: msg.bytes,
        fds,
        truncated,
    })
}
