use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::dynamodb::Event;
use ciba_shared::context::{Ctx, cold_start_failure};
use ciba_shared::notify::{HttpCallbackSender, Notifier, NotifierSettings};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let notifier = Notifier {
        ctx: Ctx::from_env()
            .await
            .unwrap_or_else(|e| cold_start_failure(e)),
        callback: Arc::new(HttpCallbackSender::new(Duration::from_secs(5))?),
        settings: NotifierSettings::from_env().unwrap_or_else(|e| cold_start_failure(e)),
    };
    let notifier = &notifier;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Event>| async move {
        Ok::<_, Error>(notifier::handle(notifier, &event.payload).await)
    }))
    .await
}
