//! iproute2's word arguments (`type veth peer name v1 netns blue`): a cursor over the words
//! after a verb, with usage errors that name the verb, the word and what was expected.

use std::fmt::Display;
use std::str::FromStr;

use crate::error::CliError;

/// The words after a verb, read front to back.
#[derive(Debug, Clone)]
pub struct WordReader<'a> {
    words: &'a [String],
    pos: usize,
    /// What is being parsed, for messages: `link add v0`, `route add`.
    context: String,
}

impl<'a> WordReader<'a> {
    /// Read `words`; `context` names the command in usage errors (`"link add v0"`).
    pub fn new(words: &'a [String], context: impl Into<String>) -> Self {
        Self {
            words,
            pos: 0,
            context: context.into(),
        }
    }

    /// The next word, consumed.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<&'a str> {
        let w = self.words.get(self.pos)?;
        self.pos += 1;
        Some(w.as_str())
    }

    /// The next word, not consumed.
    pub fn peek(&self) -> Option<&'a str> {
        self.words.get(self.pos).map(String::as_str)
    }

    /// True when every word was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.words.len()
    }

    /// The value after keyword `key` (just read): an error when the words end there.
    pub fn value(&mut self, key: &str) -> Result<&'a str, CliError> {
        self.next()
            .ok_or_else(|| self.error(format!("\"{key}\" needs a value")))
    }

    /// The value after keyword `key`, parsed; `expected` says what it should be.
    pub fn parse<T>(&mut self, key: &str, expected: &str) -> Result<T, CliError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let v = self.value(key)?;
        parse_word(v, key, expected).map_err(|e| self.error(e))
    }

    /// `on`/`off` (or `1`/`0`) after keyword `key`.
    pub fn on_off(&mut self, key: &str) -> Result<bool, CliError> {
        match self.value(key)? {
            "on" | "1" => Ok(true),
            "off" | "0" => Ok(false),
            other => Err(self.error(format!("\"{key}\" wants on or off, not \"{other}\""))),
        }
    }

    /// Parse `word`, in the place of a positional value such as `PREFIX` (`key`; `expected`
    /// says what it should be) among keywords (`keywords`: what could come instead). A word that
    /// looks like an address (it has a `.`, `:` or `/`, or is a number) but does not parse is
    /// reported as a bad `key`, with the parser's reason; any other word as unexpected.
    pub fn positional<T>(&self, word: &str, key: &str, expected: &str, keywords: &str) -> Result<T, CliError>
    where
        T: FromStr,
        T::Err: Display,
    {
        parse_word(word, key, expected).map_err(|e| {
            if word.contains(['.', ':', '/']) || word.chars().all(|c| c.is_ascii_digit()) {
                self.error(e)
            } else {
                self.unexpected(word, keywords)
            }
        })
    }

    /// A usage error about word `word`, which is not expected here; `expected` lists what is.
    pub fn unexpected(&self, word: &str, expected: &str) -> CliError {
        self.error(format!("unexpected \"{word}\" (expected {expected})"))
    }

    /// A usage error naming the command: `link add v0: <text>`.
    pub fn error(&self, text: impl Display) -> CliError {
        CliError::usage(format!("{}: {text}", self.context))
    }

    /// Fail unless every word was read; `expected` lists what could have come.
    pub fn finish(&mut self, expected: &str) -> Result<(), CliError> {
        match self.peek() {
            None => Ok(()),
            Some(w) => Err(self.unexpected(w, expected)),
        }
    }
}

/// Parse one word; the error text names the keyword and what was expected.
pub fn parse_word<T>(word: &str, key: &str, expected: &str) -> Result<T, String>
where
    T: FromStr,
    T::Err: Display,
{
    word.parse()
        .map_err(|e| format!("\"{key}\" wants {expected}, not \"{word}\" ({e})"))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The words of `s`, as a batch line or a shell would split it (for every parser's tests).
    pub(crate) fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn reads_keywords_and_values() {
        let words = w("mtu 1400 type veth");
        let mut r = WordReader::new(&words, "link add v0");
        assert_eq!(r.next(), Some("mtu"));
        assert_eq!(r.parse::<u32>("mtu", "a number").unwrap(), 1400);
        assert_eq!(r.peek(), Some("type"));
        assert!(r.finish("nothing").is_err());
        r.next();
        r.next();
        assert!(r.is_empty());
        r.finish("nothing").unwrap();
    }

    #[test]
    fn errors_name_the_command_and_the_word() {
        let words = w("mtu");
        let mut r = WordReader::new(&words, "link set v0");
        r.next();
        let e = r.parse::<u32>("mtu", "a number").unwrap_err();
        assert_eq!(e.to_string(), "link set v0: \"mtu\" needs a value");
        assert_eq!(e.exit_code(), crate::error::EXIT_USAGE);

        let words = w("mtu big");
        let mut r = WordReader::new(&words, "link set v0");
        r.next();
        let e = r.parse::<u32>("mtu", "a number").unwrap_err().to_string();
        assert!(e.starts_with("link set v0: \"mtu\" wants a number, not \"big\""), "{e}");

        let e = r.unexpected("sideways", "up or down").to_string();
        assert_eq!(e, "link set v0: unexpected \"sideways\" (expected up or down)");
    }

    #[test]
    fn positional_values_say_why_they_are_bad() {
        let r = WordReader::new(&[], "addr add");
        let e = r
            .positional::<std::net::Ipv4Addr>("10.0.0.300", "PREFIX", "an address", "PREFIX or dev")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("addr add: \"PREFIX\" wants an address, not \"10.0.0.300\" ("),
            "{e}"
        );
        let e = r
            .positional::<std::net::Ipv4Addr>("bogus", "PREFIX", "an address", "PREFIX or dev")
            .unwrap_err()
            .to_string();
        assert_eq!(e, "addr add: unexpected \"bogus\" (expected PREFIX or dev)");
    }

    #[test]
    fn on_off() {
        let words = w("promisc on promisc 0 promisc maybe");
        let mut r = WordReader::new(&words, "link set v0");
        for want in [Some(true), Some(false), None] {
            assert_eq!(r.next(), Some("promisc"));
            assert_eq!(r.on_off("promisc").ok(), want);
        }
    }
}
