//! The binary form of a filter between nodes, through [`tessera_core::codec`] (bincode, serde
//! path), instead of rendering Qdrant JSON on one node and parsing it again on the other.
//!
//! Only this module derives serialization for filters: the model stays free of wire concerns, and
//! the mirror types here can keep their encoding while the model changes. Two things shape them:
//!
//! - bincode cannot carry `serde_json::Value` (it needs `deserialize_any`), so every value is typed
//!   (keywords, integers, bounds); key paths travel as their text and are parsed again.
//! - The bytes come from another process, so decoding must be as strict as the JSON parser and
//!   must not recurse on input. A filter's filter objects are flattened in post-order (children
//!   first, the root last) and a nested filter names an earlier one by index; decoding is a loop
//!   that takes each child exactly once, and refuses what [`parse_filter`](super::parse_filter)
//!   would refuse: more than [`MAX_FILTER_DEPTH`] levels, more than [`MAX_FILTER_CONDITIONS`]
//!   conditions, an invalid key path, a field condition with nothing to check, a `min_count` of 0.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use tessera_core::{Error, Result, codec};

use super::model::{
    AnyVariants, Bounds, Condition, FieldCondition, Filter, MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH, Match, MatchValue, MinShould, Range, TextQuery,
};
use super::path::JsonPath;
use crate::calendar::Timestamp;
use crate::point::PointId;

/// Encodes a filter for another node: a version byte, then bincode ([`tessera_core::codec`]).
pub fn encode_filter(f: &Filter) -> Result<Vec<u8>> {
    codec::encode(&WireFilter::from(f))
}

/// Decodes what [`encode_filter`] wrote; anything else is refused with a BadRequest, never a panic.
pub fn decode_filter(bytes: &[u8]) -> Result<Filter> {
    let w: WireFilter = codec::decode(bytes).map_err(|e| bad(&e.message))?;
    Filter::try_from(w)
}

fn bad(why: &str) -> Error {
    Error::bad_request(format!("bad filter on the wire: {why}"))
}

