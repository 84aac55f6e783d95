//! Operator tooling: imports the seed format into the configured store, issues one-time
//! enrolment codes and creates resource-server clients.
//!
//!   ciba-admin import --seed FILE [--table NAME] [--op-secret-arn ARN]
//!   ciba-admin resource-server --client-id ID [--name NAME] [--table NAME]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] [--table NAME]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] --api http://127.0.0.1:8080
//!   ciba-admin dead-letters --queue DLQ_URL [--redrive-to QUEUE_URL] [--limit N]
//!   ciba-admin signing-key --kms-key-id KEY [--table NAME]
//!   ciba-admin evidence AUTH_REQ_ID [--table NAME | --api URL]
//!
//! Without `--api` it writes to DynamoDB (`--table` or `TABLE_NAME`, created when missing the way
//! `ciba-local --store dynamodb` creates it), configured as the AWS SDK is (`AWS_REGION`,
//! credentials, `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local). With `--api` it asks a running
//! local API, whose in-memory store no other process can reach.

use std::collections::HashMap;
use std::process::ExitCode;

use ciba_local::cli::{self, Stop};
use ciba_local::client;
use ciba_shared::domain::Client;
use ciba_shared::envelope;
use ciba_shared::error::WireError;
use ciba_shared::ident::Ident;
use ciba_shared::notify::{NotificationQueue, SqsNotificationQueue};
use ciba_shared::op_secret::{self, Keys};
use ciba_shared::ports::{Clock, OsRandom, Random, SystemClock};
use ciba_shared::registration::Metadata;
use ciba_shared::secret::Secret;
use ciba_shared::store::DynamoStore;
use ciba_testkit::enrollment;
use ciba_testkit::seed::Seed;

const USAGE: &str = "\
ciba-admin: operator tooling for the CIBA OP's store

  ciba-admin import --seed FILE [--table NAME] [--op-secret-arn ARN]
      imports the seed file's clients, users, devices and enrolment codes into DynamoDB; user
      codes are hashed under the OP secret: the Secrets Manager secret --op-secret-arn
      (OP_SECRET_ARN; the stack output OpSecretArn) or, for a local table, OP_SECRET itself
  ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] [--table NAME | --api URL]
      issues a one-time enrolment code (valid 600 s by default) and prints it; with --api a
      running local API issues it into its own store (its in-memory store, say)
  ciba-admin resource-server --client-id ID [--name NAME] [--table NAME]
      creates a resource server (an API that introspects every client's access tokens at
      /introspect and starts no authentication requests) with client_secret_basic and a new
      secret, printed once on stdout and stored hashed; an ID already taken is refused

  ciba-admin dead-letters --queue DLQ_URL [--redrive-to QUEUE_URL] [--limit N]
      lists the ping and push notifications parked in the dead-letter queue (the stack output
      NotificationDeadLetterQueueUrl), one JSON line each with its reason; with --redrive-to
      (the output NotificationQueueUrl) queues each for delivery again and removes it from the
      dead letters. At most N (100) per run.

  ciba-admin signing-key --kms-key-id KEY [--table NAME]
      makes a new ES256 signing key for SigningMode=envelope: stored in the table only encrypted
      by KMS under the symmetric key KEY (id, ARN or alias; the stack output
      EnvelopeSigningKeyArn), never shown. Prints its kid, for EnvelopeSigningKids (the new kid
      first, then the kids it replaces)

  ciba-admin evidence AUTH_REQ_ID [--table NAME | --api URL]
      prints the evidence of the user's decision on a request and verifies it: the device's
      signed decision as it was sent, checked under the device key it was enrolled with; that
      key's thumbprint (the ID token's txn_approval.device_jkt); the txn and action; and the
      txn_hash against what the request showed (client, binding message, scope,
      authorization_details, expiry). Exits 1 when a check fails. Kept for the grant's lifetime

  --table NAME   the DynamoDB table (TABLE_NAME), created when missing; the AWS SDK's usual
                 configuration applies: AWS_REGION, credentials, and AWS_ENDPOINT_URL_DYNAMODB
                 for DynamoDB Local
";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(stop) => stop.exit("ciba-admin"),
    }
}

async fn dynamo(flags: &HashMap<String, String>) -> Result<DynamoStore, Stop> {
    let name = flags
        .get("table")
        .cloned()
        .or_else(|| std::env::var("TABLE_NAME").ok())
        .ok_or_else(|| Stop::Usage(format!("--table or TABLE_NAME is required\n\n{USAGE}")))?;
    let table = ciba_local::dynamo::open(&name).await?;
    if table.created {
        eprintln!("ciba-admin: table {name} did not exist; created it");
    }
    Ok(table.store)
}

