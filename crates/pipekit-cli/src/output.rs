//! `--format`: how `listen`, `connect` and `send --wait-reply` print what they receive.

use std::io::{self, Write};

use clap::ValueEnum;
use serde_json::json;

/// How a received message (or, in byte mode, a received chunk) is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One message per line, decoded as UTF-8 (invalid bytes become U+FFFD).
    Text,
    /// The bytes as they came, nothing added.
    Raw,
    /// A hexdump per message: offset, 16 bytes in hex, the printable ones as text; a blank
    /// line after each message.
    Hex,
    /// One JSON object per line: `len`, `peer` (pid/uid/gid where known, `addr` over tcp://
    /// and tls://) and the data as `utf8` when it is valid UTF-8, else as `hex`.
    Json,
}

/// Who sent a message, for `--format json`.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Peer {
    pub pid: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub addr: Option<std::net::SocketAddr>,
}

impl Peer {
    /// Who is on the other end of `stream`, as far as it can tell.
    pub(crate) fn of(stream: &pipekit::Stream) -> Peer {
        let c = stream.peer_credentials().unwrap_or_default();
        Peer {
            pid: c.pid,
            uid: c.uid,
            gid: c.gid,
            addr: stream.peer_addr().ok(),
        }
    }
}

impl std::fmt::Display for Peer {
    /// `pid 12, uid 1000`, with what is known.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = [("pid", self.pid), ("uid", self.uid), ("gid", self.gid)]
            .iter()
            .filter_map(|(k, v)| v.map(|v| format!("{k} {v}")))
            .collect();
        if let Some(addr) = self.addr {
            parts.push(format!("address {addr}"));
        }
        if parts.is_empty() {
            f.write_str("unknown peer")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

/// Writes `msg` to `out` in `format` and flushes.
pub(crate) fn write(
    out: &mut impl Write,
    format: Format,
    msg: &[u8],
    peer: Peer,
) -> io::Result<()> {
    match format {
        Format::Text => writeln!(out, "{}", String::from_utf8_lossy(msg))?,
        Format::Raw => out.write_all(msg)?,
        Format::Hex => {
            for (i, row) in msg.chunks(16).enumerate() {
                let hex: Vec<String> = row.iter().map(|b| format!("{b:02x}")).collect();
                let text: String = row
                    .iter()
                    .map(|&b| {
                        if b.is_ascii_graphic() || b == b' ' {
                            b as char
                        } else {
                            '.'
                        }
                    })
                    .collect();
                writeln!(out, "{:08x}  {:<47}  |{text}|", i * 16, hex.join(" "))?;
            }
            writeln!(out)?;
        }
        Format::Json => {
            let mut doc = json!({
                "len": msg.len(),
                "peer": { "pid": peer.pid, "uid": peer.uid, "gid": peer.gid },
            });
            if let Some(addr) = peer.addr {
                doc["peer"]["addr"] = json!(addr.to_string());
            }
            match std::str::from_utf8(msg) {
                Ok(text) => doc["utf8"] = json!(text),
                Err(_) => {
                    doc["hex"] = json!(msg.iter().map(|b| format!("{b:02x}")).collect::<String>())
                }
            }
            writeln!(out, "{doc}")?;
        }
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(format: Format, msg: &[u8]) -> String {
        let mut out = Vec::new();
        write(
            &mut out,
            format,
            msg,
            Peer {
                pid: Some(7),
                uid: None,
                gid: None,
                addr: None,
            },
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn each_format_shows_the_message() {
        assert_eq!(shown(Format::Text, b"hi"), "hi\n");
        assert_eq!(shown(Format::Raw, b"hi"), "hi");
        assert_eq!(
            shown(Format::Hex, b"hello, world\x00\x01\x02\x03\x04"),
            "00000000  68 65 6c 6c 6f 2c 20 77 6f 72 6c 64 00 01 02 03  |hello, world....|\n\
             00000010  04                                               |.|\n\n"
        );
        assert_eq!(
            shown(Format::Json, b"hi"),
            "{\"len\":2,\"peer\":{\"gid\":null,\"pid\":7,\"uid\":null},\"utf8\":\"hi\"}\n"
        );
        assert_eq!(
            shown(Format::Json, b"\xff\x00"),
            "{\"hex\":\"ff00\",\"len\":2,\"peer\":{\"gid\":null,\"pid\":7,\"uid\":null}}\n"
        );
    }
}
