//! The system side of shared-memory connections: an unnamed section and its view, the
//! wake-up events, the peer's process, and handles taken from it.

use std::ffi::c_void;
use std::io;
use std::os::windows::io::{AsHandle, BorrowedHandle, FromRawHandle, OwnedHandle, RawHandle};
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Instant;

use pipekit_core::ring::Segment;
use windows_sys::Win32::Foundation::{
    DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE, INVALID_HANDLE_VALUE, WAIT_ABANDONED_0,
    WAIT_FAILED, WAIT_OBJECT_0, WAIT_TIMEOUT,
};
use windows_sys::Win32::System::Memory::{
    CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEM_COMMIT, MEMORY_BASIC_INFORMATION,
    MEMORY_MAPPED_VIEW_ADDRESS, MapViewOfFile, PAGE_READWRITE, UnmapViewOfFile, VirtualQuery,
};
use windows_sys::Win32::System::ProcessStatus::K32GetMappedFileNameW;
use windows_sys::Win32::System::Threading::{
    CreateEventW, GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE, PROCESS_SYNCHRONIZE,
    SetEvent, WaitForMultipleObjects,
};

use super::call::{last_error, raw};

/// A new unnamed, pagefile-backed section of `len` bytes (zeroed by the OS): no name reaches
/// it, only handles, and it can never shrink under a view.
pub(crate) fn create_section(len: usize) -> io::Result<OwnedHandle> {
    let len = len as u64;
    // SAFETY: no file (the pagefile), no security attributes, no name.
    let handle = unsafe {
        CreateFileMappingW(
            INVALID_HANDLE_VALUE,
            ptr::null(),
            PAGE_READWRITE,
            (len >> 32) as u32,
            len as u32,
            ptr::null(),
        )
    };
    owned(handle)
}

/// A view of the first `len` bytes of a section, readable and writable, unmapped on drop.
///
/// Every access takes an offset and a length that the caller computed from its own indices
/// and checked; the accessors check them against the view again (a failure there is a bug in
/// this crate, not something a peer can cause) and never hand out memory outside it.
pub(crate) struct View {
    ptr: NonNull<u8>,
    len: usize,
    /// Kept open with the view: the peer takes its own handle from this process's table
    /// by this handle's value.
    section: OwnedHandle,
}

// SAFETY: the view is plain memory shared with another process; all access goes through
// atomics (indices and flags) or byte copies of regions the ring protocol gives one side at
// a time, so handles on it may move and be shared between threads.
unsafe impl Send for View {}
// SAFETY: as for `Send`.
unsafe impl Sync for View {}

impl View {
    /// Maps the first `len` bytes of `section`. Fails (the OS's error) if the section is
    /// smaller.
    pub(crate) fn new(section: OwnedHandle, len: usize) -> io::Result<View> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "empty shared-memory section",
            ));
        }
        let access = FILE_MAP_READ | FILE_MAP_WRITE;
        // SAFETY: a fresh view chosen by the system, aliasing no Rust object, unmapped once
        // in `drop`. The system checks `len` against the section.
        let view = unsafe { MapViewOfFile(raw(section.as_handle()), access, 0, 0, len) };
        let ptr = NonNull::new(view.Value.cast::<u8>()).ok_or_else(last_error)?;
        Ok(View { ptr, len, section })
    }

    /// Client: checks that the view is memory no peer can take away: every page committed
    /// and read-write, and no file behind it. A section made with `SEC_RESERVE` maps pages
    /// that fault when touched until someone commits them; a file's pages can fail to come
    /// in (a network or removable drive) — either would crash this process at a touch. A
    /// committed pagefile-backed page of a view stays so: views cannot be decommitted.
    ///
    /// # Errors
    ///
    /// `InvalidData` naming what is wrong.
    pub(crate) fn check_private(&self) -> io::Result<()> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidData, why);
        let start = self.ptr.as_ptr() as usize;
        let mut at = start;
        while at < start + self.len {
            let mut info = MEMORY_BASIC_INFORMATION::default();
            let size = std::mem::size_of::<MEMORY_BASIC_INFORMATION>();
            // SAFETY: any address may be queried; `info` is a valid out-buffer of `size`.
            if unsafe { VirtualQuery(at as *const c_void, &mut info, size) } == 0 {
                return Err(last_error());
            }
            if info.State != MEM_COMMIT || info.Protect != PAGE_READWRITE {
                return Err(bad(format!(
                    "the shared-memory section has pages that are not committed read-write \
                     (state {:#x}, protection {:#x}, at offset {})",
                    info.State,
                    info.Protect,
                    at - start
                )));
            }
            at = (info.BaseAddress as usize).saturating_add(info.RegionSize.max(1));
        }
        let mut name = [0u16; 64];
        // SAFETY: no arguments; the pseudo-handle needs no closing.
        let this = unsafe { GetCurrentProcess() };
        // SAFETY: this process, an address in this view, and a buffer of `name.len()` UTF-16
        // units.
        let has_file = unsafe {
            K32GetMappedFileNameW(
                this,
                start as *const c_void,
                name.as_mut_ptr(),
                name.len() as u32,
            )
        } != 0;
        if has_file {
            return Err(bad("the shared-memory section maps a file".into()));
        }
        Ok(())
    }

    /// The section's handle.
    pub(crate) fn section(&self) -> &OwnedHandle {
        &self.section
    }

    fn at(&self, offset: usize, len: usize, align: usize) -> *mut u8 {
        assert!(
            offset <= self.len && len <= self.len - offset && offset.is_multiple_of(align),
            "shared-memory access out of bounds: {len} bytes at {offset} of {}",
            self.len
        );
        // SAFETY: `offset` is within the view (checked above).
        unsafe { self.ptr.as_ptr().add(offset) }
    }
}

