//! Message queues (Linux): POSIX (`mq_send`/`mq_receive`) and System V
//! (`msgsnd`/`msgrcv`), one queue each way.
//!
//! Both have a system limit on the size of one message (`/proc/sys/fs/mqueue/msgsize_max`,
//! `/proc/sys/kernel/msgmax`, 8192 by default). A queue is made with the chunk size where the
//! system lets this process; where it does not, chunks travel as several messages of the
//! largest size allowed, and the result says so.

use std::io;

use nix::mqueue::{MQ_OFlag, MqAttr, MqdT, mq_getattr, mq_open, mq_unlink};
use nix::sys::stat::Mode;

use crate::cleanup;
use crate::transport::{Conn, Listen, Transport};
use crate::transports::pipekit::wrong_length;
use crate::transports::wrap::{Chunked, Single};

fn proc_limit(path: &str) -> Option<usize> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn msgsize_max() -> usize {
    proc_limit("/proc/sys/fs/mqueue/msgsize_max").unwrap_or(8192)
}

/// Whether this process may pass the per-queue limits (it has `CAP_SYS_RESOURCE`; being
/// root is the common case).
fn privileged() -> bool {
    nix::unistd::geteuid().is_root()
}

/// How a `size`-byte chunk travels when the system's limit (`max`, read from `source`) is
/// lower: "as N messages of up to MAX B (SOURCE)".
fn chunked_label(size: usize, max: usize, source: &str) -> Option<String> {
    (size > max).then(|| {
        format!(
            "as {} messages of up to {max} B ({source})",
            size.div_ceil(max)
        )
    })
}

/// A connection whose messages are `piece` bytes at most: as is, or chunked.
fn chunked<C: Conn + 'static>(conn: C, piece: usize, size: usize) -> Box<dyn Conn> {
    if piece < size {
        Box::new(Chunked {
            inner: conn,
            max: piece,
        })
    } else {
        Box::new(conn)
    }
}

/// POSIX message queues.
pub(crate) struct PosixMq;

impl Transport for PosixMq {
    fn name(&self) -> &'static str {
        "posix-mq"
    }

    fn about(&self) -> &'static str {
        "POSIX message queues, mq_send/mq_receive, one queue each way"
    }

    fn label(&self, size: usize) -> Option<String> {
        chunked_label(size, msgsize_max(), "/proc/sys/fs/mqueue/msgsize_max")
            .filter(|_| !privileged())
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        format!("/{unique}")
    }

    fn listen(&self, addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let (c2s, s2c) = (format!("{addr}-c2s"), format!("{addr}-s2c"));
        let names = [c2s.clone(), s2c.clone()];
        let guard = cleanup::on_exit(move || {
            for name in &names {
                let _ = mq_unlink(name.as_str());
            }
        });
        let (rx, tx, attr) = open_pair(&c2s, &s2c, size)?;
        let piece = attr.msgsize() as usize;
        let conn = MqConn {
            rx,
            tx,
            scratch: vec![0u8; piece],
            settings: format!("mq_maxmsg {}, mq_msgsize {piece}", attr.maxmsg()),
            unlink: Some((vec![c2s, s2c], guard)),
        };
        Ok(Single::boxed(chunked(conn, piece, size), addr))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let mode = Mode::empty();
        let tx = Queue(Some(mq_open(
            format!("{addr}-c2s").as_str(),
            MQ_OFlag::O_RDWR,
            mode,
            None,
        )?));
        let rx = Queue(Some(mq_open(
            format!("{addr}-s2c").as_str(),
            MQ_OFlag::O_RDWR,
            mode,
            None,
        )?));
        let attr = mq_getattr(rx.get())?;
        let piece = attr.msgsize() as usize;
        let conn = MqConn {
            rx,
            tx,
            scratch: vec![0u8; piece],
            settings: format!("mq_maxmsg {}, mq_msgsize {piece}", attr.maxmsg()),
            unlink: None,
        };
        Ok(chunked(conn, piece, size))
    }
}

