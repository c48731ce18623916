//! The behaviour suite every transport runs (feature `testing`).
//!
//! A backend hands the suite a function that makes a connected pair — `(server side, client
//! side)` — and the suite checks that EOF, disconnects, oversized and zero-length messages,
//! ordering and timeouts behave as the traits document. Each case panics with its name on a
//! failure.
//!
//! A backend's test calls, for example,
//! `pipekit_core::testing::messages_suite(|| connected_message_pair())`.

use std::io;
use std::thread;
use std::time::Duration;

use crate::{ByteStream, MessagePipe, MessageTooLarge};

/// How long the timeout cases wait.
const TIMEOUT: Duration = Duration::from_millis(100);

/// Runs every byte-stream case on pairs made by `pair`.
pub fn bytes_suite<S, F>(mut pair: F)
where
    S: ByteStream + Send + 'static,
    F: FnMut() -> io::Result<(S, S)>,
{
    let mut make = || pair().expect("making a connected pair");
    bytes_round_trip(make());
    bytes_shutdown_write_is_eof_one_way(make());
    bytes_peer_drop_is_eof(make());
    bytes_write_to_dropped_peer_is_broken_pipe(make());
    bytes_read_timeout(make());
    bytes_many_chunks_in_order(make());
}

/// Runs every message-pipe case on pairs made by `pair`. Both ends must allow messages of at
/// least 65535 bytes.
pub fn messages_suite<M, F>(mut pair: F)
where
    M: MessagePipe + Send + 'static,
    F: FnMut() -> io::Result<(M, M)>,
{
    let mut make = || pair().expect("making a connected pair");
    messages_round_trip_both_ways(make());
    messages_zero_length_is_not_eof(make());
    messages_peer_drop_is_eof(make());
    messages_too_small_buffer_keeps_message(make());
    messages_oversized_send_is_refused(make());
    messages_full_size_message(make());
    messages_many_in_order(make());
    messages_read_timeout(make());
    messages_send_to_dropped_peer_is_broken_pipe(make());
}

/// Data written on each side arrives on the other.
pub fn bytes_round_trip<S: ByteStream>((mut a, mut b): (S, S)) {
    a.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    b.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping", "bytes_round_trip");
    b.write_all(b"pong").unwrap();
    a.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong", "bytes_round_trip");
}

/// After `shutdown_write`, the peer reads what was sent and then EOF, and can still answer.
///
/// A transport without half-close (Windows named pipes) must instead fail with `Unsupported`
/// and leave the stream working both ways.
pub fn bytes_shutdown_write_is_eof_one_way<S: ByteStream>((mut a, mut b): (S, S)) {
    a.write_all(b"last words").unwrap();
    if let Err(err) = a.shutdown_write() {
        assert_eq!(
            err.kind(),
            io::ErrorKind::Unsupported,
            "bytes_shutdown_write_is_eof_one_way: {err}"
        );
        let mut got = [0u8; 10];
        b.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"last words", "bytes_shutdown_write_is_eof_one_way");
        bytes_round_trip((a, b));
        return;
    }
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"last words", "bytes_shutdown_write_is_eof_one_way");
    b.write_all(b"reply").unwrap();
    drop(b);
    let mut reply = Vec::new();
    a.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"reply", "bytes_shutdown_write_is_eof_one_way");
}

/// Dropping one end is EOF for the other, after the data sent before it.
pub fn bytes_peer_drop_is_eof<S: ByteStream>((mut a, mut b): (S, S)) {
    a.write_all(b"unread data is kept").unwrap();
    drop(a);
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"unread data is kept", "bytes_peer_drop_is_eof");
    assert_eq!(b.read(&mut [0u8; 8]).unwrap(), 0, "bytes_peer_drop_is_eof");
}

/// Writing to a dropped peer fails with `BrokenPipe` (and no signal kills the process).
pub fn bytes_write_to_dropped_peer_is_broken_pipe<S: ByteStream>((mut a, b): (S, S)) {
    drop(b);
    let chunk = [0u8; 4096];
    let err = (0..1024)
        .find_map(|_| a.write(&chunk).err())
        .expect("writes to a dropped peer kept succeeding");
    assert_eq!(
        err.kind(),
        io::ErrorKind::BrokenPipe,
        "bytes_write_to_dropped_peer_is_broken_pipe: {err}"
    );
}

