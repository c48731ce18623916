//! The non-blocking engine's teardown: streams and listeners dropped while reads, writes and
//! connects are in flight, over and over, with the peer still talking. Nothing may crash,
//! hang or lose a message that was accepted for sending.
#![cfg(windows)]

use std::io;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread;

use pipekit_core::{ConnectOptions, ListenerOptions, Mode, PipeName};
use pipekit_windows::nonblocking;
use pipekit_windows::{Listener, Stream, WindowsOptions};

fn name(tag: &str) -> PipeName {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    PipeName::new(&format!("t-nb-{tag}-{}-{n}", std::process::id())).unwrap()
}

fn listener(name: &PipeName, max: usize) -> Listener {
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages).max_message_size(max);
    Listener::bind_with(name, &options, &WindowsOptions::new()).unwrap()
}

fn connect(name: &PipeName, max: usize) -> Stream {
    let mut options = ConnectOptions::new();
    options.mode(Mode::Messages).max_message_size(max);
    Stream::connect_with(name, &options).unwrap()
}

/// Wakes a parked thread.
struct Unpark(thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `poll` on this thread until it is ready, parking in between.
fn block_on<T>(mut poll: impl FnMut(&mut Context<'_>) -> Poll<T>) -> T {
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = poll(&mut cx) {
            return value;
        }
        thread::park();
    }
}

#[test]
fn streams_dropped_with_a_read_in_flight_or_mid_conversation() {
    let name = name("drop-read");
    let listener = listener(&name, 1 << 20);
    for round in 0..100 {
        let client = connect(&name, 1 << 20);
        let server = listener.accept().unwrap();
        let mut server = nonblocking::Stream::new(server).unwrap();
        let talker = thread::spawn(move || {
            // Talks until the server is gone.
            for i in 0u32.. {
                if client
                    .send(&vec![i as u8; 1 + (i as usize * 997) % 70_000])
                    .is_err()
                {
                    return i;
                }
            }
            unreachable!()
        });
        // Take a few messages (round 0: none, the read-ahead is in flight or done), then drop.
        let mut buf = Vec::new();
        for _ in 0..round % 5 {
            let got = block_on(|cx| server.poll_recv_to_vec(cx, &mut buf)).unwrap();
            assert!(got.is_some());
        }
        drop(server);
        let sent = talker.join().unwrap();
        assert!(sent >= (round % 5) as u32);
    }
}

#[test]
fn a_send_accepted_before_the_drop_is_delivered() {
    let name = name("drop-write");
    let listener = listener(&name, 8 << 20);
    for round in 0..20 {
        let client = connect(&name, 8 << 20);
        let mut server = nonblocking::Stream::new(listener.accept().unwrap()).unwrap();
        // Longer than the pipe's buffer: the write is in flight when the stream goes.
        let msg = vec![round as u8; 2 << 20];
        block_on(|cx| server.poll_send(cx, &msg)).unwrap();
        drop(server);
        let mut got = Vec::new();
        assert_eq!(client.recv_to_vec(&mut got).unwrap(), Some(msg.len()));
        assert!(got == msg, "round {round}: the message changed");
        assert_eq!(client.recv_to_vec(&mut got).unwrap(), None);
    }
}

#[test]
fn listeners_dropped_while_waiting_or_while_clients_arrive() {
    for round in 0..50 {
        let name = name("drop-listener");
        let nb = nonblocking::Listener::new(listener(&name, 1 << 20)).unwrap();
        if round % 2 == 0 {
            // Nobody came: the connect in flight is cancelled.
            drop(nb);
            continue;
        }
        let client = thread::spawn({
            let name = name.clone();
            move || {
                let mut options = ConnectOptions::new();
                options.mode(Mode::Messages);
                Stream::connect_with(&name, &options).map(|_| ())
            }
        });
        let accepted = block_on(|cx| nb.poll_accept(cx)).unwrap();
        drop(nb);
        drop(accepted);
        client.join().unwrap().unwrap();
        // The name is free again.
        let again = listener(&name, 1 << 20);
        drop(again);
    }
}

#[test]
fn accept_hands_out_connected_clients_in_both_modes() -> io::Result<()> {
    let name = name("accept");
    let mut options = ListenerOptions::new();
    options.mode(Mode::Bytes);
    let nb = nonblocking::Listener::new(Listener::bind_with(
        &name,
        &options,
        &WindowsOptions::new(),
    )?)?;
    assert_eq!(
        nb.accept().unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "nobody connected yet"
    );
    let _client = Stream::connect_with(&name, &ConnectOptions::new())?;
    let stream = block_on(|cx| nb.poll_accept(cx))?;
    assert_eq!(stream.mode(), Mode::Bytes);
    let mut byte_stream = stream;
    let err = byte_stream.try_recv(&mut [0u8; 4]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let (handle, end, _slot) = byte_stream.into_parts()?;
    assert_eq!(end, pipekit_windows::PipeEnd::Server);
    drop(handle);

    Ok(())
}

#[test]
fn the_instance_limit_holds_and_a_freed_place_wakes_accept() -> io::Result<()> {
    let name = name("limit");
    let mut options = ListenerOptions::new();
    options
        .mode(Mode::Messages)
        .max_instances(std::num::NonZeroU8::new(1));
    let nb = nonblocking::Listener::new(Listener::bind_with(
        &name,
        &options,
        &WindowsOptions::new(),
    )?)?;
    let first = connect(&name, 1 << 20);
    let mut accepted = block_on(|cx| nb.poll_accept(cx))?;
    // The second client finds the only instance busy and waits for it.
    let second = thread::spawn({
        let name = name.clone();
        move || {
            let mut options = ConnectOptions::new();
            options
                .mode(Mode::Messages)
                .wait(Some(std::time::Duration::from_secs(30)));
            let s = Stream::connect_with(&name, &options)?;
            s.send(b"second")?;
            Ok::<_, io::Error>(s)
        }
    });
    assert_eq!(nb.accept().unwrap_err().kind(), io::ErrorKind::WouldBlock);
    first.send(b"first")?;
    let mut buf = Vec::new();
    block_on(|cx| accepted.poll_recv_to_vec(cx, &mut buf))?;
    assert_eq!(buf, b"first");
    // Pending in accept with the limit reached; dropping the stream gives the place back and
    // wakes it.
    let waiting = thread::spawn(move || {
        let mut next = block_on(|cx| nb.poll_accept(cx))?;
        let mut buf = Vec::new();
        block_on(|cx| next.poll_recv_to_vec(cx, &mut buf))?;
        Ok::<_, io::Error>(buf)
    });
    drop(first);
    drop(accepted);
    assert_eq!(waiting.join().unwrap()?, b"second");
    drop(second.join().unwrap()?);
    Ok(())
}

fn limited_listener(name: &PipeName, max: usize) -> Listener {
    let mut options = ListenerOptions::new();
    options
        .mode(Mode::Messages)
        .max_message_size(max)
        .max_instances(std::num::NonZeroU8::new(1));
    Listener::bind_with(name, &options, &WindowsOptions::new()).unwrap()
}

/// Accepts on `listener` until a client comes, failing after `limit`.
fn accept_within(
    listener: &nonblocking::Listener,
    limit: std::time::Duration,
) -> io::Result<nonblocking::Stream> {
    let deadline = std::time::Instant::now() + limit;
    let (waker, rx) = ping();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(result) = listener.poll_accept(&mut cx) {
            return result;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no client accepted",
            ));
        }
        let _ = rx.recv_timeout(left);
    }
}

