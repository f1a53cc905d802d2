//! Forwarding one request to Duplicati and its response back.
//!
//! The request body streams up while the gate already waits for the response head, so interim
//! `100 Continue` responses reach the client in order and an early final response (Duplicati
//! refusing a body it did not read) is relayed instead of deadlocking. If the body did not go up
//! whole, neither connection is reused: nobody could say where the next message starts.

use std::io;
use std::net::IpAddr;

use futures::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use futures::{pin_mut, select, FutureExt};

use crate::gate::Gate;
use crate::http::body::{copy_body, BodyError, Encode};
use crate::http::head::{read_head, Head, HeadError};
use crate::http::inbound::Inbound;
use crate::http::message::{
    connection_tokens, response_framing, Framing, Persistence, RequestInfo,
};
use crate::pages;
use crate::rewrite::{self, ClientFraming, PublicOrigin};
use crate::upstream::UpstreamConn;

/// Kestrel's response heads are a few hundred bytes; a JWT cookie adds one or two KiB.
const MAX_RESPONSE_HEAD: usize = 24 * 1024;
/// Request bodies go up through a buffer of this size (chunk re-encoding writes small pieces).
/// 64 KiB: four TLS records' worth per `send` to Duplicati instead of one.
const UPLOAD_BUFFER: usize = 64 * 1024;

/// What happens to the client connection after this exchange.
pub enum After {
    KeepAlive,
    Close,
    /// The response was cut short: drop the connection without a TLS close_notify.
    Abort,
    /// Duplicati answered 101: splice the two connections.
    Tunnel(UpstreamConn),
}

pub struct Outcome {
    pub status: u16,
    pub bytes: u64,
    pub after: After,
}

/// The buffers one client connection reuses for every exchange.
#[derive(Default)]
pub struct Scratch {
    pub head_out: Vec<u8>,
    pub response: Head,
}

pub struct Request<'a> {
    pub head: &'a Head,
    pub info: RequestInfo,
    pub client_ip: IpAddr,
    /// Duplicati's pre-auth token, for a verified device.
    pub preauth: Option<&'a str>,
}

enum UpstreamFailure {
    /// Closed or reset before a single response byte: a stale pooled connection looks like this.
    Gone(io::Error),
    Timeout,
    Broken(&'static str),
}

/// Forwards `request` (its head already read; its body, if any, next in `client_in`).
pub async fn exchange<R, W>(
    gate: &Gate,
    request: &Request<'_>,
    client_in: &mut Inbound<R>,
    client_out: &mut W,
    scratch: &mut Scratch,
) -> Outcome
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let info = &request.info;
    let retryable = info.framing == Framing::None
        && matches!(request.head.method(), b"GET" | b"HEAD" | b"OPTIONS");
    let mut fresh = false;
    let (mut up, body_complete) = loop {
        let connected = if fresh {
            gate.pool.connect().await
        } else {
            gate.pool.get().await
        };
        let mut up = match connected {
            Ok(up) => up,
            Err(e) => return not_answering(gate, request, client_out, &e).await,
        };
        rewrite::upstream_request(
            request.head,
            info.framing,
            info.upgrade,
            request.client_ip,
            request.preauth,
            &mut scratch.head_out,
        );
        if let Err(e) = up.writer.write_all(&scratch.head_out).await {
            if up.reused && retryable && !fresh {
                fresh = true;
                continue;
            }
            return not_answering(gate, request, client_out, &e).await;
        }
        let (body, head) = send_body_and_read_head(
            gate,
            request,
            client_in,
            client_out,
            &mut up,
            &mut scratch.response,
        )
        .await;
        match (body, head) {
            (Err(BodyError::Malformed(reason)), _) => {
                return refuse(request, client_out, 400, reason).await;
            }
            (Err(BodyError::Timeout), _) => {
                return refuse(
                    request,
                    client_out,
                    408,
                    "the request body stopped arriving",
                )
                .await;
            }
            (Err(BodyError::SourceClosed | BodyError::Source(_)), _) => {
                // The client left mid-upload; the upstream connection is dropped with it.
                return Outcome {
                    status: 499,
                    bytes: 0,
                    after: After::Close,
                };
            }
            (_, Err(UpstreamFailure::Gone(_))) if up.reused && retryable && !fresh => {
                fresh = true;
                continue;
            }
            (_, Err(UpstreamFailure::Gone(e))) => {
                return not_answering(gate, request, client_out, &e).await
            }
            (_, Err(UpstreamFailure::Timeout)) => {
                let detail = format!(
                    "Duplicati at {} did not answer within {} s.",
                    gate.pool.url().origin,
                    gate.limits.response_timeout.as_secs()
                );
                return refuse(request, client_out, 504, &detail).await;
            }
            (_, Err(UpstreamFailure::Broken(reason))) => {
                return refuse(request, client_out, 502, reason).await
            }
            (body, Ok(())) => break (up, !matches!(body, Err(_) | Ok(false))),
        }
    };