/// Creates both queues with the largest message size (up to `size`) and depth (up to 64) the
/// system allows this process: the message size is capped by `msgsize_max` for unprivileged
/// processes, the depth by `msg_max`, and the two queues' bytes by `RLIMIT_MSGQUEUE`.
fn open_pair(c2s: &str, s2c: &str, size: usize) -> io::Result<(Queue, Queue, MqAttr)> {
    // The soft limit on queue bytes may be raised to the hard one by anybody.
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_MSGQUEUE) {
        let _ = setrlimit(Resource::RLIMIT_MSGQUEUE, hard, hard);
    }
    let flags = MQ_OFlag::O_CREAT | MQ_OFlag::O_EXCL | MQ_OFlag::O_RDWR;
    let mode = Mode::from_bits_truncate(0o600);
    let size = size.max(8);
    let mut sizes = vec![size];
    if msgsize_max() < size {
        sizes.push(msgsize_max().max(8));
    }
    let depth_max = proc_limit("/proc/sys/fs/mqueue/msg_max").unwrap_or(10);
    let mut last = io::Error::other("no queue attributes to try");
    for msgsize in sizes {
        let mut depth = if privileged() { 64 } else { depth_max.min(64) };
        while depth >= 1 {
            let attr = MqAttr::new(0, depth as _, msgsize as _, 0);
            match mq_open(c2s, flags, mode, Some(&attr)) {
                Ok(rx) => match mq_open(s2c, flags, mode, Some(&attr)) {
                    Ok(tx) => return Ok((Queue(Some(rx)), Queue(Some(tx)), attr)),
                    Err(e) => {
                        let _ = nix::mqueue::mq_close(rx);
                        let _ = mq_unlink(c2s);
                        last = e.into();
                    }
                },
                Err(e) => last = e.into(),
            }
            depth /= 2;
        }
    }
    Err(io::Error::new(
        last.kind(),
        format!("cannot create POSIX message queues {c2s} and {s2c}: {last}"),
    ))
}

/// An open queue descriptor, closed on drop.
struct Queue(Option<MqdT>);

impl Queue {
    fn get(&self) -> &MqdT {
        self.0.as_ref().expect("open until dropped")
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if let Some(q) = self.0.take() {
            let _ = nix::mqueue::mq_close(q);
        }
    }
}

struct MqConn {
    rx: Queue,
    tx: Queue,
    scratch: Vec<u8>,
    settings: String,
    /// The listening end removes the queues.
    unlink: Option<(Vec<String>, cleanup::Guard)>,
}

impl Conn for MqConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        Ok(nix::mqueue::mq_send(self.tx.get(), buf, 0)?)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let mut prio = 0;
        let n = nix::mqueue::mq_receive(self.rx.get(), &mut self.scratch, &mut prio)?;
        if n != buf.len() {
            return Err(wrong_length(buf.len(), n));
        }
        buf.copy_from_slice(&self.scratch[..n]);
        Ok(())
    }

    fn settings(&self) -> String {
        self.settings.clone()
    }
}

impl Drop for MqConn {
    fn drop(&mut self) {
        if let Some((names, _)) = &self.unlink {
            for name in names {
                let _ = mq_unlink(name.as_str());
            }
        }
    }
}

/// System V message queues, made private (`IPC_PRIVATE`, mode 0600); the peer learns their
/// ids from the listener's address.
pub(crate) struct SysvMq;

fn msgmax() -> usize {
    proc_limit("/proc/sys/kernel/msgmax").unwrap_or(8192)
}

impl Transport for SysvMq {
    fn name(&self) -> &'static str {
        "sysv-mq"
    }

    fn about(&self) -> &'static str {
        "System V message queues, msgsnd/msgrcv, one queue each way"
    }

    fn label(&self, size: usize) -> Option<String> {
        chunked_label(size, msgmax(), "/proc/sys/kernel/msgmax")
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, _unique: &str) -> String {
        // The kernel picks the ids.
        String::from("-")
    }

    fn listen(&self, _addr: &str, size: usize) -> io::Result<Box<dyn Listen>> {
        let piece = size.max(8).min(msgmax());
        let rx = sysv::Queue::create(piece)?;
        let tx = sysv::Queue::create(piece)?;
        let addr = format!("{}:{}", rx.id, tx.id);
        let ids = [rx.id, tx.id];
        let guard = cleanup::on_exit(move || ids.iter().for_each(|&id| sysv::remove(id)));
        let settings = format!("msgmax {piece}, msg_qbytes {}", rx.qbytes().unwrap_or(0));
        let conn = SysvConn {
            rx,
            tx,
            scratch: Vec::new(),
            settings,
            owner: Some(guard),
        };
        Ok(Single::boxed(chunked(conn, piece, size), &addr))
    }

    fn connect(&self, addr: &str, size: usize) -> io::Result<Box<dyn Conn>> {
        let bad = || {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad System V queue address {addr:?}"),
            )
        };
        let (a, b) = addr.split_once(':').ok_or_else(bad)?;
        let piece = size.max(8).min(msgmax());
        let (tx, rx) = (
            sysv::Queue::open(a.parse().map_err(|_| bad())?),
            sysv::Queue::open(b.parse().map_err(|_| bad())?),
        );
        let settings = format!("msgmax {piece}, msg_qbytes {}", rx.qbytes().unwrap_or(0));
        let conn = SysvConn {
            rx,
            tx,
            scratch: Vec::new(),
            settings,
            owner: None,
        };
        Ok(chunked(conn, piece, size))
    }
}

