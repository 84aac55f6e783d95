//! The OP's configuration: read once per cold start from the environment and validated there,
//! so a misconfigured function fails at start-up with one clear log line, not on every request.

use std::collections::HashMap;

use crate::secret;
use crate::store::{AttemptLimit, PendingLimit};

/// Scope values the OP knows. Anything else is `invalid_scope`.
pub const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "offline_access",
];

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The issuer URL: `iss` of ID tokens, the `aud` request objects must name.
    pub issuer: String,
    /// `expires_in` of an authentication request without `requested_expiry`, seconds.
    pub expires_in: i64,
    /// The cap on `requested_expiry`, seconds.
    pub max_expires_in: i64,
    /// The minimum polling interval, seconds.
    pub interval: i64,
    /// How far ahead a request object's `exp` may be, seconds (30 minutes by default).
    pub request_object_max_exp: i64,
    /// How old a request object's `nbf` may be, and the most `exp - nbf` may span, seconds.
    pub request_object_max_age: i64,
    pub access_token_ttl: i64,
    pub refresh_token_ttl: i64,
    /// The absolute lifetime of a token family, seconds from the grant: rotation never takes
    /// a refresh token (or an access token) past it.
    pub refresh_family_lifetime: i64,
    pub id_token_ttl: i64,
    /// The `aud` of JWT access tokens: the APIs they are meant for (the issuer by default,
    /// whose `/userinfo` accepts them).
    pub access_token_audience: String,
    /// How far ahead a device decision's `exp` may be, seconds.
    pub decision_max_exp: i64,
    /// Clock skew tolerated on `iat` and `nbf` of incoming JWTs, seconds.
    pub clock_skew: i64,
    /// Who may register clients at `/register`.
    pub registration: Registration,
    /// How many requests may wait for one user's decision (`MAX_PENDING_PER_CLIENT`,
    /// `MAX_PENDING_PER_USER`).
    pub pending_limit: PendingLimit,
    /// How many `user_code` attempts one user may make (`USER_CODE_MAX_FAILURES` within
    /// `USER_CODE_LOCKOUT_SECS`).
    pub user_code_attempts: AttemptLimit,
    /// Every client is held to the FAPI-CIBA profile (`FAPI_BY_DEFAULT=true`), not only those
    /// registered with `fapi: true`.
    pub fapi_by_default: bool,
    /// Where the endpoints that take a client certificate are reached (`MTLS_BASE_URL`): API
    /// Gateway's custom domain with mutual TLS in AWS, the local API's TLS port locally. Discovery
    /// publishes it as `mtls_endpoint_aliases` (RFC 8705 §5); `None` when there is none.
    pub mtls_base_url: Option<String>,
    /// The CAs whose certificates authenticate `tls_client_auth` clients
    /// (`MTLS_CLIENT_CA_CERTS`, `crate::client_ca`); none by default.
    pub mtls_client_cas: crate::client_ca::ClientCas,
    /// The authentication context classes the OP performs (`ACR_VALUES_SUPPORTED`, values
    /// separated by spaces or commas; none by default): published in discovery, and the only
    /// ones an ID token's `acr` may name.
    pub acr_values_supported: Vec<String>,
    /// DPoP proofs must carry a nonce the OP handed out (`DPOP_NONCE=required`, RFC 9449 §8, §9):
    /// a proof cannot be made ahead of time. Off by default.
    pub dpop_nonce_required: bool,
    /// How long a function may answer from a client it read before (`CLIENT_CACHE_SECS`, 0 =
    /// read every time): a changed or deleted client takes effect in other functions after at
    /// most this long.
    pub client_cache_secs: u64,
    /// The RFC 9396 `authorization_details` types `/bc-authorize` accepts
    /// (`AUTHORIZATION_DETAILS_TYPES`, names separated by spaces or commas, empty for none; every
    /// type `authorization_details::TYPES` knows by default).
    pub authorization_details_types: Vec<String>,
}

/// The dynamic registration policy (RFC 7591 §3: the endpoint "MAY be protected" by an initial
/// access token).
#[derive(Clone, Debug, PartialEq)]
pub enum Registration {
    /// Anyone may register a client.
    Open,
    /// Only a caller presenting an initial access token whose `secret::hash` is listed; an empty
    /// list closes registration.
    InitialAccessToken(Vec<String>),
}

