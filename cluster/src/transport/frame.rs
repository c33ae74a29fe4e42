//! The wire frames of one call, as pure functions (no I/O), so every parser is testable on
//! arbitrary bytes. One call is one bidirectional stream: the caller writes one request frame, the
//! server writes one reply frame.
//!
//! ```text
//! frame   = length: u32 big-endian (of payload) | payload
//! request = version u8 = 1 | service u8 | has_from u8 (0|1) | from u64 BE | deadline_ms u32 BE | body
//! reply   = version u8 = 1 | status u8: 0 = ok, then body
//!                                       1 = error, then codec::encode(&Error) (version byte + bincode)
//! ```
//! Bodies are opaque bytes already encoded by the caller ([`crate::codec`]); copying them as they
//! are avoids re-encoding megabytes element by element. The length is checked against the
//! receiver's limit before anything is read, so a forged length allocates nothing.

use std::time::Duration;

use crate::codec;
use crate::error::{Error, ErrorKind, Result};
use crate::meta::NodeId;
use crate::transport::Service;

/// Version byte of request and reply payloads.
pub const WIRE_VERSION: u8 = 1;
/// Bytes before the body in a request payload.
pub const REQUEST_HEADER_LEN: usize = 1 + 1 + 1 + 8 + 4;
/// Bytes of the length prefix.
pub const LENGTH_PREFIX_LEN: usize = 4;

const STATUS_OK: u8 = 0;
const STATUS_ERR: u8 = 1;

/// A parsed request payload; `body` borrows from the payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Target service.
    pub service: Service,
    /// The node id the caller claims.
    pub from: Option<NodeId>,
    /// Time the caller allows for the call, as sent.
    pub deadline: Duration,
    /// The opaque body.
    pub body: &'a [u8],
}

/// Checks a length prefix against `max` payload bytes: `PayloadTooLarge` when it is over.
pub fn check_length(prefix: [u8; LENGTH_PREFIX_LEN], max: usize) -> Result<usize> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("frame of {len} bytes is over the limit of {max} bytes"),
        ));
    }
    Ok(len)
}

fn with_prefix(payload_len: usize, max: usize) -> Result<Vec<u8>> {
    if payload_len > max || u32::try_from(payload_len).is_err() {
        return Err(Error::new(
            ErrorKind::PayloadTooLarge,
            format!("frame of {payload_len} bytes is over the limit of {max} bytes"),
        ));
    }
    let mut out = Vec::with_capacity(LENGTH_PREFIX_LEN + payload_len);
    out.extend_from_slice(&(payload_len as u32).to_be_bytes());
    Ok(out)
}

