//! Directories as descriptors, and everything done inside them relative to the descriptor.
//!
//! A store opens its root and each subdirectory once ([`Dir::root`], [`Dir::sub`]: `O_DIRECTORY
//! | O_NOFOLLOW | O_CLOEXEC`, each subdirectory with `openat` from its parent) and names every
//! file by one component relative to one of them: `openat` with `O_NOFOLLOW`, `renameat2`,
//! `linkat` (without `AT_SYMLINK_FOLLOW`), `unlinkat`, `fstatat` with `AT_SYMLINK_NOFOLLOW`. A
//! symbolic link planted anywhere in a store is therefore never followed: opening it fails
//! (`ELOOP`, reported as [`io::ErrorKind::InvalidData`]), and renaming or unlinking it moves or
//! removes the link itself. Files are also checked to be regular files once open, so a FIFO or
//! device planted at a record's name is refused before anything is read from or written to it.
//!
//! Directories are created 0700 and files 0600: the state is root's alone.
//!
//! Listing ([`Dir::each_entry`]) reads a few entries at a time: `std::fs::read_dir` reads 32 KiB
//! of entries per system call, so for a directory of a thousand holders, asking "is there anyone
//! besides me?" would cost a few hundred microseconds of kernel time; a walk that stops at the
//! first or second entry here costs one small `getdents64`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{self, AtFlags, OFlag, RenameFlags};
use nix::sys::stat::{self, FileStat, Mode, SFlag};
use nix::unistd::{self, UnlinkatFlags};

/// Mode of the directories the stores create: root's alone.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of the files the stores create.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Bytes asked for per `getdents64`: a dozen typical entries.
const CHUNK: usize = 512;

