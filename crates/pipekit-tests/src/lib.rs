//! Helpers shared by pipekit's cross-process tests: unique names and the peer process.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A pipe name no other test (or test run) uses.
pub fn unique_name(tag: &str) -> String {
    use std::hash::{BuildHasher, RandomState};
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let random = RandomState::new().hash_one(n) as u32;
    format!("t-{tag}-{}-{n}-{random:08x}", std::process::id())
}

/// `err` and each of its causes, joined by ": " (see [`pipekit::error::Chain`]).
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    pipekit::error::Chain(err).to_string()
}

/// `len` bytes of a pattern that differs with `seed`, so a mixed-up message shows.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A pipekit `multiprocessing.connection` listener at `name` echoing payloads, serving
/// clients until `clients` have finished (successfully or not); what each `accept` gave: the
/// payloads echoed, or the error.
pub fn mp_echo_server(
    name: &str,
    key: Option<&'static [u8]>,
    clients: usize,
) -> JoinHandle<Vec<std::io::Result<usize>>> {
    let listener = pipekit::dialect::python_mp::Listener::bind(name, key).unwrap();
    thread::spawn(move || {
        (0..clients)
            .map(|_| {
                let mut conn = listener.accept()?;
                let mut count = 0;
                let mut buf = Vec::new();
                while conn.recv_bytes_into(&mut buf)?.is_some() {
                    conn.send_bytes(&buf)?;
                    count += 1;
                }
                Ok(count)
            })
            .collect()
    })
}

/// The size of one piece of a [`duplex`] exchange.
pub const DUPLEX_PIECE: usize = 64 << 10;

/// How the two threads of a [`duplex`] exchange reach the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The writing thread holds a `try_clone` of the stream.
    Clone,
    /// Both threads use the one stream, through `&Stream`.
    Shared,
}

impl std::str::FromStr for Via {
    type Err = std::io::Error;

    fn from_str(s: &str) -> std::io::Result<Via> {
        match s {
            "clone" => Ok(Via::Clone),
            "shared" => Ok(Via::Shared),
            _ => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not clone or shared: {s:?}"),
            )),
        }
    }
}

impl std::fmt::Display for Via {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Via::Clone => "clone",
            Via::Shared => "shared",
        })
    }
}

/// Both ways at once: writes `pieces` pieces of [`DUPLEX_PIECE`] bytes (patterns seeded with
/// `seed` plus the piece's number) from one thread, while another reads as many of the
/// peer's pieces (seeded with `peer_seed`) and checks each; `via` says whether the writer
/// holds a clone or shares the stream. Byte mode moves bytes; message mode one message per
/// piece. Neither side reads only after writing, so a stream that cannot do both at once
/// deadlocks here rather than passing.
pub fn duplex(
    stream: &pipekit::Stream,
    via: Via,
    seed: u8,
    peer_seed: u8,
    pieces: usize,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind, Read, Write};
    let clone = match via {
        Via::Clone => Some(stream.try_clone()?),
        Via::Shared => None,
    };
    let writer = clone.as_ref().unwrap_or(stream);
    let messages = stream.mode() == pipekit::Mode::Messages;
    thread::scope(|s| {
        let sending = s.spawn(move || -> std::io::Result<()> {
            for i in 0..pieces {
                let piece = pattern(DUPLEX_PIECE, seed.wrapping_add(i as u8));
                if messages {
                    writer.send(&piece)?;
                } else {
                    { writer }.write_all(&piece)?;
                }
            }
            Ok(())
        });
        let mut back = vec![0u8; DUPLEX_PIECE];
        for i in 0..pieces {
            if messages {
                let n = stream.recv(&mut back)?;
                if n != Some(DUPLEX_PIECE) {
                    return Err(Error::new(
                        ErrorKind::InvalidData,
                        format!("message {i}: {n:?}"),
                    ));
                }
            } else {
                { stream }.read_exact(&mut back)?;
            }
            if back != pattern(DUPLEX_PIECE, peer_seed.wrapping_add(i as u8)) {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("piece {i} differs"),
                ));
            }
        }
        sending.join().expect("the writing thread")
    })
}

/// Connect options for `mode`.
pub fn connect_options(mode: pipekit::Mode) -> pipekit::ConnectOptions {
    let mut options = pipekit::ConnectOptions::new();
    options.mode(mode);
    options
}

/// The ten-message exchange against a peer serving `messages reply OK --print`: sends "1" to
/// "10", checks each reply is "OK", then checks the peer printed the ten messages in order.
pub fn ten_messages_to_printing_peer(client: &mut pipekit::Stream, peer: &mut Peer) {
    let mut buf = [0u8; 65535];
    for i in 1..=10 {
        client.send(i.to_string().as_bytes()).unwrap();
        let n = client.recv(&mut buf).unwrap().expect("a reply");
        assert_eq!(&buf[..n], b"OK");
    }
    for i in 1..=10 {
        assert_eq!(peer.line().as_deref(), Some(i.to_string().as_str()));
    }
}

