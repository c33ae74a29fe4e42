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
//!
//! The code is split by concern: [`model`] (the types and their algebra), [`path`] (key paths and
//! the values they select), [`eval`] (whether a point passes), [`json`] (Qdrant's JSON form, read
//! and written) and [`wire`] (the binary form between nodes); datetimes are
//! [`crate::calendar`]'s.

pub mod eval;
pub mod json;
pub mod model;
pub mod path;
pub mod wire;

#[cfg(test)]
mod testkit;

pub use crate::calendar::{Timestamp, civil_from_days, parse_datetime};
pub use json::parse_filter;
pub use model::{
    AnyVariants, Bounds, Condition, FieldCondition, Filter, FilterError, MAX_FILTER_CONDITIONS,
    MAX_FILTER_DEPTH, Match, MatchValue, MinShould, Range, TextQuery, ValuesCount,
};
pub use path::{JsonPath, PathItem, get_flat_values, get_values};
pub use wire::{WireFilter, decode_filter, encode_filter};