/// A read with nothing to read fails with `TimedOut` after the read timeout.
pub fn bytes_read_timeout<S: ByteStream>((_a, mut b): (S, S)) {
    b.set_read_timeout(Some(TIMEOUT)).unwrap();
    let err = b.read(&mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.kind(),
        io::ErrorKind::TimedOut,
        "bytes_read_timeout: {err}"
    );
    assert_eq!(
        b.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(),
        io::ErrorKind::InvalidInput,
        "bytes_read_timeout: zero duration"
    );
}

/// Many writes of varied sizes arrive as one stream, every byte in order.
pub fn bytes_many_chunks_in_order<S: ByteStream + Send + 'static>((mut a, mut b): (S, S)) {
    let expected = pattern(3 << 20);
    let data = expected.clone();
    let writer = thread::spawn(move || {
        let mut offset = 0;
        let mut size = 1;
        while offset < data.len() {
            let end = (offset + size).min(data.len());
            a.write_all(&data[offset..end]).unwrap();
            offset = end;
            size = size * 7 % 70_001 + 1;
        }
        // Dropping the writer ends the stream: every byte before it must still arrive.
        drop(a);
    });
    let mut got = Vec::new();
    b.read_to_end(&mut got).unwrap();
    writer.join().unwrap();
    assert!(
        got == expected,
        "bytes_many_chunks_in_order: stream differs"
    );
}

/// Messages go both ways with their boundaries kept.
pub fn messages_round_trip_both_ways<M: MessagePipe>((mut a, mut b): (M, M)) {
    a.send(b"hello").unwrap();
    a.send(b"world!").unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(b.recv(&mut buf).unwrap(), Some(5), "messages_round_trip");
    assert_eq!(&buf[..5], b"hello");
    assert_eq!(b.recv(&mut buf).unwrap(), Some(6), "messages_round_trip");
    assert_eq!(&buf[..6], b"world!");
    b.send(b"OK").unwrap();
    let mut vec = vec![1, 2, 3];
    assert_eq!(
        a.recv_to_vec(&mut vec).unwrap(),
        Some(2),
        "messages_round_trip"
    );
    assert_eq!(vec, b"OK");
}

/// A zero-length message is a message, not EOF.
pub fn messages_zero_length_is_not_eof<M: MessagePipe>((mut a, mut b): (M, M)) {
    a.send(b"").unwrap();
    a.send(b"after").unwrap();
    a.send(b"").unwrap();
    drop(a);
    let mut buf = [0u8; 16];
    let mut vec = Vec::new();
    assert_eq!(b.recv(&mut buf).unwrap(), Some(0), "zero-length message");
    assert_eq!(
        b.recv(&mut buf).unwrap(),
        Some(5),
        "message after zero-length"
    );
    assert_eq!(
        b.recv_to_vec(&mut vec).unwrap(),
        Some(0),
        "zero-length message"
    );
    assert_eq!(b.recv(&mut buf).unwrap(), None, "EOF after the messages");
}

/// Dropping one end is EOF (`None`) for the other, after every message sent before it.
pub fn messages_peer_drop_is_eof<M: MessagePipe>((mut a, mut b): (M, M)) {
    for i in 0..10u8 {
        a.send(&[i; 100]).unwrap();
    }
    drop(a);
    let mut buf = [0u8; 128];
    for i in 0..10u8 {
        assert_eq!(
            b.recv(&mut buf).unwrap(),
            Some(100),
            "messages_peer_drop_is_eof"
        );
        assert_eq!(buf[..100], [i; 100]);
    }
    assert_eq!(b.recv(&mut buf).unwrap(), None, "messages_peer_drop_is_eof");
    assert_eq!(
        b.recv_to_vec(&mut Vec::new()).unwrap(),
        None,
        "EOF stays EOF"
    );
}

