//! Opening a backend connection and running its handshake (AUTH / HELLO, READONLY, SELECT).

use bytes::BytesMut;
use resp_codec::{encode_command, Limits, ReplyDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio_util::codec::Decoder;

use super::endpoint::Endpoint;
use super::error::{ConnectError, HandshakeStep};
use crate::config::UNIX_SOCKET_PREFIX;
use crate::tls::{BackendStream, PlainSocket};

/// Opens a socket to `address`: a Unix domain socket for `unix:/path` (see
/// [`UNIX_SOCKET_PREFIX`]), else a TCP connection, without Nagle's delay.
async fn open_socket(address: &str) -> Result<PlainSocket, ConnectError> {
    if let Some(path) = address.strip_prefix(UNIX_SOCKET_PREFIX) {
        let unix = UnixStream::connect(path)
            .await
            .map_err(ConnectError::Connect)?;
        return Ok(PlainSocket::Unix(unix));
    }
    let tcp = TcpStream::connect(address)
        .await
        .map_err(ConnectError::Connect)?;
    tcp.set_nodelay(true).map_err(ConnectError::NoDelay)?;
    Ok(PlainSocket::Tcp(tcp))
}

/// Connects to the endpoint and runs the handshake (AUTH / HELLO, SELECT), all within `connect_timeout`.
pub async fn connect(endpoint: &Endpoint) -> Result<BackendStream, ConnectError> {
    match tokio::time::timeout(endpoint.connect_timeout, connect_inner(endpoint)).await {
        Ok(result) => result,
        Err(_) => Err(ConnectError::Timeout(endpoint.connect_timeout.as_millis())),
    }
}

async fn connect_inner(endpoint: &Endpoint) -> Result<BackendStream, ConnectError> {
    let mut stream = match (open_socket(&endpoint.address).await?, &endpoint.tls) {
        (socket, None) => BackendStream::Plain(socket),
        (PlainSocket::Tcp(tcp), Some(tls)) => tls
            .connect(tcp, &endpoint.address)
            .await
            .map_err(ConnectError::Tls)?,
        (PlainSocket::Unix(_), Some(_)) => return Err(ConnectError::TlsOverUnixSocket),
    };

    let mut handshake = BytesMut::new();
    // The steps sent, in order: the n-th reply answers the n-th step.
    let mut steps = Vec::with_capacity(4);
    if endpoint.resp3 {
        let mut args: Vec<&[u8]> = vec![b"HELLO", b"3"];
        if let Some(password) = &endpoint.password {
            args.push(b"AUTH");
            args.push(endpoint.username.as_deref().unwrap_or("default").as_bytes());
            args.push(password.as_bytes());
        }
        encode_command(&mut handshake, args);
        steps.push(HandshakeStep::Hello);
    } else if let Some(password) = &endpoint.password {
        match &endpoint.username {
            Some(user) => encode_command(
                &mut handshake,
                [&b"AUTH"[..], user.as_bytes(), password.as_bytes()],
            ),
            None => encode_command(&mut handshake, [&b"AUTH"[..], password.as_bytes()]),
        }
        steps.push(HandshakeStep::Auth);
    }
    if endpoint.readonly {
        encode_command(&mut handshake, [&b"READONLY"[..]]);
        steps.push(HandshakeStep::ReadOnly);
    }
    if endpoint.db != 0 {
        let db = endpoint.db.to_string();
        encode_command(&mut handshake, [&b"SELECT"[..], db.as_bytes()]);
        steps.push(HandshakeStep::Select);
    }
    if steps.is_empty() {
        return Ok(stream);
    }
    // The flush: over TLS, the last encrypted bytes may still wait for the socket.
    let sent = async {
        stream.write_all(&handshake).await?;
        stream.flush().await
    };
    sent.await.map_err(ConnectError::HandshakeWrite)?;
    let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
    let mut buffer = BytesMut::with_capacity(1024);
    let mut received = 0;
    while received < steps.len() {
        let read = stream
            .read_buf(&mut buffer)
            .await
            .map_err(ConnectError::HandshakeRead)?;
        if read == 0 {
            return Err(ConnectError::HandshakeClosed);
        }
        while let Some(frame) = decoder
            .decode(&mut buffer)
            .map_err(ConnectError::HandshakeReply)?
        {
            if frame.first() == Some(&b'-') {
                let reply = String::from_utf8_lossy(&frame[1..]).trim_end().to_owned();
                // A reply beyond the steps sent (a server out of step) has no step of its own: `Auth` stands in.
                let step = steps.get(received).copied().unwrap_or(HandshakeStep::Auth);
                return Err(ConnectError::HandshakeRefused { step, reply });
            }
            received += 1;
        }
    }
    Ok(stream)
}
