//! A hostile peer of Windows shared-memory connections, for pipekit's trust tests.
//!
//! ```text
//! shm-liar server NAME CASE   # serves NAME's sibling pipe and lies in its first message
//! shm-liar client NAME        # takes a pipekit server's offer, then scribbles over it
//! ```
//!
//! `server` binds `NAME@pkshm-v1` as a plain message-mode pipe, prints `ready`, accepts one
//! client and writes, as the first message, the offer CASE says:
//!
//! - `tag`: 64 bytes that are no offer; `len-0`, `len-huge`: an offer of a segment of 0 or
//!   2^64 - 1 bytes; `garbage`: handle values that name nothing in this process;
//! - `short`: a section half the size the offer says; `no-header`: a section of the right
//!   size that nobody wrote a header in; `reserved`: a section made with `SEC_RESERVE`, its
//!   header page committed and the rings' pages not (touching them would fault); `file`: a
//!   section of a file (whose pages could fail to come in);
//! - `pseudo`: a good section, and `-1` (this process, as `GetCurrentProcess` names it) for
//!   every event; `not-events`: the section's handle for every event;
//! - `scribble`: a good offer; after a line on stdin, random words over the whole segment
//!   without pause, until stdin ends.
//!
//! It then prints `done`. `client` connects to `NAME@pkshm-v1` as a plain pipe, takes the
//! server's section out of its process, says it writes to its ring, prints `done`, and after
//! a line on stdin scribbles as above.
//!
//! Windows only; elsewhere it exits with status 2.

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match liar::run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shm-liar: {}", pipekit_tests::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    eprintln!("shm-liar: Windows only");
    std::process::ExitCode::from(2)
}

#[cfg(windows)]
mod liar {
    use std::io::{self, BufRead, Write};
    use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
    use std::ptr;
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    use std::time::Instant;

    use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
    use pipekit_core::ring::{self, Segment};
    use windows_sys::Win32::Foundation::{
        DUPLICATE_SAME_ACCESS, DuplicateHandle, HANDLE, INVALID_HANDLE_VALUE,
    };
    use windows_sys::Win32::System::Memory::{
        CreateFileMappingW, FILE_MAP_READ, FILE_MAP_WRITE, MEM_COMMIT, MapViewOfFile,
        PAGE_READWRITE, SEC_RESERVE, VirtualAlloc,
    };
    use windows_sys::Win32::System::Pipes::GetNamedPipeServerProcessId;
    use windows_sys::Win32::System::Threading::{
        GetCurrentProcess, OpenProcess, PROCESS_DUP_HANDLE,
    };

    const SIBLING: &str = "@pkshm-v1";
    const OFFER: &[u8; 16] = b"\0pipekit-shm-v1\0";
    /// The rings of every offer made here.
    const CAPACITY: usize = 1 << 16;

