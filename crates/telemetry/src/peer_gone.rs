//! One event rmcp logs at ERROR that is no error of the gateway's: when a client closes a
//! stream (a 2026-07-28 `subscriptions/listen` stream, a request it gave up on), rmcp's serve
//! loop ends and then tries to send the handler's final answer into the closed transport,
//! logging "failed to send pending response during drain". The client left; nobody can act on
//! it, and an ERROR per closed stream drowns the ones that matter. Only that message from
//! `rmcp::service` is dropped; every other rmcp event passes as the filter says.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

const TARGET: &str = "rmcp::service";
const MESSAGE: &str = "failed to send pending response during drain";

/// Drops rmcp's "the client already left" ERROR (see the module doc).
#[derive(Debug, Default, Clone, Copy)]
pub struct DropPeerGone;

impl<S: Subscriber> Layer<S> for DropPeerGone {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if metadata.target() != TARGET || *metadata.level() != Level::ERROR {
            return true;
        }
        let mut message = MessageIs(false);
        event.record(&mut message);
        !message.0
    }
}

/// Whether the event's message is [`MESSAGE`].
struct MessageIs(bool);

impl Visit for MessageIs {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value == MESSAGE;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}") == MESSAGE;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt as _;

    use super::*;

    /// Keeps the target and level of every event that reaches it.
    #[derive(Clone, Default)]
    struct Seen(Arc<Mutex<Vec<String>>>);

    impl<S: Subscriber> Layer<S> for Seen {
        fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
            let metadata = event.metadata();
            let mut text = String::new();
            event.record(&mut |field: &Field, value: &dyn fmt::Debug| {
                if field.name() == "message" {
                    text = format!("{value:?}");
                }
            });
            self.0.lock().unwrap().push(format!(
                "{} {} {text}",
                metadata.level(),
                metadata.target()
            ));
        }
    }

    #[test]
    fn only_the_client_left_error_of_rmcp_is_dropped() {
        let seen = Seen::default();
        let subscriber = tracing_subscriber::registry()
            .with(DropPeerGone)
            .with(seen.clone());
        tracing::subscriber::with_default(subscriber, || {
            let error = "channel closed";
            tracing::error!(target: "rmcp::service", %error, "failed to send pending response during drain");
            tracing::error!(target: "rmcp::service", %error, "fail to close sink");
            tracing::warn!(target: "rmcp::service", "failed to send pending response during drain");
            tracing::error!(target: "gigmcp", "failed to send pending response during drain");
        });
        assert_eq!(
            *seen.0.lock().unwrap(),
            [
                "ERROR rmcp::service fail to close sink",
                "WARN rmcp::service failed to send pending response during drain",
                "ERROR gigmcp failed to send pending response during drain",
            ]
        );
    }
}
