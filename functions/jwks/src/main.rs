use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let signer = ciba_shared::context::signer_from_env(None)
        .await
        .unwrap_or_else(|e| ciba_shared::context::cold_start_failure(e));
    let key_set = jwks::key_set(signer.as_ref());
    lambda_http::run(service_fn(|_req: Request| {
        let response = jwks::handle(&key_set);
        async move { Ok::<_, Error>(response) }
    }))
    .await
}
