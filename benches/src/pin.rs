//! Where the two processes run: CPU pinning (Linux).

use std::io;

/// Where the two processes run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pinning {
    /// Wherever the scheduler puts them.
    #[default]
    None,
    /// Both on CPU 0.
    SameCore,
    /// The measuring process on CPU 0, the peer on CPU 1.
    SplitCores,
}

impl Pinning {
    /// `none`, `same` or `split`, as the command line spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Pinning::None => "none",
            Pinning::SameCore => "same",
            Pinning::SplitCores => "split",
        }
    }

    /// Parses [`as_str`](Self::as_str)'s spelling.
    pub fn parse(s: &str) -> Option<Pinning> {
        match s {
            "none" => Some(Pinning::None),
            "same" => Some(Pinning::SameCore),
            "split" => Some(Pinning::SplitCores),
            _ => None,
        }
    }

    /// The CPU of the measuring process.
    pub(crate) fn own_cpu(self) -> Option<usize> {
        match self {
            Pinning::None => None,
            _ => Some(0),
        }
    }

    /// The CPU of the peer process (and of every client process with several clients).
    pub(crate) fn peer_cpu(self) -> Option<usize> {
        match self {
            Pinning::None => None,
            Pinning::SameCore => Some(0),
            Pinning::SplitCores => Some(1),
        }
    }
}

/// Pins this process to `cpu`, or lets it run anywhere with `None` (Linux; elsewhere pinning
/// is not done).
#[cfg(target_os = "linux")]
pub(crate) fn pin_self(cpu: Option<usize>) -> io::Result<()> {
    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::{Pid, SysconfVar, sysconf};
    // The CPUs online, not the ones this process may use now (it may be pinned already).
    let cpus = sysconf(SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .map_or(1, |n| n.max(1) as usize)
        .min(CpuSet::count());
    let mut set = CpuSet::new();
    match cpu {
        Some(cpu) => set.set(cpu % cpus).map_err(io::Error::from)?,
        None => {
            for c in 0..cpus {
                set.set(c).map_err(io::Error::from)?;
            }
        }
    }
    sched_setaffinity(Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Pinning is done on Linux only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn pin_self(_cpu: Option<usize>) -> io::Result<()> {
    Ok(())
}
