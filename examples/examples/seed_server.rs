//! The seed recipe's server: a message-mode pipe with 65535-byte buffers that prints each
//! message and answers "OK" — what a pywin32 or C# client of `\\.\pipe\test_pipe` expects.
//!
//! ```text
//! cargo run -p pipekit-examples --example seed_server                 # serves test_pipe
//! cargo run -p pipekit-examples --example seed_server -- NAME --greet # greets "hello" first
//! ```
//!
//! With `--greet` the server speaks first: it sends "hello" to each client and prints the
//! answer, as in the Python ↔ C# pairing where the server opens the conversation. It serves
//! clients one after the other until stopped.

use std::io;

use pipekit::{Listener, ListenerOptions, Mode};

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let greet = args.iter().any(|a| a == "--greet");
    let name = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("test_pipe", String::as_str);

    let mut options = ListenerOptions::new();
    options
        .mode(Mode::Messages)
        .in_buffer_size(65535)
        .out_buffer_size(65535);
    let listener = Listener::bind_with(name, &options)?;
    println!("serving {name}");
    let mut buf = vec![0u8; 65535];
    for conn in listener.incoming() {
        let conn = conn?;
        if greet {
            conn.send(b"hello")?;
        }
        while let Some(n) = conn.recv(&mut buf)? {
            println!("got {:?}", String::from_utf8_lossy(&buf[..n]));
            if !greet {
                conn.send(b"OK")?;
            }
        }
        println!("client disconnected");
    }
    Ok(())
}
