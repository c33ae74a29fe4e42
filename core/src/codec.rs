//! The one place that encodes our own binary formats (on disk and, later, on the wire): a version
//! byte, then bincode 2 (serde path) with a size limit. Keeping it here lets the encoding be swapped
//! (bincode is unmaintained, RUSTSEC-2025-0141) without touching callers.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Format version written before every encoded value.
pub const FORMAT_VERSION: u8 = 1;
/// The largest value we ever decode: a forged length prefix must not make us allocate more.
pub const MAX_DECODE_BYTES: usize = 256 << 20;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    encode_as(FORMAT_VERSION, value)
}

/// Encodes under a version byte of the caller's own: a format that changed shape keeps its old
/// readers ([`decode_as`]) for the data written before.
pub fn encode_as<T: Serialize>(version: u8, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![version];
    bincode::serde::encode_into_std_write(value, &mut out, config())
        .map_err(|e| Error::internal(format!("encode: {e}")))?;
    Ok(out)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode_as(FORMAT_VERSION, bytes)
}

/// The version byte an encoded value starts with.
pub fn version_of(bytes: &[u8]) -> Option<u8> {
    bytes.first().copied()
}

/// Decodes a value encoded under `expected` ([`encode_as`]); any other version is refused.
pub fn decode_as<T: DeserializeOwned>(expected: u8, bytes: &[u8]) -> Result<T> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(Error::bad_request("decode: empty input"));
    };
    if version != expected {
        return Err(Error::bad_request(format!(
            "decode: unsupported format version {version}"
        )));
    }
    let (value, used) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| Error::bad_request(format!("decode: {e}")))?;
    if used != body.len() {
        return Err(Error::bad_request("decode: trailing bytes"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let v = (7u64, "x".to_string(), vec![1.5f32, 2.0]);
        let b = encode(&v).expect("encode");
        let back: (u64, String, Vec<f32>) = decode(&b).expect("decode");
        assert_eq!(back, v);
        assert!(decode::<(u64, String, Vec<f32>)>(&[]).is_err());
        assert!(decode::<(u64, String, Vec<f32>)>(&[9, 0]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(decode::<(u64, String, Vec<f32>)>(&extra).is_err());
        // a forged huge length prefix for a Vec<u8> is refused without allocating it
        let forged = [
            FORMAT_VERSION,
            0xfd,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x0f,
        ];
        assert!(decode::<Vec<u8>>(&forged).is_err());
    }
}
