use aws_lambda_events::event::dynamodb::Event;
use ciba_shared::context::cold_start_failure;
use ciba_shared::notify::SqsNotificationQueue;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let queue = SqsNotificationQueue::from_env(&aws).unwrap_or_else(|e| cold_start_failure(e));
    let queue = &queue;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(notifier::handle(queue, &event.payload).await)
    }))
    .await
}
