//! libnftables, loaded at run time: nft commands run in-process (no `nft` process), inside the
//! firewall's namespace, as one atomic transaction per call.
//!
//! Loaded with `dlopen("libnftables.so.1")` rather than linked, so a host without it still runs
//! netkit (the firewall then falls back to iptables) and building needs no -dev package.
//!
//! Every run of the process happens on one long-lived thread of its own (see [`on_own_thread`]):
//! libnftables is not thread-safe, and a transaction can be slow (it reads the ruleset first),
//! so it neither shares netkit's namespace helper thread (which opens the netlink sockets and
//! writes the sysctls of every namespace) nor runs beside another transaction.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::netns::worker::{HomeThread, Place};
use crate::NetNs;

type NewFn = unsafe extern "C" fn(u32) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type BufferFn = unsafe extern "C" fn(*mut c_void) -> c_int;
type GetBufferFn = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type RunFn = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The few libnftables entry points netkit uses.
struct Lib {
    ctx_new: NewFn,
    ctx_free: FreeFn,
    buffer_output: BufferFn,
    buffer_error: BufferFn,
    get_output: GetBufferFn,
    get_error: GetBufferFn,
    run_cmd: RunFn,
}

fn load() -> Result<Lib, String> {
    let name = CString::new("libnftables.so.1").expect("no NUL");
    // SAFETY: dlopen with a valid NUL-terminated name; the handle is never closed, so the
    // function pointers taken from it stay valid for the life of the process.
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        // SAFETY: dlerror returns a thread-local C string or null.
        let err = unsafe { libc::dlerror() };
        let msg = if err.is_null() {
            "dlopen failed".to_string()
        } else {
            // SAFETY: non-null, NUL-terminated, valid until the next dl* call on this thread.
            unsafe { CStr::from_ptr(err) }.to_string_lossy().into_owned()
        };
        return Err(format!("cannot load libnftables.so.1 ({msg}); install libnftables1"));
    }
    let sym = |n: &str| -> Result<*mut c_void, String> {
        let c = CString::new(n).expect("no NUL");
        // SAFETY: valid handle and NUL-terminated symbol name.
        let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
        if p.is_null() {
            Err(format!("libnftables.so.1 lacks {n}"))
        } else {
            Ok(p)
        }
    };
    // SAFETY: each symbol is a libnftables function with exactly this C signature (nftables'
    // public header libnftables.h, stable since 0.9); transmuting the address to the matching
    // `extern "C" fn` type is how dlsym results are called.
    unsafe {
        Ok(Lib {
            ctx_new: std::mem::transmute::<*mut c_void, NewFn>(sym("nft_ctx_new")?),
            ctx_free: std::mem::transmute::<*mut c_void, FreeFn>(sym("nft_ctx_free")?),
            buffer_output: std::mem::transmute::<*mut c_void, BufferFn>(sym("nft_ctx_buffer_output")?),
            buffer_error: std::mem::transmute::<*mut c_void, BufferFn>(sym("nft_ctx_buffer_error")?),
            get_output: std::mem::transmute::<*mut c_void, GetBufferFn>(sym("nft_ctx_get_output_buffer")?),
            get_error: std::mem::transmute::<*mut c_void, GetBufferFn>(sym("nft_ctx_get_error_buffer")?),
            run_cmd: std::mem::transmute::<*mut c_void, RunFn>(sym("nft_run_cmd_from_buffer")?),
        })
    }
}

fn lib() -> Result<&'static Lib, String> {
    static LIB: OnceLock<Result<Lib, String>> = OnceLock::new();
    LIB.get_or_init(load).as_ref().map_err(Clone::clone)
}

/// True when libnftables can be loaded.
pub(crate) fn available() -> Result<(), String> {
    lib().map(drop)
}

fn run_here(lib: &Lib, commands: &CStr) -> Result<String, String> {
    // SAFETY: the context is created, used and freed on this thread only; the buffers returned
    // by get_output/get_error are owned by the context and copied before it is freed.
    unsafe {
        let ctx = (lib.ctx_new)(0);
        if ctx.is_null() {
            return Err("nft_ctx_new failed".into());
        }
        (lib.buffer_output)(ctx);
        (lib.buffer_error)(ctx);
        let rc = (lib.run_cmd)(ctx, commands.as_ptr());
        let take = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        let out = take((lib.get_output)(ctx));
        let err = take((lib.get_error)(ctx));
        (lib.ctx_free)(ctx);
        if rc == 0 {
            Ok(out)
        } else {
            Err(if err.trim().is_empty() {
                format!("nft failed with status {rc}")
            } else {
                err
            })
        }
    }
}

/// Run nft `commands` (one transaction) inside `ns`; `Ok(output)` or `Err(nft's message)`.
pub(crate) fn run(ns: &NetNs, commands: &str) -> Result<String, String> {
    let lib = lib()?;
    let text = CString::new(commands).map_err(|_| "nft commands contain a NUL byte".to_string())?;
    on_own_thread(ns, move || run_here(lib, &text))?
}

/// libnftables' own thread (see [`on_own_thread`]).
static THREAD: HomeThread = HomeThread::new("netkit-nft");

