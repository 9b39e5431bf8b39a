//! Listeners, connections and tunnels, and the order of a request's phases.
//!
//! The order is the proxy's guarantee, and it is written out in three short functions:
//!
//! - [`Conn::plain_http`] (absolute-form `http://`): agreement of the target and `Host`, then
//!   the policy on the resolved addresses, then [`Conn::forward`].
//! - [`Conn::connect`] (`CONNECT host:port`): agreement on the target, no placeholder on the
//!   CONNECT, the policy on the resolved addresses; then [`Conn::tunnel`] makes the TLS SNI
//!   agree, and [`Conn::tunnel_request`] makes each request's target, `:authority` and `Host`
//!   agree before [`Conn::forward`].
//! - [`Conn::forward`]: the whole body, the placeholder scan, injection, send, scrub, audit.
//!
//! Every phase (in [`crate::phases`]) refuses with a [`Refusal`]; [`Conn::refuse`] turns it
//! into the server's answer and the request's one audit record.

mod sandbox;

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gig_policy::PolicyError;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::LazyConfigAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub(crate) use sandbox::Cred;
pub use sandbox::{SandboxEgress, SecretError, SecretScope, SecretSource, StaticSecrets, ToolCall};

use crate::audit::{AuditEvent, AuditGuard, AuditSink, Outcome, Scheme, Target, redact_query};
use crate::ca::{LeafCache, RuntimeCa};
use crate::framing::FramingWatch;
use crate::phases::policy::Reach;
use crate::phases::{Answer, Body, Refusal, agree, body, empty, inject, placeholders, scrub, send};
use crate::resolve::{Resolver, SystemResolver};
use crate::upstream::{Destination, Upstream};
use gig_policy::address::LocalAddrs;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("invalid egress policy for {0:?}: {1}")]
    Policy(String, PolicyError),
    #[error("credential {env:?} of {server:?}: {reason}")]
    Placeholder {
        server: String,
        env: String,
        reason: &'static str,
    },
    #[error("extra upstream root certificate rejected: {0}")]
    Root(rustls::Error),
    #[error("building the upstream TLS configuration failed: {0}")]
    Tls(rustls::Error),
}

/// Bounds that keep one sandbox from hurting the proxy or its peers.
#[derive(Debug, Clone)]
pub struct ProxyLimits {
    /// Open client connections per sandbox listener; more are answered 503 and closed.
    pub max_connections_per_sandbox: usize,
    /// A request head must arrive within this (slowloris).
    pub header_read_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    /// Request head size (HTTP/1 buffer, h2 header list); more is refused with 431.
    pub max_header_bytes: usize,
    /// Request bodies are read whole (to scan them before anything is sent); larger gets 413.
    pub max_request_body: usize,
    /// A compressed request body may inflate to at most this for scanning.
    pub max_decoded_request_body: usize,
    pub resolve_timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle pooled upstream connections are dropped after this.
    pub idle_timeout: Duration,
    pub max_idle_per_upstream: usize,
    pub leaf_cache_size: usize,
}

impl Default for ProxyLimits {
    fn default() -> Self {
        ProxyLimits {
            max_connections_per_sandbox: 256,
            header_read_timeout: Duration::from_secs(15),
            tls_handshake_timeout: Duration::from_secs(15),
            max_header_bytes: 64 * 1024,
            max_request_body: 16 * 1024 * 1024,
            max_decoded_request_body: 64 * 1024 * 1024,
            resolve_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_idle_per_upstream: 32,
            leaf_cache_size: 1024,
        }
    }
}

pub struct ProxyConfig {
    /// Trusted for upstream TLS in addition to the public roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
    /// Trust Mozilla's root set (`webpki-roots`, compiled in). Off only in tests.
    pub public_roots: bool,
    pub resolver: Arc<dyn Resolver>,
    pub limits: ProxyLimits,
}

