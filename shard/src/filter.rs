//! Payload filters: Qdrant's filter language, parsed from its JSON and evaluated against a point's
//! id and payload.
//!
//! The semantics follow Qdrant's unindexed ("plain") condition checker, which is what every query
//! falls back to and what its payload indexes must agree with:
//!
//! - `must`: every condition holds; `must_not`: no condition holds; `should`: at least one holds
//!   (an empty or absent `should` is no constraint); `min_should`: at least `min_count` of its
//!   conditions hold (a `min_should` with no conditions matches nothing). A condition may itself be a
//!   filter object. The empty filter matches every point.
//! - A key path (`a.b`, `a[].b`, `a[0]`, `"quoted key".b`) selects zero or more values; `[]` projects
//!   every element of an array, a plain key does not look into arrays. A field condition holds if
//!   any selected value matches; a selected value that is an array is matched element by element
//!   (one level, arrays inside arrays are not flattened).
//! - A field that selects nothing fails every field condition except `is_empty: true` and
//!   `is_null: false`.
//! - `values_count` counts the elements of an array value (null counts 0, a scalar 1).
//! - `{"is_empty": {"key": k}}` holds when every selected value is null or `[]` (or nothing is
//!   selected); `{"is_null": {"key": k}}` holds when some selected value is exactly null (`[null]`
//!   is an array, not null). The field-condition forms (`{"key": k, "is_null": true}`) judge each
//!   value on its own: there an array containing a null counts as null.
//! - `match.text`, `match.text_any` and `match.phrase` compare words, as Qdrant 1.19.1 does on a field
//!   without a full-text index: both sides are split on every character that is not alphanumeric and
//!   lowercased; `text` needs every query word, `text_any` one of them, `phrase` all of them
//!   consecutively and in order.
//! - `has_id` and `has_vector` never hold inside a `nested` filter.
//!
//! Geo conditions are recognised and refused as unsupported. Limits: [`MAX_FILTER_DEPTH`] nested
//! filter objects and [`MAX_FILTER_CONDITIONS`] conditions in all, so hostile input gets an error, not
//! a stack overflow.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Number, Value};

use crate::point::{Payload, PointId};

/// The deepest nesting of filter objects a filter may have, the filter itself counting as 1.
pub const MAX_FILTER_DEPTH: usize = 16;

/// The most conditions a filter may have, counting every condition at every level.
pub const MAX_FILTER_CONDITIONS: usize = 1024;

// ---------------------------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------------------------

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
    text: String,
    tokens: Vec<String>,
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

/// An instant, in nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i128);

/// A key path into a payload: `a.b`, `a[].b`, `a[0]`, `a."key with spaces"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JsonPath {
    pub first_key: String,
    pub rest: Vec<PathItem>,
}

/// One step of a [`JsonPath`] after the first key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PathItem {
    /// `.key`: a key of an object.
    Key(String),
    /// `[3]`: an element of an array.
    Index(usize),
    /// `[]`: every element of an array.
    Wildcard,
}

/// Why a filter was refused: where (`filter.must[1].range`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct FilterError {
    pub at: String,
    pub message: String,
}

// ---------------------------------------------------------------------------------------------
// Filter API
// ---------------------------------------------------------------------------------------------

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

    /// Whether the point passes, for a point whose only vector is the unnamed one (`""`), which is
    /// tessera's point model: `has_vector` holds for `""` only. See [`Filter::matches_with`].
    pub fn matches(&self, id: &PointId, payload: &Payload) -> bool {
        self.matches_with(id, payload, &|name: &str| name.is_empty())
    }

    /// Whether the point passes, with `has_vector(name)` telling whether the point has that vector.
    pub fn matches_with(
        &self,
        id: &PointId,
        payload: &Payload,
        has_vector: &dyn Fn(&str) -> bool,
    ) -> bool {
        let ctx = Ctx {
            id: Some(id),
            has_vector: Some(has_vector),
        };
        check_filter(self, payload, &ctx)
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

    /// The filter as Qdrant JSON, in a canonical form that [`parse_filter`] reads back to an equal
    /// filter (empty clauses are left out, lists of ids and values are sorted).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        if !self.must.is_empty() {
            m.insert("must".into(), conditions_to_json(&self.must));
        }
        if !self.should.is_empty() {
            m.insert("should".into(), conditions_to_json(&self.should));
        }
        if !self.must_not.is_empty() {
            m.insert("must_not".into(), conditions_to_json(&self.must_not));
        }
        if let Some(ms) = &self.min_should {
            let mut o = Map::new();
            o.insert("conditions".into(), conditions_to_json(&ms.conditions));
            o.insert("min_count".into(), Value::from(ms.min_count));
            m.insert("min_should".into(), Value::Object(o));
        }
        Value::Object(m)
    }
}

impl FieldCondition {
    fn empty(key: JsonPath) -> Self {
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

// ---------------------------------------------------------------------------------------------
// Key paths
// ---------------------------------------------------------------------------------------------

impl JsonPath {
    /// A path of one plain key.
    pub fn key(key: impl Into<String>) -> Self {
        JsonPath {
            first_key: key.into(),
            rest: Vec::new(),
        }
    }

    /// Parses Qdrant's key path syntax: a first key, then any of `.key`, `."quoted key"`, `[n]`,
    /// `[]`. A plain key is one or more alphanumeric characters, `_` or `-`; a quoted key is any
    /// characters but `"` and `\`.
    pub fn parse(s: &str) -> Result<JsonPath, String> {
        let mut cur = PathCursor { s, pos: 0 };
        let first_key = cur.key()?;
        let mut rest = Vec::new();
        while let Some(c) = cur.peek() {
            match c {
                '.' => {
                    cur.pos += 1;
                    rest.push(PathItem::Key(cur.key()?));
                }
                '[' => {
                    cur.pos += 1;
                    rest.push(cur.index()?);
                }
                other => {
                    return Err(format!(
                        "unexpected '{other}' at position {}, expected '.' or '['",
                        cur.pos
                    ));
                }
            }
        }
        Ok(JsonPath { first_key, rest })
    }

    /// The path with `[]` appended unless it already ends so: where `nested` finds its objects.
    pub fn array_key(&self) -> JsonPath {
        let mut p = self.clone();
        if p.rest.last() != Some(&PathItem::Wildcard) {
            p.rest.push(PathItem::Wildcard);
        }
        p
    }
}

struct PathCursor<'a> {
    s: &'a str,
    pos: usize,
}

impl PathCursor<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.pos..).and_then(|t| t.chars().next())
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.pos;
        let tail = self.s.get(start..).unwrap_or_default();
        if let Some(quoted) = tail.strip_prefix('"') {
            for (i, c) in quoted.char_indices() {
                match c {
                    '"' => {
                        self.pos = start + 1 + i + 1;
                        return Ok(quoted[..i].to_string());
                    }
                    '\\' => {
                        return Err(format!(
                            "quoted key at position {start} contains a backslash"
                        ));
                    }
                    _ => {}
                }
            }
            return Err(format!(
                "quoted key at position {start} has no closing '\"'"
            ));
        }
        let len: usize = tail
            .chars()
            .take_while(|c| is_plain_key_char(*c))
            .map(char::len_utf8)
            .sum();
        if len == 0 {
            return Err(match tail.chars().next() {
                None if start == 0 => "empty key path".to_string(),
                None => format!("missing key at the end (position {start})"),
                Some(c) => format!(
                    "unexpected '{c}' at position {start}, expected a key (letters, digits, '_', '-') or a \"quoted key\""
                ),
            });
        }
        self.pos = start + len;
        Ok(tail[..len].to_string())
    }

    /// After `[`: `]` or digits then `]`.
    fn index(&mut self) -> Result<PathItem, String> {
        let start = self.pos;
        let tail = self.s.get(start..).unwrap_or_default();
        if tail.starts_with(']') {
            self.pos += 1;
            return Ok(PathItem::Wildcard);
        }
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || !tail[digits..].starts_with(']') {
            return Err(format!(
                "expected '[]' or '[<index>]' at position {}",
                start.saturating_sub(1)
            ));
        }
        let n = tail[..digits]
            .parse::<usize>()
            .map_err(|_| format!("array index at position {start} is too large"))?;
        self.pos = start + digits + 1;
        Ok(PathItem::Index(n))
    }
}

fn is_plain_key_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

fn write_key(f: &mut fmt::Formatter<'_>, key: &str) -> fmt::Result {
    if !key.is_empty() && key.chars().all(is_plain_key_char) {
        f.write_str(key)
    } else {
        write!(f, "\"{key}\"")
    }
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_key(f, &self.first_key)?;
        for item in &self.rest {
            match item {
                PathItem::Key(k) => {
                    f.write_str(".")?;
                    write_key(f, k)?;
                }
                PathItem::Index(i) => write!(f, "[{i}]")?,
                PathItem::Wildcard => f.write_str("[]")?,
            }
        }
        Ok(())
    }
}

impl FromStr for JsonPath {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JsonPath::parse(s)
    }
}

/// The values a key path selects, as Qdrant selects them: `[]` steps into every element of an
/// array, `[n]` into one, a key into an object only (not through an array). An array at the end of
/// the path is returned whole; conditions look at its elements (see [`get_flat_values`]).
pub fn get_values<'a>(payload: &'a Payload, path: &JsonPath) -> Vec<&'a Value> {
    let Some(first) = payload.get(&path.first_key) else {
        return Vec::new();
    };
    let mut current = vec![first];
    for item in &path.rest {
        let mut next = Vec::new();
        for v in current {
            match (item, v) {
                (PathItem::Key(k), Value::Object(m)) => next.extend(m.get(k)),
                (PathItem::Index(i), Value::Array(a)) => next.extend(a.get(*i)),
                (PathItem::Wildcard, Value::Array(a)) => next.extend(a.iter()),
                _ => {}
            }
        }
        if next.is_empty() {
            return next;
        }
        current = next;
    }
    current
}

/// The values a `match` or `range` condition compares: [`get_values`] with arrays at the end of the
/// path opened one level (arrays inside them stay whole). What a payload index would index.
pub fn get_flat_values<'a>(payload: &'a Payload, path: &JsonPath) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for v in get_values(payload, path) {
        match v {
            Value::Array(a) => out.extend(a.iter()),
            other => out.push(other),
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------------------------

/// What a condition may know about the point besides a payload; both are absent inside `nested`.
struct Ctx<'a> {
    id: Option<&'a PointId>,
    has_vector: Option<&'a dyn Fn(&str) -> bool>,
}

const NESTED_CTX: Ctx<'static> = Ctx {
    id: None,
    has_vector: None,
};

fn check_filter(f: &Filter, payload: &Payload, ctx: &Ctx<'_>) -> bool {
    let check = |c: &Condition| check_condition(c, payload, ctx);
    (f.should.is_empty() || f.should.iter().any(check))
        && f.min_should.as_ref().is_none_or(|ms| {
            ms.conditions
                .iter()
                .filter(|c| check(c))
                .take(ms.min_count)
                .count()
                == ms.min_count
        })
        && f.must.iter().all(check)
        && !f.must_not.iter().any(check)
}

fn check_condition(c: &Condition, payload: &Payload, ctx: &Ctx<'_>) -> bool {
    match c {
        Condition::Field(fc) => check_field(fc, payload),
        Condition::IsEmpty(key) => get_values(payload, key)
            .iter()
            .all(|v| v.is_null() || v.as_array().is_some_and(Vec::is_empty)),
        Condition::IsNull(key) => get_values(payload, key).iter().any(|v| v.is_null()),
        Condition::HasId(ids) => ctx.id.is_some_and(|id| ids.contains(id)),
        Condition::HasVector(name) => ctx.has_vector.is_some_and(|has| has(name)),
        Condition::Nested { key, filter } => get_values(payload, &key.array_key())
            .into_iter()
            .filter_map(Value::as_object)
            .any(|obj| check_filter(filter, obj, &NESTED_CTX)),
        Condition::Filter(f) => check_filter(f, payload, ctx),
    }
}

