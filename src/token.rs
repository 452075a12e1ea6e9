//! The personal access token, wrapped so that it cannot be printed by accident.

use std::fmt;

/// A secret token. `Debug` and `Display` print `<redacted>`; the only way to the bytes is
/// [`Token::expose`], used where a request header is built.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token, trimming the trailing newline that `echo ... > file` and many Secret
    /// generators leave behind. Returns `None` for an empty or all-blank value.
    pub fn new(raw: impl Into<String>) -> Option<Token> {
        let raw = raw.into();
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            None
        } else if trimmed.len() == raw.len() {
            Some(Token(raw))
        } else {
            Some(Token(trimmed.to_owned()))
        }
    }

    /// Wraps raw Secret bytes; `None` when empty or not UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Option<Token> {
        std::str::from_utf8(bytes).ok().and_then(Token::new)
    }

    /// The token itself, for building an `Authorization` header. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Replaces the token wherever `text` quotes it (an instance may echo it back in an error
    /// body): the one redaction rule for every message that leaves verification.
    pub fn redact(&self, text: &mut String) {
        if !self.0.is_empty() && text.contains(self.0.as_str()) {
            *text = text.replace(self.0.as_str(), "<redacted>");
        }
    }

    /// A keyed hash of the token within `scope` (e.g. an instance), for remembering things per
    /// token without keeping it: the key is random per process, so the value reveals nothing
    /// outside it.
    pub fn fingerprint(&self, scope: &str) -> u64 {
        use std::hash::BuildHasher as _;
        static KEY: std::sync::OnceLock<std::collections::hash_map::RandomState> = std::sync::OnceLock::new();
        KEY.get_or_init(Default::default).hash_one((scope, &self.0))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact() {
        let token = Token::new("glpat-secret-value").unwrap();
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(token.expose(), "glpat-secret-value");
    }

    #[test]
    fn redact_replaces_every_quote_of_the_token() {
        let token = Token::new("glpat-secret-value").unwrap();
        let mut text = "401: glpat-secret-value is not valid (glpat-secret-value)".to_owned();
        token.redact(&mut text);
        assert_eq!(text, "401: <redacted> is not valid (<redacted>)");
    }

    #[test]
    fn fingerprints_differ_by_token_and_scope() {
        let token = Token::new("a").unwrap();
        assert_eq!(token.fingerprint("x"), Token::new("a").unwrap().fingerprint("x"));
        assert_ne!(token.fingerprint("x"), token.fingerprint("y"));
        assert_ne!(token.fingerprint("x"), Token::new("b").unwrap().fingerprint("x"));
    }

    #[test]
    fn trims_and_rejects_blank() {
        assert_eq!(Token::new("abc\n").unwrap().expose(), "abc");
        assert!(Token::new("  \n").is_none());
        assert!(Token::from_bytes(b"").is_none());
        assert!(Token::from_bytes(&[0xff, 0xfe]).is_none());
    }
}
