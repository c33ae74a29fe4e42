//! Evaluation: whether a point (its id, payload and vectors) passes a filter, with the semantics of
//! Qdrant's unindexed condition checker described in [`crate::filter`].

use std::collections::HashSet;

use serde_json::Value;

use super::model::{AnyVariants, Condition, FieldCondition, Filter, Match, MatchValue, Range};
use super::path::get_values;
use crate::calendar::parse_datetime;
use crate::point::{Payload, PointId};

impl Filter {
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
}

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
pub(super) fn tokenize(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::{Value, json};

    use crate::filter::testkit::*;
    use crate::point::{Payload, PointId};

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
    }
}
