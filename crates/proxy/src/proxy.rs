//! Listeners, tunnels, the per-request checks, injection and scrubbing.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::future::BoxFuture;
use gig_policy::{
    CredentialSpec, EgressPolicy, Injection, PolicyError, host_ip, normalize_dns_name,
};
use http::uri::{Authority, PathAndQuery};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
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
use zeroize::Zeroizing;

use crate::addr::{LocalAddrs, non_public_reason};
use crate::audit::{AuditEvent, AuditSink, Decision, Scheme, redact_query};
use crate::ca::{LeafCache, RuntimeCa};
use crate::framing::FramingWatch;
use crate::resolve::{Resolver, SystemResolver};
use crate::scan::{Needles, ScrubSet, StreamScrubber};
use crate::upstream::{Destination, Upstream};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Body = BoxBody<Bytes, BoxError>;

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

/// Why a secret could not be had; the message is shown to the sandbox, so no secret material.
#[derive(Debug, thiserror::Error)]
#[error("secret {name:?} is unavailable: {reason}")]
pub struct SecretError {
    pub name: String,
    pub reason: String,
}

/// Where real secret values come from (the gateway implements it over its vault). `server`
/// is the sandbox's server: a secret is looked up in that server's scope only.
pub trait SecretSource: Send + Sync + 'static {
    fn secret<'a>(
        &'a self,
        server: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>>;
}

/// A fixed set of secrets in memory (tests, and embedders without a vault).
#[derive(Default)]
pub struct StaticSecrets(HashMap<String, Zeroizing<String>>);

impl std::fmt::Debug for StaticSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl StaticSecrets {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0
            .insert(name.to_string(), Zeroizing::new(value.to_string()));
        self
    }
}

impl SecretSource for StaticSecrets {
    fn secret<'a>(
        &'a self,
        _server: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Zeroizing<String>, SecretError>> {
        let found = self.0.get(name).cloned().ok_or_else(|| SecretError {
            name: name.to_string(),
            reason: "no such secret".into(),
        });
        Box::pin(async move { found })
    }
}

/// Bounds that keep one sandbox from hurting the proxy or its peers.
#[derive(Debug, Clone)]
pub struct Limits {
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

impl Default for Limits {
    fn default() -> Self {
        Limits {
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
    pub limits: Limits,
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
            limits: Limits::default(),
        }
    }
}

struct Cred {
    spec: CredentialSpec,
    placeholder: String,
}

/// Secrets a cached [`ScrubSet`] was built from, so a rotated secret rebuilds it.
type ScrubCache = HashMap<Vec<usize>, (Vec<Zeroizing<String>>, Arc<ScrubSet>)>;
const SCRUB_CACHE_MAX: usize = 64;

/// One sandbox's identity and rules: its server name, egress policy and placeholders.
pub struct SandboxEgress {
    server: String,
    policy: EgressPolicy,
    creds: Vec<Cred>,
    /// Every placeholder, in `creds` order.
    detector: Needles,
    plain_http_credentials: HashSet<String>,
    /// The only source address this sandbox's listener serves (its own `eth0`); `None` in
    /// tests that connect from loopback.
    client: Option<std::net::IpAddr>,
    tool_call: Mutex<Option<String>>,
    scrub_cache: Mutex<ScrubCache>,
}

impl std::fmt::Debug for SandboxEgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxEgress")
            .field("server", &self.server)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Placeholders shorter than this could be guessed or collide with ordinary text.
const MIN_PLACEHOLDER_LEN: usize = 24;

impl SandboxEgress {
    /// `placeholders` maps each credential's `env` to the placeholder the server was given.
    pub fn new(
        server_name: impl Into<String>,
        policy: EgressPolicy,
        placeholders: HashMap<String, String>,
    ) -> Result<Self, ProxyError> {
        let server = server_name.into();
        policy
            .validate()
            .map_err(|e| ProxyError::Policy(server.clone(), e))?;
        let mut seen = HashSet::new();
        let mut creds = Vec::new();
        for spec in &policy.credentials {
            let err = |reason| ProxyError::Placeholder {
                server: server.clone(),
                env: spec.env.clone(),
                reason,
            };
            let placeholder = placeholders
                .get(&spec.env)
                .ok_or_else(|| err("no placeholder was given for it"))?;
            if placeholder.len() < MIN_PLACEHOLDER_LEN {
                return Err(err("its placeholder is too short to be unguessable"));
            }
            if !placeholder
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(err(
                    "a placeholder may hold only letters, digits, '_' and '-'",
                ));
            }
            if !seen.insert(placeholder.clone()) {
                return Err(err("its placeholder is shared with another credential"));
            }
            creds.push(Cred {
                spec: spec.clone(),
                placeholder: placeholder.clone(),
            });
        }
        let detector = Needles::new(
            &creds
                .iter()
                .map(|c| c.placeholder.as_str())
                .collect::<Vec<_>>(),
        );
        Ok(SandboxEgress {
            server,
            policy,
            creds,
            detector,
            scrub_cache: Mutex::new(HashMap::new()),
            plain_http_credentials: HashSet::new(),
            client: None,
            tool_call: Mutex::new(None),
        })
    }

