//! Runs every minute (EventBridge schedule): marks expired the ping and push requests whose
//! expiry has passed, so the stream hands them to the notifier within a minute instead of when
//! DynamoDB's TTL deletes them days later.

use aws_lambda_events::event::cloudwatch_events::CloudWatchEvent;
use ciba_shared::context::Ctx;
use ciba_shared::store::{SWEEP_BATCH, SWEEP_LOOKBACK_SECS, StoreError};

/// What the EventBridge Scheduler schedule sends when it has no input of its own: the EventBridge
/// envelope (`"detail-type": "Scheduled Event"`, `"source": "aws.scheduler"`, `"detail": "{}"`),
/// which `aws_lambda_events` calls by EventBridge's former name. Its content does not matter: each
/// invocation sweeps up to now.
pub type ScheduledEvent = CloudWatchEvent;

/// Batches one invocation sweeps at most; the next minute's run picks up the rest.
const MAX_BATCHES: usize = 20;

/// One sweep; answers how many requests it expired.
pub async fn handle(ctx: &Ctx) -> Result<usize, StoreError> {
    let mut total = 0;
    for _ in 0..MAX_BATCHES {
        let expired = ctx
            .store
            .requests()
            .expire_due(ctx.clock.now(), SWEEP_LOOKBACK_SECS, SWEEP_BATCH)
            .await?;
        total += expired.len();
        if expired.len() < SWEEP_BATCH {
            break;
        }
    }
    if total > 0 {
        tracing::info!(count = total, "requests expired");
    }
    Ok(total)
}