/// The keys of the OP secret the deployment checks user codes with: the Secrets Manager secret
/// `--op-secret-arn` or `OP_SECRET_ARN` names, else `OP_SECRET` (a local API's secret).
async fn op_secret_keys(flags: &HashMap<String, String>) -> Result<Keys, Stop> {
    let arn = flags
        .get("op-secret-arn")
        .cloned()
        .or_else(|| std::env::var(op_secret::ARN_VAR).ok())
        .filter(|arn| !arn.is_empty());
    if let Some(arn) = arn {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        return Keys::from_secrets_manager(&aws, &arn)
            .await
            .map_err(|e| Stop::Failed(e.0));
    }
    match std::env::var("OP_SECRET") {
        Ok(secret) if !secret.is_empty() => Keys::derive(&Secret::new(secret))
            .map_err(|e| Stop::Usage(format!("OP_SECRET: {}", e.0))),
        _ => Err(Stop::Usage(format!(
            "user codes are hashed under the OP secret: give --op-secret-arn (or OP_SECRET_ARN), \
             or OP_SECRET for a local table\n\n{USAGE}"
        ))),
    }
}

async fn run(args: &[String]) -> Result<(), Stop> {
    let (command, rest) = cli::command(args, USAGE)?;
    // Its first argument is the request's id, not a flag.
    if command == "evidence" {
        return evidence(rest).await;
    }
    let flags = cli::flags(rest, USAGE)?;
    let flag = |name: &str| flags.required(name);
    let now = SystemClock.now();
    match command {
        "import" => {
            let path = flag("seed")?;
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
            let seed = Seed::from_json(&text).map_err(|e| format!("{path}: {e}"))?;
            let keys = op_secret_keys(&flags).await?;
            let store = dynamo(&flags).await?;
            seed.import(&store, &keys, now)
                .await
                .map_err(|e| e.to_string())?;
            println!(
                "imported {} clients, {} users, {} devices, {} enrollment codes into {}",
                seed.clients.len(),
                seed.users.len(),
                seed.devices.len(),
                seed.enrollment_codes.len(),
                store.table()
            );
            Ok(())
        }
        "enrollment-code" => {
            let user = flag("user")?;
            let ttl: i64 = match flags.get("ttl") {
                Some(t) => t
                    .parse()
                    .ok()
                    .filter(|t| (1..=enrollment::MAX_TTL).contains(t))
                    .ok_or_else(|| {
                        Stop::Usage(format!(
                            "--ttl must be whole seconds from 1 to {}",
                            enrollment::MAX_TTL
                        ))
                    })?,
                None => 600,
            };
            if let Some(api) = flags.get("api") {
                let body = serde_json::json!({"user": user, "ttl": ttl}).to_string();
                let response = client::send(
                    api,
                    "POST",
                    "/_local/enrollment-codes",
                    &[("content-type", "application/json")],
                    body.as_bytes(),
                )?;
                if response.status != 201 {
                    return Err(format!("{} {}", response.status, response.body).into());
                }
                println!(
                    "{}",
                    response.json()["enrollment_code"]
                        .as_str()
                        .unwrap_or_default()
                );
                return Ok(());
            }
            let store = dynamo(&flags).await?;
            let (code, record) = enrollment::issue(&store, &OsRandom, &user, None, ttl, now)
                .await
                .map_err(|e| e.to_string())?;
            eprintln!(
                "enrollment code for {} valid until {} (epoch seconds):",
                record.sub, record.expires_at
            );
            println!("{}", code.expose());
            Ok(())
        }
        "resource-server" => resource_server(&flags).await,
        "dead-letters" => dead_letters(&flags).await,
        "signing-key" => signing_key(&flags, now).await,
        other => Err(Stop::Usage(format!("unknown command {other}\n\n{USAGE}"))),
    }
}