    let response = &scratch.response;
    let host = request.head.value("host").unwrap_or_default();
    let origin = PublicOrigin {
        host,
        upstream_origin: &gate.pool.url().origin,
        hsts: gate.access.hsts,
    };
    if response.status == 101 {
        if !info.upgrade || !body_complete {
            return refuse(
                request,
                client_out,
                502,
                "Duplicati switched protocols without being asked",
            )
            .await;
        }
        rewrite::client_response(
            response,
            ClientFraming::Upgrade,
            Persistence::KeepAlive,
            &origin,
            &mut scratch.head_out,
        );
        if client_out.write_all(&scratch.head_out).await.is_err()
            || client_out.flush().await.is_err()
        {
            return Outcome {
                status: 101,
                bytes: 0,
                after: After::Close,
            };
        }
        return Outcome {
            status: 101,
            bytes: 0,
            after: After::Tunnel(up),
        };
    }

    let framing = match response_framing(response, info) {
        Ok(framing) => framing,
        Err(m) => return refuse(request, client_out, m.status, m.reason).await,
    };
    let status = response.status;
    let client_is_11 = request.head.minor_version == 1;
    let (client_framing, encode) = match framing {
        Framing::None => (
            ClientFraming::NoBody {
                keep_declared_length: info.is_head || status == 304,
            },
            Encode::AsIs,
        ),
        Framing::Length(n) => (ClientFraming::Length(n), Encode::AsIs),
        Framing::Chunked | Framing::UntilClose if client_is_11 => {
            (ClientFraming::Chunked, Encode::Chunked)
        }
        Framing::Chunked | Framing::UntilClose => (ClientFraming::UntilClose, Encode::AsIs),
    };
    let persistence = if info.persistence == Persistence::Close
        || !body_complete
        || client_framing == ClientFraming::UntilClose
        || gate.shutdown.is_stopping()
    {
        Persistence::Close
    } else {
        Persistence::KeepAlive
    };
    let upstream_reusable = body_complete
        && framing != Framing::UntilClose
        && response.minor_version == 1
        && !connection_tokens(response).close;
    rewrite::client_response(
        response,
        client_framing,
        persistence,
        &origin,
        &mut scratch.head_out,
    );
    if client_out.write_all(&scratch.head_out).await.is_err() {
        return Outcome {
            status,
            bytes: 0,
            after: After::Close,
        };
    }
    let copied = copy_body(
        &mut up.reader,
        framing,
        client_out,
        encode,
        gate.limits.body_idle,
    )
    .await;
    let flushed = client_out.flush().await;
    match (copied, flushed) {
        (Ok(bytes), Ok(())) => {
            if upstream_reusable {
                gate.pool.put(up);
            }
            let after = match persistence {
                Persistence::KeepAlive => After::KeepAlive,
                Persistence::Close => After::Close,
            };
            Outcome {
                status,
                bytes,
                after,
            }
        }
        (copied, _) => {
            if let Err(
                BodyError::SourceClosed
                | BodyError::Source(_)
                | BodyError::Malformed(_)
                | BodyError::Timeout,
            ) = copied
            {
                eprintln!("warning: Duplicati's response to a {} request ended early; the client sees a cut connection", String::from_utf8_lossy(request.head.method()));
            }
            // Closing without the final chunk (or short of Content-Length), and without a TLS
            // close_notify, is how a truncated response shows; nothing else may pass for a
            // complete download.
            Outcome {
                status,
                bytes: 0,
                after: After::Abort,
            }
        }
    }
}

