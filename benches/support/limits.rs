//! Process limits.

use std::io;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (servers started afterwards inherit it) and
/// returns the soft limit in force afterwards (0 if it cannot be read). A failure to raise it is
/// reported on stderr, prefixed with `who`.
pub fn raise_nofile(who: &str) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass, which lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim = raised;
        } else {
            eprintln!(
                "{who}: cannot raise RLIMIT_NOFILE: {}",
                io::Error::last_os_error()
            );
        }
    }
    lim.rlim_cur
}