fn check_field(fc: &FieldCondition, payload: &Payload) -> bool {
    let values = get_values(payload, &fc.key);
    if values.is_empty() {
        // Nothing at the key: only "is empty" and "is not null" hold.
        return match (fc.is_empty, fc.is_null) {
            (Some(is_empty), _) => is_empty,
            (None, Some(is_null)) => !is_null,
            (None, None) => false,
        };
    }
    values.into_iter().any(|v| check_field_value(fc, v))
}

fn check_field_value(fc: &FieldCondition, v: &Value) -> bool {
    if let Some(count) = &fc.values_count {
        let n = match v {
            Value::Null => 0,
            Value::Array(a) => a.len(),
            _ => 1,
        };
        return count.contains(n);
    }
    if let Some(is_empty) = fc.is_empty {
        return match v {
            Value::Null => is_empty,
            Value::Array(a) => a.is_empty() == is_empty,
            Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_) => !is_empty,
        };
    }
    if let Some(is_null) = fc.is_null {
        return match v {
            Value::Null => is_null,
            Value::Array(a) => a.iter().any(Value::is_null) == is_null,
            Value::Bool(_) | Value::Number(_) | Value::String(_) | Value::Object(_) => !is_null,
        };
    }
    let one = |x: &Value| {
        fc.r#match.as_ref().is_some_and(|m| check_match(m, x))
            || fc.range.as_ref().is_some_and(|r| check_range(r, x))
    };
    match v {
        Value::Array(a) => a.iter().any(one),
        other => one(other),
    }
}

fn check_match(m: &Match, v: &Value) -> bool {
    match m {
        Match::Value(want) => match (want, v) {
            (MatchValue::Keyword(w), Value::String(s)) => w == s,
            (MatchValue::Integer(w), Value::Number(n)) => n.as_i64() == Some(*w),
            (MatchValue::Bool(w), Value::Bool(b)) => w == b,
            _ => false,
        },
        Match::Text(q) => v.as_str().is_some_and(|s| {
            let doc: HashSet<String> = tokenize(s).collect();
            q.tokens.iter().all(|t| doc.contains(t))
        }),
        Match::TextAny(q) => v.as_str().is_some_and(|s| {
            let doc: HashSet<String> = tokenize(s).collect();
            q.tokens.iter().any(|t| doc.contains(t))
        }),
        Match::Phrase(q) => v.as_str().is_some_and(|s| {
            if q.tokens.is_empty() {
                return true;
            }
            let doc: Vec<String> = tokenize(s).collect();
            doc.windows(q.tokens.len())
                .any(|w| w == q.tokens.as_slice())
        }),
        Match::Any(list) => match (list, v) {
            (AnyVariants::Keywords(set), Value::String(s)) => set.contains(s.as_str()),
            (AnyVariants::Integers(set), Value::Number(n)) => {
                n.as_i64().is_some_and(|i| set.contains(&i))
            }
            _ => false,
        },
        // Qdrant: a null is no value, so it is never "other than" the list; a value of a type the
        // list cannot hold (a bool, an object, a float against integers...) always is.
        Match::Except(list) => match (list, v) {
            (_, Value::Null) => false,
            (AnyVariants::Keywords(set), Value::String(s)) => !set.contains(s.as_str()),
            (AnyVariants::Integers(set), Value::Number(n)) => {
                n.as_i64().is_none_or(|i| !set.contains(&i))
            }
            (
                _,
                Value::Bool(_)
                | Value::Number(_)
                | Value::String(_)
                | Value::Array(_)
                | Value::Object(_),
            ) => true,
        },
    }
}

fn check_range(r: &Range, v: &Value) -> bool {
    match r {
        Range::Float(b) => v.as_f64().is_some_and(|x| b.contains(x)),
        Range::DateTime(b) => v
            .as_str()
            .and_then(parse_datetime)
            .is_some_and(|t| b.contains(t)),
    }
}

/// Qdrant's default word tokenizer: split on every non-alphanumeric character, lowercase.
fn tokenize(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

// ---------------------------------------------------------------------------------------------
// Datetimes
// ---------------------------------------------------------------------------------------------

/// Parses a datetime the way Qdrant does for ranges and payload values: RFC 3339
/// (`2014-01-01T00:00:00Z`, `...T00:00:00.123+02:00`), with `t` or a space in place of `T`, an
/// offset written `+HH`, `+HHMM` or `+HH:MM`; without an offset (`2014-01-01T00:00:00`,
/// `2014-01-01 00:00`, `2014-01-01`) the time is UTC. Years beyond 0000..9999 need a sign.
pub fn parse_datetime(s: &str) -> Option<Timestamp> {
    let mut c = Bytes {
        b: s.as_bytes(),
        i: 0,
    };
    let year = c.year()?;
    c.eat(b'-')?;
    let month = c.digits(2)?;
    c.eat(b'-')?;
    let day = c.digits(2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let days = days_from_civil(year, month, day);
    if c.done() {
        return Some(Timestamp::from_parts(days, 0, 0, 0));
    }
    if !matches!(c.next()?, b'T' | b't' | b' ') {
        return None;
    }
    let hour = c.digits(2)?;
    c.eat(b':')?;
    let minute = c.digits(2)?;
    if hour > 23 || minute > 59 {
        return None;
    }
    let mut secs = i64::from(hour * 3600 + minute * 60);
    if c.done() {
        return Some(Timestamp::from_parts(days, secs, 0, 0));
    }
    c.eat(b':')?;
    let second = c.digits(2)?;
    if second > 59 {
        return None;
    }
    secs += i64::from(second);
    let mut nanos = 0u32;
    if c.peek() == Some(b'.') {
        c.i += 1;
        let start = c.i;
        while c.peek().is_some_and(|b| b.is_ascii_digit()) {
            c.i += 1;
        }
        let frac = &c.b[start..c.i];
        if frac.is_empty() {
            return None;
        }
        for k in 0..9 {
            nanos = nanos * 10 + frac.get(k).map_or(0, |d| u32::from(d - b'0'));
        }
    }
    let offset = if c.done() { 0 } else { c.offset()? };
    if !c.done() {
        return None;
    }
    Some(Timestamp::from_parts(days, secs, offset, nanos))
}

struct Bytes<'a> {
    b: &'a [u8],
    i: usize,
}

impl Bytes<'_> {
    fn done(&self) -> bool {
        self.i >= self.b.len()
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.i += 1;
        Some(b)
    }

    fn eat(&mut self, want: u8) -> Option<()> {
        (self.next()? == want).then_some(())
    }

    fn digits(&mut self, n: usize) -> Option<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            let d = self.next()?;
            if !d.is_ascii_digit() {
                return None;
            }
            v = v * 10 + u32::from(d - b'0');
        }
        Some(v)
    }

    /// Four digits, or a sign and four to six digits.
    fn year(&mut self) -> Option<i64> {
        let sign = match self.peek()? {
            b'+' => 1,
            b'-' => -1,
            _ => return self.digits(4).map(i64::from),
        };
        self.i += 1;
        let start = self.i;
        let mut v = 0i64;
        while let Some(d) = self.peek().filter(u8::is_ascii_digit) {
            v = v * 10 + i64::from(d - b'0');
            self.i += 1;
            if self.i - start > 6 {
                return None;
            }
        }
        (self.i - start >= 4).then_some(sign * v)
    }

    /// `Z`, `z`, or a sign, two digits of hours and optionally two of minutes (with or without `:`).
    fn offset(&mut self) -> Option<i64> {
        let sign = match self.next()? {
            b'Z' | b'z' => return Some(0),
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let hours = self.digits(2)?;
        let mut minutes = 0;
        if !self.done() {
            if self.peek() == Some(b':') {
                self.i += 1;
            }
            minutes = self.digits(2)?;
        }
        if hours > 23 || minutes > 59 {
            return None;
        }
        Some(sign * i64::from(hours * 3600 + minutes * 60))
    }
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day since 1970-01-01, proleptic Gregorian (H. Hinnant's
/// algorithm); also used to format timestamps elsewhere in tessera.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Both are small by construction (1..=12, 1..=31).
    (y, m as u32, d as u32)
}

const NANOS_PER_SEC: i128 = 1_000_000_000;

impl Timestamp {
    fn from_parts(days: i64, secs_of_day: i64, offset_secs: i64, nanos: u32) -> Self {
        let secs = i128::from(days) * 86_400 + i128::from(secs_of_day) - i128::from(offset_secs);
        Timestamp(secs * NANOS_PER_SEC + i128::from(nanos))
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with nanoseconds, e.g. `2014-01-01T00:00:00.000000000Z`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let Ok(days) = i64::try_from(days) else {
            return write!(f, "<timestamp out of range>");
        };
        let (y, m, d) = civil_from_days(days);
        if (0..=9999).contains(&y) {
            write!(f, "{y:04}")?;
        } else {
            write!(f, "{y:+05}")?;
        }
        write!(
            f,
            "-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// Parses a filter from Qdrant's JSON. JSON `null` is the empty filter (matches everything).
pub fn parse_filter(v: &Value) -> Result<Filter, FilterError> {
    if v.is_null() {
        return Ok(Filter::default());
    }
    let mut p = Parser { conditions: 0 };
    p.filter(v, "filter", 1)
}

struct Parser {
    conditions: usize,
}

fn err(at: &str, message: impl Into<String>) -> FilterError {
    FilterError {
        at: at.to_string(),
        message: message.into(),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn expect_object<'v>(
    v: &'v Value,
    at: &str,
    what: &str,
) -> Result<&'v Map<String, Value>, FilterError> {
    v.as_object()
        .ok_or_else(|| err(at, format!("expected {what}, got {}", kind(v))))
}

/// Refuses keys of `obj` outside `allowed`.
fn only_keys(
    obj: &Map<String, Value>,
    at: &str,
    what: &str,
    allowed: &[&str],
) -> Result<(), FilterError> {
    match obj.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(err(
            at,
            format!(
                "unknown field '{k}' in {what}, expected one of: {}",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

/// The value of `key` in `obj`, with JSON null meaning absent.
fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.get(key).filter(|v| !v.is_null())
}

const FILTER_KEYS: [&str; 4] = ["must", "should", "must_not", "min_should"];

impl Parser {
    fn filter(&mut self, v: &Value, at: &str, depth: usize) -> Result<Filter, FilterError> {
        if depth > MAX_FILTER_DEPTH {
            return Err(err(
                at,
                format!("filters are nested more than {MAX_FILTER_DEPTH} levels deep"),
            ));
        }
        let obj = expect_object(v, at, "a filter object")?;
        only_keys(obj, at, "a filter", &FILTER_KEYS)?;
        let mut f = Filter::default();
        for (k, val) in obj {
            let sub = format!("{at}.{k}");
            match k.as_str() {
                "must" => f.must = self.clause(val, &sub, depth)?,
                "should" => f.should = self.clause(val, &sub, depth)?,
                "must_not" => f.must_not = self.clause(val, &sub, depth)?,
                _ => f.min_should = self.min_should(val, &sub, depth)?,
            }
        }
        Ok(f)
    }

    /// A list of conditions, a single condition object, or null.
    fn clause(&mut self, v: &Value, at: &str, depth: usize) -> Result<Vec<Condition>, FilterError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{at}[{i}]"), depth))
                .collect(),
            Value::Object(_) => Ok(vec![self.condition(v, at, depth)?]),
            other => Err(err(
                at,
                format!(
                    "expected a condition or a list of conditions, got {}",
                    kind(other)
                ),
            )),
        }
    }

    fn min_should(
        &mut self,
        v: &Value,
        at: &str,
        depth: usize,
    ) -> Result<Option<MinShould>, FilterError> {
        if v.is_null() {
            return Ok(None);
        }
        let obj = expect_object(v, at, "an object with 'conditions' and 'min_count'")?;
        only_keys(obj, at, "min_should", &["conditions", "min_count"])?;
        let conditions = match field(obj, "conditions") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, c)| self.condition(c, &format!("{at}.conditions[{i}]"), depth))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(err(
                    &format!("{at}.conditions"),
                    format!("expected a list of conditions, got {}", kind(other)),
                ));
            }
            None => return Err(err(at, "missing field 'conditions'")),
        };
        let min_count = match field(obj, "min_count") {
            None => return Err(err(at, "missing field 'min_count'")),
            Some(n) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    err(
                        &format!("{at}.min_count"),
                        format!("expected an integer of at least 1, got {n}"),
                    )
                })?,
        };
        Ok(Some(MinShould {
            conditions,
            min_count,
        }))
    }

    fn condition(&mut self, v: &Value, at: &str, depth: usize) -> Result<Condition, FilterError> {
        self.conditions += 1;
        if self.conditions > MAX_FILTER_CONDITIONS {
            return Err(err(
                at,
                format!("a filter may have at most {MAX_FILTER_CONDITIONS} conditions"),
            ));
        }
        let obj = expect_object(v, at, "a condition object")?;
        if obj.contains_key("key") {
            return field_condition(obj, at).map(Condition::Field);
        }
        const KINDS: [&str; 5] = ["is_empty", "is_null", "has_id", "has_vector", "nested"];
        let mut kinds = obj.keys().filter(|k| KINDS.contains(&k.as_str()));
        let filter_keys = obj.keys().any(|k| FILTER_KEYS.contains(&k.as_str()));
        let unknown = obj
            .keys()
            .find(|k| !KINDS.contains(&k.as_str()) && !FILTER_KEYS.contains(&k.as_str()));
        match (kinds.next(), kinds.next(), filter_keys, unknown) {
            (_, _, _, Some(k)) => Err(err(
                at,
                format!(
                    "unknown condition field '{k}': expected a field condition ({{\"key\": .., \"match\": ..}}), \
                     is_empty, is_null, has_id, has_vector, nested, or a filter (must, should, must_not, min_should)"
                ),
            )),
            (Some(a), Some(b), _, _) => Err(err(
                at,
                format!("a condition has one kind, found both '{a}' and '{b}'"),
            )),
            (Some(a), None, true, _) => Err(err(
                at,
                format!("a condition has one kind, found '{a}' and filter clauses"),
            )),
            (Some(k), None, false, None) => {
                let sub = format!("{at}.{k}");
                let inner = &obj[k.as_str()];
                match k.as_str() {
                    "is_empty" => payload_field(inner, &sub).map(Condition::IsEmpty),
                    "is_null" => payload_field(inner, &sub).map(Condition::IsNull),
                    "has_id" => has_id(inner, &sub).map(Condition::HasId),
                    "has_vector" => match inner {
                        Value::String(name) => Ok(Condition::HasVector(name.clone())),
                        other => Err(err(
                            &sub,
                            format!("expected a vector name, got {}", kind(other)),
                        )),
                    },
                    _ => self.nested(inner, &sub, depth),
                }
            }
            // Filter clauses, or `{}` (the empty filter, which always holds).
            (None, _, _, None) => self.filter(v, at, depth + 1).map(Condition::Filter),
        }
    }

    fn nested(&mut self, v: &Value, at: &str, depth: usize) -> Result<Condition, FilterError> {
        let obj = expect_object(v, at, "an object with 'key' and 'filter'")?;
        only_keys(obj, at, "nested", &["key", "filter"])?;
        let key = match field(obj, "key") {
            Some(k) => key_path(k, &format!("{at}.key"))?,
            None => return Err(err(at, "missing field 'key'")),
        };
        let filter = match field(obj, "filter") {
            Some(f) => self.filter(f, &format!("{at}.filter"), depth + 1)?,
            None => return Err(err(at, "missing field 'filter'")),
        };
        Ok(Condition::Nested { key, filter })
    }
}