/// Encodes a whole request frame (prefix included); `PayloadTooLarge` when over `max`.
pub fn encode_request(
    service: Service,
    from: Option<NodeId>,
    deadline: Duration,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>> {
    let mut out = with_prefix(REQUEST_HEADER_LEN + body.len(), max)?;
    out.push(WIRE_VERSION);
    out.push(service.as_u8());
    out.push(u8::from(from.is_some()));
    out.extend_from_slice(&from.unwrap_or(0).to_be_bytes());
    let ms = u32::try_from(deadline.as_millis()).unwrap_or(u32::MAX);
    out.extend_from_slice(&ms.to_be_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Parses a request payload (without its prefix). Any malformed input is `BadRequest`.
pub fn decode_request(payload: &[u8]) -> Result<Request<'_>> {
    if payload.len() < REQUEST_HEADER_LEN {
        return Err(Error::bad_request("request frame shorter than its header"));
    }
    let (head, body) = payload.split_at(REQUEST_HEADER_LEN);
    if head[0] != WIRE_VERSION {
        return Err(Error::bad_request(format!(
            "unsupported wire version {}",
            head[0]
        )));
    }
    let service = Service::from_u8(head[1])
        .ok_or_else(|| Error::bad_request(format!("unknown service {}", head[1])))?;
    let from = match head[2] {
        0 => None,
        1 => {
            let mut id = [0u8; 8];
            id.copy_from_slice(&head[3..11]);
            Some(u64::from_be_bytes(id))
        }
        other => return Err(Error::bad_request(format!("bad from flag {other}"))),
    };
    let mut ms = [0u8; 4];
    ms.copy_from_slice(&head[11..15]);
    Ok(Request {
        service,
        from,
        deadline: Duration::from_millis(u64::from(u32::from_be_bytes(ms))),
        body,
    })
}

/// Encodes a whole reply frame. A reply over `max` becomes a `PayloadTooLarge` error reply, so the
/// caller learns why instead of seeing a broken stream.
pub fn encode_reply(result: &Result<Vec<u8>>, max: usize) -> Vec<u8> {
    let encoded = match result {
        Ok(body) => with_prefix(2 + body.len(), max).map(|mut out| {
            out.push(WIRE_VERSION);
            out.push(STATUS_OK);
            out.extend_from_slice(body);
            out
        }),
        Err(e) => encode_error(e, max),
    };
    match encoded {
        Ok(out) => out,
        Err(e) => encode_error(&e, max).unwrap_or_else(|_| {
            // even the short error does not fit a tiny limit: send the bare status
            let mut out = (2u32).to_be_bytes().to_vec();
            out.extend_from_slice(&[WIRE_VERSION, STATUS_ERR]);
            out
        }),
    }
}

fn encode_error(e: &Error, max: usize) -> Result<Vec<u8>> {
    let encoded = codec::encode(e)?;
    let mut out = with_prefix(2 + encoded.len(), max)?;
    out.push(WIRE_VERSION);
    out.push(STATUS_ERR);
    out.extend_from_slice(&encoded);
    Ok(out)
}

/// Parses a reply payload (without its prefix) into the handler's result. A malformed reply is
/// `BadRequest`.
pub fn decode_reply(payload: &[u8]) -> Result<Vec<u8>> {
    let [version, status, rest @ ..] = payload else {
        return Err(Error::bad_request("reply frame shorter than its header"));
    };
    if *version != WIRE_VERSION {
        return Err(Error::bad_request(format!(
            "unsupported wire version {version} in reply"
        )));
    }
    match *status {
        STATUS_OK => Ok(rest.to_vec()),
        STATUS_ERR if rest.is_empty() => Err(Error::internal(
            "peer failed and its error did not fit the frame limit",
        )),
        STATUS_ERR => match codec::decode::<Error>(rest) {
            Ok(e) => Err(e),
            Err(e) => Err(Error::bad_request(format!("undecodable error reply: {e}"))),
        },
        other => Err(Error::bad_request(format!("unknown reply status {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn split(frame: &[u8], max: usize) -> Result<&[u8]> {
        let mut prefix = [0u8; 4];
        prefix.copy_from_slice(&frame[..4]);
        let len = check_length(prefix, max)?;
        assert_eq!(len, frame.len() - 4);
        Ok(&frame[4..])
    }

    #[test]
    fn request_and_reply_round_trip() {
        let f = encode_request(
            Service::Shard,
            Some(7),
            Duration::from_millis(1500),
            b"abc",
            100,
        )
        .expect("encode");
        let r = decode_request(split(&f, 100).expect("len")).expect("decode");
        assert_eq!(r.service, Service::Shard);
        assert_eq!(r.from, Some(7));
        assert_eq!(r.deadline, Duration::from_millis(1500));
        assert_eq!(r.body, b"abc");

        let ok = encode_reply(&Ok(b"xyz".to_vec()), 100);
        assert_eq!(
            decode_reply(split(&ok, 100).expect("len")),
            Ok(b"xyz".to_vec())
        );
        let err = Error::new(
            ErrorKind::TooManyRequests { retry_after_ms: 5 },
            "slow down",
        );
        let bad = encode_reply(&Err(err.clone()), 100);
        assert_eq!(decode_reply(split(&bad, 100).expect("len")), Err(err));
    }

    #[test]
    fn limits() {
        let e =
            encode_request(Service::Raft, None, Duration::ZERO, &[0; 100], 50).expect_err("over");
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        assert_eq!(
            check_length(u32::MAX.to_be_bytes(), 64 << 20)
                .expect_err("forged")
                .kind,
            ErrorKind::PayloadTooLarge
        );
        // a reply over the limit becomes an error reply that fits
        let r = encode_reply(&Ok(vec![0; 1000]), 200);
        let e = decode_reply(split(&r, 200).expect("fits")).expect_err("error reply");
        assert_eq!(e.kind, ErrorKind::PayloadTooLarge);
        let r = encode_reply(&Ok(vec![0; 1000]), 3);
        assert!(decode_reply(&r[4..]).is_err());
    }

    #[test]
    fn malformed_requests_are_bad_requests() {
        for payload in [
            &[][..],
            &[1, 1, 0][..],
            &[9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[1, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        ] {
            assert_eq!(
                decode_request(payload).expect_err("malformed").kind,
                ErrorKind::BadRequest
            );
        }
        for payload in [
            &[][..],
            &[1][..],
            &[2, 0][..],
            &[1, 5][..],
            &[1, 1, 1, 2, 3][..],
        ] {
            assert!(decode_reply(payload).is_err());
        }
    }

    proptest! {
        #[test]
        // `PROPTEST_CASES=100000 cargo test --workspace fuzz_` runs every fuzz target longer
        fn fuzz_frame_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_request(&bytes);
            let _ = decode_reply(&bytes);
        }
    }
}
