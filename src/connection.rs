//! One client connection: read a request head, check who is asking, forward the exchange, repeat
//! while keep-alive holds; or hand the connection to the tunnel after a 101.
//!
//! Two clocks guard it. Between requests a connection may idle (`keep_alive_idle`); once the
//! first byte of a head has arrived, the whole head must follow within `head_timeout`, so a
//! slowloris client trickling one byte at a time is cut off with a 408 while others are served.
//! Before anything is forwarded, the address allow-list and the login throttle have their say.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use futures::{pin_mut, select, FutureExt};

use crate::access::throttle::{self, Throttle, Verdict};
use crate::accesslog::Entry;
use crate::forward::{self, After, Outcome, Request, Scratch};
use crate::gate::Gate;
use crate::http::head::{buffered_head, read_head, Head, HeadError};
use crate::http::inbound::Inbound;
use crate::http::message::{classify_request, Persistence};
use crate::pages;
use crate::tunnel;

/// Response heads and small bodies leave in one TLS record instead of several.
const WRITE_BUFFER: usize = 16 * 1024;

/// The client at the other end of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub addr: SocketAddr,
    /// It presented a certificate that `--client-ca` vouches for.
    pub verified_device: bool,
}

pub async fn serve<S>(stream: S, peer: Peer, gate: &Gate)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, writer) = stream.split();
    let mut client_in = Inbound::new(reader);
    let mut client_out = BufWriter::with_capacity(WRITE_BUFFER, writer);
    let mut head = Head::default();
    let mut scratch = Scratch::default();
    let client_ip = peer.addr.ip().to_canonical();
    let preauth = gate
        .access
        .preauth
        .as_deref()
        .filter(|_| peer.verified_device);
    let mut unread_input = false;
    loop {
        if client_in.buffered().is_empty() && !wait_for_request(&mut client_in, gate).await {
            break;
        }
        let started = Instant::now();
        let limits = &gate.limits;
        let read = match buffered_head(&mut client_in, limits.max_head) {
            Some(decided) => Ok(decided),
            None => {
                let whole_head = read_head(&mut client_in, limits.max_head);
                async_std::future::timeout(limits.head_timeout, whole_head).await
            }
        };
        if !matches!(read, Ok(Ok(_))) {
            head.clear();
        }
        let refusal = match read {
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
                let outcome = refuse(&mut client_out, status, reason, "").await;
                log(&head, client_ip, &outcome, started);
                unread_input = true;
                break;
            }
        };
        // Recognised once per request: the path is decoded as Kestrel routes it.
        let login_throttle = gate
            .access
            .throttle
            .as_ref()
            .filter(|_| throttle::is_login(head.target()));
        let outcome = match admit(gate, login_throttle, client_ip) {
            Some((status, reason, extra)) => refuse(&mut client_out, status, &reason, &extra).await,
            None => {
                let request = Request {
                    head: &head,
                    info,
                    client_ip,
                    preauth,
                };
                let outcome = forward::exchange(
                    gate,
                    &request,
                    &mut client_in,
                    &mut client_out,
                    &mut scratch,
                )
                .await;
                if let Some(throttle) = login_throttle {
                    count_login(throttle, client_ip, outcome.status);
                }
                outcome
            }
        };
        log(&head, client_ip, &outcome, started);
        match outcome.after {
            After::KeepAlive => continue,
            After::Close => {
                unread_input = true;
                break;
            }
            After::Abort => return,
            After::Tunnel(up) => {
                tunnel::splice(client_in, client_out, up, gate.limits.tunnel_idle).await;
                return;
            }
        }
    }
    let _ = client_out.close().await;
    if unread_input {
        linger(&mut client_in).await;
    }
}

/// After an answer that left request bytes unread (a refusal, an early response), read and drop
/// what the client is still sending for a moment before closing. Closing a socket with unread
/// input makes the kernel send RST, which can destroy the answer before the client reads it.
async fn linger<R: AsyncRead + Unpin>(client_in: &mut Inbound<R>) {
    const LINGER: Duration = Duration::from_secs(2);
    const LINGER_BYTES: usize = 1024 * 1024;
    let drain = async {
        let mut dropped = 0;
        while dropped < LINGER_BYTES {
            client_in.consume(client_in.buffered().len());
            match client_in.fill().await {
                Ok(n) if n > 0 => dropped += n,
                _ => return,
            }
        }
    };
    let _ = async_std::future::timeout(LINGER, drain).await;
}

/// Past `--max-connections`: the first request gets 503 with `Retry-After`, then the connection
/// closes. Nothing is forwarded.
pub async fn refuse_overloaded<S>(stream: S, peer: Peer, gate: &Gate)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (reader, mut writer) = stream.split();
    let mut client_in = Inbound::new(reader);
    let started = Instant::now();
    let mut head = Head::default();
    let limits = &gate.limits;
    let read = async_std::future::timeout(
        limits.head_timeout,
        read_head(&mut client_in, limits.max_head),
    )
    .await;
    if let Ok(Ok(len)) = read {
        if head.parse_request(&client_in.buffered()[..len]).is_err() {
            head.clear();
        }
    }
    let reason = format!(
        "The gate is serving its maximum of {} connections; try again shortly.",
        limits.max_connections
    );
    let outcome = refuse(&mut writer, 503, &reason, "Retry-After: 5\r\n").await;
    log(&head, peer.addr.ip().to_canonical(), &outcome, started);
    let _ = writer.close().await;
}

/// `Some((status, reason, extra header fields))` if this request must not reach Duplicati.
/// `login_throttle` is the throttle when this request is a login attempt.
fn admit(
    gate: &Gate,
    login_throttle: Option<&Throttle>,
    client_ip: IpAddr,
) -> Option<(u16, String, String)> {
    if !gate.access.allow.permits(client_ip) {
        return Some((
            403,
            format!("{client_ip} is not allowed to reach Duplicati here"),
            String::new(),
        ));
    }
    let wait = login_throttle?.blocked(client_ip)?;
    let seconds = wait.as_secs().max(1);
    Some((
        429,
        format!("Too many failed logins from {client_ip}. Try again in {seconds} s."),
        format!("Retry-After: {seconds}\r\n"),
    ))
}

fn count_login(throttle: &Throttle, client_ip: IpAddr, status: u16) {
    match throttle.record(client_ip, status) {
        Verdict::Failed { failures } => eprintln!("failed login from {client_ip} ({failures} in a row)"),
        Verdict::Blocked { failures, for_ } => eprintln!(
            "login throttled: {client_ip} after {failures} failed logins; further attempts get 429 for {} s",
            for_.as_secs()
        ),
        Verdict::Reset => eprintln!("successful login from {client_ip}; its failed-login count is reset"),
        Verdict::Unchanged => {}
    }
}

/// Writes a refusal and ends the connection: whatever body the request had is still unread.
async fn refuse<W: AsyncWrite + Unpin>(
    out: &mut W,
    status: u16,
    reason: &str,
    extra: &str,
) -> Outcome {
    let bytes = pages::write_error(out, status, reason, Persistence::Close, true, extra)
        .await
        .unwrap_or(0);
    Outcome {
        status,
        bytes,
        after: After::Close,
    }
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

fn log(head: &Head, client: IpAddr, outcome: &Outcome, started: Instant) {
    let method = if head.method().is_empty() {
        b"-".as_slice()
    } else {
        head.method()
    };
    Entry {
        client,
        method,
        target: head.target(),
        status: outcome.status,
        bytes: outcome.bytes,
        elapsed: started.elapsed(),
    }
    .emit();
}
