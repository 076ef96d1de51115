//! `ceiling [ADDR]`: answers every request `200 {}` after reading its body,
//! with actix-web's defaults (one worker per core), like hookrunner.
use actix_web::{web, App, HttpResponse, HttpServer};

async fn ok(_body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body("{}")
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9100".into());
    let server = HttpServer::new(|| App::new().default_service(web::to(ok))).bind(&addr)?;
    eprintln!("listening on http://{}", server.addrs()[0]);
    server.run().await
}