    /// Lets credential `env` be injected into plain-HTTP requests to its hosts (only to hosts a
    /// `http://` rule allows). Off by default: a secret sent in clear can be read on the path.
    pub fn allow_credential_over_plain_http(mut self, env: &str) -> Result<Self, ProxyError> {
        if !self.creds.iter().any(|c| c.spec.env == env) {
            return Err(ProxyError::Placeholder {
                server: self.server.clone(),
                env: env.to_string(),
                reason: "no such credential",
            });
        }
        self.plain_http_credentials.insert(env.to_string());
        Ok(self)
    }

    /// Serves only connections from `addr` (the sandbox's own address). The listener sits on
    /// the host, so without this any local process, or a LAN host routing the pool through the
    /// gateway, could connect and have the sandbox's credentials injected.
    pub fn only_from(mut self, addr: std::net::IpAddr) -> Self {
        self.client = Some(addr);
        self
    }

    pub fn server_name(&self) -> &str {
        &self.server
    }

    /// The tool call now running in this sandbox (`None` when idle); stamped on audit records.
    pub fn set_tool_call(&self, tool_call: Option<String>) {
        *self.tool_call.lock().unwrap_or_else(|p| p.into_inner()) = tool_call;
    }

    /// The scrubber for the secrets injected into one request (credential indexes `creds`),
    /// built once per combination and secret version.
    fn scrub_set(&self, creds: Vec<usize>, secrets: Vec<Zeroizing<String>>) -> Arc<ScrubSet> {
        let mut cache = self.scrub_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_from, set)) = cache.get(&creds)
            && *built_from == secrets
        {
            return set.clone();
        }
        let entries: Vec<(&str, &str, Option<&str>)> = creds
            .iter()
            .zip(&secrets)
            .map(|(&i, secret)| {
                let cred = &self.creds[i];
                let basic_user = match &cred.spec.inject {
                    Injection::Basic { username } => Some(username.as_str()),
                    _ => None,
                };
                (secret.as_str(), cred.placeholder.as_str(), basic_user)
            })
            .collect();
        let set = Arc::new(ScrubSet::new(&entries));
        if cache.len() >= SCRUB_CACHE_MAX {
            cache.clear();
        }
        cache.insert(creds, (secrets, set.clone()));
        set
    }

    fn tool_call(&self) -> Option<String> {
        self.tool_call
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
    limits: Limits,
    secrets: Arc<dyn SecretSource>,
    audit: Arc<dyn AuditSink>,
    upstream: Upstream,
    local: LocalAddrs,
    /// Every address a sandbox listener is bound to: a destination equal to one is a loop.
    listeners: Mutex<Vec<SocketAddr>>,
}

impl EgressProxy {
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
                        0,
                        Decision::Refused,
                        Some("too many open connections from this sandbox".into()),
                        false,
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

/// What a request is about, for the checks and the audit record.
#[derive(Debug, Clone)]
struct Target {
    scheme: Scheme,
    method: String,
    host: String,
    port: u16,
    path: String,
}

impl Target {
    fn connection() -> Self {
        Target {
            scheme: Scheme::Connect,
            method: String::new(),
            host: String::new(),
            port: 0,
            path: String::new(),
        }
    }
}

/// A policy refusal: the status the server sees and the reason in the body and the audit.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    reason: String,
    exfiltration: bool,
}

