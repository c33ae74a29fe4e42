//! Alias endpoints: change aliases (manage rights), list them (only those of collections the
//! caller may see: to anyone else an alias is as absent as its collection).

use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, State};
use serde_json::{Map, Value};
use tessera_cluster::Result;
use tessera_cluster::request::MetaRequest;

use super::json::aliases::{AliasDescription, AliasList, alias_actions};
use super::json::{body_json, body_object};
use super::{AppState, Reply, ok};
use crate::access;
use crate::router::Ctx;

type Body = std::result::Result<Bytes, BytesRejection>;

pub async fn update(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    body: Body,
) -> Reply {
    let started = Instant::now();
    update_from(&app, &ctx, body_object(&body_json(body)?)?).await?;
    ok(true, started)
}

/// Applies an alias change body, all of it or nothing (manage rights).
pub async fn update_from(app: &AppState, ctx: &Ctx, o: &Map<String, Value>) -> Result<()> {
    access::check_manage(&ctx.principal)?;
    let actions = alias_actions(o)?;
    app.catalog
        .submit(MetaRequest::UpdateAliases { actions })
        .await?;
    Ok(())
}

pub async fn of_collection(
    State(app): State<AppState>,
    Extension(ctx): Extension<Ctx>,
    Path(name): Path<String>,
) -> Reply {
    let started = Instant::now();
    ok(aliases_of(&app, &ctx, Some(&name))?, started)
}

pub async fn list(State(app): State<AppState>, Extension(ctx): Extension<Ctx>) -> Reply {
    let started = Instant::now();
    ok(aliases_of(&app, &ctx, None)?, started)
}

/// The aliases of collection `name` (404 when the caller may not see it), or of every
/// collection the caller may see.
pub fn aliases_of(app: &AppState, ctx: &Ctx, name: Option<&str>) -> Result<AliasList> {
    let st = app.catalog.meta.read();
    if let Some(name) = name {
        match st.collections.get(name) {
            Some(c) if access::visible(&ctx.principal, c) => {}
            _ => return Err(access::missing_collection(name)),
        }
    }
    let aliases = st
        .aliases_of(name)
        .into_iter()
        .filter(|(_, c)| {
            st.collections
                .get(c)
                .is_some_and(|c| access::visible(&ctx.principal, c))
        })
        .map(|(alias_name, collection_name)| AliasDescription {
            alias_name,
            collection_name,
        })
        .collect();
    Ok(AliasList { aliases })
}