impl Registration {
    /// Whether the `Bearer` token presented (if any) lets the caller register a client.
    pub fn admits(&self, presented: Option<&str>) -> bool {
        match (self, presented) {
            (Registration::Open, _) => true,
            (Registration::InitialAccessToken(_), None) => false,
            // Every listed hash is compared, so the time taken does not tell which one matched.
            (Registration::InitialAccessToken(hashes), Some(token)) => hashes
                .iter()
                .fold(false, |found, hash| secret::matches(token, hash) | found),
        }
    }
}

#[derive(Debug, PartialEq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration error: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

/// The longest `CLIENT_CACHE_SECS`: an hour of a revoked client still being accepted is already
/// more than an operator would accept.
const MAX_CLIENT_CACHE_SECS: u64 = 3600;

impl Config {
    /// The defaults around an issuer: 600 s requests, 2 s interval, 30 min request objects.
    pub fn new(issuer: &str) -> Result<Self, ConfigError> {
        Ok(Self {
            issuer: validate_issuer(issuer)?,
            expires_in: 600,
            max_expires_in: 1800,
            interval: 2,
            request_object_max_exp: 1800,
            request_object_max_age: 3600,
            access_token_ttl: 3600,
            refresh_token_ttl: 30 * 24 * 3600,
            refresh_family_lifetime: 90 * 24 * 3600,
            id_token_ttl: 3600,
            access_token_audience: validate_issuer(issuer)?,
            decision_max_exp: 300,
            clock_skew: 60,
            registration: Registration::InitialAccessToken(Vec::new()),
            pending_limit: PendingLimit {
                per_client: 5,
                per_user: 10,
            },
            user_code_attempts: AttemptLimit {
                max: 5,
                window: 900,
            },
            fapi_by_default: false,
            mtls_base_url: None,
            mtls_client_cas: Default::default(),
            acr_values_supported: Vec::new(),
            dpop_nonce_required: false,
            client_cache_secs: 0,
            authorization_details_types: crate::authorization_details::TYPES
                .iter()
                .map(|(name, _)| (*name).to_owned())
                .collect(),
        })
    }

