//! Composition: wires the gateway's crates together, builds the one HTTP router, and owns the
//! order in which things start and stop (in the spirit of linkerd2-proxy's `app` crate). The
//! binary only parses its command line and calls in here.
//!
//! Start-up order is in [`boot`], shutdown order in [`shutdown`]; the rule that matters most —
//! the sandbox firewall outlives the last sandbox — is tested in `tests/shutdown.rs`. This
//! crate adds no policy of its own: authentication, isolation and egress decisions live in the
//! crates it wires.

#![forbid(unsafe_code)]

pub mod boot;
pub mod connections;
pub mod operations;
pub mod router;
pub mod serve;
pub mod shutdown;

pub use boot::{BootError, run};
pub use serve::{ServeError, bind, serve, shutdown_signal};
