//! One client connection: read a request head, forward the exchange, repeat while keep-alive
//! holds; or hand the connection to the tunnel after a 101.
//!
//! Two clocks guard it. Between requests a connection may idle (`keep_alive_idle`); once the
//! first byte of a head has arrived, the whole head must follow within `head_timeout`, so a
//! slowloris client trickling one byte at a time is cut off with a 408 while others are served.

use std::net::SocketAddr;
use std::time::Instant;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use futures::{pin_mut, select, FutureExt};

use crate::accesslog::Entry;
use crate::forward::{self, After, Request, Scratch};
use crate::gate::Gate;
use crate::http::head::{read_head, Head, HeadError};
use crate::http::inbound::Inbound;
use crate::http::message::{classify_request, Persistence};
use crate::pages;
use crate::tunnel;

/// Response heads and small bodies leave in one TLS record instead of several.
const WRITE_BUFFER: usize = 16 * 1024;

pub async fn serve<S>(stream: S, peer: SocketAddr, gate: &Gate)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = stream.split();
    let mut client_in = Inbound::new(reader);
    let mut client_out = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let mut head = Head::default();
    let mut scratch = Scratch::default();
    let client_ip = peer.ip().to_canonical();
    loop {
        if client_in.buffered().is_empty() && !wait_for_request(&mut client_in, gate).await {
            break;
        }
        let started = Instant::now();
        let limits = &gate.limits;
        let refusal = match async_std::future::timeout(
            limits.head_timeout,
            read_head(&mut client_in, limits.max_head),
        )
        .await
        {
            Err(_) => Some((408, "the request head did not arrive in time")),
            Ok(Err(HeadError::Closed | HeadError::Truncated | HeadError::Io(_))) => break,
            Ok(Err(HeadError::TooLarge)) => Some((431, "the request head is too large")),
            Ok(Err(HeadError::BareLf)) => Some((400, "lines must end in CRLF")),
            Ok(Ok(len)) => {
                let parsed = head.parse_request(&client_in.buffered()[..len]);
                client_in.consume(len);
                parsed.err().map(|m| (m.status, m.reason))
            }
        };
        let classified = match refusal {
            Some(refusal) => Err(refusal),
            None => classify_request(&head).map_err(|m| (m.status, m.reason)),
        };
        let info = match classified {
            Ok(info) => info,
            Err((status, reason)) => {
                let bytes =
                    pages::write_error(&mut client_out, status, reason, Persistence::Close, true)
                        .await
                        .unwrap_or(0);
                log(&head, client_ip, status, bytes, started);
                break;
            }
        };
        let request = Request {
            head: &head,
            info,
            client_ip,
        };
        let outcome = forward::exchange(
            gate,
            &request,
            &mut client_in,
            &mut client_out,
            &mut scratch,
        )
        .await;
        log(&head, client_ip, outcome.status, outcome.bytes, started);
        match outcome.after {
            After::KeepAlive => continue,
            After::Close => break,
            After::Tunnel(up) => {
                tunnel::splice(client_in, client_out, up, gate.limits.tunnel_idle).await;
                return;
            }
        }
    }
    let _ = client_out.close().await;
}

/// Waits for the first byte of the next request. False: the client left, idled out, or the gate
/// is shutting down (an idle keep-alive connection must not hold up a graceful stop).
async fn wait_for_request<R: AsyncRead + Unpin>(client_in: &mut Inbound<R>, gate: &Gate) -> bool {
    let arrived = async_std::future::timeout(gate.limits.keep_alive_idle, client_in.fill()).fuse();
    let stopping = gate.shutdown.wait().fuse();
    pin_mut!(arrived, stopping);
    select! {
        read = arrived => matches!(read, Ok(Ok(n)) if n > 0),
        () = stopping => false,
    }
}

fn log(head: &Head, client: std::net::IpAddr, status: u16, bytes: u64, started: Instant) {
    let method = if head.method().is_empty() {
        b"-".as_slice()
    } else {
        head.method()
    };
    Entry {
        client,
        method,
        target: head.target(),
        status,
        bytes,
        elapsed: started.elapsed(),
    }
    .emit();
}