struct SysvConn {
    rx: sysv::Queue,
    tx: sysv::Queue,
    /// The message type and text, as `msgsnd` and `msgrcv` take them.
    scratch: Vec<u8>,
    settings: String,
    /// The listening end removes the queues.
    owner: Option<cleanup::Guard>,
}

impl Conn for SysvConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tx.send(buf, &mut self.scratch)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let n = self.rx.recv(buf, &mut self.scratch)?;
        if n != buf.len() {
            return Err(wrong_length(buf.len(), n));
        }
        Ok(())
    }

    fn settings(&self) -> String {
        self.settings.clone()
    }
}

impl Drop for SysvConn {
    fn drop(&mut self) {
        if self.owner.is_some() {
            sysv::remove(self.rx.id);
            sysv::remove(self.tx.id);
        }
    }
}

/// The System V calls (`libc`; no well-kept crate wraps them).
#[allow(unsafe_code)]
mod sysv {
    use std::io;

    /// `msgsnd`/`msgrcv`'s buffer: a `long` type, then the text.
    const HEADER: usize = std::mem::size_of::<libc::c_long>();

    /// A queue, by id.
    pub(super) struct Queue {
        pub(super) id: i32,
    }

    impl Queue {
        /// A new private queue (mode 0600) that holds at least a few `piece`-byte messages,
        /// as far as this process may raise its byte limit.
        pub(super) fn create(piece: usize) -> io::Result<Queue> {
            // SAFETY: plain system call, no pointers.
            let id = unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) };
            if id < 0 {
                return Err(io::Error::last_os_error());
            }
            let queue = Queue { id };
            // Raising msg_qbytes above MSGMNB needs CAP_SYS_RESOURCE; otherwise it stays.
            let want = (piece * 16).max(1 << 20);
            let _ = queue.set_qbytes(want);
            Ok(queue)
        }

        pub(super) fn open(id: i32) -> Queue {
            Queue { id }
        }

        fn stat(&self) -> io::Result<libc::msqid_ds> {
            // SAFETY: an all-zero msqid_ds is a valid value of this plain C struct.
            let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
            // SAFETY: `ds` is a valid, writable msqid_ds for IPC_STAT to fill.
            if unsafe { libc::msgctl(self.id, libc::IPC_STAT, &mut ds) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(ds)
        }

        pub(super) fn qbytes(&self) -> io::Result<libc::msglen_t> {
            Ok(self.stat()?.msg_qbytes)
        }

        fn set_qbytes(&self, bytes: usize) -> io::Result<()> {
            let mut ds = self.stat()?;
            ds.msg_qbytes = bytes as _;
            // SAFETY: `ds` is the queue's own msqid_ds with one field changed.
            if unsafe { libc::msgctl(self.id, libc::IPC_SET, &mut ds) } < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        }

        /// Sends `buf` (at most the scratch's text size) as one message of type 1.
        pub(super) fn send(&self, buf: &[u8], scratch: &mut Vec<u8>) -> io::Result<()> {
            if scratch.len() < HEADER + buf.len() {
                scratch.resize(HEADER + buf.len(), 0);
            }
            scratch[..HEADER].copy_from_slice(&(1 as libc::c_long).to_ne_bytes());
            scratch[HEADER..HEADER + buf.len()].copy_from_slice(buf);
            loop {
                // SAFETY: `scratch` holds a `long` type and `buf.len()` bytes of text.
                let rc = unsafe { libc::msgsnd(self.id, scratch.as_ptr().cast(), buf.len(), 0) };
                if rc == 0 {
                    return Ok(());
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }

        /// Receives one message into `buf`; its length.
        pub(super) fn recv(&self, buf: &mut [u8], scratch: &mut Vec<u8>) -> io::Result<usize> {
            if scratch.len() < HEADER + buf.len() {
                scratch.resize(HEADER + buf.len(), 0);
            }
            loop {
                // SAFETY: `scratch` has room for a `long` type and `buf.len()` bytes of text.
                let n =
                    unsafe { libc::msgrcv(self.id, scratch.as_mut_ptr().cast(), buf.len(), 0, 0) };
                if n >= 0 {
                    let n = n as usize;
                    buf[..n].copy_from_slice(&scratch[HEADER..HEADER + n]);
                    return Ok(n);
                }
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }

    /// Removes queue `id` (messages in it are lost; nobody reads them any more).
    pub(super) fn remove(id: i32) {
        // SAFETY: IPC_RMID takes no buffer.
        unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) };
    }
}