fn key_path(v: &Value, at: &str) -> Result<JsonPath, FilterError> {
    match v {
        Value::String(s) => {
            JsonPath::parse(s).map_err(|e| err(at, format!("invalid key path '{s}': {e}")))
        }
        other => Err(err(
            at,
            format!("expected a key path string, got {}", kind(other)),
        )),
    }
}

/// `{"key": "path"}`, as in `{"is_empty": {"key": "path"}}`.
fn payload_field(v: &Value, at: &str) -> Result<JsonPath, FilterError> {
    let obj = expect_object(v, at, "an object with 'key'")?;
    only_keys(obj, at, "this condition", &["key"])?;
    match field(obj, "key") {
        Some(k) => key_path(k, &format!("{at}.key")),
        None => Err(err(at, "missing field 'key'")),
    }
}

fn has_id(v: &Value, at: &str) -> Result<HashSet<PointId>, FilterError> {
    let Value::Array(items) = v else {
        return Err(err(
            at,
            format!("expected a list of point ids, got {}", kind(v)),
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, id)| match id {
            Value::Number(n) => n.as_u64().map(PointId::Num).ok_or_else(|| {
                err(
                    &format!("{at}[{i}]"),
                    format!("a numeric point id is an unsigned integer, got {n}"),
                )
            }),
            Value::String(s) => Ok(PointId::from_string(s)),
            other => Err(err(
                &format!("{at}[{i}]"),
                format!(
                    "expected a point id (an unsigned integer or a string), got {}",
                    kind(other)
                ),
            )),
        })
        .collect()
}

const FIELD_KEYS: [&str; 9] = [
    "key",
    "match",
    "range",
    "values_count",
    "is_empty",
    "is_null",
    "geo_bounding_box",
    "geo_radius",
    "geo_polygon",
];

fn field_condition(obj: &Map<String, Value>, at: &str) -> Result<FieldCondition, FilterError> {
    only_keys(obj, at, "a field condition", &FIELD_KEYS)?;
    let key = match field(obj, "key") {
        Some(k) => key_path(k, &format!("{at}.key"))?,
        None => {
            return Err(err(
                &format!("{at}.key"),
                "expected a key path string, got null",
            ));
        }
    };
    for geo in ["geo_bounding_box", "geo_radius", "geo_polygon"] {
        if field(obj, geo).is_some() {
            return Err(err(
                &format!("{at}.{geo}"),
                "geo conditions are not supported",
            ));
        }
    }
    let mut fc = FieldCondition::empty(key);
    if let Some(m) = field(obj, "match") {
        fc.r#match = Some(parse_match(m, &format!("{at}.match"))?);
    }
    if let Some(r) = field(obj, "range") {
        fc.range = Some(parse_range(r, &format!("{at}.range"))?);
    }
    if let Some(c) = field(obj, "values_count") {
        fc.values_count = Some(parse_values_count(c, &format!("{at}.values_count"))?);
    }
    for (name, slot) in [("is_empty", &mut fc.is_empty), ("is_null", &mut fc.is_null)] {
        match field(obj, name) {
            None => {}
            Some(Value::Bool(b)) => *slot = Some(*b),
            Some(other) => {
                return Err(err(
                    &format!("{at}.{name}"),
                    format!("expected a boolean, got {}", kind(other)),
                ));
            }
        }
    }
    if fc.r#match.is_none()
        && fc.range.is_none()
        && fc.values_count.is_none()
        && fc.is_empty.is_none()
        && fc.is_null.is_none()
    {
        return Err(err(
            at,
            format!(
                "the condition on key '{}' has nothing to check: give one of match, range, values_count, is_empty, is_null",
                fc.key
            ),
        ));
    }
    Ok(fc)
}

const MATCH_KEYS: [&str; 6] = ["value", "text", "text_any", "phrase", "any", "except"];

fn parse_match(v: &Value, at: &str) -> Result<Match, FilterError> {
    let obj = expect_object(v, at, "an object such as {\"value\": ..}")?;
    only_keys(obj, at, "match", &MATCH_KEYS)?;
    let mut present = obj.iter().filter(|(_, v)| !v.is_null());
    let (k, val) = match (present.next(), present.next()) {
        (Some(one), None) => one,
        (Some((a, _)), Some((b, _))) => {
            return Err(err(
                at,
                format!("a match has one kind, found both '{a}' and '{b}'"),
            ));
        }
        (None, _) => {
            return Err(err(
                at,
                format!("expected one of: {}", MATCH_KEYS.join(", ")),
            ));
        }
    };
    let sub = format!("{at}.{k}");
    let text = |val: &Value| match val {
        Value::String(s) => Ok(TextQuery::new(s.as_str())),
        other => Err(err(&sub, format!("expected a string, got {}", kind(other)))),
    };
    match k.as_str() {
        "value" => match val {
            Value::String(s) => Ok(Match::Value(MatchValue::Keyword(s.clone()))),
            Value::Bool(b) => Ok(Match::Value(MatchValue::Bool(*b))),
            Value::Number(n) => n
                .as_i64()
                .map(|i| Match::Value(MatchValue::Integer(i)))
                .ok_or_else(|| {
                    err(
                        &sub,
                        format!(
                            "expected a string, a 64-bit integer or a boolean, got {n} (use range for floats)"
                        ),
                    )
                }),
            other => Err(err(
                &sub,
                format!(
                    "expected a string, an integer or a boolean, got {}",
                    kind(other)
                ),
            )),
        },
        "text" => text(val).map(Match::Text),
        "text_any" => text(val).map(Match::TextAny),
        "phrase" => text(val).map(Match::Phrase),
        "any" => any_variants(val, &sub).map(Match::Any),
        _ => any_variants(val, &sub).map(Match::Except),
    }
}

fn any_variants(v: &Value, at: &str) -> Result<AnyVariants, FilterError> {
    let Value::Array(items) = v else {
        return Err(err(
            at,
            format!(
                "expected a list of strings or a list of integers, got {}",
                kind(v)
            ),
        ));
    };
    let mixed = || {
        err(
            at,
            "expected a list of strings or a list of integers, not a mix or other values",
        )
    };
    match items.first() {
        None | Some(Value::String(_)) => items
            .iter()
            .map(|x| x.as_str().map(str::to_string).ok_or_else(mixed))
            .collect::<Result<_, _>>()
            .map(AnyVariants::Keywords),
        Some(Value::Number(_)) => items
            .iter()
            .map(|x| x.as_i64().ok_or_else(mixed))
            .collect::<Result<_, _>>()
            .map(AnyVariants::Integers),
        Some(_) => Err(mixed()),
    }
}

const BOUND_KEYS: [&str; 4] = ["gt", "gte", "lt", "lte"];

fn bounds<T>(
    obj: &Map<String, Value>,
    mut conv: impl FnMut(&str, &Value) -> Result<T, FilterError>,
) -> Result<Bounds<T>, FilterError> {
    let mut b = Bounds {
        gt: None,
        gte: None,
        lt: None,
        lte: None,
    };
    for (name, slot) in [
        ("gt", &mut b.gt),
        ("gte", &mut b.gte),
        ("lt", &mut b.lt),
        ("lte", &mut b.lte),
    ] {
        if let Some(v) = field(obj, name) {
            *slot = Some(conv(name, v)?);
        }
    }
    Ok(b)
}

fn parse_range(v: &Value, at: &str) -> Result<Range, FilterError> {
    let obj = expect_object(v, at, "an object with gt, gte, lt or lte")?;
    only_keys(obj, at, "range", &BOUND_KEYS)?;
    // As in Qdrant: a string bound makes it a datetime range, where every bound is a datetime.
    let datetime = BOUND_KEYS
        .iter()
        .any(|k| obj.get(*k).is_some_and(Value::is_string));
    if datetime {
        bounds(obj, |name, v| match v {
            Value::String(s) => parse_datetime(s).ok_or_else(|| {
                err(
                    at,
                    format!(
                        "'{s}' for '{name}' is not an RFC 3339 datetime (example: 2014-01-01T00:00:00Z)"
                    ),
                )
            }),
            other => Err(err(
                at,
                format!(
                    "expected a datetime string for '{name}' like the other bounds, got {}",
                    kind(other)
                ),
            )),
        })
        .map(Range::DateTime)
    } else {
        bounds(obj, |name, v| {
            v.as_f64().ok_or_else(|| {
                err(
                    at,
                    format!("expected a number for '{name}', got {}", kind(v)),
                )
            })
        })
        .map(Range::Float)
    }
}

fn parse_values_count(v: &Value, at: &str) -> Result<ValuesCount, FilterError> {
    let obj = expect_object(v, at, "an object with gt, gte, lt or lte")?;
    only_keys(obj, at, "values_count", &BOUND_KEYS)?;
    bounds(obj, |name, v| {
        v.as_u64()
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| {
                err(
                    at,
                    format!("expected a non-negative integer for '{name}', got {v}"),
                )
            })
    })
}

