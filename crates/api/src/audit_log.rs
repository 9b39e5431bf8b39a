//! The audit log over `/api`: filtered, newest first, paged by cursor; and the same filters as
//! a stream of JSON lines for export.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use gig_store::{AuditQuery, AuditRecord};
use http::header;
use serde::Deserialize;

use crate::ApiState;
use crate::error::ApiError;
use crate::extract::ApiQuery;
use crate::schema::{self, AuditPage, ErrorBody};

/// Records per page at most (and per store read while exporting).
const MAX_PAGE: u32 = 1000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Filters {
    /// Exactly this actor (`user:3:carol@example.com`, `operator`, or a server's name for
    /// its egress records).
    actor: Option<String>,
    /// Records about this server: targets `SERVER/…` (its tool calls).
    server: Option<String>,
    /// Actions starting with this (`tool.call`, `egress`, `profile`, `auth`…).
    kind: Option<String>,
    /// Unix seconds: at or after.
    since: Option<i64>,
    /// Unix seconds: strictly before.
    until: Option<i64>,
    /// The `next_cursor` of the previous page.
    cursor: Option<i64>,
    limit: Option<u32>,
}

/// The last second of year 9999: every database keeps times up to there.
const LATEST: i64 = 253_402_300_799;

fn instant(secs: Option<i64>, what: &str) -> Result<Option<time::OffsetDateTime>, ApiError> {
    secs.map(|s| {
        (0..=LATEST)
            .contains(&s)
            .then(|| time::OffsetDateTime::from_unix_timestamp(s).ok())
            .flatten()
            .ok_or_else(|| {
                ApiError::bad_request(format!("{what} is unix seconds from 0 to {LATEST}"))
            })
    })
    .transpose()
}

/// A filter's text, when given: bounded and plain.
fn text(value: &Option<String>, what: &str) -> Result<(), ApiError> {
    value
        .as_deref()
        .map_or(Ok(()), |v| crate::extract::plain_text(v, what, 512))
}

struct Owned {
    actor: Option<String>,
    target: Option<String>,
    kind: Option<String>,
    since: Option<time::OffsetDateTime>,
    until: Option<time::OffsetDateTime>,
}

impl Owned {
    fn from(filters: &Filters) -> Result<Self, ApiError> {
        text(&filters.actor, "actor")?;
        text(&filters.server, "server")?;
        text(&filters.kind, "kind")?;
        Ok(Owned {
            actor: filters.actor.clone(),
            target: filters.server.as_ref().map(|s| format!("{s}/")),
            kind: filters.kind.clone(),
            since: instant(filters.since, "since")?,
            until: instant(filters.until, "until")?,
        })
    }

    fn query(&self, before_id: Option<i64>, limit: u32) -> AuditQuery<'_> {
        AuditQuery {
            actor: self.actor.as_deref(),
            target_prefix: self.target.as_deref(),
            action_prefix: self.kind.as_deref(),
            since: self.since,
            until: self.until,
            before_id,
            limit,
        }
    }
}

/// Audit records, newest first, one page at a time.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(Filters),
    responses((status = 200, body = AuditPage), (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<Arc<ApiState>>,
    ApiQuery(filters): ApiQuery<Filters>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = filters.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let owned = Owned::from(&filters)?;
    let records = state
        .store
        .list_audit(&owned.query(filters.cursor, limit))
        .await?;
    let next_cursor = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.id))
        .flatten();
    let records = records.iter().map(record).collect();
    Ok(Json(AuditPage {
        records,
        next_cursor,
    }))
}

/// Every matching record as JSON lines, newest first, read from the store a page at a time.
/// Every matching audit record as JSON lines (`application/x-ndjson`), newest first.
#[utoipa::path(get, path = "/api/audit/export", tag = "audit", params(Filters),
    responses((status = 200, description = "One record per line", content_type = "application/x-ndjson", body = String),
        (status = 400, description = "Invalid request", body = ErrorBody), (status = 401, description = "Not signed in", body = ErrorBody), (status = 403, description = "The role does not allow it, or CSRF failed", body = ErrorBody)))]
pub(crate) async fn export(
    State(state): State<Arc<ApiState>>,
    ApiQuery(filters): ApiQuery<Filters>,
) -> Result<Response, ApiError> {
    let owned = Owned::from(&filters)?;
    let first = filters.cursor;
    let stream = futures::stream::unfold(Some((state, owned, first)), |next| async move {
        let (state, owned, cursor) = next?;
        match state.store.list_audit(&owned.query(cursor, MAX_PAGE)).await {
            Ok(records) if records.is_empty() => None,
            Ok(records) => {
                let last = records.last().map(|r: &AuditRecord| r.id);
                let full = records.len() == MAX_PAGE as usize;
                let mut lines = Vec::new();
                for r in &records {
                    if serde_json::to_writer(&mut lines, &record(r)).is_ok() {
                        lines.push(b'\n');
                    }
                }
                let next = full.then_some((state, owned, last));
                Some((Ok::<_, std::io::Error>(lines), next))
            }
            Err(e) => {
                tracing::error!(error = %e, "audit export stopped");
                Some((Err(std::io::Error::other("audit export failed")), None))
            }
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

fn record(r: &AuditRecord) -> schema::AuditRecord {
    schema::AuditRecord {
        id: r.id,
        at: r
            .at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default(),
        actor: r.actor.clone(),
        action: r.action.clone(),
        target: r.target.clone(),
        result: r.result.clone(),
        detail: r.detail.clone(),
    }
}
