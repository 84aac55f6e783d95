use lambda_http::{Error, Request, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_http::tracing::init_default_subscriber();
    let ctx = ciba_shared::context::Ctx::from_env().await?;
    let ctx = &ctx;
    lambda_http::run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(register::handle(ctx, req).await)
    }))
    .await
}
