//! The process's open-file limit: every connection holds a descriptor, and a process at its
//! limit accepts no more connections on any listener ("Too many open files"). The soft limit
//! is raised to the hard one at start where the system allows, the proxy's connection limit is
//! derived from it, and `/status` reports both the limit and the descriptors open.

/// Raises the soft open-file limit to the hard one; returns the soft limit now in force.
pub fn raise_limit() -> u64 {
    let Some(lim) = current() else { return 0 };
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return raised.rlim_cur;
        }
    }
    lim.rlim_cur
}

/// The soft open-file limit in force.
pub fn limit() -> u64 {
    current().map_or(0, |lim| lim.rlim_cur)
}

fn current() -> Option<libc::rlimit> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim)
}

/// Descriptors the process has open (Linux's `/proc/self/fd`); `None` where it cannot tell.
pub fn open() -> Option<usize> {
    std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count())
}
