//! Replies nested deeper than any client request may be (issue 9, defect 4): a script returning a table that
//! contains itself makes Redis reply with arrays thousands of levels deep. The proxy must pass the reply on
//! unchanged and keep its shared backend connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use redis::AsyncCommands;
use resp_codec::{encode_command, Limits, ReplyDecoder};
use tokio_util::codec::Decoder;

use crate::support::*;

const SELF_CONTAINING_TABLE: &str = "local a = {}; local b = {a}; a[1] = b; return a";

/// Sends one command on a new raw connection to `address` and returns its complete reply, byte for byte.
fn raw_reply(address: &str, args: &[&str]) -> Bytes {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = BytesMut::new();
    encode_command(&mut request, args.iter().map(|arg| arg.as_bytes()));
    stream.write_all(&request).unwrap();
    let mut decoder = ReplyDecoder::new(Limits::for_backend_replies());
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(frame) = decoder.decode(&mut buffer).unwrap() {
            return frame;
        }
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "connection closed before a whole reply");
        buffer.extend_from_slice(&chunk[..read]);
    }
}

/// Redis's count of connections it ever accepted.
async fn connections_received(info: &mut redis::aio::MultiplexedConnection) -> u64 {
    let stats: String = redis::cmd("INFO")
        .arg("stats")
        .query_async(info)
        .await
        .unwrap();
    stats
        .lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .and_then(|count| count.trim().parse().ok())
        .expect("INFO stats has total_connections_received")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_thousands_of_levels_deep_passes_and_the_connection_stays() {
    let backend = OwnRedis::start(&[]);
    let proxy = start_proxy(&backend.addr()).await;
    let eval = ["EVAL", SELF_CONTAINING_TABLE, "0"];
    let backend_addr = backend.addr();
    let direct_reply = blocking(move || raw_reply(&backend_addr, &eval)).await;
    // The reply is one-element arrays inside each other, far deeper than the 128 levels a request may nest.
    let levels = direct_reply
        .chunks(4)
        .take_while(|chunk| chunk == b"*1\r\n")
        .count();
    assert!(
        levels > 1000,
        "Redis no longer nests this reply deeply ({levels} levels)"
    );

    let mut neighbour = client(&proxy).await;
    let key = unique("deep-neighbour");
    let _: () = neighbour.set(&key, "v").await.unwrap();
    let mut info = direct(&backend.addr(), 0).await;
    let connections_before = connections_received(&mut info).await;

    let proxy_addr = proxy.local_addr().to_string();
    let through_proxy = blocking(move || raw_reply(&proxy_addr, &eval)).await;
    assert!(
        through_proxy == direct_reply,
        "the proxy changed the reply: {:?}",
        String::from_utf8_lossy(&through_proxy[..through_proxy.len().min(200)])
    );
    // The shared connection still serves the other client, and the proxy did not have to reconnect.
    let value: String = neighbour.get(&key).await.unwrap();
    assert_eq!(value, "v");
    assert_eq!(connections_received(&mut info).await, connections_before);
    proxy.shutdown().await;
}