// ---------------------------------------------------------------------------------------------
// Back to JSON
// ---------------------------------------------------------------------------------------------

fn conditions_to_json(cs: &[Condition]) -> Value {
    Value::Array(cs.iter().map(condition_to_json).collect())
}

fn key_object(key: &JsonPath) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(key.to_string()));
    Value::Object(m)
}

fn one(key: &str, v: Value) -> Value {
    let mut m = Map::new();
    m.insert(key.into(), v);
    Value::Object(m)
}

fn condition_to_json(c: &Condition) -> Value {
    match c {
        Condition::Field(fc) => field_to_json(fc),
        Condition::IsEmpty(k) => one("is_empty", key_object(k)),
        Condition::IsNull(k) => one("is_null", key_object(k)),
        Condition::HasId(ids) => {
            let mut ids: Vec<&PointId> = ids.iter().collect();
            ids.sort();
            let ids = ids
                .into_iter()
                .map(|id| match id {
                    PointId::Num(n) => Value::from(*n),
                    PointId::Uuid(s) | PointId::Str(s) => Value::String(s.clone()),
                })
                .collect();
            one("has_id", Value::Array(ids))
        }
        Condition::HasVector(name) => one("has_vector", Value::String(name.clone())),
        Condition::Nested { key, filter } => {
            let mut m = Map::new();
            m.insert("key".into(), Value::String(key.to_string()));
            m.insert("filter".into(), filter.to_json());
            one("nested", Value::Object(m))
        }
        Condition::Filter(f) => f.to_json(),
    }
}

fn field_to_json(fc: &FieldCondition) -> Value {
    let mut m = Map::new();
    m.insert("key".into(), Value::String(fc.key.to_string()));
    if let Some(x) = &fc.r#match {
        m.insert("match".into(), match_to_json(x));
    }
    if let Some(r) = &fc.range {
        let v = match r {
            Range::Float(b) => bounds_to_json(b, |x| {
                Number::from_f64(*x).map_or(Value::Null, Value::Number)
            }),
            Range::DateTime(b) => bounds_to_json(b, |t| Value::String(t.to_string())),
        };
        m.insert("range".into(), v);
    }
    if let Some(c) = &fc.values_count {
        m.insert(
            "values_count".into(),
            bounds_to_json(c, |n| Value::from(*n)),
        );
    }
    if let Some(b) = fc.is_empty {
        m.insert("is_empty".into(), Value::Bool(b));
    }
    if let Some(b) = fc.is_null {
        m.insert("is_null".into(), Value::Bool(b));
    }
    Value::Object(m)
}

fn bounds_to_json<T>(b: &Bounds<T>, conv: impl Fn(&T) -> Value) -> Value {
    let mut m = Map::new();
    for (name, v) in [
        ("gt", &b.gt),
        ("gte", &b.gte),
        ("lt", &b.lt),
        ("lte", &b.lte),
    ] {
        if let Some(v) = v {
            m.insert(name.into(), conv(v));
        }
    }
    Value::Object(m)
}

fn any_to_json(a: &AnyVariants) -> Value {
    match a {
        AnyVariants::Keywords(set) => {
            let mut v: Vec<&String> = set.iter().collect();
            v.sort();
            Value::Array(v.into_iter().map(|s| Value::String(s.clone())).collect())
        }
        AnyVariants::Integers(set) => {
            let mut v: Vec<i64> = set.iter().copied().collect();
            v.sort_unstable();
            Value::Array(v.into_iter().map(Value::from).collect())
        }
    }
}