impl Refusal {
    fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Refusal {
            status,
            reason: reason.into(),
            exfiltration: false,
        }
    }
    fn forbidden(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, reason)
    }
    fn exfiltration(reason: impl Into<String>) -> Self {
        Refusal {
            exfiltration: true,
            ..Self::forbidden(reason)
        }
    }
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
    fn event(
        &self,
        target: &Target,
        status: u16,
        decision: Decision,
        reason: Option<String>,
        exfiltration: bool,
    ) -> AuditEvent {
        AuditEvent {
            server: self.sandbox.server.clone(),
            tool_call: self.sandbox.tool_call(),
            scheme: target.scheme,
            method: target.method.clone(),
            host: target.host.clone(),
            port: target.port,
            path: target.path.clone(),
            status,
            request_bytes: 0,
            response_bytes: 0,
            credentials: Vec::new(),
            decision,
            reason,
            exfiltration,
            upstream: None,
        }
    }

    fn record(
        &self,
        target: &Target,
        status: u16,
        decision: Decision,
        reason: Option<String>,
        exfiltration: bool,
    ) {
        self.inner
            .audit
            .record(self.event(target, status, decision, reason, exfiltration));
    }

    fn refuse(&self, target: &Target, refusal: Refusal) -> Response<Body> {
        tracing::info!(server = %self.sandbox.server, host = %target.host, reason = %refusal.reason, "egress refused");
        self.record(
            target,
            refusal.status.as_u16(),
            Decision::Refused,
            Some(refusal.reason.clone()),
            refusal.exfiltration,
        );
        text_response(
            refusal.status,
            format!("gig-proxy refused this request: {}\n", refusal.reason),
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

    /// Refuses oversized heads, and every request once the connection has shown conflicting
    /// framing headers.
    fn check_framing(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let size: usize = headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum();
        if size > self.inner.limits.max_header_bytes {
            return Err(Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!(
                    "request headers over {} bytes",
                    self.inner.limits.max_header_bytes
                ),
            ));
        }
        if self.framing.load(Ordering::Acquire) {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "both Content-Length and Transfer-Encoding (request smuggling)",
            ));
        }
        Ok(())
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
        if let Err(r) = self.check_framing(req.headers()) {
            return self.refuse(&head, r);
        }
        if req.method() == Method::CONNECT {
            return self.connect(req).await;
        }
        let mut target = Target {
            scheme: Scheme::Http,
            method: req.method().to_string(),
            host: String::new(),
            port: 80,
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".into(), |p| redact_query(p.as_str())),
        };
        match (req.uri().scheme_str(), req.uri().authority()) {
            (Some("http"), Some(auth)) => {
                let (host, port) = match parse_authority(auth, 80) {
                    Ok(hp) => hp,
                    Err(r) => return self.refuse(&target, r),
                };
                target.host = host;
                target.port = port;
                if let Err(r) = check_host_headers(req.headers(), &target.host, port, false) {
                    return self.refuse(&target, r);
                }
                let dest = match self.decide(&target.host, port, false).await {
                    Ok(addrs) => Destination {
                        host: target.host.clone(),
                        port,
                        addrs,
                        tls: false,
                    },
                    Err(r) => return self.refuse(&target, r),
                };
                self.forward(target, dest, req).await
            }
            (Some(_), Some(_)) => self.refuse(
                &target,
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "only http:// may be requested in absolute form; use CONNECT for https",
                ),
            ),
            _ => self.refuse(
                &target,
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "this is an egress proxy: send CONNECT or an absolute-form http:// request",
                ),
            ),
        }
    }

    async fn connect(&self, mut req: Request<Incoming>) -> Response<Body> {
        let mut target = Target {
            scheme: Scheme::Connect,
            method: "CONNECT".into(),
            host: req.uri().to_string(),
            port: 0,
            path: String::new(),
        };
        let Some(auth) = req.uri().authority().cloned() else {
            return self.refuse(
                &target,
                Refusal::new(StatusCode::BAD_REQUEST, "CONNECT needs host:port"),
            );
        };
        if auth.port_u16().is_none() {
            return self.refuse(
                &target,
                Refusal::new(StatusCode::BAD_REQUEST, "CONNECT needs host:port"),
            );
        }
        let (host, port) = match parse_authority(&auth, 443) {
            Ok(hp) => hp,
            Err(r) => return self.refuse(&target, r),
        };
        target.host = host;
        target.port = port;
        // Nothing on the CONNECT itself may carry a placeholder: it goes to no credential host.
        let detector = &self.sandbox.detector;
        let mut hits = detector.hits();
        detector.mark(auth.as_str().as_bytes(), &mut hits);
        for (name, value) in req.headers() {
            detector.mark(name.as_str().as_bytes(), &mut hits);
            detector.mark(value.as_bytes(), &mut hits);
        }
        if let Some(cred) = hits
            .iter()
            .position(|hit| *hit)
            .map(|i| &self.sandbox.creds[i])
        {
            return self.refuse(
                &target,
                Refusal::exfiltration(format!(
                    "the placeholder of credential {} was sent in the CONNECT request",
                    cred.spec.env
                )),
            );
        }
        let addrs = match self.decide(&target.host, target.port, true).await {
            Ok(addrs) => addrs,
            Err(r) => return self.refuse(&target, r),
        };
        let this = self.clone();
        let upgrade = hyper::upgrade::on(&mut req);
        self.tracker.spawn(async move {
            match upgrade.await {
                Ok(upgraded) => this.tunnel(upgraded, target, addrs).await,
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        });
        Response::new(empty())
    }

    /// Resolves and checks `host:port`: an allow rule, then every resolved address.
    async fn decide(&self, host: &str, port: u16, tls: bool) -> Result<Vec<SocketAddr>, Refusal> {
        let policy = &self.sandbox.policy;
        let mut rules = policy.allow.iter().filter(|r| r.allows(host, port));
        let allowed = if tls {
            rules.next().is_some()
        } else {
            rules.any(|r| r.plain_http)
        };
        if !allowed {
            let what = if tls { "" } else { "plain-HTTP " };
            return Err(Refusal::forbidden(format!(
                "{what}egress to {host}:{port} is not in this server's allowlist"
            )));
        }
        let ips = match host_ip(host) {
            Some(ip) => vec![ip],
            None => {
                let lookup = tokio::time::timeout(
                    self.inner.limits.resolve_timeout,
                    self.inner.resolver.resolve(host),
                )
                .await;
                match lookup {
                    Ok(Ok(ips)) if !ips.is_empty() => ips,
                    Ok(Ok(_)) => {
                        return Err(Refusal::new(
                            StatusCode::BAD_GATEWAY,
                            format!("{host} resolves to no address"),
                        ));
                    }
                    Ok(Err(e)) => {
                        return Err(Refusal::new(
                            StatusCode::BAD_GATEWAY,
                            format!("cannot resolve {host}: {e}"),
                        ));
                    }
                    Err(_) => {
                        return Err(Refusal::new(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("resolving {host} timed out"),
                        ));
                    }
                }
            }
        };
        let mut addrs = Vec::with_capacity(ips.len());
        for ip in ips {
            let addr = SocketAddr::new(ip, port);
            if self.is_proxy_listener(addr) {
                return Err(Refusal::forbidden(format!(
                    "{host}:{port} loops back to the egress proxy itself"
                )));
            }
            if !policy.allow_addresses.iter().any(|net| net.contains(&ip)) {
                // One bad answer refuses the whole name: mixed answers are a rebinding trick.
                if let Some(why) = non_public_reason(ip) {
                    return Err(Refusal::forbidden(format!(
                        "{host} resolves to {ip}, a {why}, which this server may not reach"
                    )));
                }
                if self.inner.local.contains(ip) {
                    return Err(Refusal::forbidden(format!(
                        "{host} resolves to {ip}, an address of the proxy's own host"
                    )));
                }
            }
            addrs.push(addr);
        }
        Ok(addrs)
    }

    fn is_proxy_listener(&self, addr: SocketAddr) -> bool {
        let listeners = self
            .inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        listeners.iter().any(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip()
                    || (l.ip().is_unspecified()
                        && (addr.ip().is_loopback() || self.inner.local.contains(addr.ip()))))
        })
    }

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
        let sni = start
            .client_hello()
            .server_name()
            .map(str::to_ascii_lowercase);
        let sni_ok = match (&sni, host_ip(&target.host)) {
            (Some(sni), None) => sni.trim_end_matches('.') == target.host,
            // Clients send no SNI for IP literals.
            (None, Some(_)) => true,
            _ => false,
        };
        if !sni_ok {
            return self.tunnel_failed(
                &target,
                format!(
                    "TLS SNI {:?} does not match the CONNECT host {}",
                    sni.as_deref().unwrap_or(""),
                    target.host
                ),
            );
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
            async move { Ok::<_, Infallible>(this.inner_request(req, dest, h2).await) }
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

    fn tunnel_failed(&self, target: &Target, reason: String) {
        tracing::info!(server = %self.sandbox.server, host = %target.host, %reason, "tunnel refused");
        self.record(target, 0, Decision::Refused, Some(reason), false);
    }

    /// A request inside an intercepted tunnel: its authority must be the tunnel's.
    async fn inner_request(
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
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| "/".into(), |p| redact_query(p.as_str())),
        };
        if let Err(r) = self.check_framing(req.headers()) {
            return self.refuse(&target, r);
        }
        if req.method() == Method::CONNECT {
            return self.refuse(
                &target,
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "CONNECT inside a tunnel is not supported",
                ),
            );
        }
        if let Some(scheme) = req.uri().scheme_str()
            && scheme != "https"
        {
            return self.refuse(
                &target,
                Refusal::forbidden(format!("a {scheme}:// target inside a TLS tunnel")),
            );
        }
        if let Some(auth) = req.uri().authority()
            && !same_target(auth, &dest.host, dest.port)
        {
            let what = if h2 { ":authority" } else { "request target" };
            return self.refuse(
                &target,
                Refusal::forbidden(format!(
                    "{what} {auth} does not match the tunnel's host {}",
                    dest.host
                )),
            );
        }
        if h2 && req.uri().authority().is_none() {
            return self.refuse(
                &target,
                Refusal::new(StatusCode::BAD_REQUEST, "h2 request without :authority"),
            );
        }
        if let Err(r) = check_host_headers(req.headers(), &dest.host, dest.port, h2) {
            return self.refuse(&target, r);
        }
        self.forward(target, dest, req).await
    }

    /// Body checks, placeholder checks, injection, the upstream exchange and the response body.
    async fn forward(
        &self,
        target: Target,
        dest: Destination,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let limits = &self.inner.limits;
        let (mut parts, body) = req.into_parts();
        if parts.headers.contains_key(header::TRANSFER_ENCODING)
            && parts.headers.contains_key(header::CONTENT_LENGTH)
        {
            return self.refuse(
                &target,
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "both Content-Length and Transfer-Encoding (request smuggling)",
                ),
            );
        }
        if parts.headers.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
            return self.refuse(
                &target,
                Refusal::new(StatusCode::BAD_REQUEST, "more than one Content-Length"),
            );
        }
        let body = match Limited::new(body, limits.max_request_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
                return self.refuse(
                    &target,
                    Refusal::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("request body over {} bytes", limits.max_request_body),
                    ),
                );
            }
            Err(e) => {
                return self.refuse(
                    &target,
                    Refusal::new(
                        StatusCode::BAD_REQUEST,
                        format!("reading the request body failed: {e}"),
                    ),
                );
            }
        };
        let encoding = content_encoding(&parts.headers);
        let decoded: Cow<'_, [u8]> = match encoding.as_deref() {
            None | Some("identity") => Cow::Borrowed(&body),
            Some(enc @ ("gzip" | "x-gzip" | "deflate")) => {
                match inflate(enc, &body, limits.max_decoded_request_body) {
                    Ok(d) => Cow::Owned(d),
                    Err(e) => {
                        return self.refuse(
                            &target,
                            Refusal::new(StatusCode::BAD_REQUEST, format!("request body: {e}")),
                        );
                    }
                }
            }
            Some(other) => {
                return self.refuse(
                    &target,
                    Refusal::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("request bodies encoded with {other:?} cannot be checked"),
                    ),
                );
            }
        };

        // Which credentials go into this request; a placeholder anywhere else is refused.
        let detector = &self.sandbox.detector;
        let mut hits = detector.hits();
        detector.mark(parts.uri.to_string().as_bytes(), &mut hits);
        for (name, value) in &parts.headers {
            detector.mark(name.as_str().as_bytes(), &mut hits);
            detector.mark(value.as_bytes(), &mut hits);
        }
        detector.mark(&decoded, &mut hits);
        let mut inject = Vec::new();
        for (i, cred) in self.sandbox.creds.iter().enumerate() {
            let to_its_host = cred.spec.hosts.iter().any(|h| h.matches(&dest.host));
            let scheme_ok =
                dest.tls || self.sandbox.plain_http_credentials.contains(&cred.spec.env);
            let carried = hits[i];
            if carried && !to_its_host {
                return self.refuse(
                    &target,
                    Refusal::exfiltration(format!(
                        "the placeholder of credential {} was sent to {}, which is not one of its hosts",
                        cred.spec.env, dest.host
                    )),
                );
            }
            if carried && !scheme_ok {
                return self.refuse(
                    &target,
                    Refusal::forbidden(format!(
                        "credential {} may not be sent over plain HTTP",
                        cred.spec.env
                    )),
                );
            }
            if to_its_host && scheme_ok {
                // The real value goes only where the credential says. A placeholder anywhere
                // else in a request to its own host (another header, the query, the body) could
                // be reflected back in a form the response scrubber does not know (spelled out
                // by a model, stored and served later), so it is refused like exfiltration.
                if carried
                    && placeholder_outside_declared_position(detector, i, cred, &parts, &decoded)
                {
                    return self.refuse(
                        &target,
                        Refusal::exfiltration(format!(
                            "the placeholder of credential {} appears outside its declared \
                             position ({}); the proxy writes the real value only there",
                            cred.spec.env,
                            declared_position(&cred.spec.inject)
                        )),
                    );
                }
                inject.push(i);
            }
        }
        drop(decoded);

        let mut injected = Vec::new();
        let mut secrets = Vec::new();
        for &i in &inject {
            let cred = &self.sandbox.creds[i];
            let secret = match self
                .inner
                .secrets
                .secret(self.sandbox.server_name(), cred.spec.secret_name())
                .await
            {
                Ok(s) => s,
                Err(e) => {
                    return self.refuse(
                        &target,
                        Refusal::new(
                            StatusCode::BAD_GATEWAY,
                            format!("credential {}: {e}", cred.spec.env),
                        ),
                    );
                }
            };
            if let Err(why) = inject_credential(cred, &secret, &mut parts) {
                return self.refuse(
                    &target,
                    Refusal::new(
                        StatusCode::BAD_GATEWAY,
                        format!("credential {} cannot be injected: {why}", cred.spec.env),
                    ),
                );
            }
            injected.push(cred.spec.env.clone());
            secrets.push(secret);
        }
        let scrub = self.sandbox.scrub_set(inject, secrets);

        strip_hop_by_hop(&mut parts.headers);
        parts.headers.remove(header::CONTENT_LENGTH);
        parts.headers.remove(header::EXPECT);
        if !scrub.is_empty() {
            // Ask for an uncompressed answer so scrubbing stays cheap (a compressed one is still
            // decompressed and scrubbed, see the response side).
            parts.headers.insert(
                header::ACCEPT_ENCODING,
                HeaderValue::from_static("identity"),
            );
        }
        let request_bytes = body.len() as u64;
        let upstream_req = Request::from_parts(parts, Full::new(body));
        let (resp, addr) = match self.inner.upstream.send(&dest, upstream_req).await {
            Ok(r) => r,
            Err(e) => {
                let mut event =
                    self.event(&target, 502, Decision::Refused, Some(e.to_string()), false);
                event.credentials = injected;
                event.request_bytes = request_bytes;
                self.inner.audit.record(event);
                return text_response(
                    StatusCode::BAD_GATEWAY,
                    format!("gig-proxy could not complete this request: {e}\n"),
                );
            }
        };

        let (mut rparts, rbody) = resp.into_parts();
        strip_hop_by_hop(&mut rparts.headers);
        let no_body = target.method == "HEAD"
            || rparts.status.is_informational()
            || rparts.status == StatusCode::NO_CONTENT
            || rparts.status == StatusCode::NOT_MODIFIED;
        if no_body {
            scrub_headers(&scrub, &mut rparts.headers);
            let mut event = self.event(
                &target,
                rparts.status.as_u16(),
                Decision::Allowed,
                None,
                false,
            );
            event.credentials = injected;
            event.request_bytes = request_bytes;
            event.upstream = Some(addr);
            self.inner.audit.record(event);
            return Response::from_parts(rparts, empty());
        }
        let mut decoder = None;
        if !scrub.is_empty() {
            scrub_headers(&scrub, &mut rparts.headers);
            match content_encoding(&rparts.headers).as_deref() {
                None | Some("identity") => {}
                Some("gzip" | "x-gzip") => {
                    decoder = Some(Decoder::Gzip(flate2::write::GzDecoder::new(Vec::new()), 0))
                }
                Some("deflate") => {
                    decoder = Some(Decoder::Zlib(
                        flate2::write::ZlibDecoder::new(Vec::new()),
                        0,
                    ))
                }
                Some(other) => {
                    let mut event = self.event(
                        &target,
                        502,
                        Decision::Refused,
                        Some(format!(
                            "the response is encoded with {other:?}, which cannot be scrubbed"
                        )),
                        false,
                    );
                    event.credentials = injected;
                    event.upstream = Some(addr);
                    self.inner.audit.record(event);
                    return text_response(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "gig-proxy refused the response: encoded with {other:?}, which cannot be scrubbed\n"
                        ),
                    );
                }
            }
            if decoder.is_some() {
                rparts.headers.remove(header::CONTENT_ENCODING);
            }
            rparts.headers.remove(header::CONTENT_LENGTH);
        }
        let mut event = self.event(
            &target,
            rparts.status.as_u16(),
            Decision::Allowed,
            None,
            false,
        );
        event.credentials = injected;
        event.request_bytes = request_bytes;
        event.upstream = Some(addr);
        let body = ProxiedBody {
            inner: rbody,
            decoder,
            scrubber: (!scrub.is_empty()).then(|| StreamScrubber::new(scrub.clone())),
            scrub_trailers: scrub,
            pending_trailers: None,
            finished: false,
            audit: AuditGuard {
                sink: self.inner.audit.clone(),
                event: Some(event),
            },
        };
        Response::from_parts(rparts, body.boxed())
    }
}

