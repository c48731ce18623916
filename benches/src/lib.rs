//! The benchmark harness of pipekit, shared by the criterion benches (`cargo bench`) and the
//! `pipekit bench` command.
//!
//! Every transport — pipekit's own, the raw system calls beneath them, and the other ways
//! programs talk on one machine — is driven through one small trait, [`Transport`], and
//! always across processes: the measuring process and a *peer*, which is the same
//! executable started again with [`PEER_ENV`] set. A program that uses the harness must call
//! [`run_peer_if_requested`] first thing in `main`.
//!
//! The measurements:
//!
//! - **throughput** ([`throughput`], [`Session::batch`]): the writer sends a count, then that
//!   many chunks; the reader checks every byte, and answers with the total it got (which the
//!   writer checks) and its CPU time. Elapsed time runs from the first byte to the answer;
//!   the CPU cost is both processes' user + system time over the measured batches.
//! - **latency** ([`latency`], [`Session::round_trip`]): one chunk out, the same bytes
//!   echoed back; closed loop, or open loop at a fixed rate ([`Load::rate`]) timed from when
//!   each round trip was due. Samples go into an HDR histogram ([`Latency`]).
//! - **load** ([`Load::clients`]): several client processes on one server, aggregate
//!   throughput and merged latency.
//! - **connect** ([`connect_time`]): connect, one byte out, one byte back.
//!
//! The processes can share one core or sit on two ([`Pinning`]); on a VM, cross-core
//! figures measure the hypervisor's wake-ups more than the transport. Whatever a run makes
//! (socket files, FIFOs, queues, segments, peer processes) is removed when it ends, and by
//! [`cleanup::run_all`] if it is stopped.
//!
//! `unsafe` is confined to the modules that make system calls no safe crate offers: the
//! shared-memory rings, System V queues, Windows named pipes and process times, and taking
//! ownership of descriptors the kernel hands over.
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod cleanup;
mod cpu;
mod measure;
mod peer;
mod pin;
mod process;
mod protocol;
mod transport;
mod transports;

pub use measure::{
    Batch, ConnectTime, Connector, Latency, Load, Session, Throughput, connect_time, latency,
    memcpy, throughput,
};
pub use peer::run_peer_if_requested;
pub use pin::Pinning;
pub use protocol::PEER_ENV;
pub use transport::{Conn, Listen, Transport};
pub use transports::all;
