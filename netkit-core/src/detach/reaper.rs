//! Noticing a reaper that does not reap.
//!
//! A detached process is reparented to the caller's reaper: its nearest ancestor that made itself
//! a child subreaper, or the PID namespace's init. Each time one is started, a record names it
//! (pid and start time) in a file named after its reaper (pid; the reaper's start time is in the
//! record), in a directory per PID namespace (named by the namespace's inode) under
//! `/run/netkit/detach/`. Before starting another, the caller walks up its own ancestors: the
//! nearest one that has a record is its reaper, and the record decides:
//!
//! * the process recorded there is not a zombie child of the reaper (running, or reaped): the
//!   reaper reaps; the new detached process replaces it in the record;
//! * it is a zombie: the first caller to see that notes the time in the record, and until
//!   [`REAP_GRACE`] has passed since, detached processes are still started but the record keeps
//!   watching that zombie (a new one would hide it);
//! * it has been seen a zombie for longer than [`REAP_GRACE`]: the reaper does not reap; the
//!   caller does the work itself.
//!
//! The grace period is there for reapers that reap late rather than never: some inits collect
//! orphans by polling every few seconds. A reaper slower than that is taken for one that does
//! not reap until it has reaped, which costs each caller a wait meanwhile, nothing else. Under a
//! reaper that never reaps, the detached processes started during the grace period stay zombies
//! too; after it, no more are started.
//!
//! One file per reaper rather than one per namespace: processes under different reapers neither
//! overwrite each other's records nor inherit each other's verdicts. Each record is written
//! whole by one `pwrite` of a fixed length, so readers never see half of one. In the usual case
//! (no record, or only init's) a check reads no `/proc` file but the recorded process's; the
//! walk up the ancestors happens only when subreapers have records, and it removes the records
//! of reapers that are gone.

use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use nix::fcntl::{open, openat, OFlag};
use nix::sys::stat::{fstat, mkdirat, Mode};

/// The directory the records go under; created if missing (it is `/run` in every process).
pub(super) const BASE: &str = "/run";
/// The directories below [`BASE`], then one per PID namespace.
const BELOW: [&str; 2] = ["netkit", "detach"];

/// How far up the process tree to look for the reaper.
const MAX_DEPTH: usize = 64;

/// How long a recorded detached process may stay a zombie before its reaper is taken for one
/// that does not reap.
pub(crate) const REAP_GRACE: Duration = Duration::from_secs(5);

/// What the records say about this process's reaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reaper {
    /// Nothing speaks against it: start detached processes, record them.
    Reaps,
    /// The one recorded for this reaper (pid) is a zombie, not for longer than [`REAP_GRACE`]
    /// yet: start detached processes, but leave that record on its zombie.
    Watching(i32),
    /// The recorded one has been a zombie for longer than [`REAP_GRACE`].
    DoesNotReap(Unreaped),
}

/// A detached process that is still a zombie under its reaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unreaped {
    /// The zombie.
    pub(crate) pid: i32,
    /// Its parent, which adopted it and has not reaped it.
    pub(crate) reaper: i32,
}

/// The last detached process started under one reaper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Record {
    /// The reaper's start time (`/proc/<pid>/stat` field 22), so that a record for a reaper
    /// whose pid was reused is not taken for the new process's; 0 for init, which is the same
    /// process as long as its namespace lives.
    pub(super) reaper_start: u64,
    pub(super) pid: i32,
    pub(super) start: u64,
    /// When a caller first saw it a zombie ([`now_ms`]); 0: not yet.
    pub(super) seen: u64,
}

impl Record {
    /// Every record has this length, so a write replaces the previous record whole.
    const LEN: usize = 74;

