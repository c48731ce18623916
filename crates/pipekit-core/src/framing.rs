//! The length-prefixed framing that carries messages over a byte stream.
//!
//! Used wherever a message pipe rides on a byte stream: Unix sockets where the OS has no
//! `SOCK_SEQPACKET` for `AF_UNIX` (macOS), and FIFOs.
//!
//! # Wire format
//!
//! Each message is a 4-byte **big-endian** unsigned length `N` followed by `N` bytes of
//! payload. `N` may be zero (an empty message). There is no other header, padding or trailer;
//! end of stream on a frame boundary is a clean end, anywhere else an error.
//!
//! ```text
//! +----------------+----------------------+----------------+---
//! | N (u32, BE)    | N bytes of payload   | N' (u32, BE)   | ...
//! +----------------+----------------------+----------------+---
//! ```
//!
//! A receiver checks `N` against its maximum message size before it allocates anything, so a
//! hostile header cannot make it reserve memory.
//!
//! # Examples
//!
//! ```
//! use pipekit_core::framing::{FrameReader, FrameWriter};
//!
//! let mut wire = Vec::new();
//! let mut writer = FrameWriter::new(1024);
//! writer.send(&mut wire, b"hello")?;
//! writer.send(&mut wire, b"")?;
//! assert_eq!(&wire[..4], &[0, 0, 0, 5]);
//!
//! let mut reader = FrameReader::new(1024);
//! let mut src = &wire[..];
//! let mut buf = [0u8; 16];
//! assert_eq!(reader.recv(&mut src, &mut buf)?, Some(5));
//! assert_eq!(&buf[..5], b"hello");
//! assert_eq!(reader.recv(&mut src, &mut buf)?, Some(0));
//! assert_eq!(reader.recv(&mut src, &mut buf)?, None);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io::{self, IoSlice, IoSliceMut, Read, Write};

use crate::error::{MessageTooLarge, invalid_data, message_over_limit};

/// The length of a frame header in bytes.
pub const HEADER_LEN: usize = 4;

/// How much a reader asks for beyond the current frame, so small messages arrive in few
/// system calls.
const READ_AHEAD: usize = 16 * 1024;

/// Encodes the header for a message of `len` bytes.
///
/// # Errors
///
/// `InvalidInput` naming both sizes if `len` is above `max`.
pub fn encode_header(len: usize, max: usize) -> io::Result<[u8; HEADER_LEN]> {
    if len > max || len > u32::MAX as usize {
        return Err(message_over_limit(len, max.min(u32::MAX as usize)));
    }
    Ok((len as u32).to_be_bytes())
}

/// Decodes a header, refusing a length above `max`.
///
/// # Errors
///
/// `InvalidData` naming both sizes if the header announces more than `max` bytes.
pub fn decode_header(header: [u8; HEADER_LEN], max: usize) -> io::Result<usize> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(invalid_data(format!(
            "peer announced a message of {len} bytes, above the maximum message size of {max} \
             bytes; the connection can no longer be read"
        )));
    }
    Ok(len)
}

/// Writes frames to a byte stream: one vectored write of header and payload per message where
/// the stream takes it whole.
///
/// On a non-blocking stream a frame can go out in part: the writer then keeps the rest and
/// sends it first on the next [`send`](Self::send) or [`flush`](Self::flush), so a message is
/// either taken whole or not at all.
#[derive(Debug)]
pub struct FrameWriter {
    max: usize,
    broken: bool,
    /// The unsent tail of a frame a non-blocking stream took only in part.
    pending: Vec<u8>,
}

