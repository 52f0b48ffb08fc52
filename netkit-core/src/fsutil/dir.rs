//! Reading a directory a few entries at a time.
//!
//! `std::fs::read_dir` reads 32 KiB of entries per system call: for a directory of a thousand
//! holders, asking "is there anyone besides me?" costs a few hundred microseconds of kernel
//! time. [`each_entry`] asks the kernel for a small buffer at a time, so a walk that stops at
//! the first or second entry costs one small `getdents64`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Bytes asked for per `getdents64`: a dozen typical entries.
const CHUNK: usize = 512;

/// Call `f` with each entry name of `dir` (not `.` and `..`) until it returns `true`. A
/// missing directory has no entries.
pub(crate) fn each_entry(dir: &Path, mut f: impl FnMut(&OsStr) -> bool) -> io::Result<()> {
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY)
        .open(dir)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // u64 elements: linux_dirent64 records are 8-byte aligned.
    let mut buf = [0u64; CHUNK / 8];
    loop {
        let n = getdents(&file, &mut buf)?;
        if n == 0 {
            return Ok(());
        }
        // SAFETY: viewing the u64 buffer as bytes; the first `n` bytes were written by the kernel.
        let bytes = unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) };
        let mut off = 0;
        // struct linux_dirent64 { u64 d_ino; i64 d_off; u16 d_reclen; u8 d_type; char d_name[]; }
        while off + 19 <= n {
            let reclen = usize::from(u16::from_ne_bytes([bytes[off + 16], bytes[off + 17]]));
            if reclen < 19 || off + reclen > n {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "malformed directory entry"));
            }
            let name = &bytes[off + 19..off + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            off += reclen;
            if name == b"." || name == b".." {
                continue;
            }
            if f(OsStr::from_bytes(name)) {
                return Ok(());
            }
        }
    }
}

fn getdents(dir: &File, buf: &mut [u64]) -> io::Result<usize> {
    loop {
        // SAFETY: getdents64 writes at most `len` bytes into `buf`, which is valid and writable
        // for that many bytes.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buf.as_mut_ptr(),
                std::mem::size_of_val(buf),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_all_or_stops_early() {
        let d = tempfile::tempdir().unwrap();
        let mut want: Vec<String> = (0..300).map(|i| format!("entry-with-a-longish-name-{i:04}")).collect();
        for n in &want {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let mut got = Vec::new();
        each_entry(d.path(), |n| {
            got.push(n.to_string_lossy().into_owned());
            false
        })
        .unwrap();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let mut seen = 0;
        each_entry(d.path(), |_| {
            seen += 1;
            seen == 2
        })
        .unwrap();
        assert_eq!(seen, 2);
        each_entry(&d.path().join("missing"), |_| panic!("no entries")).unwrap();
    }
}
