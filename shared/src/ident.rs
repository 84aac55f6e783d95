//! The shape of every identifier a caller sends before it is authenticated, checked before the
//! identifier reaches the store. DynamoDB refuses keys over 2048 bytes (partition) or 1024 bytes
//! (sort) with a `ValidationException`, which would surface as a 500; and nothing the OP issues
//! or accepts legitimately comes near these bounds. Each use answers its own protocol error
//! (`invalid_client`, `invalid_grant`, `invalid_request`), never a 500, on every store.

/// The kinds of identifier and their rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ident {
    /// RFC 6749 Appendix A.1: `*VSCHAR` (printable ASCII); at most 255 bytes here.
    ClientId,
    /// OIDC Core §2: a `sub` is at most 255 ASCII characters.
    Subject,
    /// A JWT's `jti`: at most 255 bytes, no control characters.
    Jti,
    /// A `login_hint` (an e-mail address, a phone number, a user name, or a JSON subject
    /// identifier of RFC 9493): at most 512 bytes, no control characters.
    LoginHint,
    /// The OP's own random ids (`auth_req_id`, `txn`) and device ids: at most 128 characters of
    /// `[A-Za-z0-9._-]`.
    OpId,
}

impl Ident {
    fn max_len(self) -> usize {
        match self {
            Ident::ClientId | Ident::Subject | Ident::Jti => 255,
            Ident::LoginHint => 512,
            Ident::OpId => 128,
        }
    }

    fn allows(self, c: char) -> bool {
        match self {
            Ident::ClientId | Ident::Subject => (' '..='~').contains(&c),
            Ident::Jti | Ident::LoginHint => !c.is_control(),
            Ident::OpId => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        }
    }

    /// `None` when `value` has this kind's shape, else why not (for an `error_description`).
    pub fn fault(self, value: &str) -> Option<String> {
        if value.is_empty() {
            Some("must not be empty".into())
        } else if value.len() > self.max_len() {
            Some(format!("must be at most {} bytes", self.max_len()))
        } else if !value.chars().all(|c| self.allows(c)) {
            Some(
                match self {
                    Ident::ClientId | Ident::Subject => "must be printable ASCII",
                    Ident::Jti | Ident::LoginHint => "must not contain control characters",
                    Ident::OpId => "may only contain letters, digits, '.', '_' and '-'",
                }
                .into(),
            )
        } else {
            None
        }
    }

    pub fn accepts(self, value: &str) -> bool {
        self.fault(value).is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::Ident;

    #[test]
    fn identifiers_longer_than_their_bound_are_refused() {
        assert!(Ident::ClientId.accepts(&"c".repeat(255)));
        assert!(!Ident::ClientId.accepts(&"c".repeat(256)));
        assert!(!Ident::Jti.accepts(&"j".repeat(5000)));
        assert!(!Ident::LoginHint.accepts(&"a".repeat(2100)));
        assert!(!Ident::OpId.accepts(&"A".repeat(2100)));
        assert!(!Ident::Subject.accepts(""));
    }

    #[test]
    fn identifiers_outside_their_alphabet_are_refused() {
        assert!(Ident::OpId.accepts("Qx9_-.a"));
        assert!(!Ident::OpId.accepts("a#b"));
        assert!(!Ident::ClientId.accepts("café"));
        assert!(!Ident::ClientId.accepts("a\nb"));
        assert!(Ident::LoginHint.accepts(r#"{"format":"email","email":"ålice@example.com"}"#));
        assert!(!Ident::LoginHint.accepts("alice\u{0}"));
        assert!(!Ident::Jti.accepts("j\u{7f}"));
    }

    #[test]
    fn the_fault_says_which_rule_broke() {
        assert_eq!(
            Ident::OpId.fault(&"a".repeat(129)).as_deref(),
            Some("must be at most 128 bytes")
        );
    }
}