impl std::fmt::Debug for ProxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyConfig")
            .field("extra_roots", &self.extra_roots.len())
            .field("public_roots", &self.public_roots)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            extra_roots: Vec::new(),
            public_roots: true,
            resolver: Arc::new(SystemResolver),
            limits: ProxyLimits::default(),
        }
    }
}

/// The proxy shared by every sandbox listener.
#[derive(Clone)]
pub struct EgressProxy {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EgressProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EgressProxy").finish_non_exhaustive()
    }
}

struct Inner {
    ca: RuntimeCa,
    leaves: LeafCache,
    resolver: Arc<dyn Resolver>,
    limits: ProxyLimits,
    secrets: Arc<dyn SecretSource>,
    audit: Arc<dyn AuditSink>,
    upstream: Upstream,
    local: LocalAddrs,
    /// Every address a sandbox listener is bound to: a destination equal to one is a loop.
    listeners: Mutex<Vec<SocketAddr>>,
}

impl EgressProxy {
    /// Where this proxy's real secrets come from (asked before a user's own instance starts,
    /// so a missing credential is said to the caller rather than to the sandbox).
    pub fn secrets(&self) -> &Arc<dyn SecretSource> {
        &self.inner.secrets
    }

    pub fn new(
        ca: RuntimeCa,
        config: ProxyConfig,
        secrets: Arc<dyn SecretSource>,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Self, ProxyError> {
        let mut roots = RootCertStore::empty();
        if config.public_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in config.extra_roots {
            roots.add(cert).map_err(ProxyError::Root)?;
        }
        let mut tls = rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_safe_default_protocol_versions()
            .map_err(ProxyError::Tls)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let limits = config.limits;
        Ok(EgressProxy {
            inner: Arc::new(Inner {
                leaves: LeafCache::new(limits.leaf_cache_size),
                ca,
                resolver: config.resolver,
                secrets,
                audit,
                upstream: Upstream::new(
                    tls,
                    limits.connect_timeout,
                    limits.idle_timeout,
                    limits.max_idle_per_upstream,
                ),
                local: LocalAddrs::new(),
                listeners: Mutex::new(Vec::new()),
                limits,
            }),
        })
    }

    pub fn ca(&self) -> &RuntimeCa {
        &self.inner.ca
    }

    /// Serves `sandbox` on `listener` until `cancel` fires, then closes its connections and
    /// returns once they are gone.
    pub async fn serve(
        &self,
        listener: TcpListener,
        sandbox: Arc<SandboxEgress>,
        cancel: CancellationToken,
    ) -> io::Result<()> {
        let local = listener.local_addr()?;
        let _registered = ListenerRegistration::new(self.inner.clone(), local);
        let permits = Arc::new(Semaphore::new(
            self.inner.limits.max_connections_per_sandbox,
        ));
        let tracker = TaskTracker::new();
        loop {
            let accepted = tokio::select! {
                _ = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, server = %sandbox.server, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if sandbox.client.is_some_and(|only| only != peer.ip()) {
                tracing::warn!(server = %sandbox.server, %peer, "egress listener: connection from another address refused");
                drop(tcp);
                continue;
            }
            let conn = Conn {
                inner: self.inner.clone(),
                sandbox: sandbox.clone(),
                cancel: cancel.child_token(),
                tracker: tracker.clone(),
                permit: None,
                framing: Arc::default(),
            };
            match permits.clone().try_acquire_owned() {
                Ok(permit) => {
                    let conn = Conn {
                        permit: Some(Arc::new(permit)),
                        ..conn
                    };
                    tracker.spawn(conn.serve_client(tcp));
                }
                Err(_) => {
                    conn.record(
                        &Target::connection(),
                        Outcome::unanswered("too many open connections from this sandbox".into()),
                    );
                    tracker.spawn(reject_connection(tcp));
                }
            }
        }
        tracker.close();
        tracker.wait().await;
        Ok(())
    }
}

struct ListenerRegistration {
    inner: Arc<Inner>,
    addr: SocketAddr,
}

impl ListenerRegistration {
    fn new(inner: Arc<Inner>, addr: SocketAddr) -> Self {
        inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(addr);
        ListenerRegistration { inner, addr }
    }
}

impl Drop for ListenerRegistration {
    fn drop(&mut self) {
        let mut l = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(i) = l.iter().position(|a| *a == self.addr) {
            l.swap_remove(i);
        }
    }
}

async fn reject_connection(mut tcp: TcpStream) {
    let _ = tcp
        .write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 43\r\n\r\ntoo many open connections from this sandbox",
        )
        .await;
    let _ = tcp.shutdown().await;
}

#[derive(Clone)]
struct Conn {
    inner: Arc<Inner>,
    sandbox: Arc<SandboxEgress>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// Held by the client connection and any tunnel it becomes.
    #[allow(dead_code)]
    permit: Option<Arc<OwnedSemaphorePermit>>,
    /// Raised by [`FramingWatch`] when this HTTP/1 connection sent a head with both
    /// Content-Length and Transfer-Encoding.
    framing: Arc<AtomicBool>,
}

impl Conn {
    /// This request's audit record, from the one constructor.
    fn event(&self, target: &Target, outcome: Outcome) -> AuditEvent {
        AuditEvent::new(
            &self.sandbox.server,
            self.sandbox.scope,
            self.sandbox.tool_call(),
            target,
            outcome,
        )
    }

