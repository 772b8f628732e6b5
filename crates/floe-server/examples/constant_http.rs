//! The baseline of the HTTP benchmark: a minimal axum handler returning a constant body, on the
//! same runtime settings as `floe serve`. Prints `listening <addr>`; stops on Ctrl-C/SIGTERM.
//! `cargo run --release -p floe-server --example constant_http`

use axum::routing::get;
use axum::Router;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let app = Router::new().route("/", get(|| async { r#"{"ids":[1]}"# }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
