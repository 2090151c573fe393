//! Helpers shared by the crate's unit tests.

use std::fmt::Display;

use bytes::BytesMut;
use tokio_util::codec::Decoder;

/// Everything `decoder` makes of `stream` fed in chunks of `chunk` bytes: each item as `show` writes it, then
/// the error that stopped it, if any.
pub(crate) fn decode_all<D>(
    mut decoder: D,
    stream: &[u8],
    chunk: usize,
    show: impl Fn(&D::Item) -> String,
) -> Vec<String>
where
    D: Decoder,
    D::Error: Display,
{
    let mut buffer = BytesMut::new();
    let mut outcome = Vec::new();
    for part in stream.chunks(chunk.max(1)) {
        buffer.extend_from_slice(part);
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(item)) => outcome.push(show(&item)),
                Ok(None) => break,
                Err(error) => {
                    outcome.push(format!("error: {error}"));
                    return outcome;
                }
            }
        }
    }
    outcome
}