/// Writes the secret where the credential says, and nowhere else (a placeholder elsewhere was
/// refused before). Whatever the server put in that position is overwritten: the injected
/// value wins.
fn inject_credential(
    cred: &Cred,
    secret: &str,
    parts: &mut http::request::Parts,
) -> Result<(), &'static str> {
    let encoded_secret: String =
        percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    match &cred.spec.inject {
        Injection::Header { name, template } => {
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| "invalid header name")?;
            let value = Zeroizing::new(template.replace("{}", secret));
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| "the secret is not a valid header value")?;
            value.set_sensitive(true);
            parts.headers.insert(name, value);
        }
        Injection::Basic { username } => {
            let creds = Zeroizing::new(format!("{username}:{secret}"));
            let value = Zeroizing::new(format!("Basic {}", STANDARD.encode(creds.as_bytes())));
            let mut value =
                HeaderValue::from_str(&value).map_err(|_| "invalid basic credentials")?;
            value.set_sensitive(true);
            parts.headers.insert(header::AUTHORIZATION, value);
        }
        Injection::Query { param } => {
            let encoded_param: String =
                percent_encoding::utf8_percent_encode(param, percent_encoding::NON_ALPHANUMERIC)
                    .to_string();
            let mut pairs: Vec<&str> = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| {
                    let key = p.split('=').next().unwrap_or("");
                    !p.is_empty()
                        && key != encoded_param
                        && percent_encoding::percent_decode_str(key).decode_utf8_lossy()
                            != param.as_str()
                })
                .collect();
            let injected = format!("{encoded_param}={encoded_secret}");
            pairs.push(&injected);
            let query = pairs.join("&");
            set_query(&mut parts.uri, Some(&query))?;
        }
    }
    Ok(())
}

