//! Points as the shard stores them: ids, payloads, vectors.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A point's payload: a JSON object.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// A point id, unique within one shard key of a collection.
///
/// Qdrant accepts unsigned integers and UUIDs; tessera also accepts other strings (the multitenancy
/// guide's own snippet uses `"{tenant}_{i}"`). UUIDs are stored in their canonical lowercase hyphenated
/// form so that `"A0..."` and `"a0..."` are the same point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PointId {
    Num(u64),
    Uuid(String),
    Str(String),
}

impl PointId {
    /// Classifies a string id: a UUID in any accepted spelling becomes its canonical form.
    pub fn from_string(s: &str) -> PointId {
        match canonical_uuid(s) {
            Some(u) => PointId::Uuid(u),
            None => PointId::Str(s.to_string()),
        }
    }

    /// A stable 64-bit hash, used to spread ids over the shards of an auto-sharded collection.
    pub fn stable_hash(&self) -> u64 {
        // FNV-1a: stable across processes and versions, unlike std's RandomState.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |b: u8| {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        };
        match self {
            PointId::Num(n) => n.to_le_bytes().iter().for_each(|b| eat(*b)),
            PointId::Uuid(s) | PointId::Str(s) => s.bytes().for_each(eat),
        }
        h
    }
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(s) | PointId::Str(s) => write!(f, "{s}"),
        }
    }
}

/// Returns the canonical (lowercase, hyphenated) form of a UUID written as 32 hex digits with or
/// without hyphens, optionally in braces or with a `urn:uuid:` prefix; None if `s` is not a UUID.
pub fn canonical_uuid(s: &str) -> Option<String> {
    let s = s.strip_prefix("urn:uuid:").unwrap_or(s);
    let s = s
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(s);
    let hex: Vec<u8> = match s.len() {
        32 => s.bytes().collect(),
        36 => {
            let b = s.as_bytes();
            if [8, 13, 18, 23].iter().any(|&i| b[i] != b'-') {
                return None;
            }
            s.bytes().filter(|c| *c != b'-').collect()
        }
        _ => return None,
    };
    if hex.len() != 32 || !hex.iter().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let h: String = hex.iter().map(|c| c.to_ascii_lowercase() as char).collect();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_spellings_are_one_id() {
        let a = PointId::from_string("936DA01F9ABD4d9d80C702AF85C822A8");
        let b = PointId::from_string("936da01f-9abd-4d9d-80c7-02af85c822a8");
        let c = PointId::from_string("{936da01f-9abd-4d9d-80c7-02af85c822a8}");
        assert_eq!(a, b);
        assert_eq!(b, c);
        assert!(matches!(a, PointId::Uuid(_)));
    }

    #[test]
    fn other_strings_stay_strings() {
        assert_eq!(
            PointId::from_string("tenant_1_7"),
            PointId::Str("tenant_1_7".into())
        );
        assert_eq!(
            PointId::from_string("936da01f-9abd-4d9d-80c7-02af85c822aZ"),
            PointId::Str("936da01f-9abd-4d9d-80c7-02af85c822aZ".into())
        );
    }
}
