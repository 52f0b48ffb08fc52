//! Long-lived helper threads for netkit's own short jobs inside a
//! namespace (opening a netlink socket, writing a sysctl, creating a
//! namespace), so such a job costs two `setns` calls instead of a thread
//! spawn and join. There is one helper per core (at most [`MAX_HELPERS`]),
//! started on first use; jobs go to them in turn, so callers working on
//! several cores at once (container setup in parallel) are not queued behind
//! one thread.
//!
//! A helper enters the target namespace, runs the job, and returns to its
//! home namespace before taking the next job. If it cannot return, it exits
//! and the next job starts a fresh thread. User closures never run here
//! ([`NetNs::run`] and friends use a thread of their own), because a job must
//! not leave state behind on a shared thread.

use std::os::fd::OwnedFd;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

use nix::sched::{setns, unshare, CloneFlags};

use super::{open_ns_file, NetNs, NetnsError};

/// Where a job runs.
pub(crate) enum Place {
    /// Inside this existing namespace.
    In(NetNs),
    /// Inside a brand-new namespace (`unshare(CLONE_NEWNET)`), which the job
    /// must pin (bind-mount, open) before it ends.
    New,
}

type Job = Box<dyn FnOnce(&OwnedFd) -> bool + Send>;

/// The most helper threads netkit starts, whatever the number of cores.
pub(crate) const MAX_HELPERS: usize = 8;

/// A long-lived thread whose home is the process's namespace, fed jobs through a queue:
/// netkit's helpers, and libnftables' own thread. It starts on first use, and again when the
/// one before exited (a job could not bring it home).
pub(crate) struct HomeThread {
    name: &'static str,
    queue: Mutex<Option<Sender<Job>>>,
}

impl HomeThread {
    /// A thread named `name`, not started yet.
    pub(crate) const fn new(name: &'static str) -> Self {
        Self {
            name,
            queue: Mutex::new(None),
        }
    }

    fn spawn(&self) -> std::io::Result<Sender<Job>> {
        let (tx, rx) = channel::<Job>();
        // Home is the process's namespace (its main thread's), not the caller's: the first job
        // may well be asked for from inside `NetNs::run`, and the thread must not keep (and
        // pin alive) that namespace as its home.
        let home = open_ns_file("/proc/self/ns/net".as_ref())?;
        std::thread::Builder::new().name(self.name.into()).spawn(move || {
            // A new thread starts in its creator's namespace: go home first.
            if setns(&home, CloneFlags::CLONE_NEWNET).is_err() {
                return;
            }
            for job in rx {
                if !job(&home) {
                    // Could not return home: this thread is no longer fit for jobs.
                    return;
                }
            }
        })?;
        Ok(tx)
    }

    /// Queue `job`; a thread that exited refuses it, and another is started for it.
    fn send(&self, mut job: Job) -> Result<(), NetnsError> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..2 {
            let tx = match queue.as_ref() {
                Some(tx) => tx.clone(),
                None => {
                    let tx = self
                        .spawn()
                        .map_err(|e| NetnsError::io("start a thread for", self.name, e))?;
                    *queue = Some(tx.clone());
                    tx
                }
            };
            match tx.send(job) {
                Ok(()) => return Ok(()),
                Err(back) => {
                    job = back.0;
                    *queue = None;
                }
            }
        }
        Err(NetnsError::Panicked(format!("({} thread)", self.name)))
    }

    /// Run `f` inside `place` on this thread (never on the caller's), blocking until it is done.
    pub(crate) fn run_blocking<T, F>(&self, place: Place, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.send(job(place, f, move |out| {
            let _ = tx.send(out);
        }))?;
        rx.recv()
            .map_err(|_| NetnsError::Panicked(format!("({} thread)", self.name)))?
    }
}

/// The helpers, one per core (at most [`MAX_HELPERS`]), and which one takes the next job.
static WORKERS: OnceLock<Vec<HomeThread>> = OnceLock::new();
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn helpers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_HELPERS)
}

/// The job that runs `f` inside `place` on a home thread and hands the outcome to `done`.
fn job<T, F, D>(place: Place, f: F, done: D) -> Job
where
    F: FnOnce() -> T + Send + 'static,
    D: FnOnce(Result<T, NetnsError>) + Send + 'static,
    T: Send + 'static,
{
    Box::new(move |home: &OwnedFd| {
        let entered = match &place {
            Place::In(ns) => setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::io("enter", ns, e)),
            Place::New => unshare(CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::io("create", "(new)", e)),
        };
        let out =
            entered.and_then(|()| catch_unwind(AssertUnwindSafe(f)).map_err(|_| NetnsError::Panicked(label(&place))));
        let back_home = setns(home, CloneFlags::CLONE_NEWNET).is_ok();
        done(out);
        back_home
    })
}

