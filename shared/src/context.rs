//! Everything a handler needs, built once per cold start (or once by the local API) and
//! borrowed by every invocation.

use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, ConfigError};
use crate::envelope;
use crate::key_ring::{self, KeyRing};
use crate::kms::KmsSigner;
use crate::op_secret::Keys;
use crate::ports::{Clock, OsRandom, Random, Resolver, Signer, SystemClock, SystemResolver};
use crate::push::{PushSender, SnsPushSender};
use crate::store::{DynamoStore, Store};

#[derive(Clone)]
pub struct Ctx {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub signer: Arc<dyn Signer>,
    pub push: Arc<dyn PushSender>,
    /// Registration checks what a notification endpoint's name resolves to.
    pub resolver: Arc<dyn Resolver>,
    /// The keys derived from the OP secret, in the functions given it (`OP_SECRET_ARN`): those
    /// that check user codes. The others never read it.
    pub keys: Option<Arc<Keys>>,
}

impl Ctx {
    /// The Lambda wiring: configuration from the environment, DynamoDB from `TABLE_NAME`, SNS
    /// with the platform applications of `SNS_PLATFORM_APP_GCM`, `SNS_PLATFORM_APP_APNS`,
    /// `SNS_PLATFORM_APP_APNS_SANDBOX`, the signing key as [`SignerSource`] says. Fails at cold
    /// start when any of it is missing or malformed.
    pub async fn from_env() -> Result<Self, ConfigError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::from_env_with(&aws).await
    }

    /// `from_env` with the AWS SDK configuration already loaded (for a function that also makes
    /// clients of its own).
    pub async fn from_env_with(aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        let config = Config::from_env()?;
        let table = std::env::var("TABLE_NAME")
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| ConfigError("TABLE_NAME is not set".into()))?;
        let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(aws), table)
            .with_client_cache(Duration::from_secs(config.client_cache_secs));
        Ok(Self {
            config: Arc::new(config),
            store: Arc::new(store),
            clock: Arc::new(SystemClock),
            random: Arc::new(OsRandom),
            signer: signer_from_env(Some(aws)).await?,
            push: Arc::new(SnsPushSender::from_env(aws)),
            resolver: Arc::new(SystemResolver),
            keys: None,
        })
    }

    /// `from_env`, and the OP secret's keys when the configuration needs them: a function that
    /// checks DPoP proofs (`DPOP_NONCE=required`) authenticates its nonces with one.
    pub async fn from_env_for_dpop() -> Result<Self, ConfigError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        // As `from_env_with_op_secret`: the secret first, so a function that cannot have it
        // stops before anything else is loaded (and logged).
        let keys = if Config::from_env()?.dpop_nonce_required {
            let keys = Keys::from_env(&aws).await.map_err(|e| {
                ConfigError(format!("DPOP_NONCE=required needs the OP secret: {}", e.0))
            })?;
            Some(Arc::new(keys))
        } else {
            None
        };
        let ctx = Self::from_env_with(&aws).await?;
        Ok(Self { keys, ..ctx })
    }

    /// `from_env`, and the keys of the OP secret `OP_SECRET_ARN` names (one `GetSecretValue`).
    /// The secret is read first, so a function that cannot have it stops before anything else
    /// is loaded (and logged).
    pub async fn from_env_with_op_secret() -> Result<Self, ConfigError> {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let keys = Keys::from_env(&aws).await?;
        let ctx = Self::from_env_with(&aws).await?;
        Ok(Self {
            keys: Some(Arc::new(keys)),
            ..ctx
        })
    }
}

/// Where the OP's signing keys come from: the first of these settings that is set (not empty)
/// wins, in this order. In each, the first key signs and the others are the keys it replaced,
/// published beside it (see [`KeyRing`]).
#[derive(Clone, PartialEq, Eq)]
pub enum SignerSource {
    /// `KMS_KEY_ID`: KMS asymmetric keys (ids, ARNs or aliases, comma-separated); one KMS `Sign`
    /// per signature.
    Kms(String),
    /// `SIGNING_KEY_ENVELOPE`: kids of envelope keys in the table `TABLE_NAME`
    /// ([`envelope`](crate::envelope)); one KMS `Decrypt` per cold start.
    Envelope { kids: String, table: String },
    /// `SIGNING_KEY_PEM`: the PEM text of local P-256 keys (local runs and tests).
    Pem(String),
    /// `SIGNING_KEY_FILE`: the path of such a PEM file.
    File(String),
}

/// Without the PEM text: it is a private key.
impl std::fmt::Debug for SignerSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Kms(value) => f.debug_tuple("Kms").field(value).finish(),
            Self::Envelope { kids, table } => f
                .debug_struct("Envelope")
                .field("kids", kids)
                .field("table", table)
                .finish(),
            Self::Pem(_) => f.write_str("Pem(..)"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl SignerSource {
    /// The source the variables `var` answers for name, checked for what each needs.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(value) = set("KMS_KEY_ID") {
            return Ok(Self::Kms(value));
        }
        if let Some(kids) = set(envelope::SETTING) {
            let table = set("TABLE_NAME").ok_or_else(|| {
                ConfigError(format!(
                    "{}: the keys are read from TABLE_NAME, which is not set",
                    envelope::SETTING
                ))
            })?;
            return Ok(Self::Envelope { kids, table });
        }
        if let Some(pem) = set("SIGNING_KEY_PEM") {
            return Ok(Self::Pem(pem));
        }
        if let Some(path) = set("SIGNING_KEY_FILE") {
            return Ok(Self::File(path));
        }
        Err(ConfigError(
            "KMS_KEY_ID, SIGNING_KEY_ENVELOPE, SIGNING_KEY_PEM or SIGNING_KEY_FILE must be set"
                .into(),
        ))
    }
}

