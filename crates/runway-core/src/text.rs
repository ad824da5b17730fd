//! Caller-given text as error messages and logs show it: whole when short,
//! else its beginning and its length, so a megabyte of input never becomes
//! a megabyte of error (or a gRPC status too large to send).

use std::borrow::Cow;

/// `s` if it has at most `max` characters, else its first `max` characters,
/// an ellipsis and the whole length in bytes.
pub fn clip(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((cut, _)) => Cow::Owned(format!("{}… ({} bytes in all)", &s[..cut], s.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_keeps_its_start_and_says_its_length() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip(&"x".repeat(1000), 4), "xxxx… (1000 bytes in all)");
        // Cut on a character boundary.
        assert_eq!(clip("ééé", 2), "éé… (6 bytes in all)");
    }
}
