use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use ciba_shared::callback_policy::AddressPolicy;
use ciba_shared::context::{Ctx, cold_start_failure};
use ciba_shared::notify::{HttpCallbackSender, Notifier, NotifierSettings, SqsNotificationQueue};
use ciba_shared::op_secret::Keys;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    // The OP secret first: a function that cannot have it stops before anything else is loaded.
    let keys = Keys::from_env(&aws)
        .await
        .unwrap_or_else(|e| cold_start_failure(e));
    let ctx = Ctx::from_env_with(&aws)
        .await
        .unwrap_or_else(|e| cold_start_failure(e));
    let queue = SqsNotificationQueue::from_env(&aws).unwrap_or_else(|e| cold_start_failure(e));
    let policy = AddressPolicy::for_op(ctx.config.runs_locally());
    let notifier = Notifier {
        ctx,
        callback: Arc::new(HttpCallbackSender::new(Duration::from_secs(5), policy)?),
        settings: NotifierSettings::from_env(&keys).unwrap_or_else(|e| cold_start_failure(e)),
    };
    let (notifier, queue) = (&notifier, &queue);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(deliverer::handle(notifier, queue, &event.payload).await)
    }))
    .await
}