/// Where a credential's real value goes, for messages.
fn declared_position(inject: &Injection) -> String {
    match inject {
        Injection::Header { name, .. } => format!("header {name}"),
        Injection::Basic { .. } => "the Authorization header (Basic)".into(),
        Injection::Query { param } => format!("query parameter {param}"),
    }
}

/// True if credential `i`'s placeholder appears in the request anywhere but the position the
/// proxy overwrites: every header but the declared one, the target without the declared query
/// parameter, and the body.
fn placeholder_outside_declared_position(
    detector: &Needles,
    i: usize,
    cred: &Cred,
    parts: &http::request::Parts,
    decoded_body: &[u8],
) -> bool {
    let declared_header = match &cred.spec.inject {
        Injection::Header { name, .. } => HeaderName::from_bytes(name.as_bytes()).ok(),
        Injection::Basic { .. } => Some(header::AUTHORIZATION),
        Injection::Query { .. } => None,
    };
    let target = match &cred.spec.inject {
        Injection::Query { param } => {
            let kept: Vec<&str> = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .filter(|p| {
                    let key = p.split('=').next().unwrap_or("");
                    percent_encoding::percent_decode_str(key).decode_utf8_lossy() != param.as_str()
                })
                .collect();
            format!("{}?{}", parts.uri.path(), kept.join("&"))
        }
        _ => parts.uri.to_string(),
    };
    let mut hits = detector.hits();
    detector.mark(target.as_bytes(), &mut hits);
    for (name, value) in &parts.headers {
        if Some(name) != declared_header.as_ref() {
            detector.mark(name.as_str().as_bytes(), &mut hits);
            detector.mark(value.as_bytes(), &mut hits);
        }
    }
    detector.mark(decoded_body, &mut hits);
    hits[i]
}

