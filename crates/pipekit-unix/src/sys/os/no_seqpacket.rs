//! `recv_packet` for the OSes where pipekit frames messages on `SOCK_STREAM` instead.

use std::io;
use std::os::fd::BorrowedFd;

use super::super::Packet;

pub(crate) fn recv_packet(
    _fd: BorrowedFd<'_>,
    _buf: &mut [u8],
    _peek: bool,
    _cmsg: &mut Vec<u8>,
) -> io::Result<Packet> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "pipekit does not use SOCK_SEQPACKET on this OS",
    ))
}
