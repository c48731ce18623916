//! A Tokio echo server in message mode: one task per client, any number of clients (Unix
//! sockets or, with `--fifo`, FIFOs; Windows message-mode named pipes).
//!
//! ```text
//! cargo run -p pipekit-examples --example tokio_echo -- NAME [--fifo]
//! pipekit send NAME --messages --wait-reply hello      # in another terminal
//! ```

fn main() -> std::io::Result<()> {
    use pipekit::tokio::Listener;
    use pipekit::{ListenerOptions, Mode};

    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "test_pipe".into());
    let mut options = ListenerOptions::new();
    options.mode(Mode::Messages);
    #[cfg(unix)]
    let blocking = {
        use pipekit::os::unix::{ListenerExt, Transport, UnixOptions};
        let mut unix = UnixOptions::new();
        if args.iter().any(|a| a == "--fifo") {
            unix.transport(Transport::Fifo);
        }
        pipekit::Listener::bind_unix(name.as_str(), &options, &unix)?
    };
    #[cfg(not(unix))]
    let blocking = pipekit::Listener::bind_with(name.as_str(), &options)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = Listener::from_blocking(blocking)?;
        println!("serving {name} (Ctrl-C to stop)");
        loop {
            let mut conn = listener.accept().await?;
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65535];
                loop {
                    match conn.recv(&mut buf).await {
                        Ok(Some(n)) => {
                            if let Err(e) = conn.send(&buf[..n]).await {
                                eprintln!("client: {e}");
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            eprintln!("client: {e}");
                            break;
                        }
                    }
                }
            });
        }
    })
}