fn set_query(uri: &mut Uri, query: Option<&str>) -> Result<(), &'static str> {
    let path = uri.path().to_string();
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(pq).map_err(|_| "invalid query")?);
    *uri = Uri::from_parts(parts).map_err(|_| "invalid URI")?;
    Ok(())
}

/// Host from an authority, normalised (lowercase DNS name or canonical IP), and its port.
fn parse_authority(auth: &Authority, default_port: u16) -> Result<(String, u16), Refusal> {
    if auth.as_str().contains('@') {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "credentials in the target authority",
        ));
    }
    let host = normalize_host(auth.host()).map_err(|why| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("bad host {:?}: {why}", auth.host()),
        )
    })?;
    Ok((host, auth.port_u16().unwrap_or(default_port)))
}

fn normalize_host(raw: &str) -> Result<String, &'static str> {
    if let Some(ip) = host_ip(raw) {
        return Ok(ip.to_string());
    }
    let raw = raw.strip_suffix('.').unwrap_or(raw);
    normalize_dns_name(raw)
}

/// Whether an authority names the checked host (its port, if given, must be the checked one).
fn same_target(auth: &Authority, host: &str, port: u16) -> bool {
    !auth.as_str().contains('@')
        && normalize_host(auth.host()).is_ok_and(|h| h == host)
        && auth.port_u16().is_none_or(|p| p == port)
}

