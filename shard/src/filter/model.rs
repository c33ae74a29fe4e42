//! The filter model: a filter's clauses and conditions as plain data, with the algebra the router
//! needs (`and` of a request's filter with a tenant's scope). Reading and evaluating them live in
//! the sibling modules.

use std::collections::HashSet;

use super::eval::tokenize;
use super::path::JsonPath;
use crate::calendar::Timestamp;
use crate::point::PointId;

/// The deepest nesting of filter objects a filter may have, the filter itself counting as 1.
pub const MAX_FILTER_DEPTH: usize = 16;

/// The most conditions a filter may have, counting every condition at every level.
pub const MAX_FILTER_CONDITIONS: usize = 1024;

/// A payload filter: all clauses must hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// Every condition must hold.
    pub must: Vec<Condition>,
    /// At least one condition must hold; empty means no constraint.
    pub should: Vec<Condition>,
    /// No condition may hold.
    pub must_not: Vec<Condition>,
    /// At least `min_count` of the conditions must hold.
    pub min_should: Option<MinShould>,
}

/// At least `min_count` of `conditions` must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct MinShould {
    pub conditions: Vec<Condition>,
    pub min_count: usize,
}

/// One condition of a filter clause.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// A condition on the values at a key path.
    Field(FieldCondition),
    /// `{"is_empty": {"key": ..}}`: every value at the key is null or `[]`, or there is none.
    IsEmpty(JsonPath),
    /// `{"is_null": {"key": ..}}`: some value at the key is null.
    IsNull(JsonPath),
    /// `{"has_id": [..]}`: the point's id is one of these.
    HasId(HashSet<PointId>),
    /// `{"has_vector": name}`: the point has the named vector (`""` is the unnamed one).
    HasVector(String),
    /// `{"nested": {"key": .., "filter": ..}}`: some object of the array at `key` satisfies `filter`,
    /// whose key paths are relative to that object.
    Nested { key: JsonPath, filter: Filter },
    /// A filter used as a condition.
    Filter(Filter),
}

/// A condition on the values at `key`. Qdrant allows several parts in one condition; they combine
/// as Qdrant combines them: `values_count` if given decides alone, else `is_empty`, else `is_null`,
/// else a value passes if it satisfies `match` or `range`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldCondition {
    pub key: JsonPath,
    pub r#match: Option<Match>,
    pub range: Option<Range>,
    pub values_count: Option<ValuesCount>,
    pub is_empty: Option<bool>,
    pub is_null: Option<bool>,
}

/// The `match` part of a field condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Match {
    /// `{"value": ..}`: equal to a keyword, an integer or a boolean (integers match only integer
    /// payload values).
    Value(MatchValue),
    /// `{"text": ..}`: every word of the query is a word of the value.
    Text(TextQuery),
    /// `{"text_any": ..}`: some word of the query is a word of the value.
    TextAny(TextQuery),
    /// `{"phrase": ..}`: the words of the query appear consecutively, in order, in the value.
    Phrase(TextQuery),
    /// `{"any": [..]}`: one of these keywords or integers.
    Any(AnyVariants),
    /// `{"except": [..]}`: not one of these keywords or integers. A null never passes; a value of a
    /// type the list cannot hold (a bool, an object, a float against integers) always does.
    Except(AnyVariants),
}

/// The value of `match.value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchValue {
    Keyword(String),
    Integer(i64),
    Bool(bool),
}

/// The list of `match.any` or `match.except`: all strings or all integers (an empty list is a
/// list of strings, as in Qdrant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnyVariants {
    Keywords(HashSet<String>),
    Integers(HashSet<i64>),
}

/// A full-text query with its words worked out once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextQuery {
    pub(super) text: String,
    pub(super) tokens: Vec<String>,
}

impl TextQuery {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let tokens = tokenize(&text).collect();
        TextQuery { text, tokens }
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The `range` part of a field condition: numeric bounds, or datetime bounds when a bound was
/// given as a string.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    Float(Bounds<f64>),
    DateTime(Bounds<Timestamp>),
}

/// Optional bounds; an absent bound is no constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Bounds<T> {
    pub gt: Option<T>,
    pub gte: Option<T>,
    pub lt: Option<T>,
    pub lte: Option<T>,
}