/// The OP signing keys from the environment ([`SignerSource`]). The AWS modes use `aws`, else
/// the SDK configuration is loaded from the environment.
pub async fn signer_from_env(
    aws: Option<&aws_config::SdkConfig>,
) -> Result<Arc<dyn Signer>, ConfigError> {
    let source = SignerSource::from_vars(|name| std::env::var(name).ok())?;
    match source {
        SignerSource::Kms(value) => {
            let key_ids = key_ring::key_ids("KMS_KEY_ID", &value)?;
            let client = aws_sdk_kms::Client::new(&sdk_config(aws).await);
            let (signer, retired) = KmsSigner::load_ring(client, &key_ids)
                .await
                .map_err(|e| ConfigError(format!("KMS_KEY_ID: {}", e.0)))?;
            Ok(Arc::new(KeyRing::new(Arc::new(signer), retired)))
        }
        SignerSource::Envelope { kids, table } => {
            let aws = sdk_config(aws).await;
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&aws), table);
            let ring = envelope::load_ring(&aws_sdk_kms::Client::new(&aws), &store, &kids).await?;
            Ok(Arc::new(ring))
        }
        SignerSource::Pem(pem) => Ok(Arc::new(key_ring::from_pem("SIGNING_KEY_PEM", &pem)?)),
        SignerSource::File(path) => {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("SIGNING_KEY_FILE {path}: {e}")))?;
            Ok(Arc::new(key_ring::from_pem(
                &format!("SIGNING_KEY_FILE {path}"),
                &pem,
            )?))
        }
    }
}

/// `aws`, or the SDK configuration loaded from the environment: only the AWS modes need one.
async fn sdk_config(aws: Option<&aws_config::SdkConfig>) -> aws_config::SdkConfig {
    match aws {
        Some(aws) => aws.clone(),
        None => aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await,
    }
}

/// The whole `main` of an HTTP function whose handler is `async fn(&Ctx, Request) -> Response`:
/// JSON logs, the context built once per cold start (a configuration error stops it there), then
/// the Lambda runtime calling the handler for every event. `http_function_main!(handler,
/// op_secret)` also reads the OP secret into the context.
#[macro_export]
macro_rules! http_function_main {
    (@main $handler:path, $constructor:ident) => {
        #[tokio::main]
        async fn main() -> Result<(), lambda_http::Error> {
            lambda_http::tracing::init_default_subscriber();
            let ctx = $crate::context::Ctx::$constructor()
                .await
                .unwrap_or_else(|e| $crate::context::cold_start_failure(e));
            let ctx = &ctx;
            lambda_http::run(lambda_http::service_fn(
                move |req: lambda_http::Request| async move {
                    Ok::<_, lambda_http::Error>($handler(ctx, req).await)
                },
            ))
            .await
        }
    };
    ($handler:path) => {
        $crate::http_function_main!(@main $handler, from_env);
    };
    ($handler:path, op_secret) => {
        $crate::http_function_main!(@main $handler, from_env_with_op_secret);
    };
    ($handler:path, dpop) => {
        $crate::http_function_main!(@main $handler, from_env_for_dpop);
    };
}

/// Stops a function whose configuration is missing or malformed before it takes any request:
/// one structured log line naming the setting, then exit status 1, which Lambda records as the
/// init phase's `Runtime.ExitError`. Returning the error from `main` instead would print it a
/// second time, as unstructured `Debug` text.
pub fn cold_start_failure(error: ConfigError) -> ! {
    tracing::error!(error = %error, "cold start failed: the function is misconfigured");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(vars: &[(&str, &str)]) -> Result<SignerSource, ConfigError> {
        SignerSource::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn signer_settings_win_in_the_documented_order() {
        let all = [
            ("KMS_KEY_ID", "alias/k"),
            ("SIGNING_KEY_ENVELOPE", "kid1"),
            ("TABLE_NAME", "t"),
            ("SIGNING_KEY_PEM", "pem"),
            ("SIGNING_KEY_FILE", "/k.pem"),
        ];
        assert_eq!(source(&all).unwrap(), SignerSource::Kms("alias/k".into()));
        assert_eq!(
            source(&all[1..]).unwrap(),
            SignerSource::Envelope {
                kids: "kid1".into(),
                table: "t".into()
            }
        );
        assert_eq!(source(&all[3..]).unwrap(), SignerSource::Pem("pem".into()));
        assert_eq!(
            source(&all[4..]).unwrap(),
            SignerSource::File("/k.pem".into())
        );
    }

    #[test]
    fn an_empty_setting_is_not_set() {
        let vars = [
            ("KMS_KEY_ID", " "),
            ("SIGNING_KEY_ENVELOPE", ""),
            ("SIGNING_KEY_PEM", "pem"),
        ];
        assert_eq!(source(&vars).unwrap(), SignerSource::Pem("pem".into()));
        let ConfigError(text) = source(&[("KMS_KEY_ID", "")]).unwrap_err();
        assert!(text.contains("SIGNING_KEY_ENVELOPE"), "{text}");
    }

    #[test]
    fn envelope_keys_without_a_table_is_a_config_error_naming_both() {
        let ConfigError(text) = source(&[("SIGNING_KEY_ENVELOPE", "kid1")]).unwrap_err();
        assert!(text.starts_with("SIGNING_KEY_ENVELOPE: "), "{text}");
        assert!(text.contains("TABLE_NAME"), "{text}");
    }
}