/// Sends the request body (if any) while reading the final response head. The body result is
/// `Ok(true)` when the body went up whole, `Ok(false)` when the response came first.
async fn send_body_and_read_head<R, W>(
    gate: &Gate,
    request: &Request<'_>,
    client_in: &mut Inbound<R>,
    client_out: &mut W,
    up: &mut UpstreamConn,
    response: &mut Head,
) -> (Result<bool, BodyError>, Result<(), UpstreamFailure>)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let info = &request.info;
    let relay_continue = info.expect_continue;
    let read = read_final_head(gate, &mut up.reader, response, client_out, relay_continue).fuse();
    if info.framing == Framing::None {
        return (Ok(true), read.await);
    }
    let encode = if info.framing == Framing::Chunked {
        Encode::Chunked
    } else {
        Encode::AsIs
    };
    let idle = gate.limits.body_idle;
    let writer = &mut up.writer;
    let send = async move {
        let mut buffered = BufWriter::with_capacity(UPLOAD_BUFFER, writer);
        copy_body(client_in, info.framing, &mut buffered, encode, idle).await?;
        buffered.flush().await.map_err(BodyError::Sink)?;
        Ok(true)
    }
    .fuse();
    pin_mut!(read, send);
    let mut body = Ok(false);
    loop {
        select! {
            sent = send => match sent {
                // Duplicati stopped reading; its answer (or its absence) says why.
                Err(BodyError::Sink(_)) => body = Ok(false),
                Err(e) => return (Err(e), Ok(())),
                Ok(done) => body = Ok(done),
            },
            head = read => return (body, head),
        }
    }
}

/// Reads response heads until a final one (or 101), relaying `100 Continue` when the client
/// asked for it.
async fn read_final_head<W: AsyncWrite + Unpin>(
    gate: &Gate,
    reader: &mut Inbound<async_std::net::TcpStream>,
    response: &mut Head,
    client_out: &mut W,
    relay_continue: bool,
) -> Result<(), UpstreamFailure> {
    loop {
        let len = match async_std::future::timeout(
            gate.limits.response_timeout,
            read_head(reader, MAX_RESPONSE_HEAD),
        )
        .await
        {
            Err(_) => return Err(UpstreamFailure::Timeout),
            Ok(Ok(len)) => len,
            Ok(Err(HeadError::Closed)) => {
                return Err(UpstreamFailure::Gone(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "connection closed",
                )))
            }
            Ok(Err(HeadError::Io(e))) => return Err(UpstreamFailure::Gone(e)),
            Ok(Err(HeadError::Truncated)) => {
                return Err(UpstreamFailure::Broken(
                    "Duplicati closed the connection in the middle of a response head",
                ))
            }
            Ok(Err(HeadError::TooLarge)) => {
                return Err(UpstreamFailure::Broken(
                    "Duplicati's response head was too large",
                ))
            }
            Ok(Err(HeadError::BareLf)) => {
                return Err(UpstreamFailure::Broken(
                    "Duplicati's response head had a bare LF",
                ))
            }
        };
        if response.parse_response(&reader.buffered()[..len]).is_err() {
            return Err(UpstreamFailure::Broken(
                "Duplicati's response head could not be parsed",
            ));
        }
        reader.consume(len);
        let status = response.status;
        if (100..200).contains(&status) && status != 101 {
            if status == 100 && relay_continue {
                let relayed = async {
                    client_out
                        .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                        .await?;
                    client_out.flush().await
                };
                if relayed.await.is_err() {
                    return Err(UpstreamFailure::Broken(
                        "the client left while waiting for 100 Continue",
                    ));
                }
            }
            continue;
        }
        return Ok(());
    }
}

async fn not_answering<W: AsyncWrite + Unpin>(
    gate: &Gate,
    request: &Request<'_>,
    client_out: &mut W,
    error: &io::Error,
) -> Outcome {
    let cause = match error.kind() {
        io::ErrorKind::TimedOut => "no answer to the connection attempt".to_string(),
        _ => error.to_string(),
    };
    let detail = format!(
        "Duplicati is not answering at {} ({cause}). Is it running, and is --upstream right?",
        gate.pool.url().origin
    );
    eprintln!("warning: {detail}");
    refuse(request, client_out, 502, &detail).await
}

/// Answers the client with an error page. The connection stays open only if nothing of the
/// request is left unread.
async fn refuse<W: AsyncWrite + Unpin>(
    request: &Request<'_>,
    client_out: &mut W,
    status: u16,
    detail: &str,
) -> Outcome {
    let info = &request.info;
    let persistence = if info.framing == Framing::None
        && info.persistence == Persistence::KeepAlive
        && status >= 500
    {
        Persistence::KeepAlive
    } else {
        Persistence::Close
    };
    match pages::write_error(client_out, status, detail, persistence, !info.is_head, "").await {
        Ok(bytes) => Outcome {
            status,
            bytes,
            after: if persistence == Persistence::KeepAlive {
                After::KeepAlive
            } else {
                After::Close
            },
        },
        Err(_) => Outcome {
            status,
            bytes: 0,
            after: After::Close,
        },
    }
}
