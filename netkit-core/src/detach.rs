//! Detached processes, for work a short-lived caller should not wait for.
//!
//! Some kernel operations make the calling thread wait after the work that matters is done:
//! deleting a device waits for an RCU barrier before the kernel frees it, and closing an
//! nf_tables netlink socket waits for nf_tables' deferred cleanup of earlier transactions (an
//! RCU grace period). A CNI plugin's caller waits for the plugin to exit, so these waits,
//! 5–25 ms each on a busy machine, end up in every DEL. [`spawn`] hands such work to a
//! grandchild process (double fork: the intermediate child exits at once and is reaped here, so
//! the grandchild belongs to init or the nearest subreaper, which reaps it), which outlives the
//! caller by that long.

use std::os::fd::RawFd;

/// Run `work` in a detached grandchild process that keeps only the descriptors `keep`,
/// renumbered `0, 1, …` in order (every other descriptor, stdio included, is closed first, so
/// locks and pipes the caller holds do not live on in it); it exits with `work`'s return value.
///
/// Returns once the grandchild exists (after reaping the intermediate child).
///
/// # Safety
/// `work` runs in a child forked from a possibly multithreaded process: it may only make
/// async-signal-safe calls (raw system calls on memory prepared before the call; no
/// allocation, no locks, no stdio) and must not panic.
pub(crate) unsafe fn spawn(keep: &[RawFd], work: impl FnOnce() -> i32) -> std::io::Result<()> {
    if keep.len() > 16 {
        return Err(std::io::Error::other("detach::spawn keeps at most 16 descriptors"));
    }
    // SAFETY: the caller's contract covers the children: both only make async-signal-safe calls
    // (clone, fcntl, dup2, close_range, close, _exit, and `work`) and neither returns.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if child == 0 {
        // A raw clone (fork semantics) rather than fork(3): fork(3) would run the atfork
        // handlers libraries registered, which are not async-signal-safe.
        // SAFETY: as above; SIGCHLD as the exit signal and no other flags make it a fork.
        #[cfg(not(target_arch = "s390x"))]
        let grandchild = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_long, 0, 0, 0, 0) };
        // s390x takes the stack before the flags.
        // SAFETY: as above.
        #[cfg(target_arch = "s390x")]
        let grandchild = unsafe { libc::syscall(libc::SYS_clone, 0, libc::SIGCHLD as libc::c_long, 0, 0, 0) };
        if grandchild == 0 {
            let mut ok = true;
            let k = keep.len() as RawFd;
            // SAFETY: descriptor-table operations on this process's own table.
            unsafe {
                // Copies first, all numbered k or above (the lowest free number ≥ k), so
                // renumbering them to 0..k never overwrites one still to be moved.
                let mut parked = [0 as RawFd; 16];
                for (i, fd) in keep.iter().enumerate() {
                    parked[i] = libc::fcntl(*fd, libc::F_DUPFD, k);
                    ok &= parked[i] >= 0;
                }
                for (i, fd) in parked.iter().take(keep.len()).enumerate() {
                    ok &= libc::dup2(*fd, i as RawFd) == i as RawFd;
                }
                if libc::syscall(
                    libc::SYS_close_range,
                    k as libc::c_uint,
                    libc::c_uint::MAX,
                    0 as libc::c_uint,
                ) != 0
                {
                    for fd in k..4096 {
                        libc::close(fd);
                    }
                }
            }
            let code = if ok { work() } else { 111 };
            // SAFETY: _exit leaves without running Rust or libc exit handlers.
            unsafe { libc::_exit(code) }
        }
        // SAFETY: as above.
        unsafe { libc::_exit(if grandchild < 0 { 1 } else { 0 }) }
    }
    let mut status = 0;
    loop {
        // SAFETY: waitpid on our own child into a valid c_int.
        let r = unsafe { libc::waitpid(child, &mut status, 0) };
        if r == child {
            break;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // This process ignores SIGCHLD: the kernel reaped the child.
            Some(libc::ECHILD) => return Ok(()),
            _ => return Err(e),
        }
    }
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else {
        Err(std::io::Error::other("the intermediate child could not fork"))
    }
}

/// Close `fd` in a detached process once the caller has closed its own copy, so the release
/// work the kernel does on the last close happens there. The caller must close `fd` right
/// after this returns, then drop the returned guard (the grandchild waits for that).
pub(crate) fn close_later(fd: RawFd) -> std::io::Result<std::os::fd::OwnedFd> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    use std::os::fd::AsRawFd;
    // SAFETY: the work only calls read and close on descriptors 0 and 1.
    unsafe {
        spawn(&[fd, r.as_raw_fd()], || {
            let mut b = [0u8; 1];
            // Wait for EOF: the caller has closed its copy of `fd` and then the pipe.
            while libc::read(1, b.as_mut_ptr().cast(), 1) > 0 {}
            libc::close(0);
            0
        })?;
    }
    drop(r);
    Ok(w)
}