    fn encode(&self) -> String {
        format!(
            "{:>20} {:>10} {:>20} {:>20}\n",
            self.reaper_start, self.pid, self.start, self.seen
        )
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let line = std::str::from_utf8(bytes).ok()?.lines().next()?;
        let mut f = line.split_ascii_whitespace();
        let rec = Self {
            reaper_start: f.next()?.parse().ok()?,
            pid: f.next()?.parse().ok()?,
            start: f.next()?.parse().ok()?,
            seen: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(rec)
    }
}

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProcStat {
    state: u8,
    ppid: i32,
    start: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    parse_stat(&std::fs::read(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(text: &[u8]) -> Option<ProcStat> {
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so read after the last ')'.
    let close = text.iter().rposition(|&b| b == b')')?;
    let mut f = std::str::from_utf8(text.get(close + 1..)?)
        .ok()?
        .split_ascii_whitespace();
    let state = f.next()?.bytes().next()?;
    let ppid = f.next()?.parse().ok()?;
    // starttime is field 22; the next one is field 5.
    let start = f.nth(22 - 5)?.parse().ok()?;
    Some(ProcStat { state, ppid, start })
}

/// The inode of this process's PID namespace, if `/proc` shows this process under its own pid
/// (it is mounted for this PID namespace); `None` otherwise, and then nothing is recorded.
fn pidns() -> Option<u64> {
    static NS: OnceLock<Option<u64>> = OnceLock::new();
    *NS.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let me = std::fs::read_link("/proc/self").ok()?;
        if me.to_str()? != std::process::id().to_string() {
            return None;
        }
        Some(std::fs::metadata("/proc/self/ns/pid").ok()?.ino())
    })
}

/// The record directory of this process's PID namespace.
pub(super) struct Records {
    dir: OwnedFd,
    /// Its path, for listing it.
    path: PathBuf,
}

impl Records {
    /// Open `<base>/netkit/detach/<pidns inode>`, creating missing directories (mode 0700) when
    /// `create`, without following a symlink below `base`. Each directory must belong to this
    /// user (or root) and be writable by nobody else.
    pub(super) fn open(base: &Path, create: bool) -> io::Result<Self> {
        let ns = pidns().ok_or_else(|| io::Error::other("/proc is not this PID namespace's"))?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let mut dir = open(base, flags, Mode::empty())?;
        let ns = ns.to_string();
        let mut path = base.to_path_buf();
        for name in BELOW.iter().copied().chain([ns.as_str()]) {
            let next = match openat(&dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
                Err(nix::errno::Errno::ENOENT) if create => {
                    match mkdirat(&dir, name, Mode::S_IRWXU) {
                        Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&dir, name, flags | OFlag::O_NOFOLLOW, Mode::empty())?
                }
                r => r?,
            };
            let st = fstat(&next)?;
            let euid = nix::unistd::geteuid().as_raw();
            if (st.st_uid != euid && st.st_uid != 0) || st.st_mode & 0o022 != 0 {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!("{name} under {}: another user's or writable by others", base.display()),
                ));
            }
            dir = next;
            path.push(name);
        }
        Ok(Self { dir, path })
    }

    /// The reapers that have a record, in no order.
    fn reapers(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir(&self.path) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// Remove the record for `reaper`.
    fn remove(&self, reaper: i32) {
        let _ = nix::unistd::unlinkat(
            &self.dir,
            reaper.to_string().as_str(),
            nix::unistd::UnlinkatFlags::NoRemoveDir,
        );
    }

    /// The record for the reaper `reaper`, if there is a readable one.
    fn read(&self, reaper: i32) -> Option<Record> {
        let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(&self.dir, reaper.to_string().as_str(), flags, Mode::empty()).ok()?;
        let mut buf = [0u8; 2 * Record::LEN];
        let n = nix::unistd::read(&fd, &mut buf).ok()?;
        Record::decode(buf.get(..n)?)
    }

    /// Replace the record for `reaper` (file mode 0600; a symlink there is not followed).
    pub(super) fn write(&self, reaper: i32, rec: &Record) -> io::Result<()> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
        let fd = openat(
            &self.dir,
            reaper.to_string().as_str(),
            flags,
            Mode::S_IRUSR | Mode::S_IWUSR,
        )?;
        let text = rec.encode();
        debug_assert_eq!(text.len(), Record::LEN);
        if nix::sys::uio::pwrite(&fd, text.as_bytes(), 0)? != text.len() {
            return Err(io::Error::other("short write of a detach record"));
        }
        Ok(())
    }
}

/// CLOCK_BOOTTIME in milliseconds (at least 1): the same clock in every process of the machine.
fn now_ms() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime into a valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    let ms = u64::try_from(ts.tv_sec).unwrap_or(0) * 1000 + u64::try_from(ts.tv_nsec).unwrap_or(0) / 1_000_000;
    ms.max(1)
}

