//! Upstream connections: TLS verified against the configured roots, HTTP/1.1 or h2 by ALPN, and
//! a small pool keyed by (checked address, SNI) so keep-alive never crosses a policy decision.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, Uri, Version, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connecting to {0} failed: {1}")]
    Connect(SocketAddr, io::Error),
    #[error("connecting to {0} timed out")]
    ConnectTimeout(SocketAddr),
    #[error("TLS with {0} ({1}) failed: {2}")]
    Tls(String, SocketAddr, io::Error),
    #[error("{0} is not a valid TLS server name")]
    ServerName(String),
    #[error("HTTP handshake with {0} failed: {1}")]
    Handshake(SocketAddr, hyper::Error),
    #[error("the request to {0} failed: {1}")]
    Send(SocketAddr, hyper::Error),
    #[error("building the upstream request failed: {0}")]
    Request(http::Error),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PoolKey {
    addr: SocketAddr,
    /// `None` for plain HTTP.
    sni: Option<String>,
}

#[derive(Debug)]
enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

type Pool = Arc<Mutex<HashMap<PoolKey, Vec<(Sender, Instant)>>>>;

pub(crate) struct Upstream {
    tls: TlsConnector,
    pool: Pool,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_key: usize,
}

/// Where a request goes: already checked addresses, the host name it is for, TLS or not.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) addrs: Vec<SocketAddr>,
    pub(crate) tls: bool,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

impl Upstream {
    pub(crate) fn new(
        config: ClientConfig,
        connect_timeout: Duration,
        idle_timeout: Duration,
        max_idle_per_key: usize,
    ) -> Self {
        Upstream {
            tls: TlsConnector::from(Arc::new(config)),
            pool: Arc::default(),
            connect_timeout,
            idle_timeout,
            max_idle_per_key,
        }
    }

    /// Sends `req` (origin-form URI, any version) to `dest`, reusing a pooled connection to the
    /// same checked address and name when one is free. Returns the address it used.
    pub(crate) async fn send(
        &self,
        dest: &Destination,
        req: Request<Full<Bytes>>,
    ) -> Result<(Response<Incoming>, SocketAddr), UpstreamError> {
        let mut req = req;
        let mut last_err = None;
        for addr in &dest.addrs {
            let key = PoolKey {
                addr: *addr,
                sni: dest.tls.then(|| dest.host.clone()),
            };
            // A pooled connection the upstream closed meanwhile hands the request back unsent;
            // then a fresh connection gets it.
            if let Some(sender) = self.checkout(&key) {
                match self.try_send(&key, dest, sender, req).await {
                    Ok(resp) => return Ok((resp, *addr)),
                    Err(Retry::Unsent(back)) => req = back,
                    Err(Retry::Failed(e)) => return Err(e),
                }
            }
            let sender = match self.connect(&key, &dest.host).await {
                Ok(s) => s,
                Err(e) => {
                    last_err = Some(e);
                    continue;
                }
            };
            return match self.try_send(&key, dest, sender, req).await {
                Ok(resp) => Ok((resp, *addr)),
                Err(Retry::Unsent(_)) => Err(UpstreamError::Connect(
                    *addr,
                    io::Error::other("the new connection closed before the request was sent"),
                )),
                Err(Retry::Failed(e)) => Err(e),
            };
        }
        Err(last_err.unwrap_or_else(|| {
            UpstreamError::Connect(
                SocketAddr::from(([0, 0, 0, 0], dest.port)),
                io::Error::other("no address to connect to"),
            )
        }))
    }