/// HTTP/1 needs exactly one `Host`, naming the target; h2 may omit it but not contradict.
fn check_host_headers(headers: &HeaderMap, host: &str, port: u16, h2: bool) -> Result<(), Refusal> {
    let hosts: Vec<&HeaderValue> = headers.get_all(header::HOST).iter().collect();
    match hosts.as_slice() {
        [] if h2 => Ok(()),
        [] => Err(Refusal::new(StatusCode::BAD_REQUEST, "no Host header")),
        [value] => {
            let auth = value
                .to_str()
                .ok()
                .and_then(|v| v.parse::<Authority>().ok())
                .ok_or_else(|| Refusal::new(StatusCode::BAD_REQUEST, "unparseable Host header"))?;
            if same_target(&auth, host, port) {
                Ok(())
            } else {
                Err(Refusal::forbidden(format!(
                    "Host {auth} does not match the destination {host}:{port}"
                )))
            }
        }
        _ => Err(Refusal::forbidden("more than one Host header")),
    }
}

fn content_encoding(headers: &HeaderMap) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(header::CONTENT_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}invalid").split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect();
    match values.as_slice() {
        [] => None,
        [one] => Some(one.clone()),
        // Stacked encodings are not unwrapped: treat as unsupported.
        many => Some(many.join(",")),
    }
}

