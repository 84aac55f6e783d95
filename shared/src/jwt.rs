//! The one check of a signed JWT the OP receives: the signature against the sender's registered
//! keys (`jose::verify`), then the claims — `iss`, `sub`, `aud`, the `exp` / `nbf` / `iat`
//! windows and the `jti` to hand to the store. Request objects, client assertions,
//! `login_hint_token`s, `id_token_hint`s and device decisions each state their rules as an
//! `Expect`; node-oidc-provider's single `assertPayload` is the model.
//!
//! A time claim that is present is always checked, whether or not the use requires it: `exp` has
//! not passed, `nbf` and `iat` are not ahead of the clock by more than the configured skew.

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::ident::Ident;
use crate::jose::{self, Claims, JwsError};
use crate::store::JtiUse;

/// How `exp` is treated.
#[derive(Clone, Copy, Debug)]
enum Exp {
    /// Checked when present.
    IfPresent,
    /// Required, and at most this many seconds ahead.
    Within(i64),
    /// Never checked: the token only names someone (`id_token_hint`, CIBA Core §7.1).
    Ignored,
}

/// The rules one use of a JWT sets; built with the methods below, then `verify`.
pub struct Expect<'a> {
    what: &'static str,
    clock_skew: i64,
    issuer: Option<&'a str>,
    subject: Option<&'a str>,
    audience: Option<&'a (dyn Fn(&str) -> bool + Sync)>,
    audience_only: bool,
    nbf_required: bool,
    exp: Exp,
    iat_required: bool,
    iat_max_age: Option<i64>,
    nbf_max_age: Option<i64>,
    jti_scope: Option<String>,
}

