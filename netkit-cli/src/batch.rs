//! `netkit -b FILE`: many commands in one process, one per line, as `ip -batch` reads them.
//!
//! A line is split into words at blanks; `"…"` and `'…'` quote a word with blanks in it; a word
//! that starts with `#` starts a comment up to the end of the line; blank lines are skipped. Each
//! line is a command line without the program name (`link add v0 type veth peer name v1`), and
//! may carry its own options (`-n NS`, `-j`); the options given with `-b` apply to every line.
//! A failing line is reported as `netkit: FILE:LINE: <error>`; the batch stops there unless
//! `--force`, and the exit code is that of the first failure. The netlink socket of each
//! namespace is opened once for the whole batch.

use std::path::Path;

use clap::error::ErrorKind;

use crate::cli::{Cli, Global};
use crate::error::CliError;
use crate::Session;

/// Run the commands of `file` (`-`: stdin).
pub async fn run(session: &mut Session, global: &Global, file: &Path, force: bool) -> Result<(), CliError> {
    let stdin = file.as_os_str() == "-";
    let label = file.display().to_string();
    let text = if stdin {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(file)
    }
    .map_err(|cause| CliError::Io {
        what: format!("read batch file {label}"),
        cause,
    })?;
    let mut first_failure = None;
    // clap builds its command once for the whole batch (building it is most of parsing a line).
    let mut command = <Cli as clap::CommandFactory>::command();
    for (i, line) in text.lines().enumerate() {
        let result = match split_line(line) {
            Ok(words) if words.is_empty() => continue,
            Ok(words) => run_line(session, global, &mut command, words).await,
            Err(e) => Err(CliError::usage(e)),
        };
        if let Err(e) = result {
            let n = i + 1;
            if e.needs_report() {
                eprintln!("netkit: {label}:{n}: {e}");
            } else {
                eprintln!("netkit: {label}:{n}: command failed with exit status {}", e.exit_code());
            }
            if !force {
                return Err(CliError::Reported(e.exit_code()));
            }
            first_failure.get_or_insert(e.exit_code());
        }
    }
    match first_failure {
        Some(code) => Err(CliError::Reported(code)),
        None => Ok(()),
    }
}

/// Parse one line's words as a command line and run it, with the batch's options under the
/// line's own.
async fn run_line(
    session: &mut Session,
    global: &Global,
    command: &mut clap::Command,
    words: Vec<String>,
) -> Result<(), CliError> {
    let parsed = command
        .try_get_matches_from_mut(std::iter::once("netkit".to_string()).chain(words))
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let line = match parsed {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return Ok(());
        }
        Err(e) => return Err(CliError::from_clap(&e)),
    };
    if line.batch.is_some() {
        return Err(CliError::usage("--batch cannot be used inside a batch file"));
    }
    let command = line.command.ok_or_else(|| CliError::usage("no command on this line"))?;
    let own = line.global;
    let merged = Global {
        netns: own.netns.or_else(|| global.netns.clone()),
        json: own.json || global.json,
        quiet: own.quiet || global.quiet,
        ipv4: own.ipv4 || (global.ipv4 && !own.ipv6),
        ipv6: own.ipv6 || (global.ipv6 && !own.ipv4),
    };
    session.execute(&merged, command).await
}

/// Split a batch line into words (see the [module docs](self)).
pub fn split_line(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(words),
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                break;
            }
            chars.next();
            if c == '"' || c == '\'' {
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some(other) => word.push(other),
                        None => return Err(format!("unterminated {c}quote{c}")),
                    }
                }
            } else {
                word.push(c);
            }
        }
        words.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_quotes_and_comments() {
        assert_eq!(
            split_line("  link  add v0 type\tveth ").unwrap(),
            ["link", "add", "v0", "type", "veth"]
        );
        assert_eq!(split_line("# a comment").unwrap(), Vec::<String>::new());
        assert_eq!(split_line("").unwrap(), Vec::<String>::new());
        assert_eq!(split_line("link show # the rest").unwrap(), ["link", "show"]);
        assert_eq!(
            split_line("link set v0 alias \"a b\" up").unwrap(),
            ["link", "set", "v0", "alias", "a b", "up"]
        );
        assert_eq!(split_line("x 'it''s'").unwrap(), ["x", "its"]);
        // A # inside a word or quotes is part of it.
        assert_eq!(split_line("a#b \"#c\"").unwrap(), ["a#b", "#c"]);
        assert!(split_line("alias \"open").unwrap_err().contains("unterminated"));
    }
}