impl FrameWriter {
    /// A writer that refuses messages over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> FrameWriter {
        FrameWriter {
            max: max_message_size,
            broken: false,
            pending: Vec::new(),
        }
    }

    /// The largest message this writer sends.
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// Bytes of an accepted frame still waiting to be written (non-blocking streams).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Writes `msg` as one frame to `dst`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` if `msg` is over the maximum (nothing written). `WouldBlock` if the tail
    /// of an earlier frame could not be written yet: `msg` was not taken, try again when the
    /// stream is writable. If the stream fills up in the middle of this frame, the rest is
    /// kept and the call succeeds (call [`flush`](Self::flush) when the stream is writable).
    /// Any other failure after part of a frame went out (a timeout, a closed peer) loses the
    /// framing: that error is returned and every later `send` fails with `BrokenPipe`.
    pub fn send<W: Write + ?Sized>(&mut self, dst: &mut W, msg: &[u8]) -> io::Result<()> {
        self.check_broken()?;
        let header = encode_header(msg.len(), self.max)?;
        self.flush(dst)?;
        let mut bufs = [IoSlice::new(&header), IoSlice::new(msg)];
        let mut slices = &mut bufs[..];
        let total = HEADER_LEN + msg.len();
        let mut written = 0;
        while written < total {
            match dst.write_vectored(slices) {
                Ok(0) => {
                    self.broken = written > 0;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    written += n;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && written > 0 => {
                    for slice in slices.iter() {
                        self.pending.extend_from_slice(slice);
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.broken = written > 0;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Writes the kept tail of a partly sent frame, if any.
    ///
    /// # Errors
    ///
    /// `WouldBlock` while the stream cannot take it all (what it took is gone from the
    /// tail); `BrokenPipe` after a failure that lost the framing; the stream's error.
    pub fn flush<W: Write + ?Sized>(&mut self, dst: &mut W) -> io::Result<()> {
        self.check_broken()?;
        while !self.pending.is_empty() {
            match dst.write(&self.pending) {
                Ok(0) => {
                    self.broken = true;
                    return Err(io::ErrorKind::WriteZero.into());
                }
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(e),
                Err(e) => {
                    self.broken = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn check_broken(&self) -> io::Result<()> {
        if self.broken {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "an earlier send stopped inside a message; the message framing is lost",
            ));
        }
        Ok(())
    }
}

/// Reads frames from a byte stream, keeping partial progress across errors.
///
/// A read error (`WouldBlock`, `TimedOut`, `Interrupted`) in the middle of a frame loses
/// nothing: the bytes read so far are kept, and the next call carries on.
#[derive(Debug)]
pub struct FrameReader {
    /// Bytes read from the stream and not yet delivered are `buf[start..end]`.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
    broken: Option<usize>,
}

impl FrameReader {
    /// A reader that refuses frames over `max_message_size` bytes.
    pub fn new(max_message_size: usize) -> FrameReader {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            max: max_message_size,
            broken: None,
        }
    }

    /// The largest message this reader takes.
    pub fn max_message_size(&self) -> usize {
        self.max
    }

    /// Bytes read from the stream and not delivered yet. Event loops must not wait for
    /// readiness while this is non-zero.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Receives one message from `src` into `dst`; `None` at a clean end of stream.
    ///
    /// # Errors
    ///
    /// [`MessageTooLarge`] (kind `InvalidInput`) if the message is longer than `dst`: the
    /// message stays buffered, the next call takes it. `InvalidData` for a header above the
    /// maximum; `UnexpectedEof` if the stream ends inside a frame; `src`'s own errors, with
    /// progress kept.
    pub fn recv<R: Read + ?Sized>(
        &mut self,
        src: &mut R,
        dst: &mut [u8],
    ) -> io::Result<Option<usize>> {
        self.check_broken()?;
        if self.buffered() == 0 {
            match self.recv_speculative(src, dst)? {
                Speculative::Eof => return Ok(None),
                Speculative::Done(len) => return Ok(Some(len)),
                Speculative::Continue => {}
            }
        }
        let Some(len) = self.fill_header(src)? else {
            return Ok(None);
        };
        if len > dst.len() {
            self.fill_frame(src, len)?;
            return Err(MessageTooLarge::error(len, dst.len()));
        }
        let have = (self.buffered() - HEADER_LEN).min(len);
        let from = self.start + HEADER_LEN;
        dst[..have].copy_from_slice(&self.buf[from..from + have]);
        if have == len {
            self.consume(HEADER_LEN + len);
            return Ok(Some(len));
        }
        // Everything buffered belongs to this frame; read the rest straight into `dst`.
        let header = self.header();
        self.clear();
        self.read_rest(src, header, &mut dst[..len], have)?;
        Ok(Some(len))
    }

    /// Receives one whole message from `src` into `dst` (cleared first); `None` at a clean end
    /// of stream.
    ///
    /// # Errors
    ///
    /// As [`recv`](Self::recv), except that no message is too large for it.
    pub fn recv_to_vec<R: Read + ?Sized>(
        &mut self,
        src: &mut R,
        dst: &mut Vec<u8>,
    ) -> io::Result<Option<usize>> {
        self.check_broken()?;
        dst.clear();
        let Some(len) = self.fill_header(src)? else {
            return Ok(None);
        };
        let have = (self.buffered() - HEADER_LEN).min(len);
        let from = self.start + HEADER_LEN;
        dst.reserve_exact(len);
        dst.extend_from_slice(&self.buf[from..from + have]);
        if have == len {
            self.consume(HEADER_LEN + len);
            return Ok(Some(len));
        }
        let header = self.header();
        self.clear();
        dst.resize(len, 0);
        let result = self.read_rest(src, header, dst, have);
        if result.is_err() {
            dst.clear();
        }
        result.map(|()| Some(len))
    }

    fn check_broken(&self) -> io::Result<()> {
        match self.broken {
            Some(len) => Err(invalid_data(format!(
                "peer announced a message of {len} bytes, above the maximum message size of {} \
                 bytes; the connection can no longer be read",
                self.max
            ))),
            None => Ok(()),
        }
    }

    fn header(&self) -> [u8; HEADER_LEN] {
        let mut header = [0; HEADER_LEN];
        header.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        header
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.clear();
        }
    }

    fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Makes room for `extra` more bytes after `end`, moving buffered bytes to the front.
    fn reserve(&mut self, extra: usize) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() < self.end + extra {
            self.buf.resize(self.end + extra, 0);
        }
    }

    /// Reads once into the buffer; `Ok(0)` at end of stream.
    fn fill_once<R: Read + ?Sized>(&mut self, src: &mut R, want: usize) -> io::Result<usize> {
        self.reserve(want.max(READ_AHEAD));
        loop {
            match src.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// With nothing buffered, reads header, payload and read-ahead in one vectored call, so
    /// a message that fits `dst` lands there without an extra copy.
    fn recv_speculative<R: Read + ?Sized>(
        &mut self,
        src: &mut R,
        dst: &mut [u8],
    ) -> io::Result<Speculative> {
        self.clear();
        if self.buf.len() < HEADER_LEN + READ_AHEAD {
            self.buf.resize(HEADER_LEN + READ_AHEAD, 0);
        }
        let n = {
            let (header, tail) = self.buf.split_at_mut(HEADER_LEN);
            loop {
                let mut bufs = [
                    IoSliceMut::new(header),
                    IoSliceMut::new(dst),
                    IoSliceMut::new(tail),
                ];
                match src.read_vectored(&mut bufs) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        };
        if n == 0 {
            return Ok(Speculative::Eof);
        }
        if n < HEADER_LEN {
            self.end = n;
            return Ok(Speculative::Continue);
        }
        let header = self.header();
        let len = self.decode(header)?;
        let body = n - HEADER_LEN;
        let in_dst = body.min(dst.len());
        let in_tail = body - in_dst;
        if len <= dst.len() && in_dst >= len {
            // The whole message is in `dst`; what follows it becomes the buffer.
            let extra = in_dst - len;
            let keep = extra + in_tail;
            if self.buf.len() < HEADER_LEN + keep {
                self.buf.resize(HEADER_LEN + keep, 0);
            }
            self.buf
                .copy_within(HEADER_LEN..HEADER_LEN + in_tail, extra);
            self.buf[..extra].copy_from_slice(&dst[len..in_dst]);
            self.end = keep;
            return Ok(Speculative::Done(len));
        }
        if len <= dst.len() {
            // Part of the message is in `dst` and nothing beyond it was read.
            self.read_rest(src, header, &mut dst[..len], in_dst)?;
            return Ok(Speculative::Done(len));
        }
        // Too large for `dst`: put the bytes back in stream order into the buffer.
        let total = HEADER_LEN + in_dst + in_tail;
        if self.buf.len() < total {
            self.buf.resize(total, 0);
        }
        self.buf
            .copy_within(HEADER_LEN..HEADER_LEN + in_tail, HEADER_LEN + in_dst);
        self.buf[HEADER_LEN..HEADER_LEN + in_dst].copy_from_slice(&dst[..in_dst]);
        self.end = total;
        Ok(Speculative::Continue)
    }

    fn decode(&mut self, header: [u8; HEADER_LEN]) -> io::Result<usize> {
        let result = decode_header(header, self.max);
        if result.is_err() {
            self.broken = Some(u32::from_be_bytes(header) as usize);
        }
        result
    }

    /// Buffers a whole header; `None` at a clean end of stream.
    fn fill_header<R: Read + ?Sized>(&mut self, src: &mut R) -> io::Result<Option<usize>> {
        while self.buffered() < HEADER_LEN {
            let have = self.buffered();
            if self.fill_once(src, HEADER_LEN - have)? == 0 {
                if have == 0 {
                    return Ok(None);
                }
                // Inside the length prefix: the message's length is not known yet.
                return Err(crate::error::closed_mid_message(have, None));
            }
        }
        self.decode(self.header()).map(Some)
    }

    /// Buffers the whole frame of a `len`-byte message whose header is buffered.
    fn fill_frame<R: Read + ?Sized>(&mut self, src: &mut R, len: usize) -> io::Result<()> {
        while self.buffered() < HEADER_LEN + len {
            let have = self.buffered() - HEADER_LEN;
            if self.fill_once(src, len - have)? == 0 {
                return Err(closed_inside(len, have));
            }
        }
        Ok(())
    }

    /// Reads the rest of a message into `dst[got..]`. On error, the header and the `got`
    /// bytes become the buffer again, so nothing is lost. The buffer must be empty.
    fn read_rest<R: Read + ?Sized>(
        &mut self,
        src: &mut R,
        header: [u8; HEADER_LEN],
        dst: &mut [u8],
        mut got: usize,
    ) -> io::Result<()> {
        while got < dst.len() {
            let err = match src.read(&mut dst[got..]) {
                Ok(0) => closed_inside(dst.len(), got),
                Ok(n) => {
                    got += n;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => e,
            };
            self.clear();
            self.reserve(HEADER_LEN + got);
            self.buf[..HEADER_LEN].copy_from_slice(&header);
            self.buf[HEADER_LEN..HEADER_LEN + got].copy_from_slice(&dst[..got]);
            self.end = HEADER_LEN + got;
            return Err(err);
        }
        self.clear();
        Ok(())
    }
}

enum Speculative {
    Eof,
    Done(usize),
    Continue,
}

fn closed_inside(len: usize, got: usize) -> io::Error {
    crate::error::closed_mid_message(got, Some(len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A stream that hands out its bytes in the given chunk sizes, failing with `WouldBlock`
    /// where a chunk size is zero, and ignoring all but the first buffer of a vectored read
    /// when `vectored` is false.
    struct Choppy {
        data: Vec<u8>,
        pos: usize,
        chunks: Vec<usize>,
        next: usize,
        vectored: bool,
    }

    impl Choppy {
        fn chunk(&mut self) -> io::Result<usize> {
            let size = if self.chunks.is_empty() {
                usize::MAX
            } else {
                self.chunks[self.next % self.chunks.len()]
            };
            self.next += 1;
            if size == 0 && self.pos < self.data.len() {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            Ok(size.max(1).min(self.data.len() - self.pos))
        }
    }

    impl Read for Choppy {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.chunk()?.min(buf.len());
            buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }

        fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
            if !self.vectored {
                let first = bufs.iter_mut().find(|b| !b.is_empty());
                return first.map_or(Ok(0), |b| self.read(b));
            }
            let mut left = self.chunk()?;
            let mut total = 0;
            for buf in bufs.iter_mut() {
                let n = left.min(buf.len());
                buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
                self.pos += n;
                total += n;
                left -= n;
            }
            Ok(total)
        }
    }

    fn frames(messages: &[Vec<u8>], max: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut writer = FrameWriter::new(max);
        for m in messages {
            writer.send(&mut wire, m).unwrap();
        }
        wire
    }

    /// Receives every message, retrying on `WouldBlock` and on a too-small buffer exactly as
    /// a caller would; returns what arrived and the final result.
    fn drain(
        reader: &mut FrameReader,
        src: &mut Choppy,
        buf_len: usize,
        use_vec: bool,
    ) -> (Vec<Vec<u8>>, io::Result<()>) {
        let mut got = Vec::new();
        let mut buf = vec![0u8; buf_len];
        let mut vec = Vec::new();
        let mut too_large = None;
        loop {
            let result = if use_vec {
                reader
                    .recv_to_vec(src, &mut vec)
                    .map(|r| r.map(|_| vec.clone()))
            } else if let Some(size) = too_large.take() {
                let mut big = vec![0u8; size];
                reader
                    .recv(src, &mut big)
                    .map(|r| r.map(|n| big[..n].to_vec()))
            } else {
                reader
                    .recv(src, &mut buf)
                    .map(|r| r.map(|n| buf[..n].to_vec()))
            };
            match result {
                Ok(Some(m)) => got.push(m),
                Ok(None) => return (got, Ok(())),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => match MessageTooLarge::from_io(&e) {
                    Some(report) => {
                        assert_eq!(report.buffer_len, buf_len);
                        too_large = Some(report.size);
                    }
                    None => return (got, Err(e)),
                },
            }
        }
    }

    fn message() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            3 => proptest::collection::vec(any::<u8>(), 0..64),
            1 => proptest::collection::vec(any::<u8>(), 0..40_000),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn every_message_arrives_whole_and_in_order(
            messages in proptest::collection::vec(message(), 0..20),
            chunks in proptest::collection::vec(0usize..70_000, 0..8),
            buf_len in 0usize..50_000,
            vectored: bool,
            use_vec: bool,
        ) {
            let wire = frames(&messages, 1 << 20);
            let mut src = Choppy { data: wire, pos: 0, chunks, next: 0, vectored };
            let mut reader = FrameReader::new(1 << 20);
            let (got, end) = drain(&mut reader, &mut src, buf_len, use_vec);
            prop_assert!(end.is_ok(), "{end:?}");
            prop_assert_eq!(got, messages);
            prop_assert_eq!(reader.buffered(), 0);
        }

        #[test]
        fn a_cut_stream_is_an_error_never_a_short_message(
            messages in proptest::collection::vec(message(), 1..8),
            cut_seed: usize,
            chunks in proptest::collection::vec(0usize..70_000, 0..8),
            buf_len in 0usize..50_000,
            vectored: bool,
            use_vec: bool,
        ) {
            let mut wire = frames(&messages, 1 << 20);
            let cut = cut_seed % wire.len();
            wire.truncate(cut);
            // The frames that fit completely before the cut.
            let mut whole = 0;
            let mut offset = 0;
            for m in &messages {
                if offset + HEADER_LEN + m.len() > cut {
                    break;
                }
                offset += HEADER_LEN + m.len();
                whole += 1;
            }
            let mut src = Choppy { data: wire, pos: 0, chunks, next: 0, vectored };
            let mut reader = FrameReader::new(1 << 20);
            let (got, end) = drain(&mut reader, &mut src, buf_len, use_vec);
            prop_assert_eq!(&got[..], &messages[..whole]);
            if offset == cut {
                prop_assert!(end.is_ok());
            } else {
                let err = end.unwrap_err();
                prop_assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
            }
        }

        #[test]
        fn header_round_trips(len in 0usize..=u32::MAX as usize) {
            let header = encode_header(len, usize::MAX).unwrap();
            prop_assert_eq!(decode_header(header, usize::MAX).unwrap(), len);
        }
    }

    #[test]
    fn hostile_header_is_refused_before_allocating() {
        let wire = u32::MAX.to_be_bytes();
        let mut reader = FrameReader::new(1024);
        let mut buf = [0u8; 16];
        let err = reader.recv(&mut &wire[..], &mut buf).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("4294967295 bytes"), "{err}");
        assert!(reader.buf.capacity() < 1 << 20);
        // The stream stays refused.
        let again = reader.recv(&mut &[][..], &mut buf).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::InvalidData);
        let mut vec = Vec::new();
        assert!(
            FrameReader::new(1024)
                .recv_to_vec(&mut &wire[..], &mut vec)
                .is_err()
        );
        assert!(vec.capacity() < 1 << 20);
    }

    #[test]
    fn oversized_send_writes_nothing_and_the_next_goes_through() {
        let mut wire = Vec::new();
        let mut writer = FrameWriter::new(8);
        let err = writer.send(&mut wire, &[0; 9]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("9 bytes"), "{err}");
        assert!(wire.is_empty());
        writer.send(&mut wire, b"next").unwrap();
        assert_eq!(wire, b"\0\0\0\x04next");
    }

    #[test]
    fn a_partial_write_breaks_the_writer() {
        struct Half(usize);
        impl Write for Half {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::ErrorKind::TimedOut.into());
                }
                let n = buf.len().min(self.0);
                self.0 -= n;
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut writer = FrameWriter::new(100);
        let err = writer.send(&mut Half(6), b"hello world").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        let err = writer.send(&mut Half(100), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        // A timeout before any byte went out leaves the writer usable.
        let mut fresh = FrameWriter::new(100);
        assert!(fresh.send(&mut Half(0), b"x").is_err());
        fresh.send(&mut Half(100), b"x").unwrap();
    }

    #[test]
    fn a_full_non_blocking_stream_keeps_the_tail_and_takes_messages_whole() {
        /// Takes `room` bytes, then says WouldBlock until given more room.
        struct Pipe {
            room: usize,
            got: Vec<u8>,
        }
        impl Write for Pipe {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.room == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = buf.len().min(self.room);
                self.room -= n;
                self.got.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut pipe = Pipe {
            room: 6,
            got: Vec::new(),
        };
        let mut writer = FrameWriter::new(100);
        // Part of the first frame fits: the message is taken, its tail kept.
        writer.send(&mut pipe, b"hello world").unwrap();
        assert_eq!(writer.pending(), 4 + 11 - 6);
        // No room: the next message is refused whole, nothing of it written.
        let err = writer.send(&mut pipe, b"second").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(
            writer.flush(&mut pipe).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        pipe.room = 1000;
        writer.send(&mut pipe, b"second").unwrap();
        assert_eq!(writer.pending(), 0);
        let mut reader = FrameReader::new(100);
        let mut src = &pipe.got[..];
        let mut buf = [0u8; 100];
        assert_eq!(reader.recv(&mut src, &mut buf).unwrap(), Some(11));
        assert_eq!(&buf[..11], b"hello world");
        assert_eq!(reader.recv(&mut src, &mut buf).unwrap(), Some(6));
        assert_eq!(&buf[..6], b"second");
    }
}