/// What the records say about this process's reaper (see the module docs). May note in a
/// record when its process was first seen a zombie.
pub(crate) fn check() -> Reaper {
    match Records::open(Path::new(BASE), false) {
        Ok(records) => check_in(&records, std::process::id() as i32, now_ms()),
        Err(_) => Reaper::Reaps,
    }
}

/// [`check`] for the process `me` at `now` ([`now_ms`]), from `records`.
fn check_in(records: &Records, me: i32, now: u64) -> Reaper {
    let Some((reaper, rec)) = nearest_reaper(records, me) else {
        return Reaper::Reaps;
    };
    let zombie = proc_stat(rec.pid).is_some_and(|p| p.state == b'Z' && p.ppid == reaper && p.start == rec.start);
    if !zombie {
        Reaper::Reaps
    } else if rec.seen == 0 {
        let _ = records.write(reaper, &Record { seen: now, ..rec });
        Reaper::Watching(reaper)
    } else if now.saturating_sub(rec.seen) > REAP_GRACE.as_millis() as u64 {
        Reaper::DoesNotReap(Unreaped { pid: rec.pid, reaper })
    } else {
        Reaper::Watching(reaper)
    }
}

/// The nearest of `me` and its ancestors that has a record about it (a reaper that adopted a
/// detached process before), with that record.
fn nearest_reaper(records: &Records, me: i32) -> Option<(i32, Record)> {
    let reapers = records.reapers();
    // The usual cases, without reading a /proc file (which costs tens of microseconds for a
    // process with many threads): no record, or only init's (every process descends from it,
    // and it is the same process as long as the namespace lives).
    match reapers.as_slice() {
        [] => return None,
        [1] => return Some((1, records.read(1)?)),
        _ => {}
    }
    let mut ancestors = Vec::new();
    let mut pid = me;
    let mut found = None;
    for _ in 0..MAX_DEPTH {
        let Some(st) = proc_stat(pid) else { break };
        ancestors.push(pid);
        // The record is about this very process (same start time), not an earlier one with
        // its pid.
        if reapers.contains(&pid) {
            if let Some(rec) = records.read(pid).filter(|r| pid == 1 || r.reaper_start == st.start) {
                found = Some((pid, rec));
                break;
            }
        }
        if st.ppid <= 0 {
            break;
        }
        pid = st.ppid;
    }
    // Records of reapers that are gone are of no use to anyone: remove them.
    for r in reapers.into_iter().filter(|r| !ancestors.contains(r)) {
        if !Path::new(&format!("/proc/{r}")).exists() {
            records.remove(r);
        }
    }
    found
}

/// Record `pid`, a detached process just started (its intermediate parent is reaped, so it has
/// its reaper as parent now), under its reaper, unless [`check`] said that reaper's record is
/// watching a zombie (`verdict`). The reaper may be another than the one `check` judged by: a
/// subreaper that has no record yet gets its first one here. Best effort: without a record
/// there is simply nothing to check next time.
pub(super) fn record(pid: i32, verdict: Reaper) {
    let _ = record_in(Path::new(BASE), pid, verdict);
}

