//! Installs started over `/api` run in the background; their progress is kept (bounded) so a
//! client can poll `GET /api/installs/{job}` or follow `GET /api/installs/{job}/events`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use tokio::sync::{mpsc, watch};

use crate::error::ApiError;
use crate::extract::ApiPath;
use crate::routes::audit;
use crate::schema::{ErrorBody, InstallJob};
use crate::{ApiState, lock};

/// Installs running at once; more get 429.
const MAX_RUNNING: usize = 4;
/// Finished jobs remembered (oldest forgotten first).
const MAX_JOBS: usize = 100;
/// Progress lines kept per job.
const MAX_LINES: usize = 200;

#[derive(Debug)]
struct Job {
    snapshot: Mutex<InstallJob>,
    /// Bumped at every change, so followers wake.
    changed: watch::Sender<u64>,
}

impl Job {
    fn update(&self, change: impl FnOnce(&mut InstallJob)) {
        change(&mut lock(&self.snapshot));
        self.changed.send_modify(|n| *n += 1);
    }
}

#[derive(Debug, Default)]
pub struct Installs {
    jobs: Mutex<VecDeque<(String, Arc<Job>)>>,
}

impl Installs {
    /// Starts `reference` in the background; the job id, or 429 when too many run.
    pub(crate) fn start(
        &self,
        state: Arc<ApiState>,
        actor: String,
        reference: String,
    ) -> Result<String, ApiError> {
        let id = hex::encode(rand::random::<[u8; 8]>());
        let job = Arc::new(Job {
            snapshot: Mutex::new(InstallJob {
                job: id.clone(),
                reference: reference.clone(),
                state: "running".into(),
                progress: Vec::new(),
                server: None,
                version: None,
                error: None,
            }),
            changed: watch::Sender::new(0),
        });
        {
            let mut jobs = lock(&self.jobs);
            let running = jobs
                .iter()
                .filter(|(_, j)| lock(&j.snapshot).state == "running")
                .count();
            if running >= MAX_RUNNING {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_installs",
                    format!("{MAX_RUNNING} installs are running; wait for one to finish"),
                ));
            }
            // Forget the oldest finished jobs; running ones are kept (and counted above).
            while jobs.len() >= MAX_JOBS {
                let Some(finished) = jobs
                    .iter()
                    .position(|(_, j)| lock(&j.snapshot).state != "running")
                else {
                    break;
                };
                jobs.remove(finished);
            }
            jobs.push_back((id.clone(), job.clone()));
        }
        tokio::spawn(run(state, job, actor, reference));
        Ok(id)
    }

    fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.jobs)
            .iter()
            .find(|(j, _)| j == id)
            .map(|(_, job)| job.clone())
    }
}

async fn run(state: Arc<ApiState>, job: Arc<Job>, actor: String, reference: String) {
    let (progress, mut lines) = mpsc::channel::<String>(64);
    let follower = job.clone();
    let forward = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            follower.update(|s| {
                // Full: the newest line replaces the last one, so indexes followers hold stay
                // valid and the latest state is always shown.
                if s.progress.len() >= MAX_LINES {
                    s.progress.pop();
                }
                s.progress.push(line);
            });
        }
    });
    let outcome = state.operations.install(reference.clone(), progress).await;
    let _ = forward.await;
    let (action, detail) = match &outcome {
        Ok((name, version)) => (
            "server.installed",
            serde_json::json!({"server": name, "version": version}),
        ),
        Err(e) => (
            "server.install_failed",
            serde_json::json!({"error": e.to_string()}),
        ),
    };
    let target = format!("{reference}/");
    if let Err(e) = audit(&state, &actor, action, &target, detail).await {
        tracing::warn!(error = ?e, "cannot audit an install");
    }
    job.update(|s| match outcome {
        Ok((name, version)) => {
            s.state = "done".into();
            s.server = Some(name);
            s.version = Some(version);
        }
        Err(e) => {
            s.state = "failed".into();
            s.error = Some(e.to_string());
        }
    });
}

/// An install's state and progress so far.
#[utoipa::path(get, path = "/api/installs/{job}", tag = "servers",
    params(("job" = String, Path, description = "Job id from POST /api/servers")),
    responses((status = 200, body = InstallJob),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody)))]
pub(crate) async fn status(
    State(state): State<Arc<ApiState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<InstallJob>, ApiError> {
    let job = state
        .installs
        .get(&id)
        .ok_or_else(|| ApiError::not_found("install"))?;
    let snapshot = lock(&job.snapshot).clone();
    Ok(Json(snapshot))
}

/// The install as server-sent events: `progress`, then `done` or `failed`; each event's data
/// is the job as JSON.
#[utoipa::path(get, path = "/api/installs/{job}/events", tag = "servers",
    params(("job" = String, Path, description = "Job id from POST /api/servers")),
    responses((status = 200, description = "Server-sent events", content_type = "text/event-stream", body = InstallJob),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "The role does not allow it", body = ErrorBody),
        (status = 404, description = "No such job", body = ErrorBody)))]
pub(crate) async fn events(
    State(state): State<Arc<ApiState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let job = state
        .installs
        .get(&id)
        .ok_or_else(|| ApiError::not_found("install"))?;
    let changes = job.changed.subscribe();
    let stream = futures::stream::unfold(
        (job, changes, 0usize, false),
        |(job, mut changes, sent, finished)| async move {
            if finished {
                return None;
            }
            loop {
                let snapshot = lock(&job.snapshot).clone();
                // Every event's data is the job as it stands (one schema for all of them).
                if sent < snapshot.progress.len() {
                    let data = serde_json::to_string(&snapshot).unwrap_or_default();
                    let event = Event::default().event("progress").data(data);
                    let seen = snapshot.progress.len();
                    return Some((Ok::<_, Infallible>(event), (job, changes, seen, false)));
                }
                if snapshot.state != "running" {
                    let data = serde_json::to_string(&snapshot).unwrap_or_default();
                    let event = Event::default().event(snapshot.state.clone()).data(data);
                    return Some((Ok(event), (job, changes, sent, true)));
                }
                if changes.changed().await.is_err() {
                    return None;
                }
            }
        },
    );
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
