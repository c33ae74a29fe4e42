//! The wire form of shard writes: points, selectors and write operations as they travel between
//! nodes (payloads as JSON text, filters in their binary wire form).

use serde::{Deserialize, Serialize};
use tessera_cluster::Result;
use tessera_shard::actor::{NewPoint, Selector, WriteOp};
use tessera_shard::filter::{Filter, WireFilter};
use tessera_shard::point::PointId;

use super::{payload_in, payload_out};

#[derive(Debug, Serialize, Deserialize)]
pub struct WirePoint {
    pub id: PointId,
    pub vector: Vec<f32>,
    pub payload: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WireSelector {
    Ids(Vec<PointId>),
    Filter(WireFilter),
    IdsWhere(Vec<PointId>, WireFilter),
}

#[derive(Debug, Serialize, Deserialize)]
pub enum WireWrite {
    Upsert(Vec<WirePoint>),
    UpsertWhere(Vec<WirePoint>, WireFilter),
    Delete(WireSelector),
    SetPayload {
        selector: WireSelector,
        payload: String,
        key: Option<String>,
    },
    OverwritePayload {
        selector: WireSelector,
        payload: String,
    },
    DeletePayload {
        selector: WireSelector,
        keys: Vec<String>,
    },
    ClearPayload(WireSelector),
}

fn sel_out(selector: &Selector) -> WireSelector {
    match selector {
        Selector::Ids(ids) => WireSelector::Ids(ids.clone()),
        Selector::Filter(f) => WireSelector::Filter(WireFilter::from(f)),
        Selector::IdsWhere(ids, f) => WireSelector::IdsWhere(ids.clone(), WireFilter::from(f)),
    }
}

fn sel_in(selector: WireSelector) -> Result<Selector> {
    let f = Filter::try_from;
    Ok(match selector {
        WireSelector::Ids(ids) => Selector::Ids(ids),
        WireSelector::Filter(t) => Selector::Filter(f(t)?),
        WireSelector::IdsWhere(ids, t) => Selector::IdsWhere(ids, f(t)?),
    })
}

fn points_out(points: &[NewPoint]) -> Vec<WirePoint> {
    points
        .iter()
        .map(|point| WirePoint {
            id: point.id.clone(),
            vector: point.vector.clone(),
            payload: payload_out(&point.payload),
        })
        .collect()
}

fn points_in(points: Vec<WirePoint>) -> Result<Vec<NewPoint>> {
    points
        .into_iter()
        .map(|point| {
            Ok(NewPoint {
                id: point.id,
                vector: point.vector,
                payload: payload_in(&point.payload)?,
            })
        })
        .collect()
}

impl WireWrite {
    pub fn from_op(op: &WriteOp) -> WireWrite {
        match op {
            WriteOp::Upsert(p) => WireWrite::Upsert(points_out(p)),
            WriteOp::UpsertWhere(p, g) => {
                WireWrite::UpsertWhere(points_out(p), WireFilter::from(g))
            }
            WriteOp::Delete(s) => WireWrite::Delete(sel_out(s)),
            WriteOp::SetPayload {
                selector,
                payload,
                key,
            } => WireWrite::SetPayload {
                selector: sel_out(selector),
                payload: payload_out(payload),
                key: key.clone(),
            },
            WriteOp::OverwritePayload { selector, payload } => WireWrite::OverwritePayload {
                selector: sel_out(selector),
                payload: payload_out(payload),
            },
            WriteOp::DeletePayload { selector, keys } => WireWrite::DeletePayload {
                selector: sel_out(selector),
                keys: keys.clone(),
            },
            WriteOp::ClearPayload(s) => WireWrite::ClearPayload(sel_out(s)),
        }
    }

    pub fn into_op(self) -> Result<WriteOp> {
        Ok(match self {
            WireWrite::Upsert(p) => WriteOp::Upsert(points_in(p)?),
            WireWrite::UpsertWhere(p, g) => {
                WriteOp::UpsertWhere(points_in(p)?, Filter::try_from(g)?)
            }
            WireWrite::Delete(s) => WriteOp::Delete(sel_in(s)?),
            WireWrite::SetPayload {
                selector,
                payload,
                key,
            } => WriteOp::SetPayload {
                selector: sel_in(selector)?,
                payload: payload_in(&payload)?,
                key,
            },
            WireWrite::OverwritePayload { selector, payload } => WriteOp::OverwritePayload {
                selector: sel_in(selector)?,
                payload: payload_in(&payload)?,
            },
            WireWrite::DeletePayload { selector, keys } => WriteOp::DeletePayload {
                selector: sel_in(selector)?,
                keys,
            },
            WireWrite::ClearPayload(s) => WriteOp::ClearPayload(sel_in(s)?),
        })
    }
}