fn match_to_json(x: &Match) -> Value {
    match x {
        Match::Value(MatchValue::Keyword(s)) => one("value", Value::String(s.clone())),
        Match::Value(MatchValue::Integer(i)) => one("value", Value::from(*i)),
        Match::Value(MatchValue::Bool(b)) => one("value", Value::Bool(*b)),
        Match::Text(q) => one("text", Value::String(q.text.clone())),
        Match::TextAny(q) => one("text_any", Value::String(q.text.clone())),
        Match::Phrase(q) => one("phrase", Value::String(q.text.clone())),
        Match::Any(a) => one("any", any_to_json(a)),
        Match::Except(a) => one("except", any_to_json(a)),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn obj(v: Value) -> Payload {
        match v {
            Value::Object(m) => m,
            other => panic!("payload must be an object, got {other}"),
        }
    }

    fn parsed(j: &Value) -> Filter {
        parse_filter(j).unwrap_or_else(|e| panic!("{j} should parse: {e}"))
    }

    fn eval(filter: &Value, id: u64, payload: &Payload) -> bool {
        parsed(filter).matches(&PointId::Num(id), payload)
    }

    /// Whether the single condition `c` holds for `payload` (id 1).
    fn holds(c: &Value, payload: &Value) -> bool {
        eval(&json!({ "must": [c] }), 1, &obj(payload.clone()))
    }

    fn run_table(cases: &[(&str, Value, Value, bool)]) {
        for (name, c, p, want) in cases {
            assert_eq!(holds(c, p), *want, "case {name}: {c} on {p}");
        }
    }

    fn parse_err(j: Value) -> String {
        match parse_filter(&j) {
            Ok(f) => panic!("{j} should be refused, got {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn match_value_keyword_integer_bool() {
        let city = json!({"key": "city", "match": {"value": "London"}});
        let n = json!({"key": "n", "match": {"value": 1}});
        let b = json!({"key": "b", "match": {"value": true}});
        run_table(&[
            (
                "equal keyword",
                city.clone(),
                json!({"city": "London"}),
                true,
            ),
            (
                "other keyword",
                city.clone(),
                json!({"city": "Berlin"}),
                false,
            ),
            (
                "case matters",
                city.clone(),
                json!({"city": "london"}),
                false,
            ),
            (
                "any array element",
                city.clone(),
                json!({"city": ["Berlin", "London"]}),
                true,
            ),
            (
                "no element",
                city.clone(),
                json!({"city": ["Berlin"]}),
                false,
            ),
            ("missing", city.clone(), json!({}), false),
            ("null", city.clone(), json!({"city": null}), false),
            (
                "array in array not flattened",
                city.clone(),
                json!({"city": [["London"]]}),
                false,
            ),
            ("integer", n.clone(), json!({"n": 1}), true),
            ("integer in array", n.clone(), json!({"n": [3, 1]}), true),
            (
                "float is not an integer",
                n.clone(),
                json!({"n": 1.0}),
                false,
            ),
            (
                "string is not an integer",
                n.clone(),
                json!({"n": "1"}),
                false,
            ),
            ("other integer", n.clone(), json!({"n": 2}), false),
            ("bool", b.clone(), json!({"b": true}), true),
            ("other bool", b.clone(), json!({"b": false}), false),
            ("bool is not 1", b.clone(), json!({"b": 1}), false),
            ("bool is not a string", b, json!({"b": "true"}), false),
        ]);
    }

    #[test]
    fn match_text_words() {
        let text = |q: &str| json!({"key": "t", "match": {"text": q}});
        let any = |q: &str| json!({"key": "t", "match": {"text_any": q}});
        let phrase = |q: &str| json!({"key": "t", "match": {"phrase": q}});
        let t = |s: &str| json!({ "t": s });
        run_table(&[
            (
                "all words, any order, any case",
                text("world HELLO"),
                t("Hello, world!"),
                true,
            ),
            ("whole words only", text("good"), t("goodness only"), false),
            (
                "every word needed",
                text("good cheap"),
                t("cheap hardware"),
                false,
            ),
            (
                "every word present",
                text("good cheap"),
                t("cheap hardware good"),
                true,
            ),
            (
                "punctuation splits",
                text("with a"),
                t("something, with:a"),
                true,
            ),
            ("unicode lowercase", text("привет"), t("Привет, мир"), true),
            ("not a string", text("5"), json!({"t": 5}), false),
            (
                "some array element",
                text("hello"),
                json!({"t": ["x", "hello there"]}),
                true,
            ),
            ("missing", text("hello"), json!({}), false),
            (
                "empty query holds for strings",
                text(""),
                t("anything"),
                true,
            ),
            (
                "one word is enough",
                any("good cheap"),
                t("cheap hardware"),
                true,
            ),
            ("no word", any("good cheap"), t("neutral text"), false),
            ("case-insensitive", any("hello"), t("Hello, world!"), true),
            ("whole words", any("good"), t("goodness only"), false),
            ("empty query never holds", any(""), t("anything"), false),
            (
                "consecutive in order",
                phrase("alpha beta"),
                t("foo Alpha beta bar"),
                true,
            ),
            ("wrong order", phrase("alpha beta"), t("beta alpha"), false),
            ("not split", phrase("alpha beta"), t("alphabeta"), false),
            ("gap", phrase("alpha beta"), t("alpha x beta"), false),
            ("single word", phrase("good"), t("goodness only good"), true),
        ]);
    }

    #[test]
    fn match_any_and_except() {
        let any = json!({"key": "c", "match": {"any": ["black", "yellow"]}});
        let any_int = json!({"key": "c", "match": {"any": [1, 2]}});
        let except = json!({"key": "c", "match": {"except": ["black", "yellow"]}});
        let except_int = json!({"key": "c", "match": {"except": [1]}});
        let except_none = json!({"key": "c", "match": {"except": []}});
        let c = |v: Value| json!({ "c": v });
        run_table(&[
            ("any: in list", any.clone(), c(json!("black")), true),
            (
                "any: one element in list",
                any.clone(),
                c(json!(["black", "green"])),
                true,
            ),
            ("any: not in list", any.clone(), c(json!("green")), false),
            ("any: missing", any.clone(), json!({}), false),
            ("any: empty array", any, c(json!([])), false),
            ("any int", any_int.clone(), c(json!(2)), true),
            ("any int: float", any_int.clone(), c(json!(2.0)), false),
            ("any int: string", any_int, c(json!("1")), false),
            (
                "any []: nothing",
                json!({"key": "c", "match": {"any": []}}),
                c(json!("x")),
                false,
            ),
            (
                "except: not in list",
                except.clone(),
                c(json!("green")),
                true,
            ),
            ("except: in list", except.clone(), c(json!("black")), false),
            (
                "except: one element outside",
                except.clone(),
                c(json!(["black", "green"])),
                true,
            ),
            (
                "except: all inside",
                except.clone(),
                c(json!(["black", "yellow"])),
                false,
            ),
            ("except: missing", except.clone(), json!({}), false),
            ("except: null", except.clone(), c(json!(null)), false),
            ("except: empty array", except.clone(), c(json!([])), false),
            (
                "except: array of null",
                except.clone(),
                c(json!([null])),
                false,
            ),
            (
                "except: bool is other",
                except.clone(),
                c(json!(true)),
                true,
            ),
            ("except: number is other", except.clone(), c(json!(5)), true),
            (
                "except: object is other",
                except.clone(),
                c(json!({"o": 1})),
                true,
            ),
            (
                "except: nested array is other",
                except,
                c(json!([["black"]])),
                true,
            ),
            ("except int: in", except_int.clone(), c(json!(1)), false),
            ("except int: out", except_int.clone(), c(json!(2)), true),
            (
                "except int: float is other",
                except_int.clone(),
                c(json!(1.5)),
                true,
            ),
            (
                "except int: string is other",
                except_int,
                c(json!("x")),
                true,
            ),
            (
                "except []: string",
                except_none.clone(),
                c(json!("x")),
                true,
            ),
            ("except []: number", except_none.clone(), c(json!(5)), true),
            (
                "except []: null",
                except_none.clone(),
                c(json!(null)),
                false,
            ),
            ("except []: missing", except_none, json!({}), false),
        ]);
    }

    #[test]
    fn numeric_ranges() {
        let r = |b: Value| json!({"key": "p", "range": b});
        let p = |v: Value| json!({ "p": v });
        run_table(&[
            ("gte equal", r(json!({"gte": 5})), p(json!(5)), true),
            ("gt equal", r(json!({"gt": 5})), p(json!(5)), false),
            ("lt equal", r(json!({"lt": 5})), p(json!(5)), false),
            ("lte equal", r(json!({"lte": 5})), p(json!(5)), true),
            (
                "int vs float bound",
                r(json!({"gt": 4.5})),
                p(json!(5)),
                true,
            ),
            (
                "float vs int bound",
                r(json!({"lt": 5})),
                p(json!(4.99)),
                true,
            ),
            ("between", r(json!({"gt": 1, "lt": 3})), p(json!(2)), true),
            ("outside", r(json!({"gt": 1, "lt": 3})), p(json!(3)), false),
            ("any element", r(json!({"gt": 5})), p(json!([1, 10])), true),
            ("no element", r(json!({"gt": 50})), p(json!([1, 10])), false),
            (
                "string is not a number",
                r(json!({"gt": 5})),
                p(json!("6")),
                false,
            ),
            ("null", r(json!({"gt": 5})), p(json!(null)), false),
            ("missing", r(json!({"gt": 5})), json!({}), false),
            ("no bounds: any number", r(json!({})), p(json!(-7)), true),
            (
                "no bounds: not a string",
                r(json!({})),
                p(json!("x")),
                false,
            ),
            (
                "null bound is absent",
                r(json!({"gt": null, "lt": 5})),
                p(json!(1)),
                true,
            ),
            (
                "u64 beyond i64",
                r(json!({"gte": 1e19})),
                p(json!(u64::MAX)),
                true,
            ),
            ("negative", r(json!({"lt": 0})), p(json!(-1)), true),
        ]);
    }

    #[test]
    fn datetime_ranges() {
        let feb = json!({"key": "at", "range": {"gte": "2020-02-01T00:00:00Z", "lt": "2020-03-01T00:00:00Z"}});
        let march = json!({"key": "at", "range": {"gte": "2020-03-01", "lt": "2020-04-01"}});
        let at = |v: Value| json!({ "at": v });
        run_table(&[
            (
                "inside",
                feb.clone(),
                at(json!("2020-02-15T00:00:00Z")),
                true,
            ),
            (
                "lower bound inclusive",
                feb.clone(),
                at(json!("2020-02-01T00:00:00Z")),
                true,
            ),
            (
                "upper bound exclusive",
                feb.clone(),
                at(json!("2020-03-01T00:00:00Z")),
                false,
            ),
            (
                "offset moves it out",
                feb.clone(),
                at(json!("2020-02-29T23:30:00-01:00")),
                false,
            ),
            (
                "offset moves it in",
                feb.clone(),
                at(json!("2020-03-01T00:30:00+01:00")),
                true,
            ),
            (
                "nanoseconds",
                feb.clone(),
                at(json!("2020-02-29T23:59:59.999999999Z")),
                true,
            ),
            (
                "date only payload",
                feb.clone(),
                at(json!("2020-02-15")),
                true,
            ),
            (
                "space and no zone",
                feb.clone(),
                at(json!("2020-02-15 10:00")),
                true,
            ),
            (
                "number payload",
                feb.clone(),
                at(json!(1_581_724_800)),
                false,
            ),
            ("not a datetime", feb.clone(), at(json!("yesterday")), false),
            (
                "array element",
                feb.clone(),
                at(json!(["x", "2020-02-03T00:00:00Z"])),
                true,
            ),
            ("missing", feb, json!({}), false),
            (
                "date-only bounds",
                march.clone(),
                at(json!("2020-03-31T23:59:59Z")),
                true,
            ),
            (
                "date-only bounds, out",
                march,
                at(json!("2020-02-29T23:59:59Z")),
                false,
            ),
        ]);
    }

    #[test]
    fn values_count() {
        let vc = |b: Value| json!({"key": "c", "values_count": b});
        let c = |v: Value| json!({ "c": v });
        run_table(&[
            ("gt", vc(json!({"gt": 1})), c(json!(["a", "b"])), true),
            (
                "gt equal",
                vc(json!({"gt": 2})),
                c(json!(["a", "b"])),
                false,
            ),
            ("gte", vc(json!({"gte": 2})), c(json!(["a", "b"])), true),
            ("lt", vc(json!({"lt": 2})), c(json!(["a", "b"])), false),
            (
                "scalar counts one",
                vc(json!({"lte": 1, "gte": 1})),
                c(json!("a")),
                true,
            ),
            (
                "object counts one",
                vc(json!({"gte": 1, "lte": 1})),
                c(json!({"x": 1})),
                true,
            ),
            (
                "null counts zero",
                vc(json!({"lt": 1})),
                c(json!(null)),
                true,
            ),
            (
                "empty array counts zero",
                vc(json!({"lt": 1})),
                c(json!([])),
                true,
            ),
            // Qdrant: a missing field fails values_count, even `lt: 1` (qdrant issue #9065).
            ("missing fails", vc(json!({"lt": 1})), json!({}), false),
            (
                "per selected value",
                json!({"key": "a[].c", "values_count": {"gt": 1}}),
                json!({"a": [{"c": [1]}, {"c": [1, 2]}]}),
                true,
            ),
        ]);
    }

    #[test]
    fn is_empty_and_is_null() {
        let empty = |k: &str| json!({"is_empty": {"key": k}});
        let null = |k: &str| json!({"is_null": {"key": k}});
        let f_empty = |b: bool| json!({"key": "r", "is_empty": b});
        let f_null = |b: bool| json!({"key": "r", "is_null": b});
        let r = |v: Value| json!({ "r": v });
        let a = json!({"a": [{"b": 1}, {"b": null}, {"d": []}]});
        run_table(&[
            ("is_empty: missing", empty("r"), json!({}), true),
            ("is_empty: null", empty("r"), r(json!(null)), true),
            ("is_empty: []", empty("r"), r(json!([])), true),
            ("is_empty: [null]", empty("r"), r(json!([null])), false),
            ("is_empty: empty string", empty("r"), r(json!("")), false),
            ("is_empty: zero", empty("r"), r(json!(0)), false),
            ("is_empty: {}", empty("r"), r(json!({})), false),
            ("is_empty: some value", empty("a[].b"), a.clone(), false),
            (
                "is_empty: only nulls",
                empty("a[].b"),
                json!({"a": [{"b": null}, {"d": 1}]}),
                true,
            ),
            (
                "is_empty: nothing selected",
                empty("a[].c"),
                a.clone(),
                true,
            ),
            ("is_null: null", null("r"), r(json!(null)), true),
            ("is_null: missing", null("r"), json!({}), false),
            ("is_null: []", null("r"), r(json!([])), false),
            (
                "is_null: [null] is an array",
                null("r"),
                r(json!([null])),
                false,
            ),
            ("is_null: zero", null("r"), r(json!(0)), false),
            ("is_null: some null", null("a[].b"), a.clone(), true),
            ("is_null: no null", null("a[].d"), a, false),
            ("field is_empty: missing", f_empty(true), json!({}), true),
            ("field is_empty: null", f_empty(true), r(json!(null)), true),
            ("field is_empty: []", f_empty(true), r(json!([])), true),
            (
                "field is_empty: [null]",
                f_empty(true),
                r(json!([null])),
                false,
            ),
            ("field is_empty: value", f_empty(true), r(json!("x")), false),
            ("field not empty: missing", f_empty(false), json!({}), false),
            (
                "field not empty: value",
                f_empty(false),
                r(json!("x")),
                true,
            ),
            ("field not empty: []", f_empty(false), r(json!([])), false),
            ("field is_null: null", f_null(true), r(json!(null)), true),
            (
                "field is_null: array with a null",
                f_null(true),
                r(json!([null, 1])),
                true,
            ),
            ("field is_null: missing", f_null(true), json!({}), false),
            ("field is_null: value", f_null(true), r(json!(1)), false),
            ("field not null: missing", f_null(false), json!({}), true),
            ("field not null: value", f_null(false), r(json!(1)), true),
            ("field not null: null", f_null(false), r(json!(null)), false),
            (
                "field not null: [null]",
                f_null(false),
                r(json!([null])),
                false,
            ),
        ]);
    }

    #[test]
    fn has_id_and_has_vector() {
        let p = Payload::new();
        let ids = parsed(
            &json!({"must": [{"has_id": [1, 2, "936DA01F9ABD4d9d80C702AF85C822A8", "t_7"]}]}),
        );
        assert!(ids.matches(&PointId::Num(2), &p));
        assert!(!ids.matches(&PointId::Num(4), &p));
        assert!(ids.matches(
            &PointId::from_string("936da01f-9abd-4d9d-80c7-02af85c822a8"),
            &p
        ));
        assert!(ids.matches(&PointId::Str("t_7".into()), &p));
        assert!(
            !ids.matches(&PointId::Str("1".into()), &p),
            "the string \"1\" is not the number 1"
        );
        let not = parsed(&json!({"must_not": {"has_id": [1, 2, 3]}}));
        assert!(!not.matches(&PointId::Num(2), &p));
        assert!(not.matches(&PointId::Num(10), &p));

        let unnamed = parsed(&json!({"must": [{"has_vector": ""}]}));
        let image = parsed(&json!({"must": [{"has_vector": "image"}]}));
        assert!(unnamed.matches(&PointId::Num(1), &p));
        assert!(!image.matches(&PointId::Num(1), &p));
        assert!(image.matches_with(&PointId::Num(1), &p, &|n: &str| n == "image"));
        assert!(!unnamed.matches_with(&PointId::Num(1), &p, &|n: &str| n == "image"));
    }

    /// The six points of Qdrant's filtering guide; returns the ids `filter` selects.
    fn cities(filter: Value) -> Vec<u64> {
        let points = [
            (1, "London", "green"),
            (2, "London", "red"),
            (3, "London", "blue"),
            (4, "Berlin", "red"),
            (5, "Moscow", "green"),
            (6, "Moscow", "blue"),
        ];
        let f = parsed(&filter);
        points
            .iter()
            .filter(|(id, city, color)| {
                f.matches(
                    &PointId::Num(*id),
                    &obj(json!({"city": city, "color": color})),
                )
            })
            .map(|(id, _, _)| *id)
            .collect()
    }

    #[test]
    fn clauses_as_in_qdrant_guide() {
        let london = json!({"key": "city", "match": {"value": "London"}});
        let red = json!({"key": "color", "match": {"value": "red"}});
        let blue = json!({"key": "color", "match": {"value": "blue"}});
        let cases: Vec<(&str, Value, Vec<u64>)> = vec![
            ("empty filter", json!({}), vec![1, 2, 3, 4, 5, 6]),
            ("null filter", json!(null), vec![1, 2, 3, 4, 5, 6]),
            ("must", json!({"must": [london, red]}), vec![2]),
            ("should", json!({"should": [london, red]}), vec![1, 2, 3, 4]),
            ("must_not", json!({"must_not": [london, red]}), vec![5, 6]),
            (
                "combined",
                json!({"must": [london], "must_not": [red]}),
                vec![1, 3],
            ),
            (
                "nested clause",
                json!({"must_not": [{"must": [london, red]}]}),
                vec![1, 3, 4, 5, 6],
            ),
            (
                "min_should",
                json!({"min_should": {"conditions": [london, red, blue], "min_count": 2}}),
                vec![2, 3],
            ),
            (
                "min_should with must",
                json!({"must": [red], "min_should": {"conditions": [london, blue], "min_count": 1}}),
                vec![2],
            ),
            (
                "single object clause",
                json!({"must": london}),
                vec![1, 2, 3],
            ),
            (
                "empty should is no constraint",
                json!({"should": []}),
                vec![1, 2, 3, 4, 5, 6],
            ),
            (
                "min_should without conditions",
                json!({"min_should": {"conditions": [], "min_count": 1}}),
                vec![],
            ),
            (
                "empty condition object holds",
                json!({"must": [{}]}),
                vec![1, 2, 3, 4, 5, 6],
            ),
            (
                "must_not of {} holds nowhere",
                json!({"must_not": [{}]}),
                vec![],
            ),
            (
                "has_id with should",
                json!({"must": [{"has_id": [1, 3, 5, 6]}], "should": [london, {"key": "color", "match": {"value": "green"}}]}),
                vec![1, 3, 5],
            ),
        ];
        for (name, filter, want) in cases {
            assert_eq!(cities(filter.clone()), want, "case {name}: {filter}");
        }
    }

    fn countries() -> [Payload; 2] {
        [
            obj(json!({"country": {"name": "Germany", "cities": [
                {"name": "Berlin", "population": 3.7, "sightseeing": ["Brandenburg Gate", "Reichstag"]},
                {"name": "Munich", "population": 1.5, "sightseeing": ["Marienplatz", "Olympiapark"]}
            ]}})),
            obj(json!({"country": {"name": "Japan", "cities": [
                {"name": "Tokyo", "population": 9.3, "sightseeing": ["Tokyo Tower", "Tokyo Skytree"]},
                {"name": "Osaka", "population": 2.7, "sightseeing": ["Osaka Castle", "Universal Studios Japan"]}
            ]}})),
        ]
    }

    #[test]
    fn key_paths_select_like_qdrant() {
        let [germany, japan] = countries();
        let cases: Vec<(&str, Value, bool, bool)> = vec![
            (
                "dotted",
                json!({"key": "country.name", "match": {"value": "Germany"}}),
                true,
                false,
            ),
            (
                "projection",
                json!({"key": "country.cities[].population", "range": {"gte": 9.0}}),
                false,
                true,
            ),
            (
                "leaf array",
                json!({"key": "country.cities[].sightseeing", "match": {"value": "Osaka Castle"}}),
                false,
                true,
            ),
            (
                "index",
                json!({"key": "country.cities[0].name", "match": {"value": "Tokyo"}}),
                false,
                true,
            ),
            (
                "index, second",
                json!({"key": "country.cities[1].name", "match": {"value": "Tokyo"}}),
                false,
                false,
            ),
            (
                "index out of range",
                json!({"key": "country.cities[5].name", "is_empty": true}),
                true,
                true,
            ),
            (
                "a key does not look into arrays",
                json!({"key": "country.cities.name", "match": {"value": "Tokyo"}}),
                false,
                false,
            ),
        ];
        for (name, c, want_de, want_jp) in cases {
            let f = parsed(&json!({ "must": [c] }));
            assert_eq!(
                f.matches(&PointId::Num(1), &germany),
                want_de,
                "case {name} on Germany"
            );
            assert_eq!(
                f.matches(&PointId::Num(2), &japan),
                want_jp,
                "case {name} on Japan"
            );
        }
        let quoted = obj(json!({"a b": {"c.d": 1}}));
        assert!(
            parsed(&json!({"must": {"key": "\"a b\".\"c.d\"", "match": {"value": 1}}}))
                .matches(&PointId::Num(1), &quoted)
        );
    }

    fn dinosaurs() -> [Payload; 2] {
        [
            obj(json!({"dinosaur": "t-rex", "diet": [
                {"food": "leaves", "likes": false}, {"food": "meat", "likes": true}]})),
            obj(json!({"dinosaur": "diplodocus", "diet": [
                {"food": "leaves", "likes": true}, {"food": "meat", "likes": false}]})),
        ]
    }

    #[test]
    fn nested_objects_are_checked_one_by_one() {
        let [trex, diplo] = dinosaurs();
        let meat = json!({"key": "food", "match": {"value": "meat"}});
        let likes = json!({"key": "likes", "match": {"value": true}});
        let cases: Vec<(&str, Value, bool, bool)> = vec![
            (
                "without nested both match",
                json!({"must": [
                    {"key": "diet[].food", "match": {"value": "meat"}},
                    {"key": "diet[].likes", "match": {"value": true}}]}),
                true,
                true,
            ),
            (
                "nested",
                json!({"must": [{"nested": {"key": "diet", "filter": {"must": [meat, likes]}}}]}),
                true,
                false,
            ),
            (
                "nested with []",
                json!({"must": [{"nested": {"key": "diet[]", "filter": {"must": [meat, likes]}}}]}),
                true,
                false,
            ),
            (
                "must_not inside nested is per element",
                json!({"must": [{"nested": {"key": "diet", "filter": {"must_not": [likes]}}}]}),
                true,
                true,
            ),
            (
                "must_not around nested",
                json!({"must_not": [{"nested": {"key": "diet", "filter": {"must": [meat, likes]}}}]}),
                false,
                true,
            ),
            (
                "has_id never holds inside nested",
                json!({"must": [{"nested": {"key": "diet", "filter": {"must": [{"has_id": [1, 2]}]}}}]}),
                false,
                false,
            ),
            (
                "has_vector never holds inside nested",
                json!({"must": [{"nested": {"key": "diet", "filter": {"must": [{"has_vector": ""}]}}}]}),
                false,
                false,
            ),
            (
                "key not an array of objects",
                json!({"must": [{"nested": {"key": "dinosaur", "filter": {}}}]}),
                false,
                false,
            ),
            (
                "empty inner filter needs one object",
                json!({"must": [{"nested": {"key": "diet", "filter": {}}}]}),
                true,
                true,
            ),
        ];
        for (name, f, want_trex, want_diplo) in cases {
            assert_eq!(eval(&f, 1, &trex), want_trex, "case {name} on t-rex");
            assert_eq!(eval(&f, 2, &diplo), want_diplo, "case {name} on diplodocus");
        }
        let deep = obj(json!({"a": [{"b": [{"c": 1, "d": 2}, {"c": 2, "d": 1}]}]}));
        let inner = |c: i64, d: i64| {
            json!({"must": {"nested": {"key": "a", "filter": {"must": {"nested": {"key": "b", "filter": {"must": [
                {"key": "c", "match": {"value": c}}, {"key": "d", "match": {"value": d}}]}}}}}}})
        };
        assert!(eval(&inner(1, 2), 1, &deep));
        assert!(!eval(&inner(1, 1), 1, &deep));
    }

    #[test]
    fn malformed_filters_are_refused_with_a_place_and_a_reason() {
        let cases: Vec<(Value, &str)> = vec![
            (json!([]), "filter: expected a filter object, got a list"),
            (
                json!({"musts": []}),
                "filter: unknown field 'musts' in a filter",
            ),
            (
                json!({"must": 5}),
                "filter.must: expected a condition or a list of conditions, got a number",
            ),
            (
                json!({"must": [5]}),
                "filter.must[0]: expected a condition object, got a number",
            ),
            (
                json!({"must": [{}, {"key": "a", "range": {"gt": true}}]}),
                "filter.must[1].range: expected a number for 'gt', got a boolean",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": "x"}}]}),
                "filter.must[0].range: 'x' for 'gt' is not an RFC 3339 datetime",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": 1, "lt": "2020-01-01"}}]}),
                "filter.must[0].range: expected a datetime string for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "range": {"gt": 1, "eq": 2}}]}),
                "unknown field 'eq' in range",
            ),
            (
                json!({"must": [{"foo": 1}]}),
                "filter.must[0]: unknown condition field 'foo'",
            ),
            (
                json!({"should": {"key": "a"}}),
                "filter.should: the condition on key 'a' has nothing to check",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1}, "rnage": {}}]}),
                "unknown field 'rnage' in a field condition",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1.5}}]}),
                "filter.must[0].match.value: expected a string",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": u64::MAX}}]}),
                "filter.must[0].match.value: expected a string, a 64-bit integer",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": null}}]}),
                "filter.must[0].match: expected one of",
            ),
            (
                json!({"must": [{"key": "a", "match": {"value": 1, "text": "x"}}]}),
                "found both",
            ),
            (
                json!({"must": [{"key": "a", "match": {"any": [1, "x"]}}]}),
                "filter.must[0].match.any: expected a list of strings or a list of integers",
            ),
            (
                json!({"must": [{"key": "a", "match": {"except": "x"}}]}),
                "filter.must[0].match.except: expected a list",
            ),
            (
                json!({"must": [{"key": "a", "match": {"text": 3}}]}),
                "filter.must[0].match.text: expected a string",
            ),
            (
                json!({"must": [{"key": "a", "geo_radius": {"center": {"lon": 0, "lat": 0}, "radius": 1}}]}),
                "filter.must[0].geo_radius: geo conditions are not supported",
            ),
            (
                json!({"must": [{"key": "a..b", "match": {"value": 1}}]}),
                "filter.must[0].key: invalid key path 'a..b'",
            ),
            (
                json!({"must": [{"key": "", "match": {"value": 1}}]}),
                "invalid key path '': empty key path",
            ),
            (
                json!({"must": [{"key": 5, "match": {"value": 1}}]}),
                "filter.must[0].key: expected a key path string, got a number",
            ),
            (
                json!({"must": [{"key": null, "match": {"value": 1}}]}),
                "filter.must[0].key: expected a key path string, got null",
            ),
            (
                json!({"must": [{"is_empty": {"key": "a"}, "has_id": [1]}]}),
                "found both",
            ),
            (
                json!({"must": [{"is_empty": {"key": "a"}, "must": []}]}),
                "found 'is_empty' and filter clauses",
            ),
            (
                json!({"must": [{"is_empty": "a"}]}),
                "filter.must[0].is_empty: expected an object with 'key', got a string",
            ),
            (
                json!({"must": [{"is_null": {"field": "a"}}]}),
                "unknown field 'field'",
            ),
            (
                json!({"must": [{"has_id": [-1]}]}),
                "filter.must[0].has_id[0]: a numeric point id is an unsigned integer",
            ),
            (
                json!({"must": [{"has_id": [1.5]}]}),
                "filter.must[0].has_id[0]",
            ),
            (
                json!({"must": [{"has_id": 1}]}),
                "filter.must[0].has_id: expected a list of point ids",
            ),
            (
                json!({"must": [{"has_vector": 1}]}),
                "filter.must[0].has_vector: expected a vector name",
            ),
            (
                json!({"min_should": {"conditions": [], "min_count": 0}}),
                "filter.min_should.min_count: expected an integer of at least 1",
            ),
            (
                json!({"min_should": {"conditions": [], "min_count": -1}}),
                "filter.min_should.min_count",
            ),
            (
                json!({"min_should": {"conditions": {}, "min_count": 1}}),
                "filter.min_should.conditions: expected a list",
            ),
            (
                json!({"min_should": {"min_count": 1}}),
                "filter.min_should: missing field 'conditions'",
            ),
            (
                json!({"min_should": {"conditions": []}}),
                "filter.min_should: missing field 'min_count'",
            ),
            (
                json!({"must": [{"nested": {"key": "a"}}]}),
                "filter.must[0].nested: missing field 'filter'",
            ),
            (
                json!({"must": [{"nested": {"key": "a", "filter": {"bad": 1}}}]}),
                "filter.must[0].nested.filter: unknown field 'bad'",
            ),
            (
                json!({"must": [{"key": "a", "values_count": {"gt": -1}}]}),
                "filter.must[0].values_count: expected a non-negative integer for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "values_count": {"gt": 1.5}}]}),
                "expected a non-negative integer for 'gt'",
            ),
            (
                json!({"must": [{"key": "a", "is_empty": "yes"}]}),
                "filter.must[0].is_empty: expected a boolean, got a string",
            ),
            (
                json!({"must": [{"should": [{"must_not": [{"key": "a", "range": {"lt": []}}]}]}]}),
                "filter.must[0].should[0].must_not[0].range: expected a number for 'lt', got a list",
            ),
        ];
        for (j, want) in cases {
            let got = parse_err(j.clone());
            assert!(
                got.contains(want),
                "{j}: got error {got:?}, want it to contain {want:?}"
            );
        }
    }

    #[test]
    fn optional_parts_accept_null_and_single_objects() {
        let f =
            parsed(&json!({"must": null, "should": null, "must_not": null, "min_should": null}));
        assert!(f.is_empty());
        let f = parsed(
            &json!({"must": {"key": "a", "match": {"value": 1}, "range": null, "values_count": null,
            "is_empty": null, "is_null": null, "geo_radius": null, "geo_bounding_box": null, "geo_polygon": null}}),
        );
        assert_eq!(f.must.len(), 1);
        assert!(
            matches!(&f.must[0], Condition::Field(fc) if fc.range.is_none() && fc.r#match.is_some())
        );
        let f = parsed(&json!({"must_not": {"has_id": []}, "should": {"is_null": {"key": "x"}}}));
        assert_eq!((f.must_not.len(), f.should.len()), (1, 1));
        let f = parsed(&json!({"must": [{"key": "a", "match": {"value": 1, "text": null}}]}));
        assert!(
            matches!(&f.must[0], Condition::Field(fc) if fc.r#match == Some(Match::Value(MatchValue::Integer(1))))
        );
    }

    /// `{"must": [{"must": [ ... ]}]}` with `levels` filter objects in all.
    fn nested_filters(levels: usize) -> Value {
        let mut v = json!({"must": [{"key": "a", "match": {"value": 1}}]});
        for _ in 1..levels {
            v = json!({ "must": [v] });
        }
        v
    }

    #[test]
    fn depth_is_limited() {
        let p = obj(json!({"a": 1}));
        assert!(eval(&nested_filters(MAX_FILTER_DEPTH), 1, &p));
        let e = parse_err(nested_filters(MAX_FILTER_DEPTH + 1));
        assert!(e.contains("nested more than 16 levels"), "{e}");
        let mut nested = json!({"key": "a", "match": {"value": 1}});
        for _ in 0..MAX_FILTER_DEPTH {
            nested = json!({"nested": {"key": "x", "filter": {"must": [nested]}}});
        }
        let e = parse_err(json!({ "must": [nested] }));
        assert!(e.contains("nested more than 16 levels"), "{e}");
        // Far deeper than the limit, and than serde_json's parser allows (128), so built by hand;
        // not deeper still because dropping a `Value` recurses (serde_json's drop, not ours).
        let mut hostile = json!({});
        for _ in 0..300 {
            hostile = json!({ "should": [hostile] });
        }
        assert!(parse_err(hostile).contains("nested more than"));
    }

    #[test]
    fn condition_count_is_limited() {
        let c = json!({"key": "a", "match": {"value": 1}});
        let many = |n: usize| Value::Array(vec![c.clone(); n]);
        assert!(parse_filter(&json!({ "must": many(MAX_FILTER_CONDITIONS) })).is_ok());
        let e = parse_err(json!({ "must": many(MAX_FILTER_CONDITIONS + 1) }));
        assert!(e.contains("at most 1024 conditions"), "{e}");
        assert!(e.starts_with("filter.must[1024]"), "{e}");
        // Counted across clauses and levels: two filter conditions (2) with 512 each (1024).
        let e =
            parse_err(json!({"must": [{"must": many(512)}], "should": [{"must_not": many(512)}]}));
        assert!(e.contains("at most 1024 conditions"), "{e}");
    }

    #[test]
    fn key_path_syntax() {
        let ok = [
            ("a", "a"),
            ("a.b.c", "a.b.c"),
            ("a[].b", "a[].b"),
            ("a[0][12].b-c_d", "a[0][12].b-c_d"),
            ("\"a b\".c", "\"a b\".c"),
            ("a.\"x[.]y\"[]", "a.\"x[.]y\"[]"),
            ("\"plain\"", "plain"),
            ("Müesli.ключ", "Müesli.ключ"),
            ("\"\"", "\"\""),
        ];
        for (s, shown) in ok {
            let p = JsonPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(p.to_string(), shown, "{s}");
            assert_eq!(JsonPath::parse(&p.to_string()), Ok(p), "{s} round trip");
        }
        let bad = [
            "",
            ".a",
            "a.",
            "a..b",
            "[0]",
            "a[",
            "a[x]",
            "a[-1]",
            "a b",
            "a.\"b",
            "a.\"b\\c\"",
            "a[]b",
            "a[99999999999999999999999]",
        ];
        for s in bad {
            assert!(JsonPath::parse(s).is_err(), "{s:?} should be refused");
        }
        assert_eq!(
            JsonPath::parse("a[1][]").map(|p| p.rest),
            Ok(vec![PathItem::Index(1), PathItem::Wildcard])
        );
    }

    #[test]
    fn get_values_follows_qdrant() {
        let p = obj(json!({
            "a": {"b": [{"c": 1}, {"c": 2}, {"d": {"e": 3}}]},
            "g": ["g0", "g1", "g2"],
            "arr": [{"a": [1, 2, 3]}, {"a": 4}, {"b": 5}],
            "n": null, "nn": [null, null], "e": []
        }));
        let get = |s: &str| -> Vec<Value> {
            let path = JsonPath::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            get_values(&p, &path).into_iter().cloned().collect()
        };
        assert_eq!(get("a.b[].c"), vec![json!(1), json!(2)]);
        assert_eq!(get("a.b[].d"), vec![json!({"e": 3})]);
        assert_eq!(get("a.b[1].c"), vec![json!(2)]);
        assert_eq!(get("a.b[3]"), Vec::<Value>::new());
        assert_eq!(get("g[2]"), vec![json!("g2")]);
        assert_eq!(get("g"), vec![json!(["g0", "g1", "g2"])]);
        assert_eq!(get("arr[].a"), vec![json!([1, 2, 3]), json!(4)]);
        assert_eq!(get("arr[].a[]"), vec![json!(1), json!(2), json!(3)]);
        assert_eq!(get("a.b.c"), Vec::<Value>::new());
        assert_eq!(get("n"), vec![json!(null)]);
        assert_eq!(get("n[]"), Vec::<Value>::new());
        assert_eq!(get("nn[]"), vec![json!(null), json!(null)]);
        assert_eq!(get("e"), vec![json!([])]);
        assert_eq!(get("e[]"), Vec::<Value>::new());
        assert_eq!(get("missing[]"), Vec::<Value>::new());
        let path = JsonPath::parse("arr[].a").unwrap_or_else(|e| panic!("{e}"));
        let flat: Vec<Value> = get_flat_values(&p, &path).into_iter().cloned().collect();
        assert_eq!(flat, vec![json!(1), json!(2), json!(3), json!(4)]);
    }

    #[test]
    fn datetime_formats() {
        let z = |s: &str| parse_datetime(s).unwrap_or_else(|| panic!("{s} should parse"));
        let base = z("2020-03-01T00:00:00Z");
        let same = [
            "2020-03-01T00:00:00z",
            "2020-03-01t00:00:00Z",
            "2020-03-01 00:00:00Z",
            "2020-03-01T00:00:00+00:00",
            "2020-03-01T09:00:00+09:00",
            "2020-03-01 09:00:00+0900",
            "2020-03-01T09:00:00+09",
            "2020-02-29T15:00:00-09:00",
            "2020-03-01T00:00:00.000",
            "2020-03-01T00:00:00",
            "2020-03-01 00:00",
            "2020-03-01T00:00",
            "2020-03-01",
        ];
        for s in same {
            assert_eq!(z(s), base, "{s}");
        }
        assert_eq!(z("2020-03-01T00:00:00.5Z").0 - base.0, 500_000_000);
        assert_eq!(
            z("2020-03-01T00:00:00.123456789123Z").0 - base.0,
            123_456_789
        );
        assert_eq!(z("1970-01-01T00:00:00Z"), Timestamp(0));
        assert_eq!(z("1969-12-31T23:59:59Z"), Timestamp(-1_000_000_000));
        assert_eq!(
            z("2000-02-29").0 - z("2000-02-28").0,
            86_400 * 1_000_000_000
        );
        // Qdrant's own ordering case, offsets with and without colons and minutes.
        let ordered = [
            "2000-06-08 00:18:53+0900",
            "2000-06-07 07:25:34-1100",
            "2000-07-10T00:18:53+0100",
            "2000-07-11 00:25:34-01:00",
            "2000-07-11 00:25:35-01",
        ];
        for w in ordered.windows(2) {
            assert!(z(w[0]) < z(w[1]), "{} < {}", w[0], w[1]);
        }
        let bad = [
            "",
            "2020",
            "2020-3-01",
            "2020-13-01",
            "2020-02-30",
            "2019-02-29",
            "2020-03-01T",
            "2020-03-01T24:00",
            "2020-03-01T00:60",
            "2020-03-01T00:00:60Z",
            "2020-03-01T00:00Z",
            "2020-03-01T00:00:00.Z",
            "2020-03-01T00:00:00+24:00",
            "2020-03-01T00:00:00+09:0",
            "2020-03-01T00:00:00BAD",
            "2020-03-01X00:00:00",
            "2020-03-01T00:00:00Z ",
            "+123-01-01",
        ];
        for s in bad {
            assert_eq!(parse_datetime(s), None, "{s:?} should be refused");
        }
        for s in [
            "2020-03-01T01:02:03.000000004Z",
            "0000-01-01",
            "9999-12-31T23:59:59.999999999Z",
            "-0001-06-01",
            "+10000-01-01",
        ] {
            let t = z(s);
            assert_eq!(parse_datetime(&t.to_string()), Some(t), "{s} -> {t}");
        }
    }

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

    #[test]
    fn to_json_reads_back() {
        let f = json!({
            "must": [
                {"key": "a.b[].c", "match": {"any": ["y", "x"]}, "range": {"gt": 1.5, "lte": 3}},
                {"key": "\"odd key\"[0]", "range": {"gte": "2020-01-01T00:00:00+02:00"}},
                {"has_id": [3, "936DA01F9ABD4d9d80C702AF85C822A8", 1, "t_1"]},
                {"nested": {"key": "diet", "filter": {"must_not": {"key": "x", "match": {"phrase": "a b"}}}}}
            ],
            "should": [{"is_empty": {"key": "e"}}, {"is_null": {"key": "n"}}, {"has_vector": "img"}],
            "must_not": [{"key": "t", "values_count": {"lt": 2}, "is_empty": false, "is_null": true}],
            "min_should": {"conditions": [{"key": "x", "match": {"except": [3, 1]}}, {}], "min_count": 2}
        });
        let once = parsed(&f);
        let json = once.to_json();
        assert_eq!(parsed(&json), once, "{json}");
        assert_eq!(
            json.to_string(),
            once.to_json().to_string(),
            "canonical output"
        );
        assert_eq!(
            json["must"][2]["has_id"],
            json!([1, 3, "936da01f-9abd-4d9d-80c7-02af85c822a8", "t_1"])
        );
        assert_eq!(
            json["must"][1]["range"]["gte"],
            json!("2019-12-31T22:00:00.000000000Z")
        );
    }

    // ---- properties -------------------------------------------------------------------------

    fn pick(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        prop::sample::select(options)
    }

    fn leaf_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            (-2i64..4).prop_map(Value::from),
            pick(&["1.5", "-0.5", "2.0"]).prop_map(|s| json!(s.parse::<f64>().unwrap_or(0.0))),
            pick(&[
                "red",
                "Red",
                "green",
                "hello world",
                "",
                "2020-01-01T00:00:00Z",
                "2021-06-01"
            ])
            .prop_map(Value::from),
        ]
    }

    fn any_value() -> impl Strategy<Value = Value> {
        leaf_value().prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec((pick(&["x", "y"]), inner), 0..3).prop_map(|kv| {
                    Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    fn payload() -> impl Strategy<Value = Payload> {
        let objects = prop::collection::vec(
            prop::collection::vec((pick(&["x", "y"]), any_value()), 0..3).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
            0..4,
        );
        (
            prop::collection::vec((pick(&["a", "b", "arr", "x", "we ird"]), any_value()), 0..5),
            prop::option::of(objects),
        )
            .prop_map(|(kv, arr)| {
                let mut p: Payload = kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                if let Some(arr) = arr {
                    p.insert("arr".into(), Value::Array(arr));
                }
                p
            })
    }

    fn key() -> impl Strategy<Value = &'static str> {
        pick(&[
            "a",
            "b",
            "x",
            "a.x",
            "arr",
            "arr[]",
            "arr[].x",
            "arr[0].x",
            "\"we ird\".y",
        ])
    }

    fn match_json() -> impl Strategy<Value = Value> {
        prop_oneof![
            pick(&["red", "green", "hello"]).prop_map(|s| json!({ "value": s })),
            (-2i64..4).prop_map(|i| json!({ "value": i })),
            any::<bool>().prop_map(|b| json!({ "value": b })),
            prop::collection::vec(pick(&["red", "green"]), 0..3).prop_map(|v| json!({ "any": v })),
            prop::collection::vec(-2i64..4, 0..3).prop_map(|v| json!({ "any": v })),
            prop::collection::vec(pick(&["red", "green"]), 0..3)
                .prop_map(|v| json!({ "except": v })),
            prop::collection::vec(-2i64..4, 0..3).prop_map(|v| json!({ "except": v })),
            pick(&["hello", "world hello", "RED", ""]).prop_map(|s| json!({ "text": s })),
            pick(&["hello", "nope red", ""]).prop_map(|s| json!({ "text_any": s })),
            pick(&["hello world", "world hello", "red"]).prop_map(|s| json!({ "phrase": s })),
        ]
    }

    fn bound_json(datetime: bool) -> impl Strategy<Value = Value> {
        let num = prop_oneof![(-2i64..4).prop_map(|i| json!(i)), Just(json!(0.5))];
        let dt = pick(&[
            "2020-01-01",
            "2020-06-01T00:00:00Z",
            "2021-01-01T00:00:00+01:00",
        ])
        .prop_map(|s| json!(s));
        let one = if datetime { dt.boxed() } else { num.boxed() };
        prop::collection::vec((pick(&["gt", "gte", "lt", "lte"]), one), 0..3)
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()))
    }

    fn leaf_condition() -> impl Strategy<Value = Value> {
        prop_oneof![
            3 => (key(), match_json()).prop_map(|(k, m)| json!({"key": k, "match": m})),
            1 => (key(), any::<bool>().prop_flat_map(bound_json)).prop_map(|(k, r)| json!({"key": k, "range": r})),
            1 => (key(), prop::collection::vec((pick(&["gt", "gte", "lt", "lte"]), 0usize..3), 0..3))
                .prop_map(|(k, b)| json!({"key": k, "values_count": b.into_iter().map(|(n, v)| (n.to_string(), json!(v))).collect::<Map<_, _>>()})),
            1 => (key(), any::<bool>()).prop_map(|(k, b)| json!({"key": k, "is_empty": b})),
            1 => (key(), any::<bool>()).prop_map(|(k, b)| json!({"key": k, "is_null": b})),
            1 => key().prop_map(|k| json!({"is_empty": {"key": k}})),
            1 => key().prop_map(|k| json!({"is_null": {"key": k}})),
            1 => prop::collection::vec(0u64..5, 0..3).prop_map(|ids| json!({ "has_id": ids })),
            1 => pick(&["", "image"]).prop_map(|n| json!({ "has_vector": n })),
        ]
    }

    fn condition() -> impl Strategy<Value = Value> {
        leaf_condition().prop_recursive(3, 16, 3, |inner| {
            let list = |n: std::ops::Range<usize>| prop::collection::vec(inner.clone(), n);
            prop_oneof![
                (list(0..3), list(0..3), list(0..2))
                    .prop_map(|(m, s, n)| json!({"must": m, "should": s, "must_not": n})),
                (list(0..3), 1usize..3)
                    .prop_map(|(c, k)| json!({"min_should": {"conditions": c, "min_count": k}})),
                (pick(&["arr", "a", "arr[]"]), list(1..3))
                    .prop_map(|(k, m)| json!({"nested": {"key": k, "filter": {"must": m}}})),
            ]
        })
    }

    fn filter_json() -> impl Strategy<Value = Value> {
        (
            prop::collection::vec(condition(), 0..3),
            prop::collection::vec(condition(), 0..3),
            prop::collection::vec(condition(), 0..2),
        )
            .prop_map(|(m, s, n)| json!({"must": m, "should": s, "must_not": n}))
    }

    /// JSON shaped like filters but built from any mix of known and unknown keys and values.
    fn wild_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
            pick(&[
                "a",
                "a[]",
                "a.b",
                "a..b",
                "\"x",
                "",
                "2020-01-01",
                "red",
                "[0]",
                "a[9999999999999999999999]"
            ])
            .prop_map(Value::from),
            ".{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(6, 64, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(
                    (
                        pick(&[
                            "must",
                            "should",
                            "must_not",
                            "min_should",
                            "conditions",
                            "min_count",
                            "key",
                            "match",
                            "range",
                            "values_count",
                            "value",
                            "any",
                            "except",
                            "text",
                            "text_any",
                            "phrase",
                            "gt",
                            "gte",
                            "lt",
                            "lte",
                            "is_empty",
                            "is_null",
                            "has_id",
                            "has_vector",
                            "nested",
                            "filter",
                            "geo_radius",
                            "x",
                        ]),
                        inner,
                    ),
                    0..4,
                )
                .prop_map(|kv| Value::Object(
                    kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
                )),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn must_not_is_the_negation_of_must(c in condition(), p in payload(), id in 0u64..5) {
            prop_assert_eq!(
                eval(&json!({"must_not": [c.clone()]}), id, &p),
                !eval(&json!({"must": [c]}), id, &p)
            );
        }

        #[test]
        fn clauses_are_and_or_nor(c1 in condition(), c2 in condition(), c3 in condition(), p in payload(), id in 0u64..5) {
            let e = |c: &Value| eval(&json!({"must": [c]}), id, &p);
            let (a, b, c) = (e(&c1), e(&c2), e(&c3));
            prop_assert_eq!(eval(&json!({"must": [c1, c2]}), id, &p), a && b);
            prop_assert_eq!(eval(&json!({"should": [c1, c2]}), id, &p), a || b);
            prop_assert_eq!(eval(&json!({"must_not": [c1, c2]}), id, &p), !a && !b);
            // De Morgan, through nested filter conditions.
            prop_assert_eq!(
                eval(&json!({"must_not": [{"should": [c1, c2]}]}), id, &p),
                eval(&json!({"must": [{"must_not": [c1]}, {"must_not": [c2]}]}), id, &p)
            );
            prop_assert_eq!(
                eval(&json!({"must_not": [{"must": [c1, c2]}]}), id, &p),
                eval(&json!({"should": [{"must_not": [c1]}, {"must_not": [c2]}]}), id, &p)
            );
            prop_assert_eq!(eval(&json!({"must_not": [{"must_not": [c1]}]}), id, &p), a);
            let trues = [a, b, c].iter().filter(|x| **x).count();
            for k in 1..=3usize {
                prop_assert_eq!(
                    eval(&json!({"min_should": {"conditions": [c1, c2, c3], "min_count": k}}), id, &p),
                    trues >= k
                );
            }
            prop_assert_eq!(
                eval(&json!({"min_should": {"conditions": [c1, c2, c3], "min_count": 1}}), id, &p),
                eval(&json!({"should": [c1, c2, c3]}), id, &p)
            );
        }

        #[test]
        fn and_matches_both(f1 in filter_json(), f2 in filter_json(), p in payload(), id in 0u64..5) {
            let (a, b) = (parsed(&f1), parsed(&f2));
            let pid = PointId::Num(id);
            let both = a.clone().and(b.clone());
            prop_assert_eq!(both.matches(&pid, &p), a.matches(&pid, &p) && b.matches(&pid, &p));
        }

        #[test]
        fn to_json_round_trips(f in filter_json(), p in payload(), id in 0u64..5) {
            let once = parsed(&f);
            let again = parsed(&once.to_json());
            prop_assert_eq!(&again, &once);
            prop_assert_eq!(again.matches(&PointId::Num(id), &p), once.matches(&PointId::Num(id), &p));
        }

        #[test]
        fn wild_json_never_panics(j in wild_json(), p in payload(), id in 0u64..5) {
            if let Ok(f) = parse_filter(&j) {
                let _ = f.matches(&PointId::Num(id), &p);
                prop_assert_eq!(parse_filter(&f.to_json()), Ok(f));
            }
            let _ = parse_filter(&json!({ "must": [j.clone()] }));
            let _ = parse_filter(&json!({"must": [{"key": "a", "match": j.clone()}]}));
            let _ = parse_filter(&json!({"must": [{"key": "a", "range": j}]}));
        }

        #[test]
        fn datetimes_and_paths_never_panic(s in ".{0,40}", t in "[0-9T:+\\-. Zz]{0,30}") {
            let _ = parse_datetime(&s);
            if let Some(ts) = parse_datetime(&t) {
                prop_assert_eq!(parse_datetime(&ts.to_string()), Some(ts));
            }
            if let Ok(p) = JsonPath::parse(&s) {
                prop_assert_eq!(JsonPath::parse(&p.to_string()), Ok(p));
            }
        }
    }
}
