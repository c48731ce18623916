//! Dialects: talking to peers written without pipekit in mind.
//!
//! - **.NET** (`System.IO.Pipes`): a naming rule, [`PipeName::dotnet`](crate::PipeName::dotnet)
//!   (or `"dotnet:<name>"` wherever a name is parsed). A pipekit server bound to
//!   `PipeName::dotnet("test_pipe")` is reachable by `new NamedPipeClientStream("test_pipe")`,
//!   and a pipekit client with that name reaches a `NamedPipeServerStream("test_pipe")`. On Unix
//!   .NET pipes are byte streams, so the dialect is byte mode there.
//! - **Python `multiprocessing.connection`**: [`python_mp`], the `send_bytes`/`recv_bytes`
//!   level of CPython's `Listener`/`Client`, with the `authkey` handshake.
//!
//! The Python dialect is feature `python-mp` (on by default); without it pipekit builds
//! without its hash crates.

#[cfg(feature = "python-mp")]
pub mod python_mp;
