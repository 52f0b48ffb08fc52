//! libnftables, loaded at run time: nft commands run in-process (no `nft` process), inside the
//! firewall's namespace, as one atomic transaction per call.
//!
//! Loaded with `dlopen("libnftables.so.1")` rather than linked, so a host without it still runs
//! netkit (the firewall then falls back to iptables) and building needs no -dev package.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::OnceLock;

use crate::netns::worker::{self, Place};
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
    // libnftables promises no thread safety (a context's setup touches process-wide state), and
    // a job in the caller's own namespace runs on the caller's thread: one run at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    worker::run_blocking(Place::In(ns.clone()), move || {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        run_here(lib, &text)
    })
    .map_err(|e| e.to_string())?
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
    use super::errno_of;

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