    fn checkout(&self, key: &PoolKey) -> Option<Sender> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool.get_mut(key)?;
        idle.retain(|(s, since)| !s.is_closed() && since.elapsed() < self.idle_timeout);
        // h2 senders stay pooled (multiplexed); an h1 sender is taken out while in use.
        if let Some(h2) = idle.iter().find_map(|(s, _)| match s {
            Sender::H2(s) => Some(s.clone()),
            Sender::H1(_) => None,
        }) {
            return Some(Sender::H2(h2));
        }
        idle.pop().map(|(s, _)| s)
    }

    fn put_back(pool: &Pool, key: PoolKey, sender: Sender, max: usize) {
        let mut pool = pool.lock().unwrap_or_else(|p| p.into_inner());
        let idle = pool.entry(key).or_default();
        if idle.len() < max {
            idle.push((sender, Instant::now()));
        }
    }

    async fn connect(&self, key: &PoolKey, host: &str) -> Result<Sender, UpstreamError> {
        let addr = key.addr;
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(addr))?
            .map_err(|e| UpstreamError::Connect(addr, e))?;
        let _ = tcp.set_nodelay(true);
        let Some(sni) = &key.sni else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| UpstreamError::Handshake(addr, e))?;
            tokio::spawn(conn);
            return Ok(Sender::H1(sender));
        };
        let name = ServerName::try_from(sni.clone())
            .map_err(|_| UpstreamError::ServerName(host.to_string()))?;
        let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout(addr))?
            .map_err(|e| UpstreamError::Tls(host.to_string(), addr, e))?;
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        if h2 {
            let (sender, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|e| UpstreamError::Handshake(addr, e))?;
            tokio::spawn(conn);
            Self::put_back(
                &self.pool,
                key.clone(),
                Sender::H2(sender.clone()),
                self.max_idle_per_key,
            );
            Ok(Sender::H2(sender))
        } else {
            let (sender, conn) = http1::handshake(io)
                .await
                .map_err(|e| UpstreamError::Handshake(addr, e))?;
            tokio::spawn(conn);
            Ok(Sender::H1(sender))
        }
    }

    async fn try_send(
        &self,
        key: &PoolKey,
        dest: &Destination,
        sender: Sender,
        req: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, Retry> {
        let addr = key.addr;
        match sender {
            Sender::H1(mut s) => {
                if s.ready().await.is_err() {
                    return Err(Retry::Unsent(req));
                }
                let req = for_h1(dest, req).map_err(Retry::Failed)?;
                match s.try_send_request(req).await {
                    Ok(resp) => {
                        // Back into the pool once the response body has been read to the end.
                        let pool = self.pool.clone();
                        let key = key.clone();
                        let max = self.max_idle_per_key;
                        tokio::spawn(async move {
                            if s.ready().await.is_ok() {
                                Self::put_back(&pool, key, Sender::H1(s), max);
                            }
                        });
                        Ok(resp)
                    }
                    Err(mut e) => match e.take_message() {
                        Some(req) => Err(Retry::Unsent(back_to_origin_form(req))),
                        None => Err(Retry::Failed(UpstreamError::Send(addr, e.into_error()))),
                    },
                }
            }
            Sender::H2(mut s) => {
                if s.ready().await.is_err() {
                    return Err(Retry::Unsent(req));
                }
                let req = for_h2(dest, req).map_err(Retry::Failed)?;
                match s.try_send_request(req).await {
                    Ok(resp) => Ok(resp),
                    Err(mut e) => match e.take_message() {
                        Some(req) => Err(Retry::Unsent(back_to_origin_form(req))),
                        None => Err(Retry::Failed(UpstreamError::Send(addr, e.into_error()))),
                    },
                }
            }
        }
    }
}

enum Retry {
    Unsent(Request<Full<Bytes>>),
    Failed(UpstreamError),
}

fn authority(dest: &Destination) -> String {
    let default = if dest.tls { 443 } else { 80 };
    let host = if dest.host.contains(':') {
        format!("[{}]", dest.host)
    } else {
        dest.host.clone()
    };
    if dest.port == default {
        host
    } else {
        format!("{host}:{}", dest.port)
    }
}

/// HTTP/1.1: origin-form target and exactly one `Host`, the checked one.
fn for_h1(
    dest: &Destination,
    mut req: Request<Full<Bytes>>,
) -> Result<Request<Full<Bytes>>, UpstreamError> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    *req.uri_mut() = pq
        .parse::<Uri>()
        .map_err(|e| UpstreamError::Request(e.into()))?;
    *req.version_mut() = Version::HTTP_11;
    let host =
        HeaderValue::from_str(&authority(dest)).map_err(|e| UpstreamError::Request(e.into()))?;
    req.headers_mut().insert(header::HOST, host);
    Ok(req)
}

/// h2: absolute URI (hyper writes `:authority` from it) and no `Host` header.
fn for_h2(
    dest: &Destination,
    mut req: Request<Full<Bytes>>,
) -> Result<Request<Full<Bytes>>, UpstreamError> {
    let pq = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri = Uri::builder()
        .scheme("https")
        .authority(authority(dest))
        .path_and_query(pq)
        .build()
        .map_err(UpstreamError::Request)?;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_2;
    req.headers_mut().remove(header::HOST);
    Ok(req)
}

fn back_to_origin_form(mut req: Request<Full<Bytes>>) -> Request<Full<Bytes>> {
    if let Some(pq) = req.uri().path_and_query().map(|p| p.as_str().to_string())
        && let Ok(uri) = pq.parse()
    {
        *req.uri_mut() = uri;
    }
    req
}
