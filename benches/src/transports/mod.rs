//! Every transport the harness compares.
//!
//! pipekit's own ([`pipekit`], over the OS's backend), the raw system calls each of them is
//! built on (their baselines), and the other ways programs talk on one machine: loopback TCP
//! and UDP, message queues, shared memory, and messaging libraries.

#[cfg(unix)]
mod fd;
#[cfg(target_os = "linux")]
mod libs;
#[cfg(target_os = "linux")]
mod mq;
mod net;
pub(crate) mod pipekit;
#[cfg(unix)]
mod shm;
#[cfg(unix)]
mod unix;
#[cfg(windows)]
mod windows;
mod wrap;

use crate::transport::Transport;

/// Every transport this OS has: pipekit's first, then the baselines and the rest.
pub fn all() -> Vec<&'static dyn Transport> {
    let mut all: Vec<&'static dyn Transport> = Vec::new();
    #[cfg(unix)]
    {
        all.extend(unix::PIPEKIT.iter().map(|t| t as &dyn Transport));
        all.extend(unix::TOKIO.iter().map(|t| t as &dyn Transport));
        all.extend(unix::PIPEKIT_SHM.iter().map(|t| t as &dyn Transport));
        all.extend(unix::RAW.iter().copied());
    }
    #[cfg(windows)]
    {
        all.extend(windows::PIPEKIT.iter().map(|t| t as &dyn Transport));
        all.push(&windows::TOKIO);
        all.extend(windows::PIPEKIT_SHM.iter().map(|t| t as &dyn Transport));
        all.extend(windows::RAW.iter().map(|t| t as &dyn Transport));
    }
    all.push(&net::Tcp);
    all.extend(net::PIPEKIT_NET.iter().map(|t| t as &dyn Transport));
    all.push(&net::Udp);
    #[cfg(target_os = "linux")]
    {
        all.push(&mq::PosixMq);
        all.push(&mq::SysvMq);
    }
    #[cfg(unix)]
    all.push(&shm::Shm(shm::Wait::Poll));
    #[cfg(target_os = "linux")]
    {
        all.push(&shm::Shm(shm::Wait::Futex));
        all.push(&libs::Zmq);
        all.push(&libs::Nng);
    }
    all.push(&net::InterprocessLocal);
    all
}

/// The transport called `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn Transport> {
    all().into_iter().find(|t| t.name() == name)
}
