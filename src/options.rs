//! How the local API is configured: command-line flags first, then environment variables.

use std::sync::Arc;

use crate::local_notify::{LocalNotifier, NotifyingStore};
use ciba_shared::callback_policy::AddressPolicy;
use ciba_shared::config::{Config, Registration};
use ciba_shared::context::Ctx;
use ciba_shared::key_ring;
use ciba_shared::notify::{HttpCallbackSender, Notifier, NotifierSettings};
use ciba_shared::op_secret::Keys;
use ciba_shared::ports::Random;
use ciba_shared::ports::{Clock, LocalSigner, OsRandom, Signer, SystemClock, SystemResolver};
use ciba_shared::push::{PushSender, SnsPushSender};
use ciba_shared::secret::Secret;
use ciba_shared::store::memory::DEFAULT_REQUEST_RETENTION_SECS;
use ciba_shared::store::{MemoryStore, Store};
use ciba_testkit::seed::Seed;
use ciba_testkit::{RecordingPushSender, TeePushSender};
use std::collections::HashMap;
use std::time::Duration;

use crate::LocalApi;
use crate::cli::Stop;
use crate::tls::TlsFiles;

pub const USAGE: &str = "\
ciba-local: every CIBA function's handler on one local port

  --port N            port on 127.0.0.1 (PORT, default 8080)
  --issuer URL        issuer URL (ISSUER, default http://127.0.0.1:<port>)
  --seed PATH         seed file of clients, users and devices (CIBA_SEED, default tests/seed.json),
                      imported into the in-memory store; a DynamoDB table only with --seed-dynamodb
  --seed-dynamodb     import the seed into the DynamoDB table too (CIBA_SEED_DYNAMODB=1): its demo
                      secrets and device keys are public, never point this at a real table
  --store KIND        memory (default) or dynamodb (CIBA_STORE)
  --table NAME        DynamoDB table (TABLE_NAME, default ciba-local); created when missing;
                      the endpoint comes from AWS_ENDPOINT_URL_DYNAMODB (e.g. DynamoDB Local)
  --signing-key PATH  PKCS#8 PEM of the OP's P-256 key (SIGNING_KEY_FILE; default: generated);
                      further PEM blocks are keys it replaced, published in /jwks only
  --signer KIND       local (default: --signing-key or a generated key) or env (CIBA_SIGNER): the
                      keys a deployed function uses, from KMS_KEY_ID (one KMS Sign per signature),
                      SIGNING_KEY_ENVELOPE with TABLE_NAME (one KMS Decrypt at start-up),
                      SIGNING_KEY_PEM or SIGNING_KEY_FILE, KMS at AWS_ENDPOINT_URL_KMS (for the
                      benchmark's counted runs against moto)
  --registration R    open (default), closed, or token:<initial access token> (CIBA_REGISTRATION)
  --push KIND         recording (default: listed at /_local/pushes) or sns (CIBA_PUSH); sns uses
                      SNS_PLATFORM_APP_GCM / _APNS / _APNS_SANDBOX and AWS_ENDPOINT_URL_SNS,
                      and lists what SNS accepted at /_local/pushes too
  --sweep-every S     seconds between expiry sweeps, the expiry-sweeper function's job
                      (CIBA_SWEEP_EVERY, default 1)
  --request-retention S
                      seconds an expired auth request stays known (answered expired_token, not
                      unknown) before it leaves the in-memory store and /_local/pushes
                      (CIBA_REQUEST_RETENTION, default 86400 as in the DynamoDB table; 0 to 86400)
  --tls-port N        also serve HTTPS with client certificates (mutual TLS, RFC 8705) on this
                      port of 127.0.0.1, as API Gateway's mTLS custom domain does (CIBA_TLS_PORT);
                      discovery then names it in mtls_endpoint_aliases (MTLS_BASE_URL overrides).
                      Needs all three of:
  --tls-cert PATH     the server's certificate chain, PEM (CIBA_TLS_CERT)
  --tls-key PATH      the server's private key, PKCS#8 or SEC1 PEM (CIBA_TLS_KEY)
  --tls-client-ca PATH
                      the truststore: PEM CA certificates, and self-signed client certificates
                      accepted as they are (CIBA_TLS_CLIENT_CA)
  --local-endpoints-on-dynamodb
                      serve /_local/* over a DynamoDB store too (CIBA_LOCAL_ENDPOINTS_ON_DYNAMODB=1;
                      for the benchmark harness): anyone reaching the port may then read pushes
                      and issue enrolment codes into the table

  The OP secret, which user codes are hashed under and push-mode tokens derived from, is
  OP_SECRET (environment only, 32+ characters; default: generated at start-up). Give it the
  value ciba-admin import was given when the table was seeded by ciba-admin.
";

#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub port: u16,
    pub issuer: Option<String>,
    pub seed: Option<String>,
    /// Whether the seed goes into a DynamoDB store (it always goes into the in-memory one).
    pub seed_dynamodb: bool,
    pub dynamodb: bool,
    /// Whether `/_local/*` is served over a DynamoDB store.
    pub local_endpoints_on_dynamodb: bool,
    pub table: String,
    pub signing_key: Option<String>,
    /// Whether the signer comes from the functions' settings (`signer_from_env`).
    pub signer_from_env: bool,
    pub sns: bool,
    pub registration: Registration,
    pub sweep_every: Duration,
    /// Seconds an expired auth request stays in the in-memory store and its push in the record.
    pub request_retention: i64,
    /// The mutual-TLS listener, when asked for.
    pub tls: Option<TlsOptions>,
}

/// The mutual-TLS port and the files it is configured from.
#[derive(Debug, Clone, PartialEq)]
pub struct TlsOptions {
    pub port: u16,
    pub files: TlsFiles,
}

impl Options {
    pub fn parse(args: &[String], env: &dyn Fn(&str) -> Option<String>) -> Result<Self, Stop> {
        let flags = crate::cli::flags(args, USAGE)?;
        Self::from_flags(&flags, env).map_err(Stop::Usage)
    }

    fn from_flags(
        flags: &HashMap<String, String>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let get = |flag: &str, var: &str| flags.get(flag).cloned().or_else(|| env(var));
        let port = match get("port", "PORT") {
            Some(p) => p
                .parse()
                .map_err(|_| format!("port {p:?} is not a port number"))?,
            None => 8080,
        };
        let store = get("store", "CIBA_STORE").unwrap_or_else(|| "memory".into());
        let dynamodb = match store.as_str() {
            "memory" => false,
            "dynamodb" => true,
            other => return Err(format!("store {other:?} must be memory or dynamodb")),
        };
        let switch = |flag: &str, var: &str| -> Result<bool, String> {
            if flags.contains_key(flag) {
                return Ok(true);
            }
            match env(var).as_deref() {
                Some("1" | "true") => Ok(true),
                None | Some("" | "0" | "false") => Ok(false),
                Some(v) => Err(format!("{var} must be 1 or 0, got {v:?}")),
            }
        };
        let seed_dynamodb = switch("seed-dynamodb", "CIBA_SEED_DYNAMODB")?;
        let local_endpoints_on_dynamodb = switch(
            "local-endpoints-on-dynamodb",
            "CIBA_LOCAL_ENDPOINTS_ON_DYNAMODB",
        )?;
        let explicit_seed = get("seed", "CIBA_SEED");
        if dynamodb && explicit_seed.is_some() && !seed_dynamodb {
            return Err(
                "--seed with --store dynamodb imports demo secrets into the table: add \
                 --seed-dynamodb to mean it"
                    .into(),
            );
        }
        let seed = explicit_seed.or_else(|| {
            std::path::Path::new("tests/seed.json")
                .exists()
                .then(|| "tests/seed.json".into())
        });
        let sns = match get("push", "CIBA_PUSH").as_deref() {
            None | Some("recording") => false,
            Some("sns") => true,
            Some(other) => return Err(format!("push {other:?} must be recording or sns")),
        };
        let registration = match get("registration", "CIBA_REGISTRATION").as_deref() {
            None | Some("open") => Registration::Open,
            Some("closed") => Registration::InitialAccessToken(Vec::new()),
            Some(other) => match other.strip_prefix("token:") {
                Some(token) if !token.is_empty() => {
                    Registration::InitialAccessToken(vec![ciba_shared::secret::hash(token)])
                }
                _ => {
                    return Err(format!(
                        "registration {other:?} must be open, closed or token:<value>"
                    ));
                }
            },
        };
        let sweep_every = match get("sweep-every", "CIBA_SWEEP_EVERY") {
            Some(s) => s
                .parse::<u64>()
                .ok()
                .filter(|n| (1..=86_400).contains(n))
                .map(Duration::from_secs)
                .ok_or_else(|| format!("sweep-every {s:?} must be 1 to 86400 seconds"))?,
            None => Duration::from_secs(1),
        };
        let signer_from_env = match get("signer", "CIBA_SIGNER").as_deref() {
            None | Some("local") => false,
            Some("env") => true,
            Some(other) => return Err(format!("signer {other:?} must be local or env")),
        };
        let request_retention = match get("request-retention", "CIBA_REQUEST_RETENTION") {
            Some(s) => s
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=DEFAULT_REQUEST_RETENTION_SECS).contains(n))
                .ok_or_else(|| format!("request-retention {s:?} must be 0 to 86400 seconds"))?,
            None => DEFAULT_REQUEST_RETENTION_SECS,
        };
        let tls = tls_options(port, &get)?;
        Ok(Self {
            signer_from_env,
            tls,
            sweep_every,
            request_retention,
            registration,
            sns,
            port,
            issuer: get("issuer", "ISSUER"),
            seed,
            seed_dynamodb,
            dynamodb,
            local_endpoints_on_dynamodb,
            table: get("table", "TABLE_NAME").unwrap_or_else(|| "ciba-local".into()),
            signing_key: get("signing-key", "SIGNING_KEY_FILE"),
        })
    }

    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", self.port))
    }
}

/// The TLS port and its three files, all given or none; a port apart from the plain one.
fn tls_options(
    port: u16,
    get: &dyn Fn(&str, &str) -> Option<String>,
) -> Result<Option<TlsOptions>, String> {
    let tls_port = get("tls-port", "CIBA_TLS_PORT");
    let cert = get("tls-cert", "CIBA_TLS_CERT");
    let key = get("tls-key", "CIBA_TLS_KEY");
    let client_ca = get("tls-client-ca", "CIBA_TLS_CLIENT_CA");
    match (tls_port, cert, key, client_ca) {
        (None, None, None, None) => Ok(None),
        (Some(p), Some(cert), Some(key), Some(client_ca)) => {
            let tls_port: u16 = p
                .parse()
                .ok()
                .filter(|n| *n != 0)
                .ok_or_else(|| format!("tls-port {p:?} is not a port number"))?;
            if tls_port == port {
                return Err(format!(
                    "tls-port {tls_port} is the plain HTTP port too: give it another"
                ));
            }
            Ok(Some(TlsOptions {
                port: tls_port,
                files: TlsFiles {
                    cert,
                    key,
                    client_ca,
                },
            }))
        }
        _ => Err(
            "mutual TLS needs --tls-port, --tls-cert, --tls-key and --tls-client-ca together"
                .into(),
        ),
    }
}

/// What start-up prints: where the store is and what was seeded.
pub struct Summary {
    pub store: String,
    pub clients: Vec<String>,
    pub users: Vec<String>,
}

/// Builds the local API from options: the store, the seed, the signer, the recording pusher.
pub async fn build(
    options: &Options,
    clock: Arc<dyn Clock>,
) -> Result<(LocalApi, Summary), String> {
    let keys = Arc::new(local_keys()?);
    // The policy numbers and abuse limits from the environment, as a function reads them.
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("ISSUER".into(), options.issuer());
    if let Some(tls) = &options.tls {
        vars.entry("MTLS_BASE_URL".into())
            .or_insert_with(|| format!("https://127.0.0.1:{}", tls.port));
    }
    vars.retain(|name, _| !name.starts_with("REGISTRATION"));
    let mut config = Config::from_vars(&vars).map_err(|e| e.to_string())?;
    config.registration = options.registration.clone();
    // The TLS port's truststore names the CAs of tls_client_auth clients too, unless
    // MTLS_CLIENT_CA_CERTS says otherwise (as it must in AWS).
    if let Some(tls) = &options.tls
        && !vars.contains_key(ciba_shared::client_ca::SETTING)
    {
        let path = &tls.files.client_ca;
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("--tls-client-ca {path}: {e}"))?;
        config.mtls_client_cas = ciba_shared::client_ca::ClientCas::from_truststore(&text)
            .map_err(|e| format!("--tls-client-ca {path}: {e}"))?;
    }
    let (store, store_name): (Arc<dyn Store>, String) = if options.dynamodb {
        let table = crate::dynamo::open(&options.table).await?;
        let created = if table.created { " (created)" } else { "" };
        (
            Arc::new(
                table
                    .store
                    .with_client_cache(Duration::from_secs(config.client_cache_secs)),
            ),
            format!("DynamoDB table {}{created}", options.table),
        )
    } else {
        let store = MemoryStore::with_request_retention(options.request_retention);
        (Arc::new(store), "in-memory".into())
    };
    let signer: Arc<dyn Signer> = match &options.signing_key {
        _ if options.signer_from_env => ciba_shared::context::signer_from_env(None)
            .await
            .map_err(|e| e.0)?,
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
            Arc::new(key_ring::from_pem(&format!("--signing-key {path}"), &pem).map_err(|e| e.0)?)
        }
        None => Arc::new(LocalSigner::generate()),
    };
    let mut summary = Summary {
        store: store_name,
        clients: Vec::new(),
        users: Vec::new(),
    };
    let seeded = if options.dynamodb {
        options.seed.as_ref().filter(|_| options.seed_dynamodb)
    } else {
        options.seed.as_ref()
    };
    if options.dynamodb && !options.seed_dynamodb {
        summary
            .store
            .push_str(", not seeded (--seed-dynamodb imports the seed)");
    }
    if let Some(path) = seeded {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let seed = Seed::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
        seed.import(store.as_ref(), &keys, clock.now())
            .await
            .map_err(|e| format!("seeding {path}: {e}"))?;
        summary.clients = seed
            .clients()
            .map(|c| {
                format!(
                    "{} ({}, {})",
                    c.client_id,
                    c.token_endpoint_auth_method.as_str(),
                    c.backchannel_token_delivery_mode.as_str()
                )
            })
            .collect();
        summary.users = seed
            .users(&keys)
            .map(|u| format!("{} [{}]", u.sub, u.login_hints.join(", ")))
            .collect();
    }
    let (changes, changed) = tokio::sync::mpsc::unbounded_channel();
    let store: Arc<dyn Store> = Arc::new(NotifyingStore::new(store, changes));
    let pushes = Arc::new(RecordingPushSender::default());
    let push: Arc<dyn PushSender> = if options.sns {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        summary.store.push_str(", pushes through SNS");
        Arc::new(TeePushSender {
            inner: Arc::new(SnsPushSender::from_env(&aws)),
            record: pushes.clone(),
        })
    } else {
        pushes.clone()
    };
    let ctx = Ctx {
        config: Arc::new(config),
        store,
        clock,
        random: Arc::new(OsRandom),
        signer,
        push,
        resolver: Arc::new(SystemResolver),
        keys: Some(keys.clone()),
    };
    let notifier = Notifier {
        ctx: ctx.clone(),
        callback: Arc::new(HttpCallbackSender::new(
            Duration::from_secs(5),
            AddressPolicy::for_op(ctx.config.runs_locally()),
        )?),
        settings: NotifierSettings {
            attempts: 4,
            first_retry: Duration::from_millis(500),
            push_token_key: keys.push_token.clone(),
        },
    };
    let notifier = LocalNotifier::spawn(notifier, changed, options.sweep_every);
    let api = LocalApi::new(ctx, pushes)
        .with_notifier(notifier)
        .with_request_retention(options.request_retention);
    let api = if options.dynamodb && !options.local_endpoints_on_dynamodb {
        api.without_local_endpoints()
    } else {
        api
    };
    Ok((api, summary))
}

/// The keys of the OP secret `OP_SECRET`, or of one generated for this run. Only the local API
/// takes the secret from its environment: the functions read it from Secrets Manager.
fn local_keys() -> Result<Keys, String> {
    let secret = match std::env::var("OP_SECRET") {
        Ok(secret) if !secret.is_empty() => Secret::new(secret),
        _ => Secret::new(OsRandom.token(48)),
    };
    Keys::derive(&secret).map_err(|e| format!("OP_SECRET: {}", e.0))
}

pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options of `args`, or the command-line mistake they make.
    fn parse(args: &[&str]) -> Result<Options, String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        match Options::parse(&args, &|_| None) {
            Ok(options) => Ok(options),
            Err(Stop::Usage(mistake)) => Err(mistake),
            Err(other) => panic!("{other:?} is not a command-line mistake"),
        }
    }

    #[test]
    fn help_is_the_usage_and_not_a_mistake() {
        for flag in ["--help", "-h"] {
            let args = vec![flag.to_owned()];
            assert_eq!(
                Options::parse(&args, &|_| None),
                Err(Stop::Help(USAGE.into()))
            );
        }
    }

    #[test]
    fn sweep_every_defaults_to_a_second_and_takes_1_to_86400() {
        assert_eq!(parse(&[]).unwrap().sweep_every, Duration::from_secs(1));
        assert_eq!(
            parse(&["--sweep-every", "3600"]).unwrap().sweep_every,
            Duration::from_secs(3600)
        );
        for bad in ["0", "86401", "-1", "soon"] {
            let error = parse(&["--sweep-every", bad]).unwrap_err();
            assert!(error.contains("1 to 86400"), "{bad}: {error}");
        }
    }

    #[test]
    fn tls_needs_its_port_and_three_files_together() {
        assert_eq!(parse(&[]).unwrap().tls, None);
        let full = [
            "--tls-port",
            "8443",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--tls-client-ca",
            "ca.pem",
        ];
        let tls = parse(&full).unwrap().tls.unwrap();
        assert_eq!(
            (
                tls.port,
                tls.files.cert.as_str(),
                tls.files.client_ca.as_str()
            ),
            (8443, "c.pem", "ca.pem")
        );
        for missing in 0..4 {
            let mut args = full.to_vec();
            args.drain(missing * 2..missing * 2 + 2);
            let error = parse(&args).unwrap_err();
            assert!(error.contains("together"), "{args:?}: {error}");
        }
        let mut same = full.to_vec();
        same.extend(["--port", "8443"]);
        assert!(parse(&same).unwrap_err().contains("plain HTTP port"));
        let mut bad = full.to_vec();
        bad[1] = "https";
        assert!(parse(&bad).unwrap_err().contains("not a port number"));
    }

    #[test]
    fn the_signer_is_local_unless_env_is_asked_for() {
        assert!(!parse(&[]).unwrap().signer_from_env);
        assert!(parse(&["--signer", "env"]).unwrap().signer_from_env);
        assert!(
            parse(&["--signer", "kms"])
                .unwrap_err()
                .contains("local or env")
        );
    }

    #[test]
    fn push_is_recording_unless_sns_is_asked_for() {
        assert!(!parse(&[]).unwrap().sns);
        assert!(parse(&["--push", "sns"]).unwrap().sns);
        assert!(
            parse(&["--push", "apns"])
                .unwrap_err()
                .contains("recording or sns")
        );
    }
}