fn record_in(base: &Path, pid: i32, verdict: Reaper) -> io::Result<()> {
    // Gone already: reaped, nothing to watch.
    let Some(st) = proc_stat(pid) else { return Ok(()) };
    match verdict {
        Reaper::Watching(watched) if watched == st.ppid => return Ok(()),
        Reaper::DoesNotReap(_) => return Ok(()),
        _ => {}
    }
    // Init's start time is not needed (see `nearest_reaper`) and costly to read.
    let reaper_start = match st.ppid {
        1 => 0,
        ppid => match proc_stat(ppid) {
            Some(reaper) => reaper.start,
            None => return Ok(()),
        },
    };
    let rec = Record {
        reaper_start,
        pid,
        start: st.start,
        seen: 0,
    };
    Records::open(base, true)?.write(st.ppid, &rec)
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn stat_fields_after_a_command_name_with_parentheses_and_spaces() {
        let line = b"42 (a) b (c) S 7 42 42 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: b'S',
                ppid: 7,
                start: 123456
            })
        );
        let me = proc_stat(std::process::id() as i32).unwrap();
        assert_eq!(me.ppid as u32, std::os::unix::process::parent_id());
    }

    #[test]
    fn records_have_one_length_and_read_back() {
        let rec = Record {
            reaper_start: u64::MAX,
            pid: i32::MAX,
            start: 0,
            seen: u64::MAX,
        };
        assert_eq!(rec.encode().len(), Record::LEN);
        assert_eq!(Record::decode(rec.encode().as_bytes()), Some(rec));
        assert_eq!(Record::decode(b"1 2 3\n"), None);
        assert_eq!(Record::decode(b""), None);
    }

    /// Directories 0700, records 0600, a symlink planted where a record goes is not followed,
    /// a directory others may write is refused.
    #[test]
    fn records_are_private_and_follow_no_symlink() {
        let base = tempfile::tempdir().unwrap();
        let records = Records::open(base.path(), true).unwrap();
        let dir = base.path().join("netkit/detach").join(pidns().unwrap().to_string());
        for d in [
            base.path().join("netkit"),
            base.path().join("netkit/detach"),
            dir.clone(),
        ] {
            assert_eq!(
                std::fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                0o700,
                "{d:?}"
            );
        }
        let rec = Record {
            reaper_start: 1,
            pid: 2,
            start: 3,
            seen: 0,
        };
        records.write(10, &rec).unwrap();
        assert_eq!(records.read(10), Some(rec));
        let meta = std::fs::metadata(dir.join("10")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);

        let target = base.path().join("target");
        std::fs::write(&target, "untouched").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("11")).unwrap();
        let err = records.write(11, &rec).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");
        assert_eq!(records.read(11), None);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");

        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(
            Records::open(base.path(), false).is_err(),
            "a directory others can write"
        );
    }

    /// The nearest ancestor with a record decides: a zombie recorded for a reaper is watched
    /// from the first time it is seen, and taken for a reaper that does not reap once it has been
    /// one for longer than the grace period; a record whose reaper start time does not match (a
    /// reused pid) is ignored; once reaped, the reaper reaps.
    #[test]
    fn a_zombie_recorded_for_an_ancestor_is_noticed_after_the_grace_period() {
        let base = tempfile::tempdir().unwrap();
        let records = Records::open(base.path(), true).unwrap();
        let me = std::process::id() as i32;
        let my = proc_stat(me).unwrap();
        // A child of ours that has exited and is not reaped yet: a zombie with us as parent.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let pidfd = wait_exit_without_reaping(pid);
        let z = proc_stat(pid).unwrap();
        assert_eq!(z.state, b'Z');
        let t = 1_000_000;
        let grace = REAP_GRACE.as_millis() as u64;
        assert_eq!(check_in(&records, me, t), Reaper::Reaps, "no record");
        let rec = Record {
            reaper_start: my.start,
            pid,
            start: z.start,
            seen: 0,
        };
        records.write(me, &rec).unwrap();
        assert_eq!(check_in(&records, me, t), Reaper::Watching(me), "first seen");
        assert_eq!(records.read(me).unwrap().seen, t);
        assert_eq!(
            check_in(&records, me, t + grace),
            Reaper::Watching(me),
            "within the grace period"
        );
        let late = t + grace + 1;
        assert_eq!(
            check_in(&records, me, late),
            Reaper::DoesNotReap(Unreaped { pid, reaper: me })
        );
        let reused = Record {
            reaper_start: my.start + 1,
            seen: t,
            ..rec
        };
        records.write(me, &reused).unwrap();
        assert_eq!(
            check_in(&records, me, late),
            Reaper::Reaps,
            "another process with our pid"
        );
        records.write(me, &Record { seen: t, ..rec }).unwrap();
        child.wait().unwrap();
        drop(pidfd);
        assert_eq!(check_in(&records, me, late), Reaper::Reaps, "reaped now");
    }

    /// A new detached process is recorded under its own reaper, unless that reaper's record is
    /// the one watching a zombie.
    #[test]
    fn a_watched_record_is_kept_and_others_are_written() {
        let base = tempfile::tempdir().unwrap();
        let records = Records::open(base.path(), true).unwrap();
        let me = std::process::id() as i32;
        // Stands for a detached process we adopted: a child of ours.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        let pidfd = wait_exit_without_reaping(pid);
        record_in(base.path(), pid, Reaper::Watching(me)).unwrap();
        assert_eq!(records.read(me), None, "the watched record stays");
        record_in(base.path(), pid, Reaper::Watching(1)).unwrap();
        let rec = records.read(me).expect("recorded under its reaper");
        assert_eq!(
            (rec.pid, rec.reaper_start, rec.seen),
            (pid, proc_stat(me).unwrap().start, 0)
        );
        child.wait().unwrap();
        drop(pidfd);
    }

    /// With init's record only, it decides without a walk; records of reapers that are gone are
    /// removed by a walk, others kept.
    #[test]
    fn records_of_reapers_that_are_gone_are_removed() {
        let base = tempfile::tempdir().unwrap();
        let records = Records::open(base.path(), true).unwrap();
        let me = std::process::id() as i32;
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let gone = child.id() as i32;
        child.wait().unwrap();
        let rec = Record {
            reaper_start: 0,
            pid: gone,
            start: 1,
            seen: 0,
        };
        records.write(1, &rec).unwrap();
        assert_eq!(nearest_reaper(&records, me), Some((1, rec)));
        assert_eq!(check_in(&records, me, 1), Reaper::Reaps, "not a zombie");
        records.write(gone, &rec).unwrap();
        assert_eq!(nearest_reaper(&records, me), Some((1, rec)), "gone is no ancestor");
        assert_eq!(records.read(gone), None, "its record is removed");
        assert_eq!(records.read(1), Some(rec), "init's is kept");
    }

    /// Wait (at most 10 s) until `pid`, a child of ours, has exited, leaving it unreaped.
    fn wait_exit_without_reaping(pid: i32) -> OwnedFd {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open with integer arguments.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        assert!(fd >= 0, "{}", io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(n, 1, "child {pid} did not exit within 10 s");
        fd
    }
}