#[test]
fn a_read_cancelled_because_its_thread_exited_is_started_again() {
    // Windows cancels the I/O a thread started on a handle without a completion port when
    // the thread exits. The read-ahead is started by whoever makes the stream or receives:
    // a thread that goes away must not turn into an error or a lost message.
    let name = name("thread-exit");
    let listener = listener(&name, 1 << 20);
    for round in 0..20u8 {
        let client = connect(&name, 1 << 20);
        let blocking = listener.accept().unwrap();
        // The stream (and its first read, which waits: nothing was sent) is made on a thread
        // that exits.
        let mut server = thread::spawn(move || nonblocking::Stream::new(blocking).unwrap())
            .join()
            .unwrap();
        // More reads started on short-lived threads.
        for _ in 0..3 {
            let s = thread::spawn(move || {
                let mut buf = [0u8; 16];
                let err = server.try_recv(&mut buf).unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{err}");
                server
            });
            server = s.join().unwrap();
        }
        client.send(&[round; 3000]).unwrap();
        let mut got = Vec::new();
        let n = block_on(|cx| server.poll_recv_to_vec(cx, &mut got))
            .unwrap_or_else(|e| panic!("round {round}: the first receive failed: {e}"));
        assert_eq!(n, Some(3000));
        assert!(got.iter().all(|&b| b == round), "round {round}: changed");
    }
}

