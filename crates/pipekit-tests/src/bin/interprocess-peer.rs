//! A message-mode Windows named-pipe peer built on the `interprocess` crate, for the interop
//! tests: a pipe implementation pipekit did not write.
//!
//! ```text
//! interprocess-peer serve PIPE_PATH     serve one client: echo each message, until it leaves
//! interprocess-peer client PIPE_PATH    send the sizes read from stdin (one per line) as
//!                                       messages, check each echo, print "ok SIZE"
//! ```
//!
//! `serve` prints `ready` once the pipe exists. Both exit non-zero on any error or mismatch.
#![forbid(unsafe_code)]

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [cmd, path] if cmd == "serve" => windows::serve(path),
        [cmd, path] if cmd == "client" => windows::client(path),
        _ => Err(std::io::Error::other(
            "usage: interprocess-peer serve|client PIPE_PATH",
        )),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interprocess-peer: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    eprintln!("interprocess-peer: Windows only");
    std::process::ExitCode::FAILURE
}

#[cfg(windows)]
mod windows {
    use std::io::{self, BufRead, Write};

    use interprocess::os::windows::named_pipe::{
        DuplexPipeStream, PipeListenerOptions, PipeMode, pipe_mode,
    };
    use recvmsg::{MsgBuf, RecvMsg, RecvResult};

    type MessagePipe = DuplexPipeStream<pipe_mode::Messages>;

    /// One whole message, or `None` at the end of the stream.
    fn recv(conn: &mut MessagePipe, buf: &mut MsgBuf<'_>) -> io::Result<Option<Vec<u8>>> {
        match conn.recv_msg(buf, None)? {
            RecvResult::EndOfStream => Ok(None),
            RecvResult::Fit | RecvResult::Spilled => Ok(Some(buf.filled_part().to_vec())),
            RecvResult::QuotaExceeded(_) => Err(io::Error::other("message over quota")),
        }
    }

    pub(crate) fn serve(path: &str) -> io::Result<()> {
        let listener = PipeListenerOptions::new()
            .path(path)
            .mode(PipeMode::Messages)
            .create_duplex::<pipe_mode::Messages>()?;
        println!("ready");
        io::stdout().flush()?;
        let mut conn = listener.accept()?;
        let mut buf = MsgBuf::from(Vec::with_capacity(65536));
        while let Some(msg) = recv(&mut conn, &mut buf)? {
            conn.send(&msg)?;
        }
        Ok(())
    }

    pub(crate) fn client(path: &str) -> io::Result<()> {
        let mut conn = MessagePipe::connect_by_path(path)?;
        let mut buf = MsgBuf::from(Vec::with_capacity(65536));
        for line in io::stdin().lock().lines() {
            let size: usize = line?
                .trim()
                .parse()
                .map_err(|e| io::Error::other(format!("bad size: {e}")))?;
            let msg: Vec<u8> = (0..size).map(|i| (i * 7 + size) as u8).collect();
            let sent = conn.send(&msg)?;
            if sent != size {
                return Err(io::Error::other(format!("sent {sent} of {size} bytes")));
            }
            let back = recv(&mut conn, &mut buf)?
                .ok_or_else(|| io::Error::other("the server left early"))?;
            if back != msg {
                return Err(io::Error::other(format!(
                    "the {size}-byte message came back as {} different bytes",
                    back.len()
                )));
            }
            println!("ok {size}");
        }
        Ok(())
    }
}