    fn record(&self, target: &Target, outcome: Outcome) {
        self.inner.audit.record(self.event(target, outcome));
    }

    /// The server's answer to a refusal, and its record.
    fn refuse(&self, target: &Target, refusal: Refusal) -> Response<Body> {
        if refusal.answer == Answer::Request {
            tracing::info!(server = %self.sandbox.server, host = %target.host, reason = %refusal.reason, "egress refused");
        }
        let response = refusal.to_response();
        self.record(target, Outcome::refused(refusal));
        response
    }

    /// The answer to a request that ran through its phases, or to the phase that refused it.
    fn answer(&self, target: &Target, result: Result<Response<Body>, Refusal>) -> Response<Body> {
        result.unwrap_or_else(|refusal| self.refuse(target, refusal))
    }

    fn reach(&self) -> Reach<'_> {
        Reach {
            policy: &self.sandbox.policy,
            resolver: &*self.inner.resolver,
            resolve_timeout: self.inner.limits.resolve_timeout,
            local: &self.inner.local,
            listeners: &self.inner.listeners,
        }
    }

    fn check_head(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        body::check_head(
            req.headers(),
            self.inner.limits.max_header_bytes,
            &self.framing,
        )
    }

    fn http1_builder(&self) -> http1::Builder {
        let mut b = http1::Builder::new();
        b.timer(TokioTimer::new())
            .header_read_timeout(self.inner.limits.header_read_timeout)
            .max_buf_size(self.inner.limits.max_header_bytes.max(8192))
            .keep_alive(true);
        b
    }

    async fn serve_client(self, tcp: TcpStream) {
        let _ = tcp.set_nodelay(true);
        let framing = Arc::new(AtomicBool::new(false));
        let this = Conn {
            framing: framing.clone(),
            ..self.clone()
        };
        let tcp = FramingWatch::new(tcp, framing);
        let svc = service_fn(move |req| {
            let this = this.clone();
            async move { Ok::<_, Infallible>(this.outer(req).await) }
        });
        let conn = self
            .http1_builder()
            .serve_connection(TokioIo::new(tcp), svc)
            .with_upgrades();
        tokio::select! {
            _ = conn => {}
            _ = self.cancel.cancelled() => {}
        }
    }

