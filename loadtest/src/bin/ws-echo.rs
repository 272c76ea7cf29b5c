//! A bare fastwebsockets echo server (the same stack as the gateway: hyper 1
//! upgrade + fastwebsockets), for the machine's WebSocket ceiling.
//!   ws-echo [ADDR]   (default 127.0.0.1:0; prints `echo listening on ws://ADDR`)

use std::convert::Infallible;

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, OpCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

async fn serve(fut: upgrade::UpgradeFut) -> Result<(), fastwebsockets::WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => return Ok(()),
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
}

async fn handle(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    match upgrade::upgrade(&mut req) {
        Ok((resp, fut)) => {
            tokio::spawn(async move {
                let _ = serve(fut).await;
            });
            Ok(resp)
        }
        Err(_) => Ok(Response::builder().status(400).body(Empty::new()).unwrap_or_default()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("echo listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(handle)).with_upgrades();
            let _ = conn.await;
        });
    }
}