/// An open directory: every operation names one entry relative to it.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// An I/O error for an entry that is not what a store keeps there (a symbolic link, a FIFO, …).
pub(crate) fn not_a_record(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// `ELOOP` (the last component is a symbolic link) and `ENOTDIR` as "not what belongs here".
fn open_error(e: Errno, path: &Path, what: &str) -> io::Error {
    match e {
        Errno::ELOOP => not_a_record(format!("{} is a symbolic link, not a {what}", path.display())),
        Errno::ENOTDIR if what == "directory" => not_a_record(format!("{} is not a directory", path.display())),
        // O_NONBLOCK write-open of a FIFO nobody reads.
        Errno::ENXIO => not_a_record(format!("{} is not a {what}", path.display())),
        e => io::Error::from(e),
    }
}

impl Dir {
    /// Open the directory `path` (creating it and its parents, 0700, when `create`). Its last
    /// component must not be a symbolic link.
    pub(crate) fn root(path: &Path, create: bool) -> io::Result<Dir> {
        if create {
            std::fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)?;
        }
        let fd = fcntl::open(path, dir_flags(), Mode::empty()).map_err(|e| open_error(e, path, "directory"))?;
        Ok(Dir {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Open the subdirectory `name` (creating it, 0700, when `create`); never through a link.
    pub(crate) fn sub(&self, name: &str, create: bool) -> io::Result<Dir> {
        let path = self.path.join(name);
        if create {
            match stat::mkdirat(&self.fd, name, Mode::from_bits_truncate(DIR_MODE)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
        let fd =
            fcntl::openat(&self.fd, name, dir_flags(), Mode::empty()).map_err(|e| open_error(e, &path, "directory"))?;
        Ok(Dir { fd, path })
    }

    /// The directory's path (for messages; operations go through the descriptor).
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the entry `name` (for messages).
    pub(crate) fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// Open `name` with `flags` (plus `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY`) and
    /// check it is a regular file.
    fn open_file(&self, name: &OsStr, flags: OFlag) -> io::Result<File> {
        let flags = flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY;
        let fd = fcntl::openat(&self.fd, name, flags, Mode::from_bits_truncate(FILE_MODE))
            .map_err(|e| open_error(e, &self.join(name), "regular file"))?;
        let st = stat::fstat(&fd).map_err(io::Error::from)?;
        if !is_regular(&st) {
            return Err(not_a_record(format!(
                "{} is not a regular file",
                self.join(name).display()
            )));
        }
        Ok(File::from(fd))
    }

    /// The whole content of `name`; `None` when it does not exist. A link, a non-regular file
    /// or one larger than `max` bytes is [`io::ErrorKind::InvalidData`].
    pub(crate) fn read(&self, name: impl AsRef<OsStr>, max: u64) -> io::Result<Option<Vec<u8>>> {
        let name = name.as_ref();
        let mut f = match self.open_file(name, OFlag::O_RDONLY) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = Vec::new();
        (&mut f).take(max + 1).read_to_end(&mut buf)?;
        if buf.len() as u64 > max {
            return Err(not_a_record(format!(
                "{} is larger than {max} bytes",
                self.join(name).display()
            )));
        }
        Ok(Some(buf))
    }

    /// Create `name` (0600), which must not exist.
    pub(crate) fn create_new(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL)
    }

    /// Open the existing regular file `name` for writing.
    pub(crate) fn open_write(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlag::O_WRONLY)
    }

    /// Open `name` for appending, creating it (0600) if needed.
    pub(crate) fn open_append(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT)
    }

    /// Open `name` for writing, creating it (0600) if needed; never truncated here.
    pub(crate) fn open_or_create(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        self.open_file(name.as_ref(), OFlag::O_RDWR | OFlag::O_CREAT)
    }

    /// `renameat2(self/from, to/to_name, flags)`.
    pub(crate) fn rename(
        &self,
        from: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
        flags: RenameFlags,
    ) -> Result<(), Errno> {
        fcntl::renameat2(&self.fd, from.as_ref(), &to.fd, to_name.as_ref(), flags)
    }

    /// Move `self/from` to `to/to_name` unless something is there (`EEXIST`). On file systems
    /// without `RENAME_NOREPLACE`, `link(2)` (which also refuses to replace) and `unlink(2)`.
    pub(crate) fn rename_noreplace(
        &self,
        from: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
    ) -> Result<(), Errno> {
        let (from, to_name) = (from.as_ref(), to_name.as_ref());
        match self.rename(from, to, to_name, RenameFlags::RENAME_NOREPLACE) {
            Err(Errno::EINVAL | Errno::ENOSYS) => {
                self.link(from, to, to_name)?;
                self.unlink(from)
            }
            other => other,
        }
    }

    /// `linkat(self/from, to/to_name)`, never following a link.
    pub(crate) fn link(&self, from: impl AsRef<OsStr>, to: &Dir, to_name: impl AsRef<OsStr>) -> Result<(), Errno> {
        unistd::linkat(&self.fd, from.as_ref(), &to.fd, to_name.as_ref(), AtFlags::empty())
    }

    /// Remove the entry `name` (a link is removed, not what it points to).
    pub(crate) fn unlink(&self, name: impl AsRef<OsStr>) -> Result<(), Errno> {
        unistd::unlinkat(&self.fd, name.as_ref(), UnlinkatFlags::NoRemoveDir)
    }

    /// Remove the empty subdirectory `name`.
    pub(crate) fn rmdir(&self, name: impl AsRef<OsStr>) -> Result<(), Errno> {
        unistd::unlinkat(&self.fd, name.as_ref(), UnlinkatFlags::RemoveDir)
    }

    /// `mkdirat(name, 0700)`: `Ok(false)` when it exists.
    pub(crate) fn mkdir(&self, name: impl AsRef<OsStr>) -> Result<bool, Errno> {
        match stat::mkdirat(&self.fd, name.as_ref(), Mode::from_bits_truncate(DIR_MODE)) {
            Ok(()) => Ok(true),
            Err(Errno::EEXIST) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The entry's own metadata (a link's, not its target's); `None` when missing.
    pub(crate) fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Option<FileStat>> {
        match stat::fstatat(&self.fd, name.as_ref(), AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(io::Error::from(e)),
        }
    }

    /// fsync the directory itself (its entries).
    pub(crate) fn sync(&self) -> io::Result<()> {
        unistd::fsync(&self.fd).map_err(io::Error::from)
    }

    /// Call `f` with each entry name (not `.` and `..`) until it returns `true`.
    pub(crate) fn each_entry(&self, f: impl FnMut(&OsStr) -> bool) -> io::Result<()> {
        // A descriptor of its own: the directory offset getdents64 advances is per open file,
        // and other threads may be listing the same directory.
        let fd = fcntl::openat(&self.fd, ".", dir_flags(), Mode::empty()).map_err(io::Error::from)?;
        walk(&fd, f)
    }

    /// Every entry name, sorted.
    pub(crate) fn names(&self) -> io::Result<Vec<OsString>> {
        let mut out = Vec::new();
        self.each_entry(|n| {
            out.push(n.to_os_string());
            false
        })?;
        out.sort();
        Ok(out)
    }
}

/// True for a regular file.
pub(crate) fn is_regular(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFREG
}

/// True for a directory.
pub(crate) fn is_dir(st: &FileStat) -> bool {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR
}

fn walk(dir: &OwnedFd, mut f: impl FnMut(&OsStr) -> bool) -> io::Result<()> {
    // u64 elements: linux_dirent64 records are 8-byte aligned.
    let mut buf = [0u64; CHUNK / 8];
    loop {
        let n = getdents(dir, &mut buf)?;
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

fn getdents(dir: &OwnedFd, buf: &mut [u64]) -> io::Result<usize> {
    loop {
        // SAFETY: getdents64 writes at most `len` bytes into `buf`, which is valid and writable
        // for that many bytes; `dir` is an open directory descriptor.
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
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn walks_all_or_stops_early() {
        let d = tempfile::tempdir().unwrap();
        let mut want: Vec<String> = (0..300).map(|i| format!("entry-with-a-longish-name-{i:04}")).collect();
        for n in &want {
            std::fs::write(d.path().join(n), "").unwrap();
        }
        let dir = Dir::root(d.path(), false).unwrap();
        let mut got: Vec<String> = dir
            .names()
            .unwrap()
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let mut seen = 0;
        dir.each_entry(|_| {
            seen += 1;
            seen == 2
        })
        .unwrap();
        assert_eq!(seen, 2);
    }

    #[test]
    fn links_fifos_and_oversized_files_are_refused_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        let root = Dir::root(&d.path().join("store"), true).unwrap();
        symlink(&victim, root.join("link")).unwrap();
        symlink(outside.path(), root.join("subdir")).unwrap();
        nix::unistd::mkfifo(&root.join("fifo"), Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(root.join("big"), "0123456789").unwrap();

        for name in ["link", "fifo", "big"] {
            let e = root.read(name, 5).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{name}: {e}");
        }
        assert_eq!(root.read("missing", 5).unwrap(), None);
        assert_eq!(root.open_write("link").unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            root.open_or_create("link").unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        assert_eq!(root.open_write("fifo").unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(root.sub("subdir", true).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert!(Dir::root(&root.join("subdir"), false).is_err());
        // Unlinking and renaming touch the link itself.
        root.rename("link", &root, "moved", RenameFlags::empty()).unwrap();
        root.unlink("moved").unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert!(root.stat("moved").unwrap().is_none());

        // What is created is root's alone.
        let sub = root.sub("made", true).unwrap();
        drop(sub.create_new("f").unwrap());
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(root.path()), 0o700);
        assert_eq!(mode(&root.join("made")), 0o700);
        assert_eq!(mode(&root.join("made/f")), 0o600);
    }
}
