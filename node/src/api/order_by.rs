//! A scroll with `order_by`: the caller's points (under the filter) in the order of a numeric
//! payload field's values, as Qdrant orders them: the field needs an integer or float index, a
//! point holding several values comes once per value, `start_from` is the first value of the
//! page (inclusive), and there is no next-page offset (the next page starts from the last
//! value). The values are read through the router page by page, in the caller's scope.

use std::cmp::Ordering;

use serde_json::Number;
use tessera_cluster::Result;
use tessera_cluster::meta::PayloadSchemaType;
use tessera_shard::filter::{Filter, get_flat_values};
use tessera_shard::point::PointId;
use tessera_shard::store::{PayloadSelector, Record};

use super::json::points::{OrderBy, ScrollPage};
use super::json::{PointRecord, bad};
use super::points::for_each_point;
use super::{AppState, visible_collection};
use crate::access;
use crate::router::{Ctx, KeySelector, Keyed};

/// An ordered scroll, parsed.
pub struct Ordered {
    pub shard_key: KeySelector,
    pub limit: usize,
    pub filter: Option<Filter>,
    pub with_payload: PayloadSelector,
    pub with_vector: bool,
    pub order_by: OrderBy,
}

impl Ordered {
    pub async fn run(self, app: &AppState, ctx: &Ctx, name: &str) -> Result<ScrollPage> {
        let points = self
            .records(app, ctx, name)
            .await?
            .into_iter()
            .map(|(value, record)| {
                let mut p = PointRecord::new(record);
                p.order_value = Some(value);
                p
            })
            .collect();
        Ok(ScrollPage {
            next_page_offset: None,
            points,
        })
    }

    /// The first `limit` (value, point) pairs in order (a point once per value it holds).
    pub async fn records(
        self,
        app: &AppState,
        ctx: &Ctx,
        name: &str,
    ) -> Result<Vec<(Number, Keyed<Record>)>> {
        let OrderBy {
            key,
            path,
            descending,
            start_from,
        } = &self.order_by;
        let schema = visible_collection(app, ctx, name, |c| {
            access::scope_named(&ctx.principal, c, name, &self.shard_key, access::Need::Read)
                .map(|_| c.payload_indexes.get(key).map(|i| i.schema))
        })??;
        if !matches!(
            schema,
            Some(PayloadSchemaType::Integer | PayloadSchemaType::Float)
        ) {
            return Err(bad(format!(
                "Bad request: No range index for `order_by` key: `{key}`. Please create one to use `order_by`. Check https://qdrant.tech/documentation/concepts/indexing/#payload-index to see which payload schemas support Range conditions"
            )));
        }
        // every (value, point) at or past start_from
        let mut found: Vec<(Number, PointId)> = Vec::new();
        let payload = PayloadSelector::Include(vec![key.clone()]);
        for_each_point(
            app,
            ctx,
            name,
            &self.shard_key,
            &self.filter,
            payload,
            |r| {
                let Some(payload) = &r.payload else { return };
                let mut values: Vec<Number> = Vec::new();
                for v in get_flat_values(payload, path) {
                    let Some(n) = v.as_number().filter(|n| n.as_f64().is_some()) else {
                        continue;
                    };
                    let x = n.as_f64().unwrap_or(f64::NAN);
                    let inside = match start_from {
                        None => true,
                        Some(s) if *descending => x <= *s,
                        Some(s) => x >= *s,
                    };
                    if inside && !values.contains(n) {
                        values.push(n.clone());
                    }
                }
                found.extend(values.into_iter().map(|n| (n, r.id.clone())));
            },
        )
        .await?;
        found.sort_by(|(a, ia), (b, ib)| {
            let by_value = value_order(a, b);
            let by_value = if *descending {
                by_value.reverse()
            } else {
                by_value
            };
            by_value.then_with(|| ia.cmp(ib))
        });
        found.truncate(self.limit);
        let mut ids: Vec<PointId> = found.iter().map(|(_, id)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        let records = app
            .router
            .retrieve(
                ctx,
                name,
                &self.shard_key,
                ids,
                self.with_payload,
                self.with_vector,
            )
            .await?;
        Ok(found
            .into_iter()
            .filter_map(|(value, id)| {
                let record = records.iter().find(|(_, r)| r.id == id)?.clone();
                Some((value, record))
            })
            .collect())
    }
}

/// Numbers in ascending order (integers exactly, the rest as floats).
fn value_order(a: &Number, b: &Number) -> Ordering {
    match (a.as_i64(), b.as_i64()) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a
            .as_f64()
            .partial_cmp(&b.as_f64())
            .unwrap_or(Ordering::Equal),
    }
}