/// The ten-line exchange against a byte-mode echo peer: each line comes back unchanged.
pub fn ten_lines_echoed(client: &mut pipekit::Stream) {
    use std::io::{Read, Write};
    for i in 1..=10 {
        let msg = format!("message {i}\n");
        client.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

/// Starts `command`. Under Wine, `CreateProcess` now and then fails with
/// `ERROR_INTERNAL_ERROR` (1359) when many processes start at once; such a start is tried
/// again (up to five times), any other error is returned at once. This is about starting the
/// test's peer, not about what the test checks.
pub fn spawn(command: &mut Command) -> std::io::Result<Child> {
    const ERROR_INTERNAL_ERROR: i32 = 1359;
    let mut tries = 0;
    loop {
        match command.spawn() {
            Err(e)
                if cfg!(windows) && e.raw_os_error() == Some(ERROR_INTERNAL_ERROR) && tries < 5 =>
            {
                tries += 1;
                thread::yield_now();
            }
            result => return result,
        }
    }
}

/// Starts `processes` client processes of the peer binary at `peer`, each holding `conns`
/// message-mode connections to `name` and checking `msgs` echoed messages on each
/// (`pipekit-peer clients`).
pub fn client_processes(
    peer: &str,
    name: &str,
    processes: usize,
    conns: usize,
    msgs: usize,
) -> Vec<Child> {
    (0..processes)
        .map(|_| {
            spawn(
                Command::new(peer)
                    .args(["clients", name, &conns.to_string(), &msgs.to_string()])
                    .stdout(Stdio::piped()),
            )
            .unwrap()
        })
        .collect()
}

/// Waits for client processes from [`client_processes`] and checks that each succeeded with
/// all its `conns` connections.
pub fn check_client_processes(children: Vec<Child>, conns: usize) {
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a client process failed: {:?}",
            out.status
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("ok {conns}\n")
        );
    }
}

/// A running peer process; killed on drop.
#[derive(Debug)]
pub struct Peer {
    /// The child process.
    pub child: Child,
    /// Its stdout, after the ready line (taken by [`Peer::collect_lines`]).
    stdout: Option<BufReader<ChildStdout>>,
}

impl Peer {
    /// Starts `peer_exe` with `args` and waits for its `ready` line.
    ///
    /// # Panics
    ///
    /// If the peer cannot start or exits before it is ready.
    pub fn start(peer_exe: &str, args: &[&str]) -> Peer {
        Peer::start_command(Command::new(peer_exe).args(args))
    }

    /// Starts `command` (a peer with its arguments and environment) and waits for its
    /// `ready` line.
    ///
    /// # Panics
    ///
    /// If the peer cannot start or exits before it is ready.
    pub fn start_command(command: &mut Command) -> Peer {
        let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
        let mut child = spawn(
            command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )
        .expect("starting the peer");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("reading the peer's ready line");
        assert_eq!(line.trim(), "ready", "peer {args:?} did not start");
        Peer {
            child,
            stdout: Some(stdout),
        }
    }

    /// The next line the peer printed, without its newline; `None` at its end.
    pub fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.stdout.as_mut()?.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end_matches('\n').to_owned()),
        }
    }

    /// Reads every line the peer prints from now on, on a thread (so the peer never blocks
    /// on a full stdout pipe); the thread ends with the peer's stdout.
    pub fn collect_lines(&mut self) -> JoinHandle<Vec<String>> {
        let stdout = self.stdout.take();
        thread::spawn(move || {
            let mut lines = Vec::new();
            if let Some(stdout) = stdout {
                for line in stdout.lines() {
                    match line {
                        Ok(line) => lines.push(line),
                        Err(_) => break,
                    }
                }
            }
            lines
        })
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A CA and the certificates it signs, as PEM files in a directory of their own (removed
/// with it). Made per test run: no key is ever committed.
pub struct Pki {
    dir: PathBuf,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(unique_name(tag));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{tag} test CA"));
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// The CA's certificate file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Signs a certificate valid for `names` (host names or IP addresses), already expired
    /// if `expired`; returns the certificate and key files.
    ///
    /// # Panics
    ///
    /// If the files cannot be written.
    pub fn issue(&self, file: &str, names: &[&str], expired: bool) -> (PathBuf, PathBuf) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, file);
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (cert_file, key_file) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    /// The usual server certificate: valid for localhost and 127.0.0.1.
    pub fn server(&self) -> (PathBuf, PathBuf) {
        self.issue("server", &["localhost", "127.0.0.1"], false)
    }
}

impl std::fmt::Debug for Pki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