impl Segment for View {
    fn u64_at(&self, offset: usize) -> &AtomicU64 {
        let p = self.at(offset, 8, 8).cast::<AtomicU64>();
        // SAFETY: in bounds and aligned (checked by `at`; views are page-aligned), valid for
        // the life of `self`; the other process touches it only atomically too, and any bit
        // pattern is a valid `u64`.
        unsafe { &*p }
    }

    fn u32_at(&self, offset: usize) -> &AtomicU32 {
        let p = self.at(offset, 4, 4).cast::<AtomicU32>();
        // SAFETY: as `u64_at`.
        unsafe { &*p }
    }

    fn copy_in(&self, offset: usize, src: &[u8]) {
        let dst = self.at(offset, src.len(), 1);
        // SAFETY: `dst..dst + len` lies in the view (checked by `at`) and cannot overlap
        // `src`, a Rust slice outside it; the ring protocol gives the region to the writer
        // alone until it publishes it.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
    }

    fn copy_out(&self, offset: usize, dst: &mut [u8]) {
        let src = self.at(offset, dst.len(), 1);
        // SAFETY: as `copy_in`; the region is the reader's until it hands it back. Section
        // memory is always initialised (the OS zeroes it).
        unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
    }

    fn with_slice<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let p = self.at(offset, len, 1);
        // SAFETY: in bounds (checked by `at`), initialised; the region is the reader's by the
        // ring protocol for the duration of `f` (a peer breaking it can only change bytes).
        f(unsafe { std::slice::from_raw_parts(p, len) })
    }

    fn with_slice_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let p = self.at(offset, len, 1);
        // SAFETY: in bounds (checked by `at`), initialised; no other reference to the region
        // exists in this process (the caller's write lock), and the peer does not read it
        // before it is published.
        f(unsafe { std::slice::from_raw_parts_mut(p, len) })
    }
}

impl Drop for View {
    fn drop(&mut self) {
        let view = MEMORY_MAPPED_VIEW_ADDRESS {
            Value: self.ptr.as_ptr().cast::<c_void>(),
        };
        // SAFETY: the address of the view made in `new`; no reference into it outlives
        // `self` (all accessors borrow `self`).
        unsafe { UnmapViewOfFile(view) };
    }
}

/// A new unnamed auto-reset event, not signalled: a `SetEvent` wakes one wait, or the next
/// one if none waits.
pub(crate) fn auto_event() -> io::Result<OwnedHandle> {
    // SAFETY: no security attributes and no name.
    let handle = unsafe { CreateEventW(ptr::null(), 0, 0, ptr::null()) };
    owned(handle)
}

/// Signals `event`; `false` if that failed (not an event, or closed).
pub(crate) fn set_event(event: BorrowedHandle<'_>) -> bool {
    // SAFETY: a valid handle, borrowed for the call.
    unsafe { SetEvent(raw(event)) != 0 }
}

/// What a wait on several handles saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The handle at this index is signalled (the first one, if several are).
    At(usize),
    /// The time ran out.
    TimedOut,
}

/// The most handles [`wait_any`] waits on (its callers wait on one or two).
const WAIT_AT_MOST: usize = 4;

