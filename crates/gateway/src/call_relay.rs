//! What a backend sends to the client of one call while the call runs, relayed from inside
//! that call's task.
//!
//! Inside the call's task rmcp knows which client request a message belongs to (its SSE
//! stream in the initialize era). Notifications go out one at a time in the order the
//! backend sent them, and the ones still queued when the backend answers go out before the
//! answer: a client sees the progress stream increase and complete, never a result followed
//! by progress it no longer listens for. (rmcp sends a log message on the session's standalone
//! stream, not the call's, so a client may still read that after the result.) A client that
//! does not read holds up only its own call: what it cannot take in time is dropped.

use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use rmcp::RoleServer;
use rmcp::model::{ClientResult, ErrorData, ServerNotification, ServerRequest};
use rmcp::service::{Peer, ServiceError};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::backend::{Backend, NOTIFY_TIMEOUT};

/// Server-to-client requests a backend may relay during one call.
const MAX_RELAYED_PER_CALL: usize = 16;
/// Messages for one call's client that may wait to be relayed; notifications beyond are
/// dropped, requests wait (their backend waits for the answer anyway). Notifications are also
/// bounded per backend, by `Backend::notification_permit`.
const QUEUE: usize = 32;

/// One message from a backend for the client of one of its calls.
#[derive(Debug)]
pub enum ToCaller {
    /// A sampling/elicitation/roots request, answered on `reply`.
    Request {
        request: ServerRequest,
        reply: oneshot::Sender<Result<ClientResult, ErrorData>>,
    },
    /// Progress or a log message, with the backend's permit to hold it.
    Notification(ServerNotification, OwnedSemaphorePermit),
}

/// Where a backend's messages for one call's client are queued.
pub type CallerQueue = mpsc::Sender<Box<ToCaller>>;

/// Queues a notification for the call's client; drops it when the client is `QUEUE`
/// messages behind or the backend holds its maximum of notifications.
pub fn queue_notification(
    backend: &Backend,
    queue: &CallerQueue,
    notification: ServerNotification,
) {
    if let Some(permit) = backend.notification_permit() {
        let _ = queue.try_send(Box::new(ToCaller::Notification(notification, permit)));
    }
}

/// Relays one call's messages to its client; polled by the call's task until the call ends.
pub struct CallRelay {
    client: Peer<RoleServer>,
    incoming: mpsc::Receiver<Box<ToCaller>>,
    /// The notification being sent: kept across polls, so the next starts only after it.
    sending: Option<BoxFuture<'static, ()>>,
    requests: FuturesUnordered<BoxFuture<'static, ()>>,
    requests_total: usize,
}

impl CallRelay {
    pub fn new(client: Peer<RoleServer>) -> (CallerQueue, Self) {
        let (queue, incoming) = mpsc::channel(QUEUE);
        let relay = Self {
            client,
            incoming,
            sending: None,
            requests: FuturesUnordered::new(),
            requests_total: 0,
        };
        (queue, relay)
    }

    /// Relays what has arrived; never resolves when there is nothing to do. Cancel-safe:
    /// a notification being sent is kept for the next poll.
    pub async fn step(&mut self) {
        let Self {
            sending,
            incoming,
            requests,
            ..
        } = self;
        let message = tokio::select! {
            () = async {
                if let Some(notification) = sending.as_mut() {
                    notification.await;
                }
            }, if sending.is_some() => {
                *sending = None;
                return;
            }
            Some(message) = incoming.recv(), if sending.is_none() => message,
            Some(()) = requests.next(), if !requests.is_empty() => return,
            else => std::future::pending().await,
        };
        self.take(*message);
    }

    /// Sends the notifications still queued, in order, before the call's answer goes out:
    /// within `NOTIFY_TIMEOUT` in all and not past `deadline`. Requests still queued are
    /// dropped: their backend hears the call has ended.
    pub async fn flush(mut self, deadline: tokio::time::Instant) {
        let deadline = deadline.min(tokio::time::Instant::now() + NOTIFY_TIMEOUT);
        let _ = tokio::time::timeout_at(deadline, async {
            if let Some(sending) = self.sending.take() {
                sending.await;
            }
            while let Ok(message) = self.incoming.try_recv() {
                if let ToCaller::Notification(notification, _permit) = *message {
                    let _ = self.client.send_notification(notification).await;
                }
            }
        })
        .await;
    }

    fn take(&mut self, message: ToCaller) {
        match message {
            ToCaller::Notification(notification, permit) => {
                let client = self.client.clone();
                self.sending = Some(Box::pin(async move {
                    let _permit = permit;
                    let _ = tokio::time::timeout(
                        NOTIFY_TIMEOUT,
                        client.send_notification(notification),
                    )
                    .await;
                }));
            }
            ToCaller::Request { reply, .. } if self.requests_total == MAX_RELAYED_PER_CALL => {
                let _ = reply.send(Err(ErrorData::invalid_request(
                    format!(
                        "a backend may make at most {MAX_RELAYED_PER_CALL} requests to the client per call"
                    ),
                    None,
                )));
            }
            ToCaller::Request { request, reply } => {
                self.requests_total += 1;
                let client = self.client.clone();
                self.requests.push(Box::pin(async move {
                    let answer = client.send_request(request).await.map_err(|e| match e {
                        ServiceError::McpError(error) => error,
                        other => ErrorData::internal_error(
                            format!("client did not answer: {other}"),
                            None,
                        ),
                    });
                    let _ = reply.send(answer);
                }));
            }
        }
    }
}
