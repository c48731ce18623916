//! The seed recipe's client: sends "1" .. "10" as messages and prints each reply; with
//! `--greet`, first reads the server's greeting and answers it.
//!
//! ```text
//! cargo run -p pipekit-examples --example seed_client                 # talks to test_pipe
//! cargo run -p pipekit-examples --example seed_client -- NAME --greet
//! ```
//!
//! Waits up to 10 s for the server to appear.

use std::io;
use std::time::Duration;

use pipekit::{ConnectOptions, Mode, Stream};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greet = args.iter().any(|a| a == "--greet");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("test_pipe", String::as_str);

    let mut options = ConnectOptions::new();
    options
        .mode(Mode::Messages)
        .wait(Some(Duration::from_secs(10)));
    let pipe = Stream::connect_with(name, &options)?;
    let mut buf = vec![0u8; 65535];
    if greet {
        let n = pipe.recv(&mut buf)?.unwrap_or(0);
        println!("server says {:?}", String::from_utf8_lossy(&buf[..n]));
        pipe.send(b"hello back")?;
        return Ok(());
    }
    for i in 1..=10 {
        pipe.send(i.to_string().as_bytes())?;
        let n = pipe.recv(&mut buf)?.unwrap_or(0);
        println!("sent {i}, got {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    Ok(())
}