/// Run `f` inside `ns` on libnftables' thread and wait for it.
///
/// One long-lived thread runs every libnftables job of the process, one after the other
/// (libnftables is not thread-safe). Like netkit's namespace helpers it enters the target
/// namespace for a job and goes back home (the process's namespace) before the next one; a
/// thread that cannot go back ends and the next job starts another. It is not one of those
/// helpers, so a slow transaction holds up only other libnftables jobs, never the sockets and
/// sysctls of other namespaces.
fn on_own_thread<T, F>(ns: &NetNs, f: F) -> Result<T, String>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    THREAD
        .run_blocking(Place::In(ns.clone()), f)
        .map_err(|e| format!("libnftables job: {e}"))
}

/// The errno libnftables names in its error `message`, if any. Its errors from the kernel read
/// `Error: Could not process rule: <strerror>`, those of its own cache checks
/// `Error: <strerror>; did you mean …` (a syntax error names none).
pub(crate) fn errno_of(message: &str) -> Option<i32> {
    message.lines().find_map(|line| {
        let (_, rest) = line.split_once("Error: ")?;
        let rest = rest.strip_prefix("Could not process rule: ").unwrap_or(rest);
        let text = rest.split(';').next()?.trim();
        // strerror's text for each errno, as this process's libc (the one libnftables uses)
        // writes it; std appends " (os error N)".
        (1..256).find(|&e| {
            let s = std::io::Error::from_raw_os_error(e).to_string();
            s.strip_suffix(&format!(" (os error {e})")) == Some(text)
        })
    })
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::netns::{NetNsGuard, NetnsId};

    fn test_ns(tag: &str) -> NetNsGuard {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "nklibnft{}x{}{tag}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        NetNsGuard::create(&name).expect("create test netns")
    }

    /// The namespace of the calling thread.
    fn here() -> NetnsId {
        NetNs::current().unwrap().id().unwrap()
    }

    #[test]
    fn jobs_run_inside_their_namespace_one_at_a_time() {
        let (a, b) = (test_ns("a"), test_ns("b"));
        let busy = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..6)
            .map(|i| {
                let ns: NetNs = if i % 2 == 0 { (*a).clone() } else { (*b).clone() };
                let busy = busy.clone();
                std::thread::spawn(move || {
                    let want = ns.id().unwrap();
                    let (got, alone) = on_own_thread(&ns, move || {
                        let alone = busy.fetch_add(1, Ordering::SeqCst) == 0;
                        std::thread::sleep(Duration::from_millis(5));
                        busy.fetch_sub(1, Ordering::SeqCst);
                        (here(), alone)
                    })
                    .unwrap();
                    assert_eq!(got, want, "job {i} ran inside its namespace");
                    assert!(alone, "job {i} ran beside another one");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // The thread went home after each job: a job for its home namespace (where this
        // test process was when it started the thread) finds it there.
        let home = NetNs::current().unwrap();
        assert_eq!(on_own_thread(&home, here).unwrap(), home.id().unwrap());
        // A panic is an error, and the thread stays usable.
        let err = on_own_thread::<(), _>(&a, || panic!("boom")).unwrap_err();
        assert!(err.contains("panicked"), "{err}");
        assert_eq!(on_own_thread(&a, here).unwrap(), a.id().unwrap());
    }

    /// A slow libnftables job holds up neither netkit's namespace helper thread nor the jobs
    /// it runs (sockets, sysctls) for other namespaces.
    #[test]
    fn a_slow_job_holds_up_no_namespace_work() {
        let (slow_ns, other) = (test_ns("slow"), test_ns("other"));
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let ns: NetNs = (*slow_ns).clone();
        let slow = std::thread::spawn(move || {
            on_own_thread(&ns, move || {
                started_tx.send(()).unwrap();
                release_rx.recv_timeout(Duration::from_secs(30)).is_ok()
            })
        });
        started_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the slow job started");
        let start = Instant::now();
        let want = other.id().unwrap();
        for _ in 0..5 {
            let got = other.job_blocking(here).unwrap();
            assert_eq!(got, want);
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
        release_tx.send(()).unwrap();
        assert_eq!(slow.join().unwrap(), Ok(true));
    }

    #[test]
    fn runs_commands_inside_the_namespace() {
        if available().is_err() {
            return;
        }
        let ns = test_ns("run");
        run(&ns, "add table inet nktest\n").unwrap();
        let out = run(&ns, "list tables\n").unwrap();
        assert!(out.contains("table inet nktest"), "{out}");
        let other = test_ns("run2");
        assert!(!run(&other, "list tables\n").unwrap().contains("nktest"));
        let err = run(&ns, "add table inet nktest\ncreate table inet nktest\n").unwrap_err();
        assert_eq!(errno_of(&err), Some(libc::EEXIST), "{err}");
        let err = run(&ns, "this is no nft\n").unwrap_err();
        assert_eq!(errno_of(&err), None, "{err}");
    }

    #[test]
    fn errno_is_read_from_libnftables_messages() {
        let kernel = "/dev/stdin:1:19-19: Error: Could not process rule: File exists\ncreate table inet t\n                  ^\n";
        assert_eq!(errno_of(kernel), Some(libc::EEXIST));
        let cache =
            "Error: No such file or directory; did you mean table 'netkit' in family inet?\nadd chain inet t svc-x\n";
        assert_eq!(errno_of(cache), Some(libc::ENOENT));
        assert_eq!(errno_of("Error: No such file or directory\n"), Some(libc::ENOENT));
        assert_eq!(errno_of("Error: syntax error, unexpected newline\n"), None);
        assert_eq!(errno_of("nft failed with status 1"), None);
        assert_eq!(errno_of(""), None);
    }
}
