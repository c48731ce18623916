//! `pipekit listen`.

use std::io::{self, Read, Write};
use std::num::NonZeroU8;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use anyhow::Context;
use clap::Args;
use pipekit::{Listener, ListenerOptions, Mode, Stream};

#[derive(Debug, Args)]
pub struct ListenArgs {
    /// The pipe name (`test_pipe`, a path, or `\\.\pipe\...` on Windows).
    name: String,
    /// Message mode: each send is one message (the default is byte mode).
    #[arg(long)]
    messages: bool,
    /// Send each message back.
    #[arg(long, conflicts_with = "reply")]
    echo: bool,
    /// Answer each message with TEXT.
    #[arg(long, value_name = "TEXT")]
    reply: Option<String>,
    /// Serve over FIFOs instead of a Unix-domain socket (Unix).
    #[arg(long)]
    fifo: bool,
    /// Serve at most N clients at once (1-254).
    #[arg(long, value_name = "N")]
    max_instances: Option<NonZeroU8>,
    /// Exit after N messages in total.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

pub fn listen(args: &ListenArgs) -> anyhow::Result<()> {
    let mut options = ListenerOptions::new();
    options
        .mode(if args.messages {
            Mode::Messages
        } else {
            Mode::Bytes
        })
        .max_instances(args.max_instances);
    let listener = bind(args, &options).with_context(|| format!("cannot serve {}", args.name))?;
    let files = Arc::new(ServerFiles::of(&listener));
    {
        let files = Arc::clone(&files);
        ctrlc::set_handler(move || {
            files.remove();
            std::process::exit(130);
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    let left = Arc::new(AtomicU64::new(args.count.unwrap_or(u64::MAX)));
    if args.count == Some(0) {
        return Ok(());
    }
    let out = Arc::new(Mutex::new(io::stdout()));
    let answer: Option<Vec<u8>> = args.reply.as_ref().map(|t| t.as_bytes().to_vec());
    loop {
        let conn = listener.accept().context("accept failed")?;
        let (left, out, files, answer) = (
            Arc::clone(&left),
            Arc::clone(&out),
            Arc::clone(&files),
            answer.clone(),
        );
        let echo = args.echo;
        thread::spawn(move || {
            let client = Client {
                left,
                out,
                files,
                echo,
                answer,
            };
            if let Err(e) = client.serve(conn) {
                eprintln!("pipekit: client: {e}");
            }
        });
    }
}

#[cfg(unix)]
fn bind(args: &ListenArgs, options: &ListenerOptions) -> io::Result<Listener> {
    use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
    let mut unix = UnixOptions::new();
    if args.fifo {
        unix.transport(Transport::Fifo);
    }
    Listener::bind_unix(args.name.as_str(), options, &unix)
}

#[cfg(not(unix))]
fn bind(args: &ListenArgs, options: &ListenerOptions) -> io::Result<Listener> {
    if args.fifo {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "--fifo: FIFOs are a Unix transport",
        ));
    }
    Listener::bind_with(args.name.as_str(), options)
}

/// What a server leaves in the filesystem while it runs, removed on Ctrl-C or `--count`
/// (when the process exits without dropping the listener).
#[derive(Debug)]
struct ServerFiles {
    path: Option<PathBuf>,
}

impl ServerFiles {
    #[cfg(unix)]
    fn of(listener: &Listener) -> ServerFiles {
        use pipekit::os::unix::ListenerExt;
        ServerFiles {
            path: listener.path().map(PathBuf::from),
        }
    }

    #[cfg(not(unix))]
    fn of(_listener: &Listener) -> ServerFiles {
        ServerFiles { path: None }
    }

    /// Removes the socket, or the FIFO directory with its FIFOs, and the lock file.
    fn remove(&self) {
        let Some(path) = &self.path else { return };
        if path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(path) {
                for entry in entries.flatten() {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
            let _ = std::fs::remove_dir(path);
        } else {
            let _ = std::fs::remove_file(path);
        }
        let mut lock = path.clone().into_os_string();
        lock.push(".lock");
        let _ = std::fs::remove_file(lock);
    }
}

struct Client {
    left: Arc<AtomicU64>,
    out: Arc<Mutex<io::Stdout>>,
    files: Arc<ServerFiles>,
    echo: bool,
    answer: Option<Vec<u8>>,
}

impl Client {
    fn serve(&self, mut conn: Stream) -> anyhow::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match conn.mode() {
                Mode::Messages => match conn.recv(&mut buf)? {
                    Some(n) => n,
                    None => return Ok(()),
                },
                _ => match conn.read(&mut buf)? {
                    0 => return Ok(()),
                    n => n,
                },
            };
            {
                let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
                writeln!(out, "{}", String::from_utf8_lossy(&buf[..n]))?;
                out.flush()?;
            }
            let reply = if self.echo {
                Some(&buf[..n])
            } else {
                self.answer.as_deref()
            };
            if let Some(reply) = reply {
                match conn.mode() {
                    Mode::Messages => conn.send(reply)?,
                    _ => conn.write_all(reply)?,
                }
            }
            if self.left.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.files.remove();
                std::process::exit(0);
            }
        }
    }
}