    /// Reads `ISSUER` (required) and the optional policy numbers `AUTH_REQ_EXPIRES_IN`,
    /// `AUTH_REQ_MAX_EXPIRES_IN`, `POLL_INTERVAL`, `REQUEST_OBJECT_MAX_EXP`,
    /// `ACCESS_TOKEN_TTL`, `REFRESH_TOKEN_TTL`, `REFRESH_TOKEN_MAX_LIFETIME`, `ID_TOKEN_TTL`,
    /// `ACCESS_TOKEN_AUDIENCE`, the abuse limits
    /// `USER_CODE_MAX_FAILURES`, `USER_CODE_LOCKOUT_SECS`, `MAX_PENDING_PER_CLIENT`,
    /// `MAX_PENDING_PER_USER`; the registration policy from
    /// `REGISTRATION=open` or `REGISTRATION_TOKEN_HASHES=h1,h2` (closed when neither is set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let issuer = vars
            .get("ISSUER")
            .ok_or_else(|| ConfigError("ISSUER is not set".into()))?;
        let mut config = Self::new(issuer)?;
        let number = |name: &str, slot: &mut i64| -> Result<(), ConfigError> {
            if let Some(raw) = vars.get(name) {
                *slot = raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    ConfigError(format!("{name} must be a positive integer, got {raw:?}"))
                })?;
            }
            Ok(())
        };
        number("AUTH_REQ_EXPIRES_IN", &mut config.expires_in)?;
        number("AUTH_REQ_MAX_EXPIRES_IN", &mut config.max_expires_in)?;
        number("POLL_INTERVAL", &mut config.interval)?;
        number("REQUEST_OBJECT_MAX_EXP", &mut config.request_object_max_exp)?;
        number("ACCESS_TOKEN_TTL", &mut config.access_token_ttl)?;
        number("REFRESH_TOKEN_TTL", &mut config.refresh_token_ttl)?;
        number(
            "REFRESH_TOKEN_MAX_LIFETIME",
            &mut config.refresh_family_lifetime,
        )?;
        number("ID_TOKEN_TTL", &mut config.id_token_ttl)?;
        if let Some(audience) = vars.get("ACCESS_TOKEN_AUDIENCE") {
            if audience.trim().is_empty() || audience.chars().any(char::is_control) {
                return Err(ConfigError(
                    "ACCESS_TOKEN_AUDIENCE must be a non-empty URI or name".into(),
                ));
            }
            config.access_token_audience = audience.trim().to_owned();
        }
        number(
            "USER_CODE_LOCKOUT_SECS",
            &mut config.user_code_attempts.window,
        )?;
        let count = |name: &str, slot: &mut u32| -> Result<(), ConfigError> {
            let mut value = i64::from(*slot);
            number(name, &mut value)?;
            *slot = u32::try_from(value)
                .map_err(|_| ConfigError(format!("{name} must be at most {}", u32::MAX)))?;
            Ok(())
        };
        count("USER_CODE_MAX_FAILURES", &mut config.user_code_attempts.max)?;
        count(
            "MAX_PENDING_PER_CLIENT",
            &mut config.pending_limit.per_client,
        )?;
        count("MAX_PENDING_PER_USER", &mut config.pending_limit.per_user)?;
        if let Some(raw) = vars.get("CLIENT_CACHE_SECS") {
            config.client_cache_secs = raw
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= MAX_CLIENT_CACHE_SECS)
                .ok_or_else(|| {
                    ConfigError(format!(
                        "CLIENT_CACHE_SECS must be a number of seconds from 0 to \
                         {MAX_CLIENT_CACHE_SECS}, got {raw:?}"
                    ))
                })?;
        }
        if let Some(raw) = vars.get("AUTHORIZATION_DETAILS_TYPES") {
            let types: Vec<String> = raw
                .split([' ', ','])
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(unknown) = types
                .iter()
                .find(|name| !crate::authorization_details::known(name))
            {
                return Err(ConfigError(format!(
                    "AUTHORIZATION_DETAILS_TYPES: no schema for type {unknown:?} (known: {})",
                    crate::authorization_details::TYPES
                        .iter()
                        .map(|(name, _)| *name)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
            config.authorization_details_types = types;
        }
        config.registration = registration(vars)?;
        config.fapi_by_default = match vars.get("FAPI_BY_DEFAULT").map(String::as_str) {
            None | Some("" | "false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "FAPI_BY_DEFAULT must be true or false, got {other:?}"
                )));
            }
        };
        config.dpop_nonce_required = match vars.get("DPOP_NONCE").map(String::as_str) {
            None | Some("" | "off") => false,
            Some("required") => true,
            Some(other) => {
                return Err(ConfigError(format!(
                    "DPOP_NONCE must be required or off, got {other:?}"
                )));
            }
        };
        if let Some(base) = vars.get("MTLS_BASE_URL").filter(|b| !b.trim().is_empty()) {
            config.mtls_base_url = Some(validate_mtls_base_url(base)?);
        }
        if let Some(raw) = vars.get("ACR_VALUES_SUPPORTED") {
            config.acr_values_supported = raw
                .split([' ', ','])
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect();
        }
        if let Some(cas) = vars.get(crate::client_ca::SETTING) {
            config.mtls_client_cas =
                crate::client_ca::ClientCas::parse(cas).map_err(ConfigError)?;
        }
        if config.expires_in > config.max_expires_in {
            return Err(ConfigError(
                "AUTH_REQ_EXPIRES_IN must not exceed AUTH_REQ_MAX_EXPIRES_IN".into(),
            ));
        }
        Ok(config)
    }

    pub fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// What an incoming JWT's `aud` may name for this OP: the issuer and, for client assertions,
    /// the endpoint it was sent to (RFC 7523 §3).
    pub fn accepts_audience(&self, aud: &str) -> bool {
        const PATHS: [&str; 4] = ["/token", "/bc-authorize", "/introspect", "/revoke"];
        aud == self.issuer
            || PATHS.iter().any(|path| aud == self.endpoint(path))
            || PATHS
                .iter()
                .any(|path| self.mtls_endpoint(path).is_some_and(|alias| aud == alias))
    }

    /// The mutual-TLS alias of an endpoint (RFC 8705 §5), when the OP has one.
    pub fn mtls_endpoint(&self, path: &str) -> Option<String> {
        self.mtls_base_url
            .as_ref()
            .map(|base| format!("{base}{path}"))
    }

    /// Whether this OP runs on the developer's machine: its issuer is plain http on a loopback
    /// host, which `validate_issuer` allows for nothing else.
    pub fn runs_locally(&self) -> bool {
        url::Url::parse(&self.issuer).is_ok_and(|url| url.scheme() == "http" && is_loopback(&url))
    }
}