    /// A request on the plaintext connection to the proxy: `CONNECT` or absolute-form HTTP.
    async fn outer(&self, req: Request<Incoming>) -> Response<Body> {
        let head = Target {
            scheme: Scheme::Connect,
            method: req.method().to_string(),
            host: req
                .uri()
                .authority()
                .map_or_else(String::new, |a| a.to_string()),
            port: 0,
            path: String::new(),
        };
        if let Err(r) = self.check_head(&req) {
            return self.refuse(&head, r);
        }
        if req.method() == Method::CONNECT {
            let mut target = Target {
                scheme: Scheme::Connect,
                method: "CONNECT".into(),
                host: req.uri().to_string(),
                port: 0,
                path: String::new(),
            };
            let result = self.connect(&mut target, req).await;
            return self.answer(&target, result);
        }
        let mut target = Target {
            scheme: Scheme::Http,
            method: req.method().to_string(),
            host: String::new(),
            port: 80,
            path: path_of(&req),
        };
        let result = self.plain_http(&mut target, req).await;
        self.answer(&target, result)
    }

    /// Absolute-form plain HTTP: agreement, policy, then the request's own phases. `target`
    /// gains the host and port once they are agreed.
    async fn plain_http(
        &self,
        target: &mut Target,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let (host, port) = agree::absolute_form(req.uri())?;
        (target.host, target.port) = (host, port);
        agree::host_headers(req.headers(), &target.host, port, false)?;
        let addrs = self.reach().decide(&target.host, port, false).await?;
        let dest = Destination {
            host: target.host.clone(),
            port,
            addrs,
            tls: false,
        };
        self.forward(target, &dest, req).await
    }

    /// `CONNECT host:port`: agreement on the target, no placeholder on the CONNECT, policy;
    /// then the tunnel is intercepted with the checked addresses.
    async fn connect(
        &self,
        target: &mut Target,
        mut req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let (auth, host, port) = agree::connect_target(req.uri())?;
        (target.host, target.port) = (host, port);
        placeholders::in_connect(&self.sandbox, &auth, req.headers())?;
        let addrs = self.reach().decide(&target.host, port, true).await?;
        let (this, target) = (self.clone(), target.clone());
        let upgrade = hyper::upgrade::on(&mut req);
        self.tracker.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => this.tunnel(upgraded, target, addrs).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Ok(Response::new(empty()))
    }

