//! Ids that arrive from clients are checked here before they reach a key or a query.

use crate::limits::MAX_ID_LEN;

/// A conversation or customer id: 1..=64 of `[A-Za-z0-9_.-]`, not `.` or
/// `..` (path steps once the id is a URL or file path segment). Conversation
/// ids equal the customer's id (one conversation per customer).
pub fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.len() <= MAX_ID_LEN
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A client-generated message id: a UUID in its canonical text form.
pub fn valid_client_id(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

/// An upload id: 32 lowercase hex digits (the gateway makes them).
pub fn valid_attachment_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A username: 1..=64 characters, letters, digits, `_.-`, no spaces.
pub fn valid_username(s: &str) -> bool {
    !s.is_empty()
        && s.chars().count() <= MAX_ID_LEN
        && s.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ids() {
        assert!(valid_id("cus_42"));
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id("{c:x}"));
        assert!(!valid_id(&"a".repeat(65)));
        assert!(!valid_id("."));
        assert!(!valid_id(".."));
        assert!(valid_id("..."));
        assert!(valid_id("a.b"));
        assert!(valid_client_id("0f8fad5b-d9cb-469f-a165-70867728950e"));
        assert!(!valid_client_id("0f8fad5b-d9cb-469f-a165-70867728950"));
        assert!(!valid_client_id("0f8fad5bxd9cb-469f-a165-70867728950e"));
    }
}