/// `ciba-admin evidence AUTH_REQ_ID`: the report of `evidence::report`, from the table or from a
/// running local API; a check that fails is a failure of the command.
async fn evidence(args: &[String]) -> Result<(), Stop> {
    let (auth_req_id, rest) = match args.split_first() {
        Some((id, rest)) if !id.starts_with('-') => (id.clone(), rest),
        _ => {
            // `--help` alone, or the id missing.
            cli::flags(args, USAGE)?;
            return Err(Stop::Usage(format!(
                "evidence needs the AUTH_REQ_ID

{USAGE}"
            )));
        }
    };
    let flags = cli::flags(rest, USAGE)?;
    if let Some(fault) = Ident::OpId.fault(auth_req_id.split('.').next_back().unwrap_or("")) {
        return Err(Stop::Usage(format!("AUTH_REQ_ID {fault}")));
    }
    let (report, verified) = if let Some(api) = flags.get("api") {
        let target = format!(
            "/_local/evidence?auth_req_id={}",
            form_urlencoded::byte_serialize(auth_req_id.as_bytes()).collect::<String>()
        );
        let response = client::send(api, "GET", &target, &[], b"")?;
        if response.status != 200 {
            return Err(format!("{} {}", response.status, response.body).into());
        }
        let report = response.json();
        let verified = report["verified"] == true;
        (report, verified)
    } else {
        use ciba_shared::store::Store;
        let store = dynamo(&flags).await?;
        let request = store
            .requests()
            .get_auth_request(&auth_req_id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no request {auth_req_id} in {}", store.table()))?;
        ciba_shared::evidence::report(&request)?
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if verified {
        Ok(())
    } else {
        Err(Stop::Failed(
            "the evidence does not verify: see its checks above".into(),
        ))
    }
}

/// 256 bits, as `/register` gives a client secret.
const CLIENT_SECRET_BYTES: usize = 32;

/// A resource server's client under `client_id`, with the hash of `secret`. The name and the
/// rest of its metadata pass the rules of `/register`, so it is the client registration would
/// have made.
fn resource_server_client(
    client_id: &str,
    name: Option<&str>,
    secret: &Secret,
) -> Result<Client, Stop> {
    if let Some(fault) = Ident::ClientId.fault(client_id) {
        return Err(Stop::Usage(format!("--client-id {fault}")));
    }
    let mut body = serde_json::Map::new();
    body.insert("resource_server".into(), true.into());
    if let Some(name) = name {
        body.insert("client_name".into(), name.into());
    }
    let metadata = Metadata::validate(&body, false)
        .map_err(|e| Stop::Usage(format!("--name: {}", e.description())))?;
    Ok(Client {
        client_id: client_id.to_owned(),
        client_name: metadata.client_name,
        client_secret_hash: Some(secret.hash()),
        token_endpoint_auth_method: metadata.token_endpoint_auth_method,
        jwks: None,
        backchannel_token_delivery_mode: metadata.delivery_mode,
        backchannel_client_notification_endpoint: None,
        backchannel_authentication_request_signing_alg: None,
        backchannel_user_code_parameter: false,
        resource_server: true,
        access_token_format: metadata.access_token_format,
        fapi: metadata.fapi,
        authorization_details_types: None,
        tls: metadata.tls,
    })
}

/// Creates a resource server; its secret is the only thing on stdout, so
/// `SECRET=$(ciba-admin resource-server …)` keeps it out of the terminal's scrollback.
async fn resource_server(flags: &cli::Flags) -> Result<(), Stop> {
    let client_id = flags.required("client-id")?;
    let secret = Secret::new(OsRandom.token(CLIENT_SECRET_BYTES));
    let client =
        resource_server_client(&client_id, flags.get("name").map(String::as_str), &secret)?;
    let store = dynamo(flags).await?;
    let created = ciba_shared::store::Clients::create_client(&store, &client)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?;
    if !created {
        return Err(Stop::Failed(format!(
            "client {client_id} already exists in {}; nothing was changed (choose another --client-id)",
            store.table()
        )));
    }
    eprintln!(
        "resource server {client_id} created in {} (client_secret_basic); its client secret, \
         shown this once and stored only as a hash:",
        store.table()
    );
    println!("{}", secret.expose());
    Ok(())
}

/// Makes an envelope signing key; its kid is the only thing on stdout, the private key goes
/// nowhere but into KMS `Encrypt`.
async fn signing_key(flags: &cli::Flags, now: i64) -> Result<(), Stop> {
    let kms_key_id = flags.required("kms-key-id")?;
    let store = dynamo(flags).await?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let kid = envelope::create_key(&aws_sdk_kms::Client::new(&aws), &store, &kms_key_id, now)
        .await
        .map_err(|e| Stop::Failed(e.0))?;
    eprintln!(
        "signing key {kid} stored in {} encrypted under {kms_key_id}; deploy with \
         SigningMode=envelope EnvelopeSigningKids={kid}[,<the kids it replaces>]",
        store.table()
    );
    println!("{kid}");
    Ok(())
}

/// Lists, and with `--redrive-to` redrives, the parked notifications.
async fn dead_letters(flags: &cli::Flags) -> Result<(), Stop> {
    let dead_letter_url = flags.required("queue")?;
    let limit =
        match flags.get("limit") {
            None => 100,
            Some(n) => n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                Stop::Usage(format!("--limit must be a positive integer\n\n{USAGE}"))
            })?,
        };
    let redrive_to = flags.get("redrive-to").cloned();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let queue = SqsNotificationQueue::new(
        aws_sdk_sqs::Client::new(&aws),
        redrive_to.clone().unwrap_or_default(),
        dead_letter_url,
    );
    let letters = queue
        .dead_letters(limit)
        .await
        .map_err(|e| Stop::Failed(e.to_string()))?;
    let mut redriven = 0;
    for letter in &letters {
        println!("{}", serde_json::to_string(letter).unwrap_or_default());
        if redrive_to.is_some() {
            queue
                .redrive(letter)
                .await
                .map_err(|e| Stop::Failed(e.to_string()))?;
            redriven += 1;
        }
    }
    match redrive_to {
        Some(_) => eprintln!("ciba-admin: {redriven} notifications queued for delivery again"),
        None => eprintln!("ciba-admin: {} parked notifications", letters.len()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_with(args: &[&str]) -> Result<(), Stop> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        run(&args).await
    }

    #[tokio::test]
    async fn help_before_or_after_the_command_is_the_usage() {
        for args in [&["--help"][..], &["-h"], &["import", "--help"]] {
            assert_eq!(
                run_with(args).await,
                Err(Stop::Help(USAGE.into())),
                "{args:?}"
            );
        }
    }

    #[tokio::test]
    async fn no_command_or_an_unknown_one_is_a_mistake_shown_with_the_usage() {
        for args in [&[][..], &["frobnicate"]] {
            match run_with(args).await {
                Err(Stop::Usage(m)) => assert!(m.ends_with(USAGE), "{args:?}: {m}"),
                other => panic!("{args:?}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_missing_flag_is_a_mistake_named_before_anything_is_touched() {
        match run_with(&["import"]).await {
            Err(Stop::Usage(m)) => assert!(m.starts_with("--seed is required"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn resource_server_without_a_client_id_is_a_mistake_named_before_anything_is_touched() {
        match run_with(&["resource-server", "--table", "t"]).await {
            Err(Stop::Usage(m)) => assert!(m.starts_with("--client-id is required"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn signing_key_without_a_kms_key_is_a_mistake_named_before_anything_is_touched() {
        match run_with(&["signing-key", "--table", "t"]).await {
            Err(Stop::Usage(m)) => assert!(m.starts_with("--kms-key-id is required"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    /// Client authentication refuses such ids (`Ident::ClientId`), so the client could never
    /// be used; no table is opened for it.
    #[tokio::test]
    async fn resource_server_with_a_client_id_no_client_could_authenticate_with_is_a_mistake() {
        let long = "c".repeat(256);
        for id in ["", "tab\tid", "caf\u{e9}", &long] {
            match run_with(&["resource-server", "--client-id", id, "--table", "t"]).await {
                Err(Stop::Usage(m)) => assert!(m.starts_with("--client-id must"), "{id:?}: {m}"),
                other => panic!("{id:?}: {other:?}"),
            }
        }
    }

    /// The name follows `/register`'s rule, so a resource server cannot carry a name that
    /// displays as something else (a right-to-left override here).
    #[tokio::test]
    async fn resource_server_with_a_name_registration_would_refuse_is_a_mistake() {
        let args = [
            "resource-server",
            "--client-id",
            "api",
            "--name",
            "Pay\u{202e}IPA",
            "--table",
            "t",
        ];
        match run_with(&args).await {
            Err(Stop::Usage(m)) => assert!(m.starts_with("--name: client_name must"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_resource_server_client_is_what_registration_makes_of_resource_server_true() {
        let secret = Secret::new("s".repeat(43));
        let client = resource_server_client("api", Some("Payments API"), &secret).unwrap();
        assert!(client.resource_server);
        assert_eq!(client.client_secret_hash, Some(secret.hash()));
        assert_eq!(
            client.token_endpoint_auth_method,
            ciba_shared::domain::AuthMethod::ClientSecretBasic
        );
        assert_eq!(client.client_name.as_deref(), Some("Payments API"));
    }

    /// User codes are hashed under the OP secret, so an import without it would store hashes
    /// the deployment cannot check.
    #[tokio::test]
    async fn import_without_the_op_secret_is_a_mistake_named_before_anything_is_touched() {
        if std::env::var_os("OP_SECRET_ARN").is_some() || std::env::var_os("OP_SECRET").is_some() {
            return;
        }
        match run_with(&["import", "--seed", "tests/seed.json", "--table", "t"]).await {
            Err(Stop::Usage(m)) => assert!(
                m.starts_with("user codes are hashed under the OP secret: give --op-secret-arn"),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }
}