#[cfg(test)]
mod fuzz {
    //! The two readers of this module: the reaper record (arbitrary bytes never panic; what
    //! `encode` writes `decode` reads back, at the record's fixed length) and
    //! `/proc/<pid>/stat` (arbitrary bytes never panic; a stat line with any `comm`, spaces
    //! and parentheses included, gives state, ppid and start time).

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::{parse_stat, ProcStat, Record};

    fn record() -> impl Strategy<Value = Record> {
        (any::<u64>(), any::<i32>(), any::<u64>(), any::<u64>()).prop_map(|(reaper_start, pid, start, seen)| Record {
            reaper_start,
            pid,
            start,
            seen,
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn record_decode_never_panics(bytes in vec(any::<u8>(), 0..100)) {
            let _ = Record::decode(&bytes);
        }

        #[test]
        fn records_round_trip(r in record()) {
            let text = r.encode();
            prop_assert_eq!(Record::decode(text.as_bytes()), Some(r));
            if r.pid >= -999_999_999 {
                prop_assert_eq!(text.len(), Record::LEN, "{:?}", text);
            }
        }

        #[test]
        fn parse_stat_never_panics(bytes in vec(any::<u8>(), 0..300)) {
            let _ = parse_stat(&bytes);
        }

        #[test]
        fn stat_lines_are_read_after_the_last_parenthesis(
            pid in 1u32..4_194_304,
            comm in "[ -~]{0,16}",
            state in prop::sample::select(vec![b'R', b'S', b'D', b'Z', b'T', b'X']),
            ppid in 0i32..4_194_304,
            middle in vec(any::<u32>(), 17),
            start in any::<u64>(),
            tail in vec(any::<u32>(), 0..30),
        ) {
            // Fields 3 (state) and 4 (ppid), 5..=21, then 22 (starttime), then the rest.
            let mut line = format!("{pid} ({comm}) {} {ppid}", state as char);
            for m in &middle {
                line += &format!(" {m}");
            }
            line += &format!(" {start}");
            for t in &tail {
                line += &format!(" {t}");
            }
            line.push('\n');
            prop_assert_eq!(parse_stat(line.as_bytes()), Some(ProcStat { state, ppid, start }));
        }
    }
}