/// Why a JWT was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum JwtError {
    Signature(JwsError),
    /// A required claim is absent (or an empty string).
    Missing(&'static str),
    /// A time claim that is not a number.
    NotANumber(&'static str),
    WrongIssuer,
    WrongSubject,
    WrongAudience,
    Expired,
    /// `exp` is further ahead than the use allows (the allowance in seconds).
    ExpiresTooLate(i64),
    IssuedInFuture,
    NotYetValid,
    /// `nbf` is older than the use allows.
    NotBeforeTooOld,
    /// `exp` − `nbf` is longer than the use allows.
    LifetimeTooLong,
    /// `iat` is older than the use allows.
    IssuedTooLongAgo,
    /// A claim whose value the OP does not accept (see `ident`): why, in words.
    Malformed(&'static str, String),
}

impl JwtError {
    /// One sentence naming the token (`what`) and the broken rule.
    pub fn describe(&self, what: &str) -> String {
        match self {
            JwtError::Signature(e) => format!("{what}: {}", e.describe()),
            JwtError::Missing(claim) => format!("{what} must carry {claim}"),
            JwtError::NotANumber(claim) => format!("{what} {claim} is not a number"),
            JwtError::WrongIssuer => format!("{what} iss is not the expected issuer"),
            JwtError::WrongSubject => format!("{what} sub is not the expected subject"),
            JwtError::WrongAudience => format!("{what} aud does not name this OP"),
            JwtError::Expired => format!("{what} has expired"),
            JwtError::ExpiresTooLate(secs) => {
                format!("{what} exp is more than {secs} seconds ahead")
            }
            JwtError::IssuedInFuture => format!("{what} iat is in the future"),
            JwtError::NotYetValid => format!("{what} is not yet valid (nbf)"),
            JwtError::NotBeforeTooOld => format!("{what} nbf is too old"),
            JwtError::LifetimeTooLong => format!("{what} lifetime (exp - nbf) is too long"),
            JwtError::IssuedTooLongAgo => format!("{what} iat is too old"),
            JwtError::Malformed(claim, fault) => format!("{what} {claim} {fault}"),
        }
    }
}

/// A JWT whose signature and claims passed.
#[derive(Debug)]
pub struct Checked {
    pub claims: Claims,
    /// The `jti` to consume, when the use asked for one (`Expect::jti`).
    pub jti: Option<JtiUse>,
}

impl Checked {
    /// A string claim, `None` when absent, empty or not a string.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.claims
            .get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

impl<'a> Expect<'a> {
    /// A JWT called `what` in error messages, checked with `clock_skew` seconds of tolerance on
    /// `nbf` and `iat`.
    pub fn new(what: &'static str, clock_skew: i64) -> Self {
        Self {
            what,
            clock_skew,
            issuer: None,
            subject: None,
            audience: None,
            audience_only: false,
            nbf_required: false,
            exp: Exp::IfPresent,
            iat_required: false,
            iat_max_age: None,
            nbf_max_age: None,
            jti_scope: None,
        }
    }

    pub fn what(&self) -> &'static str {
        self.what
    }

    pub fn issuer(mut self, issuer: &'a str) -> Self {
        self.issuer = Some(issuer);
        self
    }

    pub fn subject(mut self, subject: &'a str) -> Self {
        self.subject = Some(subject);
        self
    }

    /// At least one `aud` value must satisfy `accepts`.
    pub fn audience(mut self, accepts: &'a (dyn Fn(&str) -> bool + Sync)) -> Self {
        self.audience = Some(accepts);
        self.audience_only = false;
        self
    }

    /// `aud` is one value or an array, and every value satisfies `accepts`: a JWT meant for
    /// someone else as well is refused (client assertions: draft-ietf-oauth-rfc7523bis).
    pub fn audience_only(mut self, accepts: &'a (dyn Fn(&str) -> bool + Sync)) -> Self {
        self.audience = Some(accepts);
        self.audience_only = true;
        self
    }

    /// `exp` is required and at most `max_ahead` seconds ahead.
    pub fn expires_within(mut self, max_ahead: i64) -> Self {
        self.exp = Exp::Within(max_ahead);
        self
    }

    pub fn ignore_expiry(mut self) -> Self {
        self.exp = Exp::Ignored;
        self
    }

    pub fn iat_required(mut self) -> Self {
        self.iat_required = true;
        self
    }

    /// `iat` is required and no older than `max_age` seconds: a JWT made long ago (`iat=0`) is
    /// not accepted however far ahead its `exp`.
    pub fn iat_within(mut self, max_age: i64) -> Self {
        self.iat_required = true;
        self.iat_max_age = Some(max_age);
        self
    }

    /// `nbf` must be present (CIBA Core §7.1.1 for signed authentication requests).
    pub fn nbf_required(mut self) -> Self {
        self.nbf_required = true;
        self
    }

    /// When `nbf` is present: no older than `max_age` seconds, and `exp` − `nbf` no longer.
    pub fn nbf_within(mut self, max_age: i64) -> Self {
        self.nbf_max_age = Some(max_age);
        self
    }

    /// `jti` is required, and so is `exp`; it is answered as a `JtiUse` in `scope`, valid until
    /// `exp`.
    pub fn jti(mut self, scope: String) -> Self {
        self.jti_scope = Some(scope);
        self
    }

    /// Verifies `token`'s signature with a key of `keys` under one of `algorithms`, then its
    /// claims at `now` (epoch seconds). The first broken rule answers.
    pub fn verify(
        self,
        token: &str,
        keys: &JwkSet,
        algorithms: &[Algorithm],
        now: i64,
    ) -> Result<Checked, JwtError> {
        let verified = jose::verify(token, keys, algorithms).map_err(JwtError::Signature)?;
        self.check(verified.claims, now)
    }

    /// The claim rules alone, on claims whose signature was verified.
    pub fn check(self, claims: Claims, now: i64) -> Result<Checked, JwtError> {
        let text = |name: &str| claims.get(name).and_then(Value::as_str);
        if let Some(issuer) = self.issuer
            && text("iss") != Some(issuer)
        {
            return Err(JwtError::WrongIssuer);
        }
        if let Some(subject) = self.subject
            && text("sub") != Some(subject)
        {
            return Err(JwtError::WrongSubject);
        }
        if let Some(accepts) = self.audience {
            let audiences = jose::audiences(&claims);
            let accepted = if self.audience_only {
                !audiences.is_empty()
                    && audiences.iter().all(|a| accepts(a))
                    && !claims.get("aud").is_some_and(|aud| {
                        aud.as_array().is_some_and(|a| a.len() != audiences.len())
                    })
            } else {
                audiences.into_iter().any(accepts)
            };
            if !accepted {
                return Err(JwtError::WrongAudience);
            }
        }
        let exp = self.check_times(&claims, now)?;
        let jti = match self.jti_scope {
            None => None,
            Some(scope) => {
                let jti = text("jti")
                    .filter(|j| !j.is_empty())
                    .ok_or(JwtError::Missing("jti"))?;
                if let Some(fault) = Ident::Jti.fault(jti) {
                    return Err(JwtError::Malformed("jti", fault));
                }
                Some(JtiUse {
                    scope,
                    jti: jti.to_owned(),
                    // A used `jti` is kept until its JWT expires: one without `exp` never would.
                    expires_at: exp.ok_or(JwtError::Missing("exp"))?,
                })
            }
        };
        Ok(Checked { claims, jti })
    }

    /// `exp`, `iat`, `nbf`; answers `exp` when present and checked.
    fn check_times(&self, claims: &Claims, now: i64) -> Result<Option<i64>, JwtError> {
        let time = |name: &'static str| match claims.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => jose::numeric_date(claims, name)
                .map(Some)
                .ok_or(JwtError::NotANumber(name)),
        };
        let exp = match self.exp {
            Exp::Ignored => None,
            Exp::IfPresent => time("exp")?,
            Exp::Within(_) => Some(time("exp")?.ok_or(JwtError::Missing("exp"))?),
        };
        if let Some(exp) = exp {
            if exp <= now {
                return Err(JwtError::Expired);
            }
            if let Exp::Within(max_ahead) = self.exp
                && exp > now + max_ahead
            {
                return Err(JwtError::ExpiresTooLate(max_ahead));
            }
        }
        let iat = time("iat")?;
        if self.iat_required && iat.is_none() {
            return Err(JwtError::Missing("iat"));
        }
        if iat.is_some_and(|iat| iat > now + self.clock_skew) {
            return Err(JwtError::IssuedInFuture);
        }
        if let (Some(iat), Some(max_age)) = (iat, self.iat_max_age)
            && iat < now - max_age
        {
            return Err(JwtError::IssuedTooLongAgo);
        }
        let nbf = time("nbf")?;
        if self.nbf_required && nbf.is_none() {
            return Err(JwtError::Missing("nbf"));
        }
        if let Some(nbf) = nbf {
            if nbf > now + self.clock_skew {
                return Err(JwtError::NotYetValid);
            }
            if let Some(max_age) = self.nbf_max_age {
                if nbf < now - max_age {
                    return Err(JwtError::NotBeforeTooOld);
                }
                if exp.is_some_and(|exp| exp - nbf > max_age) {
                    return Err(JwtError::LifetimeTooLong);
                }
            }
        }
        Ok(exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn claims(value: Value) -> Claims {
        serde_json::from_value(value).unwrap()
    }

    fn check(expect: Expect<'_>, value: Value) -> Result<Checked, JwtError> {
        expect.check(claims(value), NOW)
    }

    #[test]
    fn issuer_subject_and_audience_must_match() {
        let op = |a: &str| a == "https://op";
        let expect = || {
            Expect::new("t", 60)
                .issuer("c1")
                .subject("c1")
                .audience(&op)
        };
        let ok = json!({"iss": "c1", "sub": "c1", "aud": ["x", "https://op"]});
        assert!(check(expect(), ok).is_ok());
        let e = check(
            expect(),
            json!({"iss": "c2", "sub": "c1", "aud": "https://op"}),
        );
        assert_eq!(e.unwrap_err(), JwtError::WrongIssuer);
        let e = check(
            expect(),
            json!({"iss": "c1", "sub": "c2", "aud": "https://op"}),
        );
        assert_eq!(e.unwrap_err(), JwtError::WrongSubject);
        let e = check(
            expect(),
            json!({"iss": "c1", "sub": "c1", "aud": "https://other"}),
        );
        assert_eq!(e.unwrap_err(), JwtError::WrongAudience);
    }

    #[test]
    fn required_exp_must_be_present_in_the_future_and_within_the_window() {
        let expect = || Expect::new("t", 60).expires_within(300);
        assert_eq!(
            check(expect(), json!({})).unwrap_err(),
            JwtError::Missing("exp")
        );
        assert_eq!(
            check(expect(), json!({"exp": NOW})).unwrap_err(),
            JwtError::Expired
        );
        assert_eq!(
            check(expect(), json!({"exp": NOW + 301})).unwrap_err(),
            JwtError::ExpiresTooLate(300)
        );
        assert!(check(expect(), json!({"exp": NOW + 300})).is_ok());
    }

    #[test]
    fn present_exp_is_checked_even_when_optional_but_not_when_ignored() {
        let expired = json!({"exp": NOW - 1});
        assert_eq!(
            check(Expect::new("t", 60), expired.clone()).unwrap_err(),
            JwtError::Expired
        );
        assert!(check(Expect::new("t", 60).ignore_expiry(), expired).is_ok());
        assert_eq!(
            check(Expect::new("t", 60), json!({"exp": "soon"})).unwrap_err(),
            JwtError::NotANumber("exp")
        );
    }

    #[test]
    fn iat_may_be_ahead_of_the_clock_by_the_skew_only() {
        let expect = || Expect::new("t", 60).iat_required();
        assert_eq!(
            check(expect(), json!({})).unwrap_err(),
            JwtError::Missing("iat")
        );
        assert!(check(expect(), json!({"iat": NOW + 60})).is_ok());
        assert_eq!(
            check(expect(), json!({"iat": NOW + 61})).unwrap_err(),
            JwtError::IssuedInFuture
        );
        assert_eq!(
            check(Expect::new("t", 60), json!({"iat": NOW + 61})).unwrap_err(),
            JwtError::IssuedInFuture
        );
    }

    #[test]
    fn nbf_must_be_reached_recent_and_not_far_from_exp() {
        let expect = || Expect::new("t", 60).expires_within(1800).nbf_within(3600);
        assert_eq!(
            check(expect(), json!({"exp": NOW + 60, "nbf": NOW + 61})).unwrap_err(),
            JwtError::NotYetValid
        );
        assert_eq!(
            check(expect(), json!({"exp": NOW + 60, "nbf": NOW - 3601})).unwrap_err(),
            JwtError::NotBeforeTooOld
        );
        assert_eq!(
            check(expect(), json!({"exp": NOW + 1800, "nbf": NOW - 1801})).unwrap_err(),
            JwtError::LifetimeTooLong
        );
        assert!(check(expect(), json!({"exp": NOW + 60, "nbf": NOW - 60})).is_ok());
    }

    #[test]
    fn jti_is_required_when_asked_for_and_kept_until_exp() {
        let expect = || Expect::new("t", 60).expires_within(300).jti("s#c1".into());
        assert_eq!(
            check(expect(), json!({"exp": NOW + 10, "jti": ""})).unwrap_err(),
            JwtError::Missing("jti")
        );
        assert_eq!(
            check(
                Expect::new("t", 60).jti("s#c1".into()),
                json!({"jti": "j1"})
            )
            .unwrap_err(),
            JwtError::Missing("exp"),
            "a jti is kept until exp: one without exp cannot be kept"
        );
        let checked = check(expect(), json!({"exp": NOW + 10, "jti": "j1"})).unwrap();
        assert_eq!(
            checked.jti,
            Some(JtiUse {
                scope: "s#c1".into(),
                jti: "j1".into(),
                expires_at: NOW + 10
            })
        );
    }

    #[test]
    fn the_description_names_the_token_and_the_configured_window() {
        assert_eq!(
            JwtError::ExpiresTooLate(300).describe("the decision"),
            "the decision exp is more than 300 seconds ahead"
        );
    }
}
