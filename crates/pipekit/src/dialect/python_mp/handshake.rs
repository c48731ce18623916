//! The `authkey` handshake of `multiprocessing.connection`: challenges, HMAC answers, the
//! digest names CPython uses, and the legacy HMAC-MD5 form.

use std::io;

use hmac::{Hmac, Mac};

const CHALLENGE: &[u8] = b"#CHALLENGE#";
const WELCOME: &[u8] = b"#WELCOME#";
const FAILURE: &[u8] = b"#FAILURE#";
/// Random bytes in a modern challenge.
const MESSAGE_LENGTH: usize = 40;
/// A legacy challenge's length, and a legacy (raw HMAC-MD5) answer's.
const LEGACY_LENGTHS: [usize; 2] = [20, 16];
/// Handshake messages longer than this are refused, as CPython does.
const HANDSHAKE_MAX: usize = 256;

/// Where the handshake's messages travel: the connection, one message per call.
pub(super) trait Channel {
    /// Sends one message.
    fn send(&mut self, message: &[u8]) -> io::Result<()>;

    /// Receives one message of at most `max` bytes into `buf` (`None` at the end;
    /// `InvalidData` for a longer one).
    fn recv_at_most(&mut self, buf: &mut Vec<u8>, max: usize) -> io::Result<Option<usize>>;
}

fn auth_error(message: impl Into<String>) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("authentication failed: {}", message.into()),
    )
}

fn recv_handshake(conn: &mut impl Channel) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    match conn.recv_at_most(&mut buf, HANDSHAKE_MAX) {
        Ok(Some(_)) => Ok(buf),
        Ok(None) => Err(auth_error(
            "the peer closed the connection during the handshake",
        )),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            Err(auth_error(format!("handshake message too long ({e})")))
        }
        Err(e) => Err(e),
    }
}

/// Challenges the peer to prove it knows `key` (the modern `{sha256}` form).
pub(super) fn deliver_challenge(conn: &mut impl Channel, key: &[u8]) -> io::Result<()> {
    let mut random = [0u8; MESSAGE_LENGTH];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    let mut message = b"{sha256}".to_vec();
    message.extend_from_slice(&random);
    conn.send(&[CHALLENGE, &message].concat())?;
    let response = recv_handshake(conn)?;
    match verify(key, &message, &response) {
        Ok(()) => conn.send(WELCOME),
        Err(e) => {
            let _ = conn.send(FAILURE);
            Err(e)
        }
    }
}

/// Answers the peer's challenge with `key`.
pub(super) fn answer_challenge(conn: &mut impl Channel, key: &[u8]) -> io::Result<()> {
    let message = recv_handshake(conn)?;
    let Some(challenge) = message.strip_prefix(CHALLENGE) else {
        return Err(auth_error(
            "protocol error: expected a challenge (does the peer use an authkey?)",
        ));
    };
    if challenge.len() < LEGACY_LENGTHS[0] {
        return Err(auth_error(format!(
            "challenge too short: {} bytes",
            challenge.len()
        )));
    }
    conn.send(&response(key, challenge)?)?;
    if recv_handshake(conn)? != WELCOME {
        return Err(auth_error("the peer rejected our digest (wrong authkey?)"));
    }
    Ok(())
}

/// A digest CPython names in a `{digest}` prefix, and that pipekit computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Digest {
    Md5,
    Sha256,
    Sha384,
}

impl Digest {
    fn name(self) -> &'static str {
        match self {
            Digest::Md5 => "md5",
            Digest::Sha256 => "sha256",
            Digest::Sha384 => "sha384",
        }
    }

    fn mac(self, key: &[u8], message: &[u8]) -> Vec<u8> {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> Vec<u8> {
            keyed::<M>(key, message).finalize().into_bytes().to_vec()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message),
        }
    }

    /// Whether `tag` is the MAC of `message` under `key`, compared in constant time
    /// (`Mac::verify_slice`).
    fn verifies(self, key: &[u8], message: &[u8], tag: &[u8]) -> bool {
        fn run<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8], tag: &[u8]) -> bool {
            keyed::<M>(key, message).verify_slice(tag).is_ok()
        }
        match self {
            Digest::Md5 => run::<Hmac<md5::Md5>>(key, message, tag),
            Digest::Sha256 => run::<Hmac<sha2::Sha256>>(key, message, tag),
            Digest::Sha384 => run::<Hmac<sha2::Sha384>>(key, message, tag),
        }
    }
}

