//! `GET /api/events/servers`: the servers' live state as server-sent events, for the
//! dashboard's overview. Each `servers` event carries what `GET /api/servers` would answer, sent
//! at once and then whenever it changes (looked at every second, here, so no page polls).
//!
//! A stream lives at most five minutes: the browser's EventSource then reconnects, and the
//! route's guard checks the session again, so a signed-out or demoted user stops receiving
//! within that time. Every stream ends when the gateway starts draining, so an open dashboard
//! never holds up a shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;

use crate::ApiState;
use crate::error::ApiError;
use crate::schema::{ErrorBody, Servers};
use crate::servers::snapshot;
use crate::session::Caller;

/// How often the state is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// How long one stream lives before the browser reconnects (and is authorised again).
const STREAM_LIFETIME: Duration = Duration::from_secs(300);

/// The servers' state, now and at every change, as server-sent `servers` events.
#[utoipa::path(get, path = "/api/events/servers", tag = "servers",
    responses((status = 200, description = "Server-sent `servers` events, each the body of GET /api/servers", content_type = "text/event-stream", body = Servers),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<Arc<ApiState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Response, ApiError> {
    // Refused at once (not as an event) when the state cannot be read.
    let first = serde_json::to_string(&snapshot(&state, &caller).await?).unwrap_or_default();
    let ends = state.streams_end.clone();
    let changes = futures::stream::unfold(
        (state, caller, None::<String>, Some(first)),
        |(state, caller, sent, mut next)| async move {
            loop {
                let current = match next.take() {
                    Some(current) => current,
                    None => {
                        tokio::time::sleep(LOOK_EVERY).await;
                        // A failed look is skipped, not sent: the next one may succeed.
                        match snapshot(&state, &caller).await {
                            Ok(servers) => serde_json::to_string(&servers).unwrap_or_default(),
                            Err(_) => continue,
                        }
                    }
                };
                if sent.as_deref() != Some(current.as_str()) {
                    let event = Event::default().event("servers").data(current.clone());
                    return Some((
                        Ok::<_, Infallible>(event),
                        (state, caller, Some(current), None),
                    ));
                }
            }
        },
    );
    let bounded = changes.take_until(async move {
        tokio::select! {
            () = ends.cancelled() => {}
            () = tokio::time::sleep(STREAM_LIFETIME) => {}
        }
    });
    Ok(Sse::new(bounded)
        .keep_alive(KeepAlive::default())
        .into_response())
}