    pub(crate) fn run(args: &[String]) -> io::Result<()> {
        match args {
            [role, name, case] if role == "server" => server(name, case),
            [role, name] if role == "client" => client(name),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "usage: shm-liar server NAME CASE | shm-liar client NAME",
            )),
        }
    }

    fn server(name: &str, case: &str) -> io::Result<()> {
        let mut options = ListenerOptions::new();
        options.mode(Mode::Messages);
        let listener = Listener::bind_with(format!("{name}{SIBLING}"), &options)?;
        println!("ready");
        let conn = listener.accept()?;
        let len = ring::segment_len(CAPACITY);
        let mut message = [0u8; 64];
        message[..16].copy_from_slice(OFFER);
        let mut words = [len as u64, 0x7ff0, 0x7ff4, 0x7ff8, 0x7ffc, 0x7fe0];
        // Kept open until the process ends: the client takes them by value.
        let mut kept = None;
        match case {
            "tag" => message[..16].copy_from_slice(b"\0pipekit-shm-v0\0"),
            "len-0" => words[0] = 0,
            "len-huge" => words[0] = u64::MAX,
            "garbage" => {}
            "short" | "no-header" | "reserved" | "file" | "pseudo" | "not-events" | "scribble" => {
                let made = if case == "short" { len / 2 } else { len };
                let section = match case {
                    "reserved" => section_of(INVALID_HANDLE_VALUE, made, SEC_RESERVE)?,
                    "file" => {
                        let path = std::env::temp_dir().join(format!("shm-liar-{name}"));
                        let file = std::fs::OpenOptions::new()
                            .read(true)
                            .write(true)
                            .create(true)
                            .truncate(true)
                            .open(&path)?;
                        file.set_len(made as u64)?;
                        let section = section_of(file.as_raw_handle() as HANDLE, made, 0)?;
                        drop(file);
                        // Deleted when the section closes (Windows keeps a mapped file).
                        let _ = std::fs::remove_file(&path);
                        section
                    }
                    _ => section(made)?,
                };
                let view = View::new(&section, made)?;
                if case == "reserved" {
                    view.commit_first_page()?;
                }
                if case != "no-header" && case != "short" {
                    // Not dropped: that would mark the rings closed.
                    std::mem::forget(ring::Channel::server(view, CAPACITY, Mute, Mute));
                }
                let value = section.as_raw_handle() as usize as u64;
                words[1] = value;
                match case {
                    "pseudo" => words[2..].fill(u64::MAX),
                    "not-events" => words[2..].fill(value),
                    // Real events: only the section lies.
                    _ => {
                        let events: io::Result<Vec<OwnedHandle>> =
                            (0..4).map(|_| event()).collect();
                        let events = events?;
                        for (word, event) in words[2..].iter_mut().zip(&events) {
                            *word = event.as_raw_handle() as usize as u64;
                        }
                        kept = Some(events);
                    }
                }
                kept.get_or_insert_with(Vec::new).push(section);
            }
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("no such case: {case}"),
                ));
            }
        }
        for (i, word) in words.iter().enumerate() {
            message[16 + 8 * i..24 + 8 * i].copy_from_slice(&word.to_le_bytes());
        }
        conn.send(&message)?;
        println!("done");
        if case == "scribble" {
            let section = kept.as_ref().and_then(|k| k.last()).expect("made above");
            go()?;
            scribble(&View::new(section, len)?);
        }
        // Until the test is done with the client: stdin closes.
        let _ = go();
        Ok(())
    }

    fn client(name: &str) -> io::Result<()> {
        let mut options = ConnectOptions::new();
        options.mode(Mode::Messages);
        let conn = Stream::connect_with(format!("{name}{SIBLING}"), &options)?;
        let mut message = [0u8; 64];
        let n = conn.recv(&mut message)?.unwrap_or(0);
        if n != 64 || &message[..16] != OFFER {
            return Err(io::Error::other("the server's first message is no offer"));
        }
        let word = |i: usize| {
            u64::from_le_bytes(message[16 + 8 * i..24 + 8 * i].try_into().expect("8 bytes"))
        };
        let len = usize::try_from(word(0)).map_err(io::Error::other)?;
        let mut pid = 0;
        // SAFETY: a valid pipe handle, borrowed for the call; `pid` is a valid out-pointer.
        if unsafe { GetNamedPipeServerProcessId(conn.as_raw_handle() as HANDLE, &mut pid) } == 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: no inheritance; the result is checked.
        let process = owned(unsafe { OpenProcess(PROCESS_DUP_HANDLE, 0, pid) })?;
        let mut taken: HANDLE = ptr::null_mut();
        // SAFETY: no arguments; the pseudo-handle needs no closing.
        let this = unsafe { GetCurrentProcess() };
        // SAFETY: valid process handles; the value is looked up in the server's table;
        // `taken` is a valid out-pointer.
        let ok = unsafe {
            DuplicateHandle(
                process.as_raw_handle() as HANDLE,
                word(1) as usize as HANDLE,
                this,
                &mut taken,
                0,
                0,
                DUPLICATE_SAME_ACCESS,
            )
        };
        if ok == 0 {
            return Err(io::Error::last_os_error());
        }
        let section = owned(taken)?;
        let view = View::new(&section, len)?;
        let channel = ring::Channel::client(view, len, Mute, Mute)?;
        // "My writes go to my ring", as pipekit's client says.
        channel.switch(1, 0);
        println!("done");
        go()?;
        scribble(&View::new(&section, len)?)
    }

    /// Waits for a line (or the end) on stdin.
    fn go() -> io::Result<()> {
        io::stdout().flush()?;
        io::stdin().lock().read_line(&mut String::new()).map(drop)
    }

    /// Random words over the whole segment, until stdin ends (then the process exits): small
    /// ones (plausible indices and lengths) and any bit pattern.
    fn scribble(view: &View) -> ! {
        std::thread::spawn(|| {
            let _ = io::stdin().lock().read_line(&mut String::new());
            std::process::exit(0);
        });
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        let mut x = now.map_or(1, |d| d.as_nanos() as u64) ^ u64::from(std::process::id()) | 1;
        loop {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let at = (x as usize % view.len) & !7;
            let value = match x >> 60 {
                0..=5 => (x >> 20) % (4 * CAPACITY as u64),
                6..=8 => (x >> 24) as u32 as u64,
                _ => x.rotate_left(29),
            };
            view.u64_at(at).store(value, Ordering::Relaxed);
        }
    }

    fn section(len: usize) -> io::Result<OwnedHandle> {
        section_of(INVALID_HANDLE_VALUE, len, 0)
    }

    /// A section of `file` (the pagefile if `INVALID_HANDLE_VALUE`), with `flags` (`SEC_*`).
    fn section_of(file: HANDLE, len: usize, flags: u32) -> io::Result<OwnedHandle> {
        // SAFETY: `file` is a valid file handle or the pagefile's marker; no security
        // attributes, no name; the result is checked.
        owned(unsafe {
            CreateFileMappingW(
                file,
                ptr::null(),
                PAGE_READWRITE | flags,
                0,
                len as u32,
                ptr::null(),
            )
        })
    }

    fn event() -> io::Result<OwnedHandle> {
        use windows_sys::Win32::System::Threading::CreateEventW;
        // SAFETY: no security attributes, no name; the result is checked.
        owned(unsafe { CreateEventW(ptr::null(), 0, 0, ptr::null()) })
    }

    fn owned(handle: HANDLE) -> io::Result<OwnedHandle> {
        if handle.is_null() || handle == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh handle nothing else owns.
        Ok(unsafe { OwnedHandle::from_raw_handle(handle as _) })
    }

    /// A view of a section, never unmapped (the process is short-lived).
    struct View {
        ptr: *mut u8,
        len: usize,
    }

    // SAFETY: plain shared memory, touched through atomics and bounds-checked copies only.
    unsafe impl Send for View {}
    // SAFETY: as for `Send`.
    unsafe impl Sync for View {}

    impl View {
        fn new(section: &OwnedHandle, len: usize) -> io::Result<View> {
            // SAFETY: a view chosen by the system that aliases no Rust object.
            let view = unsafe {
                MapViewOfFile(
                    section.as_raw_handle() as HANDLE,
                    FILE_MAP_READ | FILE_MAP_WRITE,
                    0,
                    0,
                    len,
                )
            };
            if view.Value.is_null() {
                return Err(io::Error::last_os_error());
            }
            Ok(View {
                ptr: view.Value.cast(),
                len,
            })
        }

        /// Commits the view's first page (of a `SEC_RESERVE` section).
        fn commit_first_page(&self) -> io::Result<()> {
            // SAFETY: the first page of this view; committing changes no mapped content.
            let got = unsafe { VirtualAlloc(self.ptr.cast(), 4096, MEM_COMMIT, PAGE_READWRITE) };
            if got.is_null() {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        fn at(&self, offset: usize, len: usize) -> *mut u8 {
            assert!(
                offset <= self.len && len <= self.len - offset,
                "out of the view"
            );
            // SAFETY: within the view (checked above).
            unsafe { self.ptr.add(offset) }
        }
    }

    impl Segment for View {
        fn u64_at(&self, offset: usize) -> &AtomicU64 {
            assert!(offset.is_multiple_of(8));
            // SAFETY: in bounds, aligned (views are page-aligned), any bit pattern is valid.
            unsafe { &*self.at(offset, 8).cast::<AtomicU64>() }
        }

        fn u32_at(&self, offset: usize) -> &AtomicU32 {
            assert!(offset.is_multiple_of(4));
            // SAFETY: as `u64_at`.
            unsafe { &*self.at(offset, 4).cast::<AtomicU32>() }
        }

        fn copy_in(&self, offset: usize, src: &[u8]) {
            let dst = self.at(offset, src.len());
            // SAFETY: in the view, which no Rust slice overlaps.
            unsafe { ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        }

        fn copy_out(&self, offset: usize, dst: &mut [u8]) {
            let src = self.at(offset, dst.len());
            // SAFETY: as `copy_in`; section memory is always initialised.
            unsafe { ptr::copy_nonoverlapping(src, dst.as_mut_ptr(), dst.len()) };
        }

        fn with_slice<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
            // SAFETY: in the view, initialised; this liar does not care what the peer does.
            f(unsafe { std::slice::from_raw_parts(self.at(offset, len), len) })
        }

        fn with_slice_mut<R>(
            &self,
            offset: usize,
            len: usize,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> R {
            // SAFETY: as `with_slice`; no other reference to it in this process.
            f(unsafe { std::slice::from_raw_parts_mut(self.at(offset, len), len) })
        }
    }

    /// A bell that rings nobody: the liar never waits.
    struct Mute;

    impl ring::Bell for Mute {
        fn ring(&self) -> bool {
            true
        }

        fn drain(&self) -> bool {
            true
        }

        fn sleep(&self, _: Option<Instant>) -> io::Result<()> {
            Ok(())
        }
    }
}
