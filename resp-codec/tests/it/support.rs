//! Helpers shared by the integration tests.

use bytes::BytesMut;
use resp_codec::ProtocolError;
use tokio_util::codec::Decoder;

/// Feeds `input` to `decoder` in chunks of the given sizes (cycled), collecting every item,
/// then runs `decode_eof` once the input is exhausted.
pub fn decode_in_chunks<D>(
    decoder: &mut D,
    input: &[u8],
    chunk_sizes: &[usize],
) -> Result<Vec<D::Item>, ProtocolError>
where
    D: Decoder<Error = ProtocolError>,
{
    let mut buffer = BytesMut::new();
    let mut items = Vec::new();
    let mut offset = 0;
    let mut sizes = chunk_sizes.iter().copied().filter(|&size| size > 0).cycle();
    while offset < input.len() {
        let size = sizes
            .next()
            .unwrap_or(input.len())
            .min(input.len() - offset);
        buffer.extend_from_slice(&input[offset..offset + size]);
        offset += size;
        while let Some(item) = decoder.decode(&mut buffer)? {
            items.push(item);
        }
    }
    while let Some(item) = decoder.decode_eof(&mut buffer)? {
        items.push(item);
    }
    Ok(items)
}

/// Decodes everything in `input` delivered at once.
pub fn decode_all<D>(decoder: &mut D, input: &[u8]) -> Result<Vec<D::Item>, ProtocolError>
where
    D: Decoder<Error = ProtocolError>,
{
    decode_in_chunks(decoder, input, &[input.len().max(1)])
}
