//! The messaging libraries people reach for, over their `ipc://` transport (Linux; the
//! system libraries libzmq and libnng): ZeroMQ and nng, each a PAIR socket.

use std::io;

use crate::cleanup;
use crate::transport::{Conn, Listen, Transport};
use crate::transports::pipekit::wrong_length;
use crate::transports::wrap::Single;

fn ipc_path(unique: &str) -> String {
    std::env::temp_dir()
        .join(unique)
        .to_string_lossy()
        .into_owned()
}

/// Removes the socket file a library's listener made, now and if the run is stopped.
struct SocketFile {
    path: String,
    _guard: cleanup::Guard,
}

impl SocketFile {
    fn new(path: &str) -> SocketFile {
        let removed = path.to_string();
        let guard = cleanup::on_exit(move || {
            let _ = std::fs::remove_file(&removed);
        });
        SocketFile {
            path: path.to_string(),
            _guard: guard,
        }
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// ZeroMQ (libzmq through the `zmq` crate): a PAIR socket over `ipc://`.
pub(crate) struct Zmq;

impl Transport for Zmq {
    fn name(&self) -> &'static str {
        "zeromq-ipc"
    }

    fn about(&self) -> &'static str {
        "ZeroMQ PAIR sockets over ipc:// (libzmq via the zmq crate), zmq_send/zmq_recv"
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        ipc_path(unique)
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let socket = zmq::Context::new().socket(zmq::PAIR).map_err(zmq_error)?;
        let file = SocketFile::new(addr);
        socket.bind(&format!("ipc://{addr}")).map_err(zmq_error)?;
        let conn = ZmqConn {
            socket,
            _file: Some(file),
        };
        Ok(Single::boxed(Box::new(conn), addr))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let socket = zmq::Context::new().socket(zmq::PAIR).map_err(zmq_error)?;
        socket
            .connect(&format!("ipc://{addr}"))
            .map_err(zmq_error)?;
        Ok(Box::new(ZmqConn {
            socket,
            _file: None,
        }))
    }
}

fn zmq_error(e: zmq::Error) -> io::Error {
    io::Error::from_raw_os_error(e.to_raw())
}

struct ZmqConn {
    socket: zmq::Socket,
    _file: Option<SocketFile>,
}

impl Conn for ZmqConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.socket.send(buf, 0).map_err(zmq_error)
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        // The whole message's length, even when it did not fit.
        let n = self.socket.recv_into(buf, 0).map_err(zmq_error)?;
        if n != buf.len() {
            return Err(wrong_length(buf.len(), n));
        }
        Ok(())
    }

    fn settings(&self) -> String {
        let hwm = |r: zmq::Result<i32>| r.map_or_else(|_| String::from("?"), |v| v.to_string());
        format!(
            "ZMQ_SNDHWM {}, ZMQ_RCVHWM {}",
            hwm(self.socket.get_sndhwm()),
            hwm(self.socket.get_rcvhwm())
        )
    }
}

/// nng (libnng through the `nng` crate): a PAIR (v0) socket over `ipc://`.
pub(crate) struct Nng;

impl Transport for Nng {
    fn name(&self) -> &'static str {
        "nng-ipc"
    }

    fn about(&self) -> &'static str {
        "nng PAIR sockets over ipc:// (libnng via the nng crate), a message per send/recv"
    }

    fn reconnects(&self) -> bool {
        false
    }

    fn addr(&self, unique: &str) -> String {
        ipc_path(unique)
    }

    fn listen(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Listen>> {
        let socket = nng::Socket::new(nng::Protocol::Pair0).map_err(nng_error)?;
        let file = SocketFile::new(addr);
        socket.listen(&format!("ipc://{addr}")).map_err(nng_error)?;
        let conn = NngConn {
            socket,
            _file: Some(file),
        };
        Ok(Single::boxed(Box::new(conn), addr))
    }

    fn connect(&self, addr: &str, _size: usize) -> io::Result<Box<dyn Conn>> {
        let socket = nng::Socket::new(nng::Protocol::Pair0).map_err(nng_error)?;
        socket.dial(&format!("ipc://{addr}")).map_err(nng_error)?;
        Ok(Box::new(NngConn {
            socket,
            _file: None,
        }))
    }
}

fn nng_error(e: nng::Error) -> io::Error {
    io::Error::other(format!("nng: {e}"))
}

struct NngConn {
    socket: nng::Socket,
    _file: Option<SocketFile>,
}

impl Conn for NngConn {
    fn send(&mut self, buf: &[u8]) -> io::Result<()> {
        self.socket
            .send(nng::Message::from(buf))
            .map_err(|(_, e)| nng_error(e))
    }

    fn recv_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        let msg = self.socket.recv().map_err(nng_error)?;
        if msg.len() != buf.len() {
            return Err(wrong_length(buf.len(), msg.len()));
        }
        buf.copy_from_slice(&msg);
        Ok(())
    }
}
