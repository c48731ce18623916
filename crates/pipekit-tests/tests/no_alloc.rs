//! The steady path of send/recv allocates nothing: a counting global allocator watches 1000
//! round trips of 65535-byte messages (and byte-mode writes) on every transport.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

use pipekit::{ConnectOptions, Listener, ListenerOptions, Mode, Stream};
use pipekit_tests::unique_name;

struct Counting;

thread_local! {
    /// Set on the thread whose allocations are counted: the test harness's own threads
    /// (reporting a finished test, say) allocate meanwhile, and must not count.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}
/// The count is process-wide: the tests take turns.
static SERIAL: Mutex<()> = Mutex::new(());
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

fn counting() -> bool {
    // `try_with`: an allocation while this thread's locals are torn down is not counted.
    COUNTING.try_with(Cell::get).unwrap_or(false)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if counting() {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Which transport a pair runs on.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Socket,
    Fifo,
    SharedMemory,
}

/// A connected pair over a fresh name: (server side, client side).
fn pair(mode: Mode, kind: Kind) -> (Stream, Stream) {
    let name = unique_name("no-alloc");
    let shm = kind == Kind::SharedMemory;
    let mut listen = ListenerOptions::new();
    listen.mode(mode).max_message_size(65535);
    if shm {
        listen.shared_memory(Some(1 << 20));
    }
    let listener = bind(&name, &listen, kind == Kind::Fifo);
    let client = thread::spawn(move || {
        let mut options = ConnectOptions::new();
        options
            .mode(mode)
            .max_message_size(65535)
            .shared_memory(shm);
        Stream::connect_with(name.as_str(), &options).unwrap()
    });
    let server = listener.accept().unwrap();
    let client = client.join().unwrap();
    assert_eq!(client.is_shared_memory(), shm, "{kind:?}");
    (server, client)
}

#[cfg(unix)]
fn bind(name: &str, options: &ListenerOptions, fifo: bool) -> Listener {
    use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
    let mut unix = UnixOptions::new();
    if fifo {
        unix.transport(Transport::Fifo);
    }
    Listener::bind_unix(name, options, &unix).unwrap()
}

#[cfg(not(unix))]
fn bind(name: &str, options: &ListenerOptions, _fifo: bool) -> Listener {
    Listener::bind_with(name, options).unwrap()
}

/// Runs `round_trip` 1000 times (after a warm-up) and returns how many allocations it made.
fn allocations(mut round_trip: impl FnMut()) -> usize {
    for _ in 0..10 {
        round_trip();
    }
    ALLOCATIONS.store(0, Ordering::Relaxed);
    COUNTING.set(true);
    for _ in 0..1000 {
        round_trip();
    }
    COUNTING.set(false);
    ALLOCATIONS.load(Ordering::Relaxed)
}

/// Unix: sockets, FIFOs and shared memory; Windows: pipes (`Socket` there) and shared
/// memory.
fn transports() -> Vec<Kind> {
    if cfg!(unix) {
        vec![Kind::Socket, Kind::Fifo, Kind::SharedMemory]
    } else {
        vec![Kind::Socket, Kind::SharedMemory]
    }
}

#[test]
fn message_round_trips_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for kind in transports() {
        let (a, b) = pair(Mode::Messages, kind);
        let msg = vec![0x42u8; 65535];
        let mut buf = vec![0u8; 65535];
        let mut vec = Vec::new();
        let n = allocations(|| {
            a.send(&msg).unwrap();
            assert_eq!(b.recv(&mut buf).unwrap(), Some(65535));
            b.send(&buf).unwrap();
            assert_eq!(a.recv_to_vec(&mut vec).unwrap(), Some(65535));
        });
        assert_eq!(n, 0, "message mode ({kind:?}) allocated {n} times");
    }
}

#[test]
fn byte_round_trips_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for kind in transports() {
        let (mut a, mut b) = pair(Mode::Bytes, kind);
        let chunk = vec![0x42u8; 65535];
        let mut buf = vec![0u8; 65535];
        let n = allocations(|| {
            a.write_all(&chunk).unwrap();
            b.read_exact(&mut buf).unwrap();
            b.write_all(&buf).unwrap();
            a.read_exact(&mut buf).unwrap();
        });
        assert_eq!(n, 0, "byte mode ({kind:?}) allocated {n} times");
    }
}

/// Messages written and read in place on shared memory (`send_with`/`recv_with`) allocate
/// nothing either.
#[test]
fn in_place_round_trips_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (a, b) = pair(Mode::Messages, Kind::SharedMemory);
    let n = allocations(|| {
        a.send_with(65535, |buf| buf.fill(0x42)).unwrap();
        let sum = b.recv_with(|msg| msg.iter().map(|&x| x as usize).sum::<usize>());
        assert_eq!(sum.unwrap(), Some(0x42 * 65535));
        b.send_with(1, |buf| buf[0] = 1).unwrap();
        assert_eq!(a.recv_with(|msg| msg.len()).unwrap(), Some(1));
    });
    assert_eq!(n, 0, "in-place messages allocated {n} times");
}

/// Round trips through an echo on another thread (not counted): the counted side waits for
/// each answer (on shared memory it spins, then sleeps on its wake-up), and allocates
/// nothing either.
#[test]
fn round_trips_through_an_echo_thread_allocate_nothing() {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for kind in transports() {
        let (a, b) = pair(Mode::Messages, kind);
        let echo = thread::spawn(move || {
            let mut buf = vec![0u8; 65535];
            while let Some(n) = b.recv(&mut buf).unwrap() {
                b.send(&buf[..n]).unwrap();
            }
        });
        let msg = vec![0x42u8; 65535];
        let mut buf = vec![0u8; 65535];
        let n = allocations(|| {
            a.send(&msg).unwrap();
            assert_eq!(a.recv(&mut buf).unwrap(), Some(65535));
        });
        drop(a);
        echo.join().unwrap();
        assert_eq!(
            n, 0,
            "round trips through a thread ({kind:?}) allocated {n} times"
        );
    }
}
