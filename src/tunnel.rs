//! After a `101 Switching Protocols`: the client and Duplicati talk directly (the WebSocket on
//! `/notifications`), and the gate only copies bytes, in both directions, until both are done.
//!
//! Bytes already buffered on either side go first: Duplicati writes its first status message right
//! behind its 101 head, often in the same TCP segment, and losing it leaves the UI without state.
//! Close frames (Duplicati's 4401 "Invalid token") are ordinary bytes here and pass unchanged.

use std::io;
use std::net::Shutdown;
use std::time::Duration;

use futures::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::inbound::Inbound;
use crate::upstream::UpstreamConn;

const COPY_BUFFER: usize = 16 * 1024;

pub async fn splice<R, W>(
    client_in: Inbound<R>,
    mut client_out: W,
    up: UpstreamConn,
    idle: Duration,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (client_reader, from_client) = client_in.into_parts();
    let (up_reader, from_upstream) = up.reader.into_parts();
    let mut up_writer = up.writer;

    let downstream = async {
        let result = async {
            client_out.write_all(&from_upstream).await?;
            client_out.flush().await?;
            copy_flushing(up_reader, &mut client_out, idle).await
        }
        .await;
        // TLS close_notify, then the client sees the end.
        let _ = client_out.close().await;
        result
    };
    let upstream = async {
        let result = async {
            up_writer.write_all(&from_client).await?;
            copy_flushing(client_reader, &mut up_writer, idle).await
        }
        .await;
        let _ = up_writer.shutdown(Shutdown::Write);
        result
    };
    let _ = futures::future::join(downstream, upstream).await;
}

/// Copies until end of stream, flushing every piece (a WebSocket frame must not wait for more).
async fn copy_flushing<R, W>(mut from: R, to: &mut W, idle: Duration) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; COPY_BUFFER];
    loop {
        let n = async_std::io::timeout(idle, from.read(&mut buf)).await?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await?;
        to.flush().await?;
    }
}