fn inflate(encoding: &str, data: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let read = if encoding == "deflate" {
        flate2::read::ZlibDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    } else {
        flate2::read::MultiGzDecoder::new(data)
            .take(limit)
            .read_to_end(&mut out)
    };
    read.map_err(|e| format!("cannot decompress ({encoding}): {e}"))?;
    if out.len() > max {
        return Err(format!("decompresses to more than {max} bytes"));
    }
    Ok(out)
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

fn scrub_headers(scrub: &ScrubSet, headers: &mut HeaderMap) {
    for value in headers.values_mut() {
        if let Some(clean) = scrub.scrub(value.as_bytes()) {
            *value =
                HeaderValue::from_bytes(&clean).unwrap_or_else(|_| HeaderValue::from_static(""));
        }
    }
}

fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed()
}

fn text_response(status: StatusCode, text: String) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed(),
    );
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

enum Decoder {
    Gzip(flate2::write::GzDecoder<Vec<u8>>, u64),
    Zlib(flate2::write::ZlibDecoder<Vec<u8>>, u64),
}

/// Most bytes a compressed response may expand to when the proxy must decode it to scrub a
/// secret: a small body that inflates a thousandfold must not exhaust the gateway's memory.
const MAX_DECODED_RESPONSE: u64 = 256 << 20;

impl Decoder {
    fn feed(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let (out, total) = match self {
            Decoder::Gzip(d, total) => {
                d.write_all(data)?;
                (std::mem::take(d.get_mut()), total)
            }
            Decoder::Zlib(d, total) => {
                d.write_all(data)?;
                (std::mem::take(d.get_mut()), total)
            }
        };
        *total += out.len() as u64;
        if *total > MAX_DECODED_RESPONSE {
            return Err(io::Error::other(format!(
                "the compressed response expands beyond {MAX_DECODED_RESPONSE} bytes"
            )));
        }
        Ok(out)
    }
    fn finish(&mut self) -> io::Result<Vec<u8>> {
        match self {
            Decoder::Gzip(d, _) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
            Decoder::Zlib(d, _) => {
                d.try_finish()?;
                Ok(std::mem::take(d.get_mut()))
            }
        }
    }
}

/// Emits the request's audit record once the response body ends (or is abandoned).
struct AuditGuard {
    sink: Arc<dyn AuditSink>,
    event: Option<AuditEvent>,
}

impl AuditGuard {
    fn add_bytes(&mut self, n: usize) {
        if let Some(e) = &mut self.event {
            e.response_bytes += n as u64;
        }
    }
    fn finish(&mut self, error: Option<String>) {
        if let Some(mut e) = self.event.take() {
            if error.is_some() {
                e.reason = error;
            }
            self.sink.record(e);
        }
    }
}

impl Drop for AuditGuard {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// The upstream's response body on its way to the server: decompressed and scrubbed when a
/// secret was injected, counted always.
struct ProxiedBody {
    inner: Incoming,
    decoder: Option<Decoder>,
    scrubber: Option<StreamScrubber>,
    scrub_trailers: Arc<ScrubSet>,
    pending_trailers: Option<HeaderMap>,
    finished: bool,
    audit: AuditGuard,
}

impl ProxiedBody {
    fn process(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        let decoded = match &mut self.decoder {
            Some(d) => d.feed(data)?,
            None => data.to_vec(),
        };
        Ok(match &mut self.scrubber {
            Some(s) => s.push(&decoded),
            None => decoded,
        })
    }

    fn flush(&mut self) -> io::Result<Vec<u8>> {
        let mut tail = match &mut self.decoder {
            Some(d) => d.finish()?,
            None => Vec::new(),
        };
        if let Some(s) = &mut self.scrubber {
            let mut out = s.push(&tail);
            out.extend(s.finish());
            tail = out;
        }
        Ok(tail)
    }

    fn data_frame(&mut self, data: Vec<u8>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.audit.add_bytes(data.len());
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))))
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.audit.finish(Some(format!("response body: {e}")));
        Poll::Ready(Some(Err(Box::new(e))))
    }
}

impl HttpBody for ProxiedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if this.finished {
                if let Some(trailers) = this.pending_trailers.take() {
                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                }
                this.audit.finish(None);
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => match this.process(&data) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return this.data_frame(out),
                        Err(e) => return this.fail(e),
                    },
                    Err(frame) => {
                        if let Ok(mut trailers) = frame.into_trailers() {
                            if !this.scrub_trailers.is_empty() {
                                scrub_headers(&this.scrub_trailers, &mut trailers);
                            }
                            this.pending_trailers = Some(trailers);
                            this.finished = true;
                            match this.flush() {
                                Ok(tail) if !tail.is_empty() => return this.data_frame(tail),
                                Ok(_) => continue,
                                Err(e) => return this.fail(e),
                            }
                        }
                    }
                },
                Some(Err(e)) => {
                    this.audit
                        .finish(Some(format!("upstream response body: {e}")));
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                None => {
                    this.finished = true;
                    match this.flush() {
                        Ok(tail) if !tail.is_empty() => return this.data_frame(tail),
                        Ok(_) => continue,
                        Err(e) => return this.fail(e),
                    }
                }
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        if self.decoder.is_none() && self.scrubber.is_none() {
            self.inner.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