    /// The intercepted tunnel: the SNI must agree with the CONNECT host before a leaf is
    /// minted for it; then each request inside goes through [`Conn::tunnel_request`].
    async fn tunnel(
        self,
        upgraded: hyper::upgrade::Upgraded,
        target: Target,
        addrs: Vec<SocketAddr>,
    ) {
        let limits = &self.inner.limits;
        let acceptor =
            LazyConfigAcceptor::new(rustls::server::Acceptor::default(), TokioIo::new(upgraded));
        let start = match tokio::time::timeout(limits.tls_handshake_timeout, acceptor).await {
            Ok(Ok(start)) => start,
            Ok(Err(e)) => {
                return self.tunnel_failed(&target, format!("TLS ClientHello unreadable: {e}"));
            }
            Err(_) => return self.tunnel_failed(&target, "TLS handshake timed out".into()),
        };
        if let Err(reason) = agree::sni(start.client_hello().server_name(), &target.host) {
            return self.tunnel_failed(&target, reason);
        }
        let config = match self.inner.leaves.get(&self.inner.ca, &target.host) {
            Ok(c) => c,
            Err(e) => return self.tunnel_failed(&target, e.to_string()),
        };
        let tls =
            match tokio::time::timeout(limits.tls_handshake_timeout, start.into_stream(config))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    return self.tunnel_failed(&target, format!("TLS handshake failed: {e}"));
                }
                Err(_) => return self.tunnel_failed(&target, "TLS handshake timed out".into()),
            };
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let dest = Destination {
            host: target.host.clone(),
            port: target.port,
            addrs,
            tls: true,
        };
        let framing = Arc::new(AtomicBool::new(false));
        let this = Conn {
            framing: framing.clone(),
            ..self.clone()
        };
        let svc = service_fn(move |req| {
            let this = this.clone();
            let dest = dest.clone();
            async move { Ok::<_, Infallible>(this.tunnel_request(req, dest, h2).await) }
        });
        let io = TokioIo::new(tls);
        if h2 {
            let mut b = http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
            tokio::select! {
                _ = b.serve_connection(io, svc) => {}
                _ = self.cancel.cancelled() => {}
            }
        } else {
            let io = TokioIo::new(FramingWatch::new(io.into_inner(), framing));
            tokio::select! {
                _ = self.http1_builder().serve_connection(io, svc) => {}
                _ = self.cancel.cancelled() => {}
            }
        }
    }

    /// A tunnel that ends before any request: no HTTP answer can be given, only the record.
    fn tunnel_failed(&self, target: &Target, reason: String) {
        tracing::info!(server = %self.sandbox.server, host = %target.host, %reason, "tunnel refused");
        self.record(target, Outcome::unanswered(reason));
    }

    /// A request inside an intercepted tunnel: a sane head, its target, `:authority` and
    /// `Host` agreeing with the tunnel's (already checked) host, then the request's phases.
    async fn tunnel_request(
        &self,
        req: Request<Incoming>,
        dest: Destination,
        h2: bool,
    ) -> Response<Body> {
        let target = Target {
            scheme: Scheme::Https,
            method: req.method().to_string(),
            host: dest.host.clone(),
            port: dest.port,
            path: path_of(&req),
        };
        let result = async {
            self.check_head(&req)?;
            let (method, uri, headers) = (req.method(), req.uri(), req.headers());
            agree::tunnel_request(method, uri, headers, &dest.host, dest.port, h2)?;
            self.forward(&target, &dest, req).await
        };
        let result = result.await;
        self.answer(&target, result)
    }

    /// A request whose destination is agreed and allowed, through the rest of its phases in
    /// their order; the first that refuses ends it.
    async fn forward(
        &self,
        target: &Target,
        dest: &Destination,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        // A child of the tool call that caused it, when there is one: the trace shows which
        // call reached where (names only; never a header, a body or a secret).
        let span = match self.sandbox.tool_call_span() {
            Some(call) => tracing::info_span!(
                parent: &call,
                "egress",
                otel.name = %format!("{} {}", target.method, target.host),
                otel.kind = "client",
                http.request.method = %target.method,
                server.address = %target.host,
                server.port = target.port,
            ),
            None => tracing::Span::none(),
        };
        tracing::Instrument::instrument(self.forward_phases(target, dest, req), span).await
    }

    async fn forward_phases(
        &self,
        target: &Target,
        dest: &Destination,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let (mut parts, body) = req.into_parts();
        let body = body::read_whole(&parts.headers, body, &self.inner.limits).await?;
        let chosen = placeholders::check(&self.sandbox, dest, &parts, &body.scanned())?;
        let body = body.into_bytes(); // the decoded copy is not kept past the scan
        let secrets = &*self.inner.secrets;
        let injected = inject::credentials(&self.sandbox, secrets, chosen, &mut parts).await?;
        let sent = send::send(&self.inner.upstream, dest, parts, body, &injected).await?;
        let scrubbed = scrub::response(sent, &injected.scrub, &target.method)?;
        Ok(self.audited(target, scrubbed))
    }

    /// The allowed request's one record, emitted when its response body ends (at once when it
    /// has none).
    fn audited(&self, target: &Target, scrubbed: scrub::Scrubbed) -> Response<Body> {
        let status = scrubbed.parts.status.as_u16();
        let event = self.event(target, Outcome::allowed(status, scrubbed.exchange.clone()));
        scrubbed.deliver(AuditGuard::new(self.inner.audit.clone(), event))
    }
}

/// A request's path for its record, query values removed.
fn path_of(req: &Request<Incoming>) -> String {
    req.uri()
        .path_and_query()
        .map_or_else(|| "/".into(), |p| redact_query(p.as_str()))
}