/// Waits until one of `handles` (at most [`WAIT_AT_MOST`]) is signalled, or `deadline`
/// passes (`None`: forever; a deadline already past looks once). Allocates nothing: it is
/// on the path of every wait for a peer.
pub(crate) fn wait_any(
    handles: &[BorrowedHandle<'_>],
    deadline: Option<Instant>,
) -> io::Result<Woken> {
    if handles.len() > WAIT_AT_MOST {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a wait on {} handles (at most {WAIT_AT_MOST})",
                handles.len()
            ),
        ));
    }
    let mut raw_handles: [HANDLE; WAIT_AT_MOST] = [ptr::null_mut(); WAIT_AT_MOST];
    for (slot, handle) in raw_handles.iter_mut().zip(handles) {
        *slot = raw(*handle);
    }
    loop {
        let ms = match deadline {
            None => super::WAIT_FOREVER,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    0
                } else {
                    super::millis(left)
                }
            }
        };
        // SAFETY: the first `handles.len()` entries of `raw_handles` are valid handles
        // (borrowed for the call), and the array outlives it.
        let got =
            unsafe { WaitForMultipleObjects(handles.len() as u32, raw_handles.as_ptr(), 0, ms) };
        match got {
            WAIT_FAILED => return Err(last_error()),
            WAIT_TIMEOUT => {
                // `millis` rounds up; a wait may still end a little early.
                if deadline.is_some_and(|d| Instant::now() < d) {
                    continue;
                }
                return Ok(Woken::TimedOut);
            }
            n if (n.wrapping_sub(WAIT_OBJECT_0) as usize) < handles.len() => {
                return Ok(Woken::At((n - WAIT_OBJECT_0) as usize));
            }
            // An abandoned mutex (none of ours is one, but a peer's handle could be).
            n if (n.wrapping_sub(WAIT_ABANDONED_0) as usize) < handles.len() => {
                return Ok(Woken::At((n - WAIT_ABANDONED_0) as usize));
            }
            n => {
                return Err(io::Error::other(format!(
                    "WaitForMultipleObjects returned {n:#x}"
                )));
            }
        }
    }
}

/// Whether `handle` is signalled now, or cannot be waited on (an auto-reset event is reset
/// by this look).
pub(crate) fn signalled(handle: BorrowedHandle<'_>) -> bool {
    !matches!(
        wait_any(&[handle], Some(Instant::now())),
        Ok(Woken::TimedOut)
    )
}

/// The process `pid`, for waiting on its end (`SYNCHRONIZE`) and, with `dup`, for taking
/// handles out of it (`PROCESS_DUP_HANDLE`).
pub(crate) fn open_process(pid: u32, dup: bool) -> io::Result<OwnedHandle> {
    let mut access = PROCESS_SYNCHRONIZE;
    if dup {
        access |= PROCESS_DUP_HANDLE;
    }
    // SAFETY: no inheritance; the returned handle is checked.
    let handle = unsafe { OpenProcess(access, 0, pid) };
    owned(handle)
}

/// The handle value `value` of `process` duplicated into this process, with the same
/// access. The value is the peer's word: whatever it names in the peer's own handle table
/// is all it can give (`DuplicateHandle` fails for a value that names nothing).
///
/// Values no handle table holds are refused first (`InvalidData`): 0, values that are not
/// multiples of 4, and values beyond 32 bits — among them the pseudo-handles (`-1`, the
/// process itself; `-2`, its thread), which `DuplicateHandle` would turn into a handle on
/// the peer's process or thread with all access.
pub(crate) fn take_handle(process: BorrowedHandle<'_>, value: u64) -> io::Result<OwnedHandle> {
    if value == 0 || !value.is_multiple_of(4) || value > u64::from(u32::MAX) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("handle value {value:#x} names no handle"),
        ));
    }
    let source = value as usize as HANDLE;
    let mut taken: HANDLE = ptr::null_mut();
    // SAFETY: no arguments; the pseudo-handle needs no closing.
    let this = unsafe { GetCurrentProcess() };
    // SAFETY: `process` is a valid process handle (borrowed for the call); `source` is only
    // a number to the system, looked up in that process's table; `taken` is a valid
    // out-pointer, and the handle it receives is new in this process and owned by nothing
    // else.
    let ok = unsafe {
        DuplicateHandle(
            raw(process),
            source,
            this,
            &mut taken,
            0,
            0,
            DUPLICATE_SAME_ACCESS,
        )
    };
    if ok == 0 {
        return Err(last_error());
    }
    owned(taken)
}

/// The value by which the peer names `handle` in this process (it takes it with
/// [`take_handle`]).
pub(crate) fn handle_value(handle: &OwnedHandle) -> u64 {
    raw(handle.as_handle()) as usize as u64
}

fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
    if handle.is_null() || handle == INVALID_HANDLE_VALUE {
        return Err(last_error());
    }
    // SAFETY: a fresh handle that nothing else owns.
    Ok(unsafe { OwnedHandle::from_raw_handle(handle as RawHandle) })
}
