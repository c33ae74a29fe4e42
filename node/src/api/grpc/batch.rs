//! `UpdateBatch`: each of its operations as the REST batch operation it means.

use qdrant_client::qdrant as pb;
use serde_json::{Map, Value, json};

use super::to_json::{self as j, Body};

/// The REST body of a batch (`{"operations": [...]}`).
pub fn batch_body(r: &pb::UpdateBatchPoints) -> Map<String, Value> {
    Body::new()
        .put(
            "operations",
            Value::Array(r.operations.iter().map(operation).collect()),
        )
        .map()
}

fn selected(b: Body, s: Option<&pb::PointsSelector>, key: Option<&pb::ShardKeySelector>) -> Value {
    j::points_selector(b, s)
        .opt("shard_key", key, j::key_selector)
        .value()
}

#[allow(deprecated)] // older clients still send the deprecated delete and clear forms
fn operation(op: &pb::PointsUpdateOperation) -> Value {
    use pb::points_update_operation::Operation as O;
    match &op.operation {
        Some(O::Upsert(u)) => json!({"upsert": Body::new()
            .put("points", Value::Array(u.points.iter().map(j::point).collect()))
            .opt("shard_key", u.shard_key_selector.as_ref(), j::key_selector)
            .opt("update_filter", u.update_filter.as_ref(), j::filter)
            .refused("update_mode", u.update_mode.is_some_and(|m| m != pb::UpdateMode::Upsert as i32))
            .value()}),
        Some(O::SetPayload(p)) => json!({"set_payload": selected(
            Body::new()
                .put("payload", j::payload(&p.payload))
                .opt("key", p.key.as_ref(), |k| json!(k)),
            p.points_selector.as_ref(),
            p.shard_key_selector.as_ref(),
        )}),
        Some(O::OverwritePayload(p)) => json!({"overwrite_payload": selected(
            Body::new()
                .put("payload", j::payload(&p.payload))
                .opt("key", p.key.as_ref(), |k| json!(k)),
            p.points_selector.as_ref(),
            p.shard_key_selector.as_ref(),
        )}),
        Some(O::DeletePayload(p)) => json!({"delete_payload": selected(
            Body::new().put("keys", json!(p.keys)),
            p.points_selector.as_ref(),
            p.shard_key_selector.as_ref(),
        )}),
        Some(O::DeletePoints(d)) => json!({"delete": selected(
            Body::new(),
            d.points.as_ref(),
            d.shard_key_selector.as_ref(),
        )}),
        Some(O::DeleteDeprecated(s)) => json!({"delete": selected(Body::new(), Some(s), None)}),
        Some(O::ClearPayload(c)) => json!({"clear_payload": selected(
            Body::new(),
            c.points.as_ref(),
            c.shard_key_selector.as_ref(),
        )}),
        Some(O::ClearPayloadDeprecated(s)) => {
            json!({"clear_payload": selected(Body::new(), Some(s), None)})
        }
        // refused by name by the batch parser
        Some(O::UpdateVectors(_)) => json!({"update_vectors": {}}),
        Some(O::DeleteVectors(_)) => json!({"delete_vectors": {}}),
        None => json!({}),
    }
}
