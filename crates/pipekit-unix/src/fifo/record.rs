//! The records a FIFO client writes into a server's request FIFO (magic, mode, token), the
//! names of the FIFO pair a token stands for, and the protocol's constants.

use std::time::Duration;

use pipekit_core::Mode;

/// How long either side of a handshake waits for the other before giving up on that client.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The FIFO a server with an instance limit keeps in its directory while every place is
/// taken; a client that finds it is told the server is busy.
pub(crate) const BUSY: &str = "busy";

/// The request FIFO inside a server directory.
pub(crate) const REQUESTS: &str = "requests";

/// The length of a token.
pub(crate) const TOKEN_LEN: usize = 32;

/// The length of a request record, newline included.
pub(crate) const RECORD_LEN: usize = 5 + 2 + TOKEN_LEN + 1;

const MAGIC: &[u8] = b"PKF1 ";

fn mode_byte(mode: Mode) -> u8 {
    match mode {
        Mode::Messages => b'M',
        _ => b'B',
    }
}

/// The request record announcing `token` in `mode`.
pub(crate) fn record(mode: Mode, token: &str) -> Vec<u8> {
    let mut rec = Vec::with_capacity(RECORD_LEN);
    rec.extend_from_slice(MAGIC);
    rec.push(mode_byte(mode));
    rec.push(b' ');
    rec.extend_from_slice(token.as_bytes());
    rec.push(b'\n');
    rec
}

/// Parses one line (without its newline): the mode and token of the last record in it.
pub(crate) fn parse_record(line: &[u8]) -> Option<(Mode, String)> {
    let start = line.windows(MAGIC.len()).rposition(|w| w == MAGIC)?;
    let rest = &line[start + MAGIC.len()..];
    let [mode, b' ', token @ ..] = rest else {
        return None;
    };
    let mode = match mode {
        b'B' => Mode::Bytes,
        b'M' => Mode::Messages,
        _ => return None,
    };
    if !valid_token(token) {
        return None;
    }
    Some((mode, String::from_utf8(token.to_vec()).ok()?))
}

/// A token is exactly [`TOKEN_LEN`] ASCII letters and digits: never a path.
pub(crate) fn valid_token(token: &[u8]) -> bool {
    token.len() == TOKEN_LEN && token.iter().all(u8::is_ascii_alphanumeric)
}

/// A fresh random token, from the kernel's random source.
pub(crate) fn new_token() -> std::io::Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut random = [0u8; TOKEN_LEN];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    Ok(random
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// The names of the two FIFOs of `token`: (client to server, server to client).
pub(crate) fn pair_names(token: &str) -> (String, String) {
    (format!("{token}.c2s"), format!("{token}.s2c"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_junk_is_ignored() {
        let token = new_token().unwrap();
        let rec = record(Mode::Messages, &token);
        assert_eq!(rec.len(), RECORD_LEN);
        assert!(rec.len() <= crate::sys::fifo::PIPE_BUF);
        let line = &rec[..rec.len() - 1];
        assert_eq!(parse_record(line), Some((Mode::Messages, token.clone())));
        let mut junk = b"garbage PKF1 X".to_vec();
        junk.extend_from_slice(line);
        assert_eq!(parse_record(&junk), Some((Mode::Messages, token)));
    }

    #[test]
    fn hostile_records_are_refused() {
        let dots = format!("PKF1 B ../{}", "a".repeat(TOKEN_LEN - 3));
        let slash = format!("PKF1 B a/{}", "b".repeat(TOKEN_LEN - 2));
        let short = "PKF1 B abc".to_string();
        let long = format!("PKF1 B {}", "a".repeat(TOKEN_LEN + 1));
        let mode = format!("PKF1 X {}", "a".repeat(TOKEN_LEN));
        for bad in [dots, slash, short, long, mode, String::from("garbage")] {
            assert_eq!(parse_record(bad.as_bytes()), None, "{bad}");
        }
    }
}
