//! Running work inside a namespace on a dedicated OS thread.

use std::future::Future;

use nix::sched::{setns, CloneFlags};

use std::os::fd::AsFd;

use super::{NetNs, NetnsError};

impl NetNs {
    fn enter(&self) -> Result<(), NetnsError> {
        setns(self, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::io("enter", self, e))
    }

    /// Run `f` inside this namespace and return its result.
    ///
    /// `f` runs on a new OS thread that enters the namespace and ends with
    /// `f`; the calling thread never changes namespace. The call blocks until
    /// `f` returns, so from async code prefer [`NetNs::exec`].
    pub fn run<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send,
        T: Send,
    {
        std::thread::scope(|s| {
            s.spawn(|| {
                self.enter()?;
                Ok(f())
            })
            .join()
            .map_err(|_| NetnsError::Panicked(self.to_string()))?
        })
    }

    /// Run the blocking closure `f` inside this namespace without blocking
    /// the async caller: `f` runs on a dedicated OS thread and the returned
    /// future completes when it does.
    pub async fn exec<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let ns = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let out = ns.enter().map(|()| f());
            let _ = tx.send(out);
        });
        rx.await.map_err(|_| NetnsError::Panicked(self.to_string()))?
    }

    /// A [`std::process::Command`] for `program` that starts inside this namespace, like
    /// `ip netns exec NAME program` (without mounting a per-namespace /etc or /sys).
    ///
    /// The child enters the namespace between fork and exec; the caller's thread never does.
    /// The command holds its own descriptor of the namespace (a close-on-exec duplicate), so it
    /// enters this namespace whenever it is spawned, even after this `NetNs` is dropped. If the
    /// descriptor cannot be duplicated, spawning fails with that error.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(program);
        // F_DUPFD_CLOEXEC: the program itself does not inherit it.
        let fd = self.as_fd().try_clone_to_owned();
        // SAFETY: the closure runs in the forked child before exec and only calls setns(2), a
        // plain system call that is async-signal-safe; it allocates nothing and takes no lock
        // (the error of a failed duplication was made before the fork and is only moved out).
        // `fd` belongs to the closure, which the `Command` owns, so the descriptor is open
        // whenever the command is spawned.
        unsafe {
            let mut fd = Some(fd);
            cmd.pre_exec(move || match fd.as_ref() {
                Some(Ok(fd)) => {
                    if libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                }
                Some(Err(_)) => match fd.take() {
                    Some(Err(e)) => Err(e),
                    _ => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
                },
                None => Err(std::io::Error::from_raw_os_error(libc::EBADF)),
            });
        }
        cmd
    }

    /// Run the future made by `f` inside this namespace.
    ///
    /// A dedicated OS thread enters the namespace and drives the future on
    /// its own single-threaded tokio runtime, so sockets the future opens
    /// (TCP, UDP, netlink) belong to this namespace. The caller's tokio
    /// workers never change namespace.
    pub async fn run_async<F, Fut, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        self.exec(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| NetnsError::io("start runtime in", "thread", e))?;
            Ok(rt.block_on(f()))
        })
        .await?
    }
}