/// A filter as it travels, for embedding in a message of one's own (`Option<WireFilter>` in a
/// serde struct encoded with [`tessera_core::codec`]): `WireFilter::from(&filter)` on the way out,
/// `Filter::try_from(wire)` on the way in. Its fields are private: build it only from a [`Filter`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WireFilter {
    /// Every filter object, children before their parents; the last one is the filter itself.
    filters: Vec<WireClauses>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WireClauses {
    must: Vec<WireCondition>,
    should: Vec<WireCondition>,
    must_not: Vec<WireCondition>,
    min_should: Option<(Vec<WireCondition>, u64)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WireCondition {
    Field(Box<WireField>),
    IsEmpty(String),
    IsNull(String),
    HasId(Vec<PointId>),
    HasVector(String),
    /// `filter` is an index into [`WireFilter::filters`], below this condition's own filter.
    Nested {
        key: String,
        filter: u32,
    },
    Filter(u32),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct WireField {
    key: String,
    r#match: Option<WireMatch>,
    range: Option<WireRange>,
    values_count: Option<WireBounds<u64>>,
    is_empty: Option<bool>,
    is_null: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WireMatch {
    Keyword(String),
    Integer(i64),
    Bool(bool),
    Text(String),
    TextAny(String),
    Phrase(String),
    AnyKeywords(Vec<String>),
    AnyIntegers(Vec<i64>),
    ExceptKeywords(Vec<String>),
    ExceptIntegers(Vec<i64>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum WireRange {
    Float(WireBounds<f64>),
    /// Nanoseconds since 1970-01-01T00:00:00Z.
    DateTime(WireBounds<i128>),
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct WireBounds<T> {
    gt: Option<T>,
    gte: Option<T>,
    lt: Option<T>,
    lte: Option<T>,
}

impl<T: Copy> WireBounds<T> {
    fn out<U: Copy>(b: &Bounds<U>, f: impl Fn(U) -> T) -> WireBounds<T> {
        WireBounds {
            gt: b.gt.map(&f),
            gte: b.gte.map(&f),
            lt: b.lt.map(&f),
            lte: b.lte.map(&f),
        }
    }

    fn into_bounds<U>(self, f: impl Fn(T) -> Result<U>) -> Result<Bounds<U>> {
        let conv = |x: Option<T>| x.map(&f).transpose();
        Ok(Bounds {
            gt: conv(self.gt)?,
            gte: conv(self.gte)?,
            lt: conv(self.lt)?,
            lte: conv(self.lte)?,
        })
    }
}

// ---- out: the model to its wire form (a trusted, locally built filter) -----------------------

impl From<&Filter> for WireFilter {
    fn from(f: &Filter) -> WireFilter {
        let mut w = WireFilter {
            filters: Vec::new(),
        };
        w.push(f);
        w
    }
}

impl WireFilter {
    /// Appends `f` after its sub-filters; answers its index.
    fn push(&mut self, f: &Filter) -> u32 {
        let must = self.conditions(&f.must);
        let should = self.conditions(&f.should);
        let must_not = self.conditions(&f.must_not);
        let min_should = f
            .min_should
            .as_ref()
            .map(|ms| (self.conditions(&ms.conditions), ms.min_count as u64));
        self.filters.push(WireClauses {
            must,
            should,
            must_not,
            min_should,
        });
        // a filter has at most MAX_FILTER_CONDITIONS + 1 filter objects, far below u32::MAX;
        // a larger one saturates and is refused when decoded
        u32::try_from(self.filters.len() - 1).unwrap_or(u32::MAX)
    }

    fn conditions(&mut self, cs: &[Condition]) -> Vec<WireCondition> {
        cs.iter().map(|c| self.condition(c)).collect()
    }

    fn condition(&mut self, c: &Condition) -> WireCondition {
        match c {
            Condition::Field(fc) => WireCondition::Field(Box::new(field_out(fc))),
            Condition::IsEmpty(k) => WireCondition::IsEmpty(k.to_string()),
            Condition::IsNull(k) => WireCondition::IsNull(k.to_string()),
            Condition::HasId(ids) => {
                let mut ids: Vec<PointId> = ids.iter().cloned().collect();
                ids.sort();
                WireCondition::HasId(ids)
            }
            Condition::HasVector(name) => WireCondition::HasVector(name.clone()),
            Condition::Nested { key, filter } => WireCondition::Nested {
                key: key.to_string(),
                filter: self.push(filter),
            },
            Condition::Filter(f) => WireCondition::Filter(self.push(f)),
        }
    }
}

fn field_out(fc: &FieldCondition) -> WireField {
    WireField {
        key: fc.key.to_string(),
        r#match: fc.r#match.as_ref().map(match_out),
        range: fc.range.map(|r| match r {
            Range::Float(b) => WireRange::Float(WireBounds::out(&b, |x| x)),
            Range::DateTime(b) => WireRange::DateTime(WireBounds::out(&b, |t| t.0)),
        }),
        values_count: fc.values_count.map(|b| WireBounds::out(&b, |n| n as u64)),
        is_empty: fc.is_empty,
        is_null: fc.is_null,
    }
}

fn sorted<T: Ord + Clone>(set: &HashSet<T>) -> Vec<T> {
    let mut v: Vec<T> = set.iter().cloned().collect();
    v.sort();
    v
}

fn match_out(m: &Match) -> WireMatch {
    match m {
        Match::Value(MatchValue::Keyword(s)) => WireMatch::Keyword(s.clone()),
        Match::Value(MatchValue::Integer(i)) => WireMatch::Integer(*i),
        Match::Value(MatchValue::Bool(b)) => WireMatch::Bool(*b),
        Match::Text(q) => WireMatch::Text(q.text().to_string()),
        Match::TextAny(q) => WireMatch::TextAny(q.text().to_string()),
        Match::Phrase(q) => WireMatch::Phrase(q.text().to_string()),
        Match::Any(AnyVariants::Keywords(s)) => WireMatch::AnyKeywords(sorted(s)),
        Match::Any(AnyVariants::Integers(s)) => WireMatch::AnyIntegers(sorted(s)),
        Match::Except(AnyVariants::Keywords(s)) => WireMatch::ExceptKeywords(sorted(s)),
        Match::Except(AnyVariants::Integers(s)) => WireMatch::ExceptIntegers(sorted(s)),
    }
}

// ---- in: untrusted bytes back to the model, without recursion ---------------------------------

impl TryFrom<WireFilter> for Filter {
    type Error = Error;

    fn try_from(w: WireFilter) -> Result<Filter> {
        let n = w.filters.len();
        if n == 0 {
            return Err(bad("no filter"));
        }
        // every filter object but the root hangs off one condition
        if n > MAX_FILTER_CONDITIONS + 1 {
            return Err(bad(&format!(
                "a filter may have at most {MAX_FILTER_CONDITIONS} conditions"
            )));
        }
        let mut b = Builder {
            built: Vec::with_capacity(n),
            conditions: 0,
        };
        for clauses in w.filters {
            let (filter, height) = b.filter(clauses)?;
            b.built.push(Some((filter, height)));
        }
        let root = b.built.pop().flatten();
        if b.built.iter().any(Option::is_some) {
            return Err(bad("a filter object no condition refers to"));
        }
        root.map(|(f, _)| f).ok_or_else(|| bad("no filter"))
    }
}

struct Builder {
    /// The filter objects decoded so far with their heights (a filter without sub-filters is 1);
    /// None once a condition took it.
    built: Vec<Option<(Filter, usize)>>,
    conditions: usize,
}

impl Builder {
    fn filter(&mut self, w: WireClauses) -> Result<(Filter, usize)> {
        let mut height = 1;
        let mut f = Filter {
            must: self.conditions(w.must, &mut height)?,
            should: self.conditions(w.should, &mut height)?,
            must_not: self.conditions(w.must_not, &mut height)?,
            min_should: None,
        };
        if let Some((cs, min_count)) = w.min_should {
            let min_count = usize::try_from(min_count)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| bad(&format!("min_count of {min_count}")))?;
            f.min_should = Some(MinShould {
                conditions: self.conditions(cs, &mut height)?,
                min_count,
            });
        }
        if height > MAX_FILTER_DEPTH {
            return Err(bad(&format!(
                "filters are nested more than {MAX_FILTER_DEPTH} levels deep"
            )));
        }
        Ok((f, height))
    }

    fn conditions(&mut self, ws: Vec<WireCondition>, height: &mut usize) -> Result<Vec<Condition>> {
        let mut out = Vec::with_capacity(ws.len().min(MAX_FILTER_CONDITIONS));
        for w in ws {
            self.conditions += 1;
            if self.conditions > MAX_FILTER_CONDITIONS {
                return Err(bad(&format!(
                    "a filter may have at most {MAX_FILTER_CONDITIONS} conditions"
                )));
            }
            out.push(self.condition(w, height)?);
        }
        Ok(out)
    }

    /// Takes a sub-filter out of `built`: it must come before the filter that names it, and be
    /// named once (else a small message could stand for an exponentially large filter).
    fn take(&mut self, index: u32, height: &mut usize) -> Result<Filter> {
        let slot = usize::try_from(index)
            .ok()
            .and_then(|i| self.built.get_mut(i))
            .ok_or_else(|| {
                bad(&format!(
                    "sub-filter {index} does not come before its parent"
                ))
            })?;
        let (f, h) = slot
            .take()
            .ok_or_else(|| bad(&format!("sub-filter {index} is used twice")))?;
        *height = (*height).max(h + 1);
        Ok(f)
    }

    fn condition(&mut self, w: WireCondition, height: &mut usize) -> Result<Condition> {
        Ok(match w {
            WireCondition::Field(fc) => Condition::Field(field_in(*fc)?),
            WireCondition::IsEmpty(k) => Condition::IsEmpty(path(&k)?),
            WireCondition::IsNull(k) => Condition::IsNull(path(&k)?),
            WireCondition::HasId(ids) => Condition::HasId(
                ids.into_iter()
                    .map(|id| match id {
                        PointId::Num(n) => PointId::Num(n),
                        // as the JSON form would read it: a UUID in its canonical spelling
                        PointId::Uuid(s) | PointId::Str(s) => PointId::from_string(&s),
                    })
                    .collect(),
            ),
            WireCondition::HasVector(name) => Condition::HasVector(name),
            WireCondition::Nested { key, filter } => Condition::Nested {
                key: path(&key)?,
                filter: self.take(filter, height)?,
            },
            WireCondition::Filter(i) => Condition::Filter(self.take(i, height)?),
        })
    }
}

fn path(s: &str) -> Result<JsonPath> {
    JsonPath::parse(s).map_err(|e| bad(&format!("invalid key path '{s}': {e}")))
}

fn field_in(w: WireField) -> Result<FieldCondition> {
    let mut fc = FieldCondition::empty(path(&w.key)?);
    fc.r#match = w.r#match.map(match_in);
    fc.range = w
        .range
        .map(|r| match r {
            WireRange::Float(b) => b
                .into_bounds(|x| {
                    if x.is_finite() {
                        Ok(x)
                    } else {
                        Err(bad(&format!("range bound {x} is not a finite number")))
                    }
                })
                .map(Range::Float),
            WireRange::DateTime(b) => b.into_bounds(|t| Ok(Timestamp(t))).map(Range::DateTime),
        })
        .transpose()?;
    fc.values_count = w
        .values_count
        .map(|b| {
            b.into_bounds(|n| {
                usize::try_from(n).map_err(|_| bad(&format!("values_count bound {n}")))
            })
        })
        .transpose()?;
    fc.is_empty = w.is_empty;
    fc.is_null = w.is_null;
    if fc.r#match.is_none()
        && fc.range.is_none()
        && fc.values_count.is_none()
        && fc.is_empty.is_none()
        && fc.is_null.is_none()
    {
        return Err(bad(&format!(
            "the condition on key '{}' has nothing to check",
            fc.key
        )));
    }
    Ok(fc)
}

fn match_in(w: WireMatch) -> Match {
    match w {
        WireMatch::Keyword(s) => Match::Value(MatchValue::Keyword(s)),
        WireMatch::Integer(i) => Match::Value(MatchValue::Integer(i)),
        WireMatch::Bool(b) => Match::Value(MatchValue::Bool(b)),
        WireMatch::Text(t) => Match::Text(TextQuery::new(t)),
        WireMatch::TextAny(t) => Match::TextAny(TextQuery::new(t)),
        WireMatch::Phrase(t) => Match::Phrase(TextQuery::new(t)),
        WireMatch::AnyKeywords(v) => Match::Any(AnyVariants::Keywords(v.into_iter().collect())),
        WireMatch::AnyIntegers(v) => Match::Any(AnyVariants::Integers(v.into_iter().collect())),
        WireMatch::ExceptKeywords(v) => {
            Match::Except(AnyVariants::Keywords(v.into_iter().collect()))
        }
        WireMatch::ExceptIntegers(v) => {
            Match::Except(AnyVariants::Integers(v.into_iter().collect()))
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::filter::testkit::*;
    use crate::point::PointId;

    fn round_trip(f: &Filter) -> Filter {
        let bytes = encode_filter(f).expect("encode");
        decode_filter(&bytes).unwrap_or_else(|e| panic!("{f:?} should decode: {e}"))
    }

    fn refused(w: WireFilter) -> String {
        let bytes = codec::encode(&w).expect("encode");
        match decode_filter(&bytes) {
            Ok(f) => panic!("{w:?} should be refused, got {f:?}"),
            Err(e) => {
                assert_eq!(e.kind, tessera_core::ErrorKind::BadRequest);
                e.message
            }
        }
    }

    fn leaf() -> WireCondition {
        WireCondition::Field(Box::new(WireField {
            key: "a".into(),
            r#match: Some(WireMatch::Integer(1)),
            range: None,
            values_count: None,
            is_empty: None,
            is_null: None,
        }))
    }

    fn clauses(must: Vec<WireCondition>) -> WireClauses {
        WireClauses {
            must,
            should: Vec::new(),
            must_not: Vec::new(),
            min_should: None,
        }
    }

    /// `levels` filter objects, each the only condition of the next.
    fn chain(levels: usize) -> WireFilter {
        let mut filters = vec![clauses(vec![leaf()])];
        for i in 1..levels {
            filters.push(clauses(vec![WireCondition::Filter(i as u32 - 1)]));
        }
        WireFilter { filters }
    }

    #[test]
    fn every_part_of_a_filter_round_trips() {
        tracing::info!("the filter of the JSON round-trip test, with every kind of condition");
        let f = parsed(&json!({
            "must": [
                {"key": "a.b[].c", "match": {"any": ["y", "x"]}, "range": {"gt": 1.5, "lte": 3}},
                {"key": "\"odd key\"[0]", "range": {"gte": "2020-01-01T00:00:00+02:00"}},
                {"has_id": [3, "936DA01F9ABD4d9d80C702AF85C822A8", 1, "t_1"]},
                {"nested": {"key": "diet", "filter": {"must_not": {"key": "x", "match": {"phrase": "a b"}}}}}
            ],
            "should": [{"is_empty": {"key": "e"}}, {"is_null": {"key": "n"}}, {"has_vector": "img"}],
            "must_not": [{"key": "t", "values_count": {"lt": 2}, "is_empty": false, "is_null": true}],
            "min_should": {"conditions": [
                {"key": "x", "match": {"except": [3, 1]}}, {},
                {"key": "w", "match": {"text_any": "Hello World"}},
                {"key": "v", "match": {"value": true}}
            ], "min_count": 2}
        }));
        assert_eq!(round_trip(&f), f);
        assert_eq!(round_trip(&Filter::default()), Filter::default());
        tracing::info!("the same filter encodes to the same bytes (sets are sorted)");
        let again = encode_filter(&f.clone()).expect("encode");
        assert_eq!(encode_filter(&f).expect("encode"), again);
    }

    #[test]
    fn garbage_and_forged_lengths_are_refused() {
        tracing::info!("empty input, a wrong version byte, trailing bytes");
        let good = encode_filter(&Filter::default()).expect("encode");
        assert!(decode_filter(&[]).is_err());
        let mut wrong_version = good.clone();
        wrong_version[0] = 99;
        assert!(decode_filter(&wrong_version).is_err());
        let mut trailing = good.clone();
        trailing.push(0);
        assert!(decode_filter(&trailing).is_err());
        tracing::info!("a length prefix claiming 2^60 filter objects is refused, not allocated");
        let forged = [codec::FORMAT_VERSION, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0x10];
        let e = decode_filter(&forged).expect_err("forged length");
        assert_eq!(e.kind, tessera_core::ErrorKind::BadRequest);
        assert!(
            e.message.starts_with("bad filter on the wire"),
            "{}",
            e.message
        );
    }

    #[test]
    fn decoding_is_as_strict_as_the_json_parser() {
        tracing::info!("depth: as many levels as JSON allows, and not one more");
        assert!(Filter::try_from(chain(MAX_FILTER_DEPTH)).is_ok());
        let e = refused(chain(MAX_FILTER_DEPTH + 1));
        assert!(e.contains("nested more than 16 levels"), "{e}");
        tracing::info!("far deeper than the limit is refused without recursion");
        let e = refused(chain(MAX_FILTER_CONDITIONS));
        assert!(e.contains("nested more than"), "{e}");
        let e = refused(chain(1_000_000));
        assert!(e.contains("at most 1024 conditions"), "{e}");

        tracing::info!("condition count, across every filter object");
        let wide = |n: usize| WireFilter {
            filters: vec![clauses(vec![leaf(); n])],
        };
        assert!(Filter::try_from(wide(MAX_FILTER_CONDITIONS)).is_ok());
        let e = refused(wide(MAX_FILTER_CONDITIONS + 1));
        assert!(e.contains("at most 1024 conditions"), "{e}");
        let split = WireFilter {
            filters: vec![
                clauses(vec![leaf(); 600]),
                clauses(vec![leaf(); 424]),
                clauses(vec![WireCondition::Filter(0), WireCondition::Filter(1)]),
            ],
        };
        assert!(refused(split).contains("at most 1024 conditions"));

        tracing::info!("sub-filters: each named once, by a later filter object");
        let twice = WireFilter {
            filters: vec![
                clauses(vec![leaf()]),
                clauses(vec![WireCondition::Filter(0), WireCondition::Filter(0)]),
            ],
        };
        assert!(refused(twice).contains("used twice"));
        let forward = WireFilter {
            filters: vec![clauses(vec![WireCondition::Filter(0)])],
        };
        assert!(refused(forward).contains("does not come before"));
        let orphan = WireFilter {
            filters: vec![clauses(vec![leaf()]), clauses(vec![leaf()])],
        };
        assert!(refused(orphan).contains("no condition refers to"));
        assert!(refused(WireFilter { filters: vec![] }).contains("no filter"));

        tracing::info!("what the parser refuses inside a condition");
        let field = |f: WireField| WireFilter {
            filters: vec![clauses(vec![WireCondition::Field(Box::new(f))])],
        };
        let base = WireField {
            key: "a".into(),
            r#match: None,
            range: None,
            values_count: None,
            is_empty: None,
            is_null: None,
        };
        assert!(refused(field(base.clone())).contains("nothing to check"));
        let bad_key = WireField {
            key: "a..b".into(),
            is_null: Some(true),
            ..base.clone()
        };
        assert!(refused(field(bad_key)).contains("invalid key path"));
        let nan = WireField {
            range: Some(WireRange::Float(WireBounds {
                gt: Some(f64::NAN),
                gte: None,
                lt: None,
                lte: None,
            })),
            ..base
        };
        assert!(refused(field(nan)).contains("not a finite number"));
        let zero = WireFilter {
            filters: vec![WireClauses {
                min_should: Some((vec![leaf()], 0)),
                ..clauses(vec![])
            }],
        };
        assert!(refused(zero).contains("min_count of 0"));
    }

    #[test]
    fn string_ids_are_read_as_the_json_form_reads_them() {
        let w = WireFilter {
            filters: vec![clauses(vec![WireCondition::HasId(vec![PointId::Str(
                "936DA01F9ABD4d9d80C702AF85C822A8".into(),
            )])])],
        };
        let f = Filter::try_from(w).expect("decode");
        assert_eq!(
            f.must,
            vec![Condition::HasId(
                [PointId::Uuid("936da01f-9abd-4d9d-80c7-02af85c822a8".into())].into()
            )]
        );
    }

    proptest! {
        // 256 cases unless PROPTEST_CASES says otherwise (the fuzz_ targets run longer so)

        #[test]
        fn random_filters_round_trip(f in filter_json(), p in payload(), id in 0u64..5) {
            let once = parsed(&f);
            let back = round_trip(&once);
            prop_assert_eq!(&back, &once);
            prop_assert_eq!(back.matches(&PointId::Num(id), &p), once.matches(&PointId::Num(id), &p));
        }

        #[test]
        fn fuzz_filter_wire_random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_filter(&bytes);
            if let Some(first) = bytes.first_mut() {
                *first = codec::FORMAT_VERSION;
            }
            let _ = decode_filter(&bytes);
        }

        #[test]
        fn fuzz_filter_wire_flipped_bytes_never_panic(f in filter_json(), at in any::<prop::sample::Index>(), x in 1u8..) {
            let mut bytes = encode_filter(&parsed(&f)).expect("encode");
            let i = at.index(bytes.len());
            bytes[i] ^= x;
            if let Ok(g) = decode_filter(&bytes) {
                // whatever decodes is a filter the encoder could have written
                prop_assert_eq!(round_trip(&g), g);
            }
        }
    }
}
