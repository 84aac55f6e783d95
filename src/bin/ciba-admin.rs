//! Operator tooling: imports the seed format into the configured store and issues one-time
//! enrolment codes.
//!
//!   ciba-admin import --seed FILE [--table NAME] [--op-secret-arn ARN]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] [--table NAME]
//!   ciba-admin enrollment-code --user SUB|HINT [--ttl SECONDS] --api http://127.0.0.1:8080
//!   ciba-admin dead-letters --queue DLQ_URL [--redrive-to QUEUE_URL] [--limit N]
//!
//! Without `--api` it writes to DynamoDB (`--table` or `TABLE_NAME`, created when missing the way
//! `ciba-local --store dynamodb` creates it), configured as the AWS SDK is (`AWS_REGION`,
//! credentials, `AWS_ENDPOINT_URL_DYNAMODB` for DynamoDB Local). With `--api` it asks a running
//! local API, whose in-memory store no other process can reach.

use std::collections::HashMap;
use std::process::ExitCode;

use ciba_local::cli::{self, Stop};
use ciba_local::client;
use ciba_shared::notify::{NotificationQueue, SqsNotificationQueue};
use ciba_shared::op_secret::{self, Keys};
use ciba_shared::ports::{Clock, OsRandom, SystemClock};
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

  ciba-admin dead-letters --queue DLQ_URL [--redrive-to QUEUE_URL] [--limit N]
      lists the ping and push notifications parked in the dead-letter queue (the stack output
      NotificationDeadLetterQueueUrl), one JSON line each with its reason; with --redrive-to
      (the output NotificationQueueUrl) queues each for delivery again and removes it from the
      dead letters. At most N (100) per run.

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
                    .filter(|t| *t > 0)
                    .ok_or_else(|| Stop::Usage("--ttl must be a positive integer".into()))?,
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
        "dead-letters" => dead_letters(&flags).await,
        other => Err(Stop::Usage(format!("unknown command {other}\n\n{USAGE}"))),
    }
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