/// Whether `url` names this machine by a loopback name or address.
pub fn is_loopback(url: &url::Url) -> bool {
    matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"))
}

/// `MTLS_BASE_URL`: an https origin (a path prefix allowed, e.g. a stage), no query, no trailing
/// slash kept; plain http only on a loopback host.
fn validate_mtls_base_url(raw: &str) -> Result<String, ConfigError> {
    let bad = || ConfigError(format!("MTLS_BASE_URL must be an https URL, got {raw:?}"));
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    let secure = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
    if !secure || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err(bad());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// `REGISTRATION=open`, or `REGISTRATION_TOKEN_HASHES`: comma-separated `secret::hash`es of the
/// initial access tokens. Hashes only, so the configuration never holds a usable token.
fn registration(vars: &HashMap<String, String>) -> Result<Registration, ConfigError> {
    let hashes = vars.get("REGISTRATION_TOKEN_HASHES");
    match vars.get("REGISTRATION").map(String::as_str) {
        Some("open") if hashes.is_some() => Err(ConfigError(
            "REGISTRATION=open and REGISTRATION_TOKEN_HASHES exclude each other".into(),
        )),
        Some("open") => Ok(Registration::Open),
        Some(other) => Err(ConfigError(format!(
            "REGISTRATION must be \"open\" when set, got {other:?}"
        ))),
        None => {
            let hashes: Vec<String> = hashes
                .map(|raw| {
                    raw.split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            if let Some(bad) = hashes.iter().find(|h| !is_sha256_hash(h)) {
                return Err(ConfigError(format!(
                    "REGISTRATION_TOKEN_HASHES must hold base64url SHA-256 hashes, got {bad:?}"
                )));
            }
            Ok(Registration::InitialAccessToken(hashes))
        }
    }
}

/// The shape of `secret::hash`: 32 bytes as unpadded base64url, 43 characters.
fn is_sha256_hash(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The issuer must be an https URL without query or fragment (OIDC Discovery §3); plain http is
/// allowed only on a loopback host, for the local API.
fn validate_issuer(raw: &str) -> Result<String, ConfigError> {
    let url = url::Url::parse(raw)
        .map_err(|e| ConfigError(format!("ISSUER {raw:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        _ => return Err(ConfigError(format!("ISSUER {raw:?} must be an https URL"))),
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError(format!(
            "ISSUER {raw:?} must not have a query or fragment"
        )));
    }
    Ok(raw.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn authorization_details_types_are_every_known_type_unless_configured() {
        let vars = |types: Option<&str>| {
            let mut vars = HashMap::from([("ISSUER".to_owned(), "https://op.example".to_owned())]);
            if let Some(types) = types {
                vars.insert("AUTHORIZATION_DETAILS_TYPES".to_owned(), types.to_owned());
            }
            vars
        };
        let types = |raw| {
            Config::from_vars(&vars(raw))
                .unwrap()
                .authorization_details_types
        };
        assert_eq!(types(None), ["payment_initiation", "generic"]);
        assert_eq!(types(Some("generic")), ["generic"]);
        assert_eq!(
            types(Some("payment_initiation, generic")),
            ["payment_initiation", "generic"]
        );
        assert!(types(Some("")).is_empty());
        let err =
            Config::from_vars(&vars(Some("payment_initiation,account_information"))).unwrap_err();
        assert!(err.0.contains("account_information"), "{err}");
    }

    #[test]
    fn mtls_base_url_is_an_https_origin_whose_endpoints_are_audiences_too() {
        let vars = |base: &str| {
            HashMap::from([
                ("ISSUER".to_owned(), "https://op.example".to_owned()),
                ("MTLS_BASE_URL".to_owned(), base.to_owned()),
            ])
        };
        let config = Config::from_vars(&vars("https://mtls.op.example/")).unwrap();
        assert_eq!(
            config.mtls_base_url.as_deref(),
            Some("https://mtls.op.example")
        );
        assert!(config.accepts_audience("https://mtls.op.example/token"));
        assert!(!config.accepts_audience("https://mtls.op.example/userinfo"));
        for bad in [
            "http://mtls.op.example",
            "https://mtls.op.example/?a=b",
            "mtls",
        ] {
            assert!(Config::from_vars(&vars(bad)).is_err(), "{bad}");
        }
        assert!(
            Config::from_vars(&vars(""))
                .unwrap()
                .mtls_base_url
                .is_none()
        );
    }

    use super::*;

    #[test]
    fn op_runs_locally_only_on_a_loopback_http_issuer() {
        let runs_locally = |issuer: &str| Config::new(issuer).unwrap().runs_locally();
        assert!(runs_locally("http://127.0.0.1:8080"));
        assert!(runs_locally("http://localhost:8080"));
        assert!(runs_locally("http://[::1]:8080"));
        assert!(!runs_locally("https://op.example.com"));
        assert!(!runs_locally("https://127.0.0.1:8443"));
    }

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn missing_issuer_fails_at_start() {
        assert!(Config::from_vars(&vars(&[])).is_err());
    }

    #[test]
    fn http_issuer_is_refused_unless_loopback() {
        assert!(Config::new("http://op.example.com").is_err());
        assert!(Config::new("http://127.0.0.1:8080").is_ok());
        assert!(Config::new("https://op.example.com/").is_ok());
        assert!(Config::new("not a url").is_err());
        assert!(Config::new("https://op.example.com?x=1").is_err());
    }

    #[test]
    fn issuer_loses_trailing_slash() {
        assert_eq!(
            Config::new("https://op.example.com/").unwrap().issuer,
            "https://op.example.com"
        );
    }

    #[test]
    fn policy_numbers_come_from_environment() {
        let c = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("POLL_INTERVAL", "5"),
            ("AUTH_REQ_EXPIRES_IN", "120"),
        ]))
        .unwrap();
        assert_eq!((c.interval, c.expires_in), (5, 120));
    }

    #[test]
    fn non_numeric_policy_number_fails_at_start() {
        let e = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("POLL_INTERVAL", "fast"),
        ]));
        assert!(e.is_err());
    }

    #[test]
    fn registration_is_closed_by_default() {
        let c = Config::from_vars(&vars(&[("ISSUER", "https://op.example.com")])).unwrap();
        assert_eq!(c.registration, Registration::InitialAccessToken(Vec::new()));
        assert!(!c.registration.admits(None));
        assert!(!c.registration.admits(Some("anything")));
        assert_eq!(
            Config::new("https://op.example.com").unwrap().registration,
            c.registration
        );
    }

    #[test]
    fn registration_open_admits_anyone() {
        let c = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("REGISTRATION", "open"),
        ]))
        .unwrap();
        assert_eq!(c.registration, Registration::Open);
        assert!(c.registration.admits(None));
    }

    #[test]
    fn registration_token_hashes_come_from_environment() {
        let hashes = format!("{}, {}", secret::hash("iat-1"), secret::hash("iat-2"));
        let c = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("REGISTRATION_TOKEN_HASHES", &hashes),
        ]))
        .unwrap();
        assert_eq!(
            c.registration,
            Registration::InitialAccessToken(vec![secret::hash("iat-1"), secret::hash("iat-2")])
        );
    }

    #[test]
    fn initial_access_token_is_admitted_only_when_its_hash_is_listed() {
        let policy =
            Registration::InitialAccessToken(vec![secret::hash("iat-1"), secret::hash("iat-2")]);
        assert!(policy.admits(Some("iat-1")));
        assert!(policy.admits(Some("iat-2")));
        assert!(!policy.admits(Some("iat-3")));
        assert!(!policy.admits(Some(&secret::hash("iat-1"))));
        assert!(!policy.admits(None));
    }

    #[test]
    fn registration_token_that_is_not_a_hash_fails_at_start() {
        let e = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("REGISTRATION_TOKEN_HASHES", "plain-token"),
        ]));
        assert!(e.is_err());
    }

    #[test]
    fn unknown_registration_policy_fails_at_start() {
        let e = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("REGISTRATION", "closed"),
        ]));
        assert!(e.is_err());
    }

    #[test]
    fn open_registration_with_token_hashes_fails_at_start() {
        let e = Config::from_vars(&vars(&[
            ("ISSUER", "https://op.example.com"),
            ("REGISTRATION", "open"),
            ("REGISTRATION_TOKEN_HASHES", &secret::hash("iat-1")),
        ]));
        assert!(e.is_err());
    }
}
