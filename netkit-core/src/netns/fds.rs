//! Room for many descriptors: a program that holds a handle on a thousand namespaces holds two
//! thousand descriptors (the namespace and a netlink socket inside it).
//!
//! Two things get in the way, and [`reserve_descriptors`] removes both:
//! - the soft `RLIMIT_NOFILE` is often 1024: it is raised towards the hard limit (as Go's
//!   runtime does at start);
//! - the kernel grows a process's descriptor table by doubling it, and in a process with more
//!   than one thread every growth waits for an RCU grace period (`synchronize_rcu` in
//!   `expand_fdtable`): measured here, 2000 opens cost 20.8 µs each in a process with a
//!   second thread against 0.7 µs in a single-threaded one. Growing the table once, before
//!   the program starts its threads, costs nothing of the sort.

use std::os::fd::{FromRawFd, OwnedFd};

/// Make room for `n` descriptors: raise the soft `RLIMIT_NOFILE` to at least `n` (never above
/// the hard limit, never lowering it) and grow the descriptor table to hold `n` at once. Call
/// it early, before the program starts threads (a tokio runtime): that is when growing the
/// table is cheap. Returns how many descriptors the process may now hold (less than `n` when
/// the hard limit is lower). Touches no descriptor in use.
pub fn reserve_descriptors(n: usize) -> std::io::Result<usize> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid rlimit for the kernel to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let want = (n as libc::rlim_t).min(lim.rlim_max);
    if lim.rlim_cur < want {
        lim.rlim_cur = want;
        // SAFETY: `lim` is a valid rlimit; raising the soft limit up to the hard one needs no
        // privilege.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let room = lim.rlim_cur.min(n as libc::rlim_t) as usize;
    if room > 0 {
        // F_DUPFD takes the lowest free number at or above `room - 1`: the table grows to
        // hold it, and no descriptor in use is replaced. Closing it keeps the table's size.
        // SAFETY: fd 0, 1 or 2 may be closed; F_DUPFD of a closed descriptor fails with EBADF,
        // which is handled. The new descriptor is owned here and closed at once.
        let probe = [0, 1, 2]
            .into_iter()
            .map(|fd| unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, (room - 1) as libc::c_int) })
            .find(|fd| *fd >= 0);
        if let Some(fd) = probe {
            // SAFETY: `fd` was just made by F_DUPFD and nothing else knows it.
            drop(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Ok(room)
}

#[cfg(test)]
mod tests {
    use super::reserve_descriptors;

    #[test]
    fn the_limit_and_the_table_make_room() {
        let room = reserve_descriptors(512).unwrap();
        assert!(room >= 256, "room for {room}");
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: `lim` is valid for the kernel to fill.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert!(lim.rlim_cur as usize >= room);
        // The descriptors in use are untouched, and `room` of them can be open at once.
        let files: Vec<std::fs::File> = (0..room.min(512) - 16)
            .map(|_| std::fs::File::open("/dev/null").unwrap())
            .collect();
        assert!(files.len() >= 200);
        // Never lowers a higher limit.
        assert!(reserve_descriptors(8).unwrap() <= 8);
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert!(lim.rlim_cur as usize >= room);
    }
}
