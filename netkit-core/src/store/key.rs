//! Keys and prefixes: checked once, the same rules for every store.

use super::StoreError;

/// The longest key, in bytes: a file name's limit (255), so the file store can name a file
/// after any valid key.
pub const MAX_KEY_LEN: usize = 255;

/// Check `key`: one or more `/`-separated segments, each of `[A-Za-z0-9._-]`, none empty, `.`
/// or `..`, at most [`MAX_KEY_LEN`] bytes in all.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| StoreError::InvalidKey {
        key: key.to_string(),
        reason,
    };
    if key.is_empty() {
        return Err(invalid("a key is not empty".to_string()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(invalid(format!("longer than {MAX_KEY_LEN} bytes")));
    }
    for (i, segment) in key.split('/').enumerate() {
        let n = i + 1;
        if segment.is_empty() {
            return Err(invalid(format!(
                "segment {n} is empty (no leading, trailing or double `/`)"
            )));
        }
        if segment == "." || segment == ".." {
            return Err(invalid(format!("segment {n} is {segment:?}")));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(invalid(format!(
                "segment {n} ({segment:?}) has {c:?}: only A-Z a-z 0-9 . _ - are allowed"
            )));
        }
    }
    Ok(())
}

/// Check a prefix and return it in its one form: `""` (every key) or a valid key (the keys
/// below it, `PREFIX/…`). A trailing `/` is allowed and dropped: `services/` is `services`.
pub fn normalize_prefix(prefix: &str) -> Result<&str, StoreError> {
    let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
    if trimmed.is_empty() && prefix.len() <= 1 {
        return Ok("");
    }
    validate_key(trimmed)?;
    Ok(trimmed)
}

/// True when `key` is below the normalized `prefix` (every key is below `""`).
pub(crate) fn is_below(key: &str, prefix: &str) -> bool {
    prefix.is_empty() || key.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_prefixes() {
        for ok in ["a", "services/default/web", "A.b_c-9/.x", "x/..a"] {
            validate_key(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/./b",
            "..",
            "a b",
            "ä",
            "a:b",
            &"x".repeat(256),
        ] {
            let err = validate_key(bad).expect_err(bad).to_string();
            assert!(err.contains("invalid key"), "{err}");
        }
        assert_eq!(normalize_prefix("").unwrap(), "");
        assert_eq!(normalize_prefix("/").unwrap(), "");
        assert_eq!(normalize_prefix("services/").unwrap(), "services");
        assert!(normalize_prefix("services//").is_err());
        assert!(is_below("services/a", "services"));
        assert!(!is_below("services", "services"));
        assert!(!is_below("services-x/a", "services"));
        assert!(is_below("anything", ""));
    }
}
