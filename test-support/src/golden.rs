//! Golden files: text a test produces, compared with a checked-in file, and rewritten instead
//! when the environment variable [`UPDATE_VAR`] is set.
//!
//! A [`Golden`] is one folder of such files. [`Golden::check`] compares one text with its file;
//! [`Golden::check_no_others`] fails on files in the folder that no test produced any more
//! (stale), so the folder holds exactly what the tests produce. Failures are returned as
//! readable messages (the file, the first differing lines, how to update), so a test can check
//! all its files and report every difference at once.
//!
//! Why not the `insta` crate: the files here are plain text at paths the project chooses
//! (`tests/snapshots/help/netkit-link-add.txt`), readable and diffable as they are, with no
//! metadata header, no second tool (`cargo insta review`) and no extra dependencies; stale files
//! are found by the same call that checks the others.

use std::path::{Path, PathBuf};

/// Set to anything but empty or `0`, the checks write the files instead of comparing (and
/// delete stale ones).
pub const UPDATE_VAR: &str = "NETKIT_UPDATE_SNAPSHOTS";

/// How many lines of each side a difference shows, from the first differing line on.
const SHOWN_LINES: usize = 6;

/// A folder of golden files.
#[derive(Debug, Clone)]
pub struct Golden {
    dir: PathBuf,
    update: bool,
    how_to_update: String,
}

impl Golden {
    /// The golden files under `dir`; `command` is what rewrites them (shown in failures, e.g.
    /// `NETKIT_UPDATE_SNAPSHOTS=1 cargo test -p netkit-cli --test cli snapshots`). Whether to
    /// update comes from [`UPDATE_VAR`].
    pub fn new(dir: impl Into<PathBuf>, command: &str) -> Self {
        let update = std::env::var(UPDATE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
        Self::with_update(dir, command, update)
    }

    /// As [`Golden::new`], updating or not as `update` says (whatever the environment).
    pub fn with_update(dir: impl Into<PathBuf>, command: &str, update: bool) -> Self {
        Self {
            dir: dir.into(),
            update,
            how_to_update: command.to_string(),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compare `actual` with the file `name` in the folder; when updating, write it instead (the
    /// folder is created if need be). A missing or different file is an error that names the
    /// file, shows the first differing lines and says how to update.
    pub fn check(&self, name: &str, actual: &str) -> Result<(), String> {
        let path = self.dir.join(name);
        let expected = std::fs::read_to_string(&path).ok();
        if expected.as_deref() == Some(actual) {
            return Ok(());
        }
        if self.update {
            std::fs::create_dir_all(&self.dir)
                .and_then(|()| std::fs::write(&path, actual))
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            return Ok(());
        }
        let what = match &expected {
            None => format!("{} is missing; the test produced:\n{}", path.display(), head(actual)),
            Some(expected) => format!("{} differs:\n{}", path.display(), first_difference(expected, actual)),
        };
        Err(format!(
            "{what}\nIf the new text is right, update with: {}",
            self.how_to_update
        ))
    }

    /// Fail on the files in the folder whose names end with `ext` (e.g. `.txt`) and are not in
    /// `names` (no test produces them any more); when updating, delete them instead.
    pub fn check_no_others(&self, names: &[String], ext: &str) -> Result<(), String> {
        let mut stale: Vec<String> = crate::snapshot::dir_names(&self.dir)
            .into_iter()
            .filter(|n| n.ends_with(ext) && !names.contains(n))
            .collect();
        stale.sort();
        if stale.is_empty() {
            return Ok(());
        }
        if self.update {
            for n in &stale {
                let path = self.dir.join(n);
                std::fs::remove_file(&path).map_err(|e| format!("delete {}: {e}", path.display()))?;
            }
            return Ok(());
        }
        Err(format!(
            "stale files in {} (nothing produces them any more): {}\nTo delete them, run: {}",
            self.dir.display(),
            stale.join(", "),
            self.how_to_update
        ))
    }
}

/// The first lines of `text`, indented, for a message.
fn head(text: &str) -> String {
    let mut out = String::new();
    for l in text.lines().take(SHOWN_LINES) {
        out.push_str(&format!("  + {l}\n"));
    }
    if text.lines().count() > SHOWN_LINES {
        out.push_str("  + …\n");
    }
    out
}

/// Where `expected` and `actual` first differ: the line number and a few lines of each from
/// there (`-` the file, `+` the new text).
fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let Some(i) = (0..e.len().max(a.len())).find(|&i| e.get(i) != a.get(i)) else {
        // Same lines: only the line ends differ (a final newline, "\r\n").
        return format!(
            "  the lines are equal; the line ends differ (file ends with newline: {}, new text: {})\n",
            expected.ends_with('\n'),
            actual.ends_with('\n')
        );
    };
    let mut out = format!("  first difference at line {}:\n", i + 1);
    for (sign, side) in [("-", &e), ("+", &a)] {
        let shown = side.get(i..).unwrap_or_default();
        if shown.is_empty() {
            out.push_str(&format!("  {sign} (end of text)\n"));
        }
        for l in shown.iter().take(SHOWN_LINES) {
            out.push_str(&format!("  {sign} {l}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_updates_and_finds_stale_files() {
        let dir = crate::tempdir("golden");
        let check = Golden::with_update(dir.path(), "UPDATE=1 run", false);
        let update = Golden::with_update(dir.path(), "UPDATE=1 run", true);

        // Missing: an error naming the file, the text and the command; nothing written.
        let e = check.check("a.txt", "one\ntwo\n").unwrap_err();
        assert!(
            e.contains("a.txt is missing") && e.contains("  + one") && e.contains("UPDATE=1 run"),
            "{e}"
        );
        assert!(!dir.path().join("a.txt").exists());

        // Updating writes it; then the same text passes.
        update.check("a.txt", "one\ntwo\n").unwrap();
        assert_eq!(std::fs::read_to_string(dir.path().join("a.txt")).unwrap(), "one\ntwo\n");
        check.check("a.txt", "one\ntwo\n").unwrap();

        // Different: the first differing line and both sides from there.
        let e = check.check("a.txt", "one\nTWO\nthree\n").unwrap_err();
        assert!(e.contains("at line 2:\n  - two\n  + TWO\n  + three\n"), "{e}");
        let e = check.check("a.txt", "one\ntwo").unwrap_err();
        assert!(e.contains("line ends differ"), "{e}");
        let e = check.check("a.txt", "one\n").unwrap_err();
        assert!(e.contains("at line 2:\n  - two\n  + (end of text)\n"), "{e}");

        // Stale: b.txt is not produced; other extensions are not looked at.
        std::fs::write(dir.path().join("b.txt"), "old").unwrap();
        std::fs::write(dir.path().join("README"), "kept").unwrap();
        let names = ["a.txt".to_string()];
        let e = check.check_no_others(&names, ".txt").unwrap_err();
        assert!(
            e.contains("b.txt") && !e.contains("a.txt") && !e.contains("README"),
            "{e}"
        );
        update.check_no_others(&names, ".txt").unwrap();
        assert!(!dir.path().join("b.txt").exists() && dir.path().join("README").exists());
        check.check_no_others(&names, ".txt").unwrap();
    }
}