#[test]
fn a_stream_dropped_by_a_waker_the_pool_runs_does_not_deadlock() {
    // The waker runs on the thread-pool thread that saw the message arrive, and drops the
    // stream there.
    struct DropOnWake {
        stream: std::sync::Mutex<Option<nonblocking::Stream>>,
        done: std::sync::Mutex<std::sync::mpsc::Sender<()>>,
    }
    impl Wake for DropOnWake {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            drop(self.stream.lock().unwrap().take());
            let _ = self.done.lock().unwrap().send(());
        }
    }
    let name = name("drop-in-waker");
    let listener = listener(&name, 1 << 20);
    for round in 0..20 {
        let client = connect(&name, 1 << 20);
        let server = nonblocking::Stream::new(listener.accept().unwrap()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let state = Arc::new(DropOnWake {
            stream: std::sync::Mutex::new(Some(server)),
            done: std::sync::Mutex::new(tx),
        });
        let waker = Waker::from(Arc::clone(&state));
        {
            let mut guard = state.stream.lock().unwrap();
            let stream = guard.as_mut().unwrap();
            let mut buf = [0u8; 64];
            let poll = stream.poll_recv(&mut Context::from_waker(&waker), &mut buf);
            assert!(poll.is_pending(), "nothing was sent yet");
        }
        client.send(b"wake up").unwrap();
        rx.recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("round {round}: dropping the stream in the waker hung"));
        // The server end is gone: the client sees the end.
        let mut got = Vec::new();
        assert_eq!(client.recv_to_vec(&mut got).unwrap(), None);
    }
}

