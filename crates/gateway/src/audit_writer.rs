//! Audit records into the store, off the caller's path: a bounded queue in front of one writer
//! task. Callers never wait on storage; when the queue is full a record is dropped and counted
//! in a warning. While the database is unreachable the writer holds the record at the head of
//! the queue and retries with backoff, so an outage delays records instead of losing them (up
//! to the queue's length).

use std::time::Duration;

use gig_store::{AuditEntry, Store};
use tokio::sync::mpsc;

/// An audit record owned by the queue (the store's [`AuditEntry`] borrows).
#[derive(Debug)]
pub struct OwnedAuditEntry {
    pub actor: String,
    pub action: &'static str,
    pub target: String,
    pub result: &'static str,
    pub detail: serde_json::Value,
}

/// First and longest wait between attempts while the database is unavailable.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const LONGEST_RETRY: Duration = Duration::from_secs(5);

/// Sends records of type `T` to one writer task, which turns each into an entry (off the
/// caller's path) and appends it.
#[derive(Debug)]
pub struct AuditWriter<T> {
    queue: mpsc::Sender<T>,
    /// What the records are, for the warnings (`tool-call`, `egress`).
    what: &'static str,
}

impl<T> Clone for AuditWriter<T> {
    fn clone(&self) -> Self {
        AuditWriter {
            queue: self.queue.clone(),
            what: self.what,
        }
    }
}

impl<T: Send + 'static> AuditWriter<T> {
    /// Starts the writer task on the current runtime.
    pub fn start(
        store: Store,
        what: &'static str,
        capacity: usize,
        to_entry: fn(T) -> OwnedAuditEntry,
    ) -> Self {
        let (queue, mut records) = mpsc::channel::<T>(capacity);
        tokio::spawn(async move {
            while let Some(record) = records.recv().await {
                append_retrying(&store, what, to_entry(record)).await;
            }
        });
        AuditWriter { queue, what }
    }

    /// Queues `record`; never waits.
    pub fn send(&self, record: T) {
        if self.queue.try_send(record).is_err() {
            tracing::warn!(what = self.what, "audit queue full: a record was dropped");
        }
    }
}

async fn append_retrying(store: &Store, what: &'static str, entry: OwnedAuditEntry) {
    let mut wait = FIRST_RETRY;
    let mut waited = false;
    loop {
        let borrowed = AuditEntry {
            actor: &entry.actor,
            action: entry.action,
            target: &entry.target,
            result: entry.result,
            detail: &entry.detail,
        };
        match store.append_audit(&borrowed).await {
            Ok(_) => {
                if waited {
                    tracing::info!(what, "database reachable again: audit records flowing");
                }
                return;
            }
            Err(e) if e.is_unavailable() => {
                if !waited {
                    tracing::warn!(what, error = %e, "database unavailable: audit records wait in the queue");
                    waited = true;
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(LONGEST_RETRY);
            }
            Err(e) => {
                tracing::error!(what, error = %e, "cannot write an audit record");
                return;
            }
        }
    }
}
