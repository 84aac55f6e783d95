use ciba_shared::context::Ctx;
use expiry_sweeper::ScheduledEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::json;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let ctx = Ctx::from_env()
        .await
        .unwrap_or_else(|e| ciba_shared::context::cold_start_failure(e));
    let ctx = &ctx;
    lambda_runtime::run(service_fn(
        move |_event: LambdaEvent<ScheduledEvent>| async move {
            let expired = expiry_sweeper::handle(ctx).await?;
            Ok::<_, Error>(json!({"expired": expired}))
        },
    ))
    .await
}