#[test]
fn a_write_the_peer_never_reads_gives_the_instance_back_after_the_linger() {
    let name = name("linger");
    let nb = nonblocking::Listener::new(limited_listener(&name, 8 << 20)).unwrap();
    let connecting = thread::spawn({
        let name = name.clone();
        move || connect(&name, 8 << 20)
    });
    let mut server = accept_within(&nb, std::time::Duration::from_secs(20)).unwrap();
    // Never reads; kept open until the end.
    let stalled = connecting.join().unwrap();
    server.set_linger(std::time::Duration::from_millis(200));
    // Longer than the pipe's buffer: the write stays in flight.
    server.try_send(&vec![1u8; 4 << 20]).unwrap();
    assert_eq!(
        server.try_send(b"second").unwrap_err().kind(),
        io::ErrorKind::WouldBlock,
        "the first write should still be in flight"
    );
    drop(server);
    // The only place under the limit comes back once the write is given up. Until then the
    // client finds the one instance busy; between the old instance's close and the new one's
    // creation it finds no instance at all (and a wait begun on the old one may never end,
    // under Wine), so it tries again until the deadline.
    let second = thread::spawn({
        let name = name.clone();
        move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            let mut options = ConnectOptions::new();
            options
                .mode(Mode::Messages)
                .wait(Some(std::time::Duration::from_millis(200)));
            loop {
                match Stream::connect_with(&name, &options) {
                    Ok(s) => return s.send(b"hello"),
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::NotFound | io::ErrorKind::TimedOut
                        ) && std::time::Instant::now() < deadline =>
                    {
                        thread::yield_now()
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    });
    let mut next = accept_within(&nb, std::time::Duration::from_secs(20))
        .expect("a new client is accepted once the stalled write is given up");
    second.join().unwrap().unwrap();
    let mut got = Vec::new();
    assert_eq!(
        block_on(|cx| next.poll_recv_to_vec(cx, &mut got)).unwrap(),
        Some(5)
    );
    drop(stalled);
}

#[test]
fn a_message_the_blocking_stream_held_is_received_first() {
    let name = name("held");
    let listener = listener(&name, 1 << 20);
    let client = connect(&name, 1 << 20);
    let server = listener.accept().unwrap();
    client.send(&[5u8; 300]).unwrap();
    client.send(b"after").unwrap();
    // Too small a buffer: the blocking stream holds the message for the next receive.
    let err = server.recv(&mut [0u8; 10]).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    let mut server = nonblocking::Stream::new(server).unwrap();
    let mut got = Vec::new();
    assert_eq!(
        block_on(|cx| server.poll_recv_to_vec(cx, &mut got)).unwrap(),
        Some(300)
    );
    assert!(got.iter().all(|&b| b == 5), "the held message changed");
    assert_eq!(
        block_on(|cx| server.poll_recv_to_vec(cx, &mut got)).unwrap(),
        Some(5)
    );
    assert_eq!(got, b"after");
}

/// A waker that sends on a channel.
struct Ping(std::sync::Mutex<std::sync::mpsc::Sender<()>>);

impl Wake for Ping {
    fn wake(self: Arc<Self>) {
        let _ = self.0.lock().unwrap().send(());
    }
}

fn ping() -> (Waker, std::sync::mpsc::Receiver<()>) {
    let (tx, rx) = std::sync::mpsc::channel();
    (Waker::from(Arc::new(Ping(std::sync::Mutex::new(tx)))), rx)
}

#[test]
fn every_task_waiting_in_accept_is_woken() {
    let name = name("two-accepts");
    let nb = nonblocking::Listener::new(listener(&name, 1 << 20)).unwrap();
    // Two tasks wait in accept, one after the other.
    let (first, first_woken) = ping();
    let (second, second_woken) = ping();
    assert!(
        nb.poll_accept(&mut Context::from_waker(&first))
            .is_pending()
    );
    assert!(
        nb.poll_accept(&mut Context::from_waker(&second))
            .is_pending()
    );
    let _client = connect(&name, 1 << 20);
    for (task, woken) in [("first", first_woken), ("second", second_woken)] {
        woken
            .recv_timeout(std::time::Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("the {task} task waiting in accept was not woken"));
    }
    assert!(nb.poll_accept(&mut Context::from_waker(&first)).is_ready());
}

/// A non-blocking stream driven until each call is done, so the core suite can check it.
struct Driven {
    stream: nonblocking::Stream,
    read_timeout: std::sync::Mutex<Option<std::time::Duration>>,
    write_timeout: std::sync::Mutex<Option<std::time::Duration>>,
}

impl Driven {
    fn new(stream: Stream) -> Driven {
        Driven {
            stream: nonblocking::Stream::new(stream).unwrap(),
            read_timeout: std::sync::Mutex::new(None),
            write_timeout: std::sync::Mutex::new(None),
        }
    }
}

/// Drives `poll` until it is ready or `timeout` has passed (`TimedOut`).
fn drive<T>(
    timeout: Option<std::time::Duration>,
    mut poll: impl FnMut(&mut Context<'_>) -> Poll<io::Result<T>>,
) -> io::Result<T> {
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(result) = poll(&mut cx) {
            return result;
        }
        match deadline {
            None => thread::park(),
            Some(deadline) => {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                if left.is_zero() {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out"));
                }
                thread::park_timeout(left);
            }
        }
    }
}

impl pipekit_core::Connection for Driven {
    fn mode(&self) -> Mode {
        self.stream.mode()
    }

    fn peer_credentials(&self) -> io::Result<pipekit_core::PeerCredentials> {
        Err(io::ErrorKind::Unsupported.into())
    }

    fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        *self.read_timeout.lock().unwrap() = timeout;
        Ok(())
    }

    fn set_write_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        *self.write_timeout.lock().unwrap() = timeout;
        Ok(())
    }
}

impl pipekit_core::MessagePipe for Driven {
    fn send(&mut self, msg: &[u8]) -> io::Result<()> {
        let timeout = *self.write_timeout.lock().unwrap();
        drive(timeout, |cx| self.stream.poll_send(cx, msg))?;
        drive(timeout, |cx| self.stream.poll_flush(cx))
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let timeout = *self.read_timeout.lock().unwrap();
        drive(timeout, |cx| self.stream.poll_recv(cx, buf))
    }

    fn recv_to_vec(&mut self, buf: &mut Vec<u8>) -> io::Result<Option<usize>> {
        let timeout = *self.read_timeout.lock().unwrap();
        drive(timeout, |cx| self.stream.poll_recv_to_vec(cx, buf))
    }

    fn max_message_size(&self) -> usize {
        self.stream.max_message_size()
    }
}

#[test]
fn the_core_message_suite_holds_for_non_blocking_streams() {
    pipekit_core::testing::messages_suite(|| {
        let name = name("suite");
        let listener = listener(&name, 1 << 20);
        let client = connect(&name, 1 << 20);
        let server = listener.accept()?;
        Ok((Driven::new(server), Driven::new(client)))
    });
}