impl<T: PartialOrd + Copy> Bounds<T> {
    pub fn contains(&self, x: T) -> bool {
        self.gt.is_none_or(|b| x > b)
            && self.gte.is_none_or(|b| x >= b)
            && self.lt.is_none_or(|b| x < b)
            && self.lte.is_none_or(|b| x <= b)
    }
}

/// The `values_count` part of a field condition: bounds on the number of values.
pub type ValuesCount = Bounds<usize>;

/// Why a filter was refused: where (`filter.must[1].range`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct FilterError {
    pub at: String,
    pub message: String,
}

impl Filter {
    /// A filter with the one `must` condition.
    pub fn new_must(condition: Condition) -> Self {
        Filter {
            must: vec![condition],
            ..Filter::default()
        }
    }

    /// A filter with the one `must_not` condition.
    pub fn new_must_not(condition: Condition) -> Self {
        Filter {
            must_not: vec![condition],
            ..Filter::default()
        }
    }

    /// True if the filter has no clause at all, so it matches every point.
    pub fn is_empty(&self) -> bool {
        self.must.is_empty()
            && self.should.is_empty()
            && self.must_not.is_empty()
            && self.min_should.is_none()
    }

    /// The conjunction of two filters: a point passes it exactly when it passes both.
    pub fn and(mut self, other: Filter) -> Filter {
        if other.is_empty() {
            return self;
        }
        if self.is_empty() {
            return other;
        }
        let Filter {
            must,
            should,
            must_not,
            min_should,
        } = other;
        // Each clause is a conjunct of the filter, so lists of the same kind concatenate; a
        // `should` or `min_should` moves over only into an empty slot, else it stays in a filter of
        // its own.
        self.must.extend(must);
        self.must_not.extend(must_not);
        let rest = Filter {
            should,
            min_should,
            ..Filter::default()
        };
        if rest.is_empty() {
            return self;
        }
        if self.should.is_empty() && self.min_should.is_none() {
            self.should = rest.should;
            self.min_should = rest.min_should;
        } else {
            self.must.push(Condition::Filter(rest));
        }
        self
    }
}

impl FieldCondition {
    pub(super) fn empty(key: JsonPath) -> Self {
        FieldCondition {
            key,
            r#match: None,
            range: None,
            values_count: None,
            is_empty: None,
            is_null: None,
        }
    }

    pub fn new_match(key: JsonPath, m: Match) -> Self {
        FieldCondition {
            r#match: Some(m),
            ..FieldCondition::empty(key)
        }
    }

    pub fn new_range(key: JsonPath, range: Range) -> Self {
        FieldCondition {
            range: Some(range),
            ..FieldCondition::empty(key)
        }
    }

    pub fn new_values_count(key: JsonPath, count: ValuesCount) -> Self {
        FieldCondition {
            values_count: Some(count),
            ..FieldCondition::empty(key)
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::filter::model::{Match, MatchValue};
    use crate::filter::testkit::*;
    use crate::point::PointId;

    #[test]
    fn and_is_a_conjunction() {
        let red = json!({"key": "color", "match": {"value": "red"}});
        let london = json!({"key": "city", "match": {"value": "London"}});
        let blue = json!({"key": "color", "match": {"value": "blue"}});
        let berlin = json!({"key": "city", "match": {"value": "Berlin"}});
        let a = parsed(&json!({"should": [red, blue]}));
        let b = parsed(&json!({"should": [london, berlin]}));
        let both = a.clone().and(b.clone());
        assert_eq!(cities(both.to_json()), vec![2, 3, 4]);
        assert_eq!(a.clone().and(Filter::default()), a);
        assert_eq!(Filter::default().and(b.clone()), b);
        let tenant = Filter::new_must(Condition::Field(FieldCondition::new_match(
            JsonPath::key("city"),
            Match::Value(MatchValue::Keyword("Moscow".into())),
        )));
        assert_eq!(cities(a.and(tenant).to_json()), vec![6]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn and_matches_both(f1 in filter_json(), f2 in filter_json(), p in payload(), id in 0u64..5) {
            let (a, b) = (parsed(&f1), parsed(&f2));
            let pid = PointId::Num(id);
            let both = a.clone().and(b.clone());
            prop_assert_eq!(both.matches(&pid, &p), a.matches(&pid, &p) && b.matches(&pid, &p));
        }
    }
}
