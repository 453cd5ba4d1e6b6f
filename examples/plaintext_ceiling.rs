//! The ceiling of the HTTP stack kiln serves on: an actix-web handler that
//! answers every request with the same in-memory body and nothing else.
//! `benches/serve_static.py` runs it beside kiln, nginx and Caddy so kiln's
//! static path can be compared with what actix-web itself can do.
//!
//! Usage: plaintext_ceiling ADDR BODY_BYTES

use actix_web::dev::{ServiceRequest, ServiceResponse, fn_service};
use actix_web::web::Bytes;
use actix_web::{App, HttpResponse, HttpServer};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".into());
    let size: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(2048);
    let body = Bytes::from(vec![b'x'; size]);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            App::new().default_service(fn_service(move |request: ServiceRequest| {
                let body = body.clone();
                async move {
                    let (req, _) = request.into_parts();
                    let response = HttpResponse::Ok()
                        .content_type("application/json")
                        .body(body);
                    Ok::<_, actix_web::Error>(ServiceResponse::new(req, response))
                }
            }))
        })
        .workers(1)
        .bind(addr)?
        .run()
        .await
    })
}
