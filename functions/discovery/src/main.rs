use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let config = ciba_shared::config::Config::from_env()
        .unwrap_or_else(|e| ciba_shared::context::cold_start_failure(e));
    let metadata = discovery::metadata(&config);
    lambda_http::run(service_fn(|_req: Request| {
        let response = discovery::handle(&metadata);
        async move { Ok::<_, Error>(response) }
    }))
    .await
}
