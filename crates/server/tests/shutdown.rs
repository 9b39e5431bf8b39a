//! Shutdown order: the sandbox firewall is removed only after every sandbox is dead.
//!
//! The backend here is a real stdio child (`echo-mcp`) whose teardown is made slow on purpose
//! (its "reaping" takes 300 ms, as killing and reaping bubblewrap can), and the confinement is
//! a recorder standing in for the sandbox runtime. If `after_serve` removed the firewall
//! without waiting, the recorder would see a sandbox still alive.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use gig_gateway::launcher::{Connection, LaunchFuture, Launcher};
use gig_gateway::{Hub, StdioLauncher};
use gig_server::shutdown::{Confinement, after_serve};

/// A stdio backend counted as alive until 300 ms after its connection was dropped.
struct SlowToDie {
    inner: StdioLauncher,
    alive: Arc<AtomicUsize>,
}

struct AliveUntilReaped {
    _guard: Box<dyn Send + Sync>,
    alive: Arc<AtomicUsize>,
}

impl Drop for AliveUntilReaped {
    fn drop(&mut self) {
        let alive = self.alive.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            alive.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

impl Launcher for SlowToDie {
    fn launch(&self) -> LaunchFuture<'_> {
        Box::pin(async move {
            let connection = self.inner.launch().await?;
            self.alive.fetch_add(1, Ordering::SeqCst);
            Ok(Connection {
                guard: Box::new(AliveUntilReaped {
                    _guard: connection.guard,
                    alive: self.alive.clone(),
                }),
                ..connection
            })
        })
    }
}

/// Records what shutdown asked of the confinement, with the sandboxes alive at that moment.
struct Recorder {
    alive: Arc<AtomicUsize>,
    events: Mutex<Vec<(&'static str, usize)>>,
}

impl Confinement for Recorder {
    fn wait_all_stopped(&self, limit: Duration) -> BoxFuture<'_, bool> {
        Box::pin(async move {
            let deadline = tokio::time::Instant::now() + limit;
            while self.alive.load(Ordering::SeqCst) > 0 {
                if tokio::time::Instant::now() >= deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            true
        })
    }

    fn remove_firewall(&self) -> BoxFuture<'_, ()> {
        let alive = self.alive.load(Ordering::SeqCst);
        self.events
            .lock()
            .unwrap()
            .push(("firewall removed", alive));
        Box::pin(async {})
    }
}

#[tokio::test]
async fn the_firewall_is_removed_only_after_every_sandbox_is_dead() {
    let data = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = common::config(&[], listener.local_addr().unwrap(), data.path());
    let store = common::open_store(data.path()).await;
    let alive = Arc::new(AtomicUsize::new(0));
    let command = common::stdio_spec("echo-mcp").command;
    let launcher = SlowToDie {
        inner: StdioLauncher::new("echo", command, std::env::vars()),
        alive: alive.clone(),
    };
    let hub = Hub::start(
        config.limits,
        vec![(
            gig_config::ServerName::parse("echo").unwrap(),
            Box::new(launcher) as Box<dyn Launcher>,
        )],
        tokio_util::sync::CancellationToken::new(),
    );
    hub.first_attempts_done().await;
    assert_eq!(alive.load(Ordering::SeqCst), 1, "the backend should be up");

    // Shut down at once: serve drains, stops the hub (dropping the connection), and returns.
    gig_server::serve(listener, config, hub, async {})
        .await
        .unwrap();
    assert_eq!(
        alive.load(Ordering::SeqCst),
        1,
        "the test needs a backend still being reaped when serve returns"
    );
    let recorder = Recorder {
        alive: alive.clone(),
        events: Mutex::new(Vec::new()),
    };
    after_serve(Some(&recorder), &store).await;
    assert_eq!(
        *recorder.events.lock().unwrap(),
        [("firewall removed", 0)],
        "the firewall must go after the last sandbox, never while one is alive"
    );
}