/// An HMAC keyed with `key` over `message`.
fn keyed<M: Mac + hmac::digest::KeyInit>(key: &[u8], message: &[u8]) -> M {
    let mut mac = <M as Mac>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(message);
    mac
}

/// The digest a challenge or response names, and its payload; `None` for the legacy
/// form (a 20-byte challenge or a 16-byte raw HMAC-MD5).
fn digest_and_payload(message: &[u8]) -> io::Result<(Option<Digest>, &[u8])> {
    if LEGACY_LENGTHS.contains(&message.len()) {
        return Ok((None, message));
    }
    if let Some(rest) = message.strip_prefix(b"{")
        && let Some(end) = rest.iter().take(9).position(|&b| b == b'}')
    {
        let digest = match &rest[..end] {
            b"md5" => Some(Digest::Md5),
            b"sha256" => Some(Digest::Sha256),
            b"sha384" => Some(Digest::Sha384),
            _ => None,
        };
        if let Some(digest) = digest {
            return Ok((Some(digest), &rest[end + 1..]));
        }
        return Err(auth_error(format!(
            "unsupported digest {:?}",
            String::from_utf8_lossy(&rest[..end])
        )));
    }
    Err(auth_error(
        "unsupported message length or missing digest prefix",
    ))
}

/// The answer to `challenge` (CPython's `_create_response`).
fn response(key: &[u8], challenge: &[u8]) -> io::Result<Vec<u8>> {
    match digest_and_payload(challenge)?.0 {
        None => Ok(Digest::Md5.mac(key, challenge)),
        Some(digest) => {
            let mut out = format!("{{{}}}", digest.name()).into_bytes();
            out.extend_from_slice(&digest.mac(key, challenge));
            Ok(out)
        }
    }
}

/// Checks the answer to `message` (CPython's `_verify_challenge`), in constant time.
fn verify(key: &[u8], message: &[u8], answer: &[u8]) -> io::Result<()> {
    let (digest, mac) = digest_and_payload(answer)?;
    if digest.unwrap_or(Digest::Md5).verifies(key, message, mac) {
        Ok(())
    } else {
        Err(auth_error("the digest received was wrong (wrong authkey?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_verify_in_both_forms() {
        let key = b"key";
        let modern = [&b"{sha256}"[..], &[7u8; MESSAGE_LENGTH]].concat();
        let answer = response(key, &modern).unwrap();
        assert!(answer.starts_with(b"{sha256}"));
        assert_eq!(answer.len(), 8 + 32);
        verify(key, &modern, &answer).unwrap();
        assert!(verify(b"other", &modern, &answer).is_err());

        let legacy = [9u8; 20];
        let answer = response(key, &legacy).unwrap();
        assert_eq!(answer.len(), 16, "legacy answers are raw HMAC-MD5");
        verify(key, &legacy, &answer).unwrap();
        // A legacy client answers a modern challenge with raw HMAC-MD5 over all of it.
        verify(key, &modern, &Digest::Md5.mac(key, &modern)).unwrap();
    }

    #[test]
    fn hmac_md5_matches_rfc_2104() {
        // RFC 2104 test vector 2.
        let mac = Digest::Md5.mac(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "750c783e6ab0b503eaa86e310a5db738");
    }

    #[test]
    fn malformed_handshake_messages_are_refused() {
        for bad in [
            &b"{sha999}xxxxxxxxxxxxxxxxxxxxxxxx"[..],
            b"no prefix at all, 31 bytes long",
        ] {
            let err = digest_and_payload(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        }
    }
}
