//! HTTP/2 connections: `streams` requests in flight on each (each stream
//! slot sends its next request as soon as its last one is answered, or
//! when it is due in the open loop), or one request per connection.

use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;

use crate::run::Ctx;
use crate::stats::ErrorKind;

/// One connection: connects (again after a failure) and keeps its stream
/// slots busy until the run is over.
pub async fn connection(ctx: Rc<Ctx>, slot: usize) {
    while !ctx.over() {
        let started = Instant::now();
        let Some(send) = ctx.connected(crate::conn::http2(&ctx.dial)).await else {
            continue;
        };
        if ctx.plan.new_connection {
            let mut pace = ctx.pace(slot);
            let due = match &mut pace {
                Some(p) => p.wait().await,
                None => started,
            };
            if let Err(kind) = request(&ctx, send, due).await {
                ctx.error(kind);
            }
            continue;
        }
        let streams = ctx.plan.streams.max(1);
        let tasks: Vec<_> = (0..streams)
            .map(|i| monoio::spawn(stream_slot(ctx.clone(), send.clone(), slot * streams + i)))
            .collect();
        drop(send);
        for t in tasks {
            t.await;
        }
    }
}

/// One stream slot on a connection: until the connection fails or the
/// run is over.
async fn stream_slot(ctx: Rc<Ctx>, send: h2::client::SendRequest<Bytes>, slot: usize) {
    let mut pace = ctx.pace(slot);
    while !ctx.over() {
        let due = match &mut pace {
            Some(p) => Some(p.wait().await),
            None => None,
        };
        let sent = due.unwrap_or_else(Instant::now);
        if let Err(kind) = request(&ctx, send.clone(), sent).await {
            ctx.error(kind);
            // A reset stream leaves the connection usable; anything else
            // sends the slot back for a new connection.
            if kind != ErrorKind::Reset {
                return;
            }
        }
    }
}

/// Sends one request and reads its response to the end.
async fn request(
    ctx: &Ctx,
    send: h2::client::SendRequest<Bytes>,
    sent: Instant,
) -> Result<(), ErrorKind> {
    let exchange = async {
        let mut send = send.ready().await.map_err(h2_kind)?;
        let (resp, _) = send.send_request(ctx.h2_request(), true).map_err(h2_kind)?;
        let resp = resp.await.map_err(h2_kind)?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut bytes = 0;
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(h2_kind)?;
            bytes += chunk.len();
            let _ = body.flow_control().release_capacity(chunk.len());
        }
        Ok::<_, ErrorKind>((status, bytes))
    };
    match monoio::time::timeout(ctx.plan.timeout, exchange).await {
        Ok(Ok((status, bytes))) => {
            ctx.completed(sent, status, bytes);
            Ok(())
        }
        Ok(Err(kind)) => Err(kind),
        Err(_) => Err(ErrorKind::Timeout),
    }
}

fn h2_kind(e: h2::Error) -> ErrorKind {
    // The connection ended: torn down, or closed by the server with
    // GOAWAY NO_ERROR (its own limit of requests per connection).
    if e.is_io() || (e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR)) {
        ErrorKind::Closed
    } else {
        ErrorKind::Reset
    }
}