/// A message longer than the buffer reports its size and stays readable.
pub fn messages_too_small_buffer_keeps_message<M: MessagePipe>((mut a, mut b): (M, M)) {
    let big = pattern(5000);
    a.send(&big).unwrap();
    a.send(b"next").unwrap();
    let mut small = [0u8; 100];
    let err = b.recv(&mut small).unwrap_err();
    let report = MessageTooLarge::from_io(&err).expect("a MessageTooLarge report");
    assert_eq!((report.size, report.buffer_len), (5000, 100));
    assert!(
        err.to_string().contains("5000"),
        "the error names the size: {err}"
    );
    // Asking again with the same small buffer reports the same message.
    let again = b.recv(&mut small).unwrap_err();
    assert_eq!(MessageTooLarge::from_io(&again).map(|r| r.size), Some(5000));
    let mut exact = vec![0u8; 5000];
    assert_eq!(b.recv(&mut exact).unwrap(), Some(5000));
    assert!(exact == big, "the message is intact");
    assert_eq!(b.recv(&mut small).unwrap(), Some(4));
    assert_eq!(&small[..4], b"next");

    a.send(&big).unwrap();
    assert!(b.recv(&mut small).is_err());
    let mut vec = Vec::new();
    assert_eq!(b.recv_to_vec(&mut vec).unwrap(), Some(5000));
    assert!(vec == big, "recv_to_vec takes the whole message");
}

/// A message over the maximum is refused before anything is sent; the pipe stays usable.
pub fn messages_oversized_send_is_refused<M: MessagePipe>((mut a, mut b): (M, M)) {
    let max = a.max_message_size();
    let too_big = vec![0u8; max + 1];
    let err = a.send(&too_big).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains(&(max + 1).to_string()),
        "the error names the size: {err}"
    );
    a.send(b"still here").unwrap();
    let mut vec = Vec::new();
    assert_eq!(b.recv_to_vec(&mut vec).unwrap(), Some(10));
    assert_eq!(vec, b"still here");
}

/// A 65535-byte message arrives whole, in a 65535-byte buffer.
pub fn messages_full_size_message<M: MessagePipe + Send + 'static>((mut a, mut b): (M, M)) {
    let msg = pattern(65535);
    let sent = msg.clone();
    let writer = thread::spawn(move || {
        a.send(&sent).unwrap();
        a
    });
    let mut buf = vec![0u8; 65535];
    assert_eq!(b.recv(&mut buf).unwrap(), Some(65535));
    assert!(buf == msg, "messages_full_size_message");
    let a = writer.join().unwrap();
    drop(a);
}

/// Many messages of varied sizes arrive whole and in order.
pub fn messages_many_in_order<M: MessagePipe + Send + 'static>((mut a, mut b): (M, M)) {
    const COUNT: usize = 2000;
    let writer = thread::spawn(move || {
        for i in 0..COUNT {
            a.send(&numbered(i)).unwrap();
        }
        a
    });
    let mut buf = vec![0u8; 70_000];
    for i in 0..COUNT {
        let n = b.recv(&mut buf).unwrap().expect("a message");
        assert!(buf[..n] == numbered(i)[..], "message {i} differs");
    }
    drop(writer.join().unwrap());
    assert_eq!(b.recv(&mut buf).unwrap(), None);
}

/// A `recv` with nothing to receive fails with `TimedOut` after the read timeout.
pub fn messages_read_timeout<M: MessagePipe>((_a, mut b): (M, M)) {
    b.set_read_timeout(Some(TIMEOUT)).unwrap();
    let err = b.recv(&mut [0u8; 8]).unwrap_err();
    assert_eq!(
        err.kind(),
        io::ErrorKind::TimedOut,
        "messages_read_timeout: {err}"
    );
    let err = b.recv_to_vec(&mut Vec::new()).unwrap_err();
    assert_eq!(
        err.kind(),
        io::ErrorKind::TimedOut,
        "messages_read_timeout: {err}"
    );
}

/// Sending to a dropped peer fails with `BrokenPipe`.
pub fn messages_send_to_dropped_peer_is_broken_pipe<M: MessagePipe>((mut a, b): (M, M)) {
    drop(b);
    let msg = [0u8; 1024];
    let err = (0..4096)
        .find_map(|_| a.send(&msg).err())
        .expect("sends to a dropped peer kept succeeding");
    assert_eq!(
        err.kind(),
        io::ErrorKind::BrokenPipe,
        "messages_send_to_dropped_peer_is_broken_pipe: {err}"
    );
}

/// `len` bytes of a pattern that does not repeat with any short period.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Message `i` of a numbered sequence: its number, then a pattern; sizes vary from 8 bytes
/// to about 64 KiB.
pub fn numbered(i: usize) -> Vec<u8> {
    let len = 8 + (i * 7919) % 65_000;
    let mut msg = pattern(len);
    msg[..8].copy_from_slice(&(i as u64).to_le_bytes());
    msg
}
