//! The benchmark harness of pipekit, shared by the criterion benches (`cargo bench`) and the
//! `pipekit bench` command.
//!
//! Every transport — pipekit's own and the baselines beneath them — is driven through one
//! small trait, [`Transport`], and always across two processes: the measuring process and a
//! *peer*, which is the same executable started again with [`PEER_ENV`] set. A program that
//! uses the harness must call [`run_peer_if_requested`] first thing in `main`.
//!
//! Three measurements:
//!
//! - **throughput** ([`Session::batch`]): the writer sends a count, then that many chunks of the
//!   buffer size; the reader reads them all and answers with the total it got, which the
//!   writer checks. Elapsed time runs from the first byte to the answer.
//! - **latency** ([`Session::round_trip`]): one chunk out, the same size echoed back; samples go
//!   into an HDR histogram ([`Latency`]).
//! - **connect** ([`connect_time`]): connect, one byte out, one byte back.
//!
//! The two processes can share one core or sit on two ([`Pinning`]); on a VM, cross-core
//! figures measure the hypervisor's wake-ups more than the transport.
#![deny(missing_docs)]

mod measure;
mod peer;
#[cfg(unix)]
mod shm;
pub mod transports;

pub use measure::{
    ConnectTime, Connector, Latency, Pinning, Session, Throughput, connect_time, latency, memcpy,
    throughput,
};
pub use peer::{PEER_ENV, run_peer_if_requested};
pub use transports::{Conn, Listen, Transport, all};