/// Run `f` inside `place` on the next helper thread; `done` receives the outcome.
fn submit<T, F, D>(place: Place, f: F, done: D) -> Result<(), NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    D: FnOnce(Result<T, NetnsError>) + Send + 'static,
    T: Send + 'static,
{
    let workers = WORKERS.get_or_init(|| (0..helpers()).map(|_| HomeThread::new("netkit-netns")).collect());
    workers[NEXT.fetch_add(1, Ordering::Relaxed) % workers.len()].send(job(place, f, done))
}

fn label(place: &Place) -> String {
    match place {
        Place::In(ns) => ns.to_string(),
        Place::New => "(new)".into(),
    }
}

/// True when `place` is the calling thread's own namespace: the job can run right here, with
/// no hop to the helper thread (a CNI plugin works on the namespace it runs in).
fn is_here(place: &Place) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Place::In(ns) = place else { return false };
    let Ok(theirs) = nix::sys::stat::fstat(ns) else {
        return false;
    };
    match std::fs::metadata("/proc/thread-self/ns/net") {
        Ok(mine) => mine.dev() == theirs.st_dev && mine.ino() == theirs.st_ino,
        Err(_) => false,
    }
}

/// Run `f` inside `place` on the helper thread (or right here when `place` is the caller's own
/// namespace), blocking until it is done.
pub(crate) fn run_blocking<T, F>(place: Place, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if is_here(&place) {
        return catch_unwind(AssertUnwindSafe(f)).map_err(|_| NetnsError::Panicked(label(&place)));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    submit(place, f, move |out| {
        let _ = tx.send(out);
    })?;
    rx.recv().map_err(|_| NetnsError::Panicked("(helper thread)".into()))?
}

/// Run `f` inside `place` on the helper thread (or right here when `place` is the caller's own
/// namespace: jobs are short); the future completes when it is done.
pub(crate) async fn run<T, F>(place: Place, f: F) -> Result<T, NetnsError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if is_here(&place) {
        return catch_unwind(AssertUnwindSafe(f)).map_err(|_| NetnsError::Panicked(label(&place)));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    submit(place, f, move |out| {
        let _ = tx.send(out);
    })?;
    rx.await.map_err(|_| NetnsError::Panicked("(helper thread)".into()))?
}

impl NetNs {
    /// Run netkit's own short job `f` inside each of `namespaces`: the list is cut into one
    /// share per helper thread (at most one per core), and each helper enters the namespaces
    /// of its share one after the other and goes home after — one thread hop per core for many
    /// namespaces instead of one each, and the shares run at the same time. Always on helper
    /// threads, never on the caller's. One result per namespace, in order.
    pub(crate) async fn job_each<F, T>(namespaces: Vec<NetNs>, f: F) -> Result<Vec<Result<T, NetnsError>>, NetnsError>
    where
        F: Fn() -> T + Send + Sync + 'static,
        T: Send + 'static,
    {
        if namespaces.is_empty() {
            return Ok(Vec::new());
        }
        let f = std::sync::Arc::new(f);
        let share = namespaces.len().div_ceil(helpers());
        let mut pending = Vec::new();
        let mut rest = namespaces;
        while !rest.is_empty() {
            let tail = rest.split_off(share.min(rest.len()));
            let mine = std::mem::replace(&mut rest, tail);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let f = f.clone();
            submit(
                Place::In(mine[0].clone()),
                move || {
                    mine.iter()
                        .map(|ns| {
                            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|e| NetnsError::io("enter", ns, e))?;
                            Ok(f())
                        })
                        .collect::<Vec<_>>()
                },
                move |out| {
                    let _ = tx.send(out);
                },
            )?;
            pending.push(rx);
        }
        let mut out = Vec::new();
        for rx in pending {
            out.extend(rx.await.map_err(|_| NetnsError::Panicked("(helper thread)".into()))??);
        }
        Ok(out)
    }

    /// Run netkit's own short blocking job `f` inside this namespace (open a socket there,
    /// write a sysctl, an ioctl): right here when the calling thread is in it already, else on
    /// the helper thread, without blocking the async caller. Not for user code, which may block
    /// for long: that runs on a thread of its own ([`NetNs::exec`]).
    pub(crate) async fn job<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        run(Place::In(self.clone()), f).await
    }

    /// [`NetNs::job`], blocking the calling thread until it is done.
    pub(crate) fn job_blocking<F, T>(&self, f: F) -> Result<T, NetnsError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        run_blocking(Place::In(self.clone()), f)
    }
}
