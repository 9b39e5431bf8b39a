//! Gig'MCP configuration: the one place the environment is read.
//!
//! Raw inputs (environment variables, the `mcpServers` file) are parsed into validated domain
//! types; anything missing or malformed is refused with a message naming the variable or file.
//! Defaults fail closed. Nothing here reads the process environment directly: callers pass an
//! [`Env`], so tests substitute a map instead of mutating global state.

#![forbid(unsafe_code)]
// The one place the process environment is read (clippy.toml bans it everywhere else).
#![allow(clippy::disallowed_methods)]

mod control_plane;
mod metrics;
mod runtime;
mod servers;
mod telemetry;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

pub use control_plane::OidcConfig;
pub use gig_policy::ServerName;
pub use gig_policy::instances::{InstanceMode, InstancePolicy};
pub use gig_policy::remote::{
    HeaderTemplate, OAuthGrant, RemoteOAuth, RemoteSpec, RemoteTransport,
};
pub use metrics::MetricsConfig;
pub use runtime::{DEFAULT_SANDBOX_IDS, EgressConfig, InstallConfig, sandbox_ids};
pub use servers::{
    DEFAULT_LIMITS, DeclaredServers, SandboxPolicy, ServerSpec, ServersFileError, StdioCommand,
    parse_servers_file,
};
pub use telemetry::TracesConfig;

/// Where configuration values come from. The process environment in production, a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl ProcessEnv {
    /// Every variable of the process environment, for the few variables a plain stdio child
    /// inherits (the launcher filters them; nothing else of this list is used).
    pub fn all(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

/// `GIG_BOOTSTRAP`: the in-sandbox init to bind into every sandbox, when not the `bootstrap`
/// installed next to the gateway's executable.
pub fn bootstrap_override(env: &dyn Env) -> Option<PathBuf> {
    env.var("GIG_BOOTSTRAP")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// One documented `GIG_*` variable. `docs/configuration.md` is checked against this table.
#[derive(Debug, Clone, Copy)]
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every variable the gateway reads, with its default and meaning.
pub const VARIABLES: &[VarDoc] = &[
    VarDoc {
        name: "GIG_BEARER_TOKEN",
        default: "(required)",
        meaning: "Static bearer token clients send on /mcp. At least 16 characters.",
    },
    VarDoc {
        name: "GIG_MASTER_KEY",
        default: "(required)",
        meaning: "64 hex characters (32 bytes): the key that wraps every secret's data key. A different key than the database was sealed with is refused at start.",
    },
    VarDoc {
        name: "GIG_NEW_MASTER_KEY",
        default: "(none)",
        meaning: "Only for `gigmcp vault rotate`: the key to rotate to (alternatively `--new-key-file`).",
    },
    VarDoc {
        name: "GIG_DATABASE_URL",
        default: "sqlite://<GIG_DATA_DIR>/gigmcp.db",
        meaning: "The store: `sqlite://PATH` (embedded, WAL) or `postgres://USER:PASSWORD@HOST:PORT/DB` (PostgreSQL 15+, for several gateway replicas).",
    },
    VarDoc {
        name: "GIG_BOOTSTRAP",
        default: "<directory of gigmcp>/bootstrap",
        meaning: "The in-sandbox init bound into every sandbox (`gigmcp sandbox exec`). A statically linked build is preferred: `make bootstrap`.",
    },
    VarDoc {
        name: "GIG_LISTEN",
        default: "127.0.0.1:8080",
        meaning: "Address the HTTP server binds.",
    },
    VarDoc {
        name: "GIG_PUBLIC_URL",
        default: "http://<GIG_LISTEN>",
        meaning: "External URL of the gateway; its host is accepted in Host/Origin checks besides loopback.",
    },
    VarDoc {
        name: "GIG_DATA_DIR",
        default: "./data",
        meaning: "Directory for the gateway's state; created with mode 0711 (not listable; state files are 0600). Its `public/` subdirectory holds what sandboxes read: extracted images and the egress proxy's CA certificate.",
    },
    VarDoc {
        name: "GIG_SERVERS_FILE",
        default: "(none)",
        meaning: "JSON file in the `mcpServers` format declaring backends: local (`command`) and remote (`url`).",
    },
    VarDoc {
        name: "GIG_METRICS_LISTEN",
        default: "(off)",
        meaning: "Address of the Prometheus scrape listener (`GET /metrics`, OpenMetrics text, no authentication), e.g. `127.0.0.1:9464`. Never GIG_LISTEN's port: scrapes need no client token, so they never share /mcp's listener. Keep it on loopback or a monitoring network.",
    },
    VarDoc {
        name: "GIG_LOG_FORMAT",
        default: "text",
        meaning: "`text` or `json` log lines on stderr.",
    },
    VarDoc {
        name: "OTEL_EXPORTER_OTLP_ENDPOINT",
        default: "(none: traces off)",
        meaning: "OpenTelemetry collector base URL; spans go to `…/v1/traces` over OTLP/HTTP (protobuf). `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` sets the full URL instead.",
    },
    VarDoc {
        name: "OTEL_TRACES_EXPORTER",
        default: "otlp",
        meaning: "`none` turns traces off even with an endpoint set.",
    },
    VarDoc {
        name: "OTEL_SERVICE_NAME",
        default: "gigmcp",
        meaning: "`service.name` of the exported spans.",
    },
    VarDoc {
        name: "GIG_LOG",
        default: "info,rmcp=warn",
        meaning: "Log filter in `tracing` EnvFilter syntax, e.g. `info,gig_gateway=debug`.",
    },
    VarDoc {
        name: "GIG_WORKER_THREADS",
        default: "1",
        meaning: "Async runtime threads. 1 runs everything on one thread, which measured fastest on 2 cores shared with backends (see docs/design/gateway.md, decision 18); raise it on larger machines.",
    },
    VarDoc {
        name: "GIG_CALL_TIMEOUT_SECS",
        default: "60",
        meaning: "Per-call deadline for a request forwarded to a backend.",
    },
    VarDoc {
        name: "GIG_MAX_MESSAGE_BYTES",
        default: "4194304",
        meaning: "Largest JSON-RPC message accepted from a client body or a backend's stdout line.",
    },
    VarDoc {
        name: "GIG_MAX_INFLIGHT_PER_BACKEND",
        default: "256",
        meaning: "Calls a single backend may have in flight; further calls wait up to the call timeout.",
    },
    VarDoc {
        name: "GIG_MAX_SESSIONS",
        default: "4096",
        meaning: "Concurrent MCP sessions (initialize-era); new sessions beyond it get 503.",
    },
    VarDoc {
        name: "GIG_MAX_CONNECTIONS",
        default: "4096",
        meaning: "Open client TCP connections at once. Lowered at start to the process's open-file limit minus a reserve of 256 (backends, the store), so connections can never starve a backend restart; connections beyond it are closed at once.",
    },
    VarDoc {
        name: "GIG_MAX_CONNECTIONS_PER_IP",
        default: "1024",
        meaning: "Open client TCP connections from one source address (an IPv6 /64 counts as one address); more are closed at once. Each initialize-era session holds about two (its event stream and its calls); behind a reverse proxy every client shares the proxy's address, so raise it to GIG_MAX_CONNECTIONS there.",
    },
    VarDoc {
        name: "GIG_HEADER_READ_TIMEOUT_SECS",
        default: "10",
        meaning: "A client must send a request's complete headers within this time (also how long an idle connection is kept); slower connections are closed.",
    },
    VarDoc {
        name: "GIG_SESSION_IDLE_SECS",
        default: "1800",
        meaning: "An MCP session with no traffic for this long expires; its id then gets 404.",
    },
    VarDoc {
        name: "GIG_SHUTDOWN_GRACE_SECS",
        default: "15",
        meaning: "On SIGTERM/SIGINT, how long in-flight calls may finish before sessions are closed.",
    },
    VarDoc {
        name: "GIG_INDEX_URL",
        default: "(none: installs off)",
        meaning: "The signed server index: `https://…` or `file://…`.",
    },
    VarDoc {
        name: "GIG_INDEX_PUBKEYS",
        default: "(none)",
        meaning: "Comma-separated `ed25519:<base64>` public keys (printed by `registryctl keygen`); the index must carry a valid signature by one of them, or by N of them with a `threshold=N` entry in the list.",
    },
    VarDoc {
        name: "GIG_INSTALL",
        default: "(none)",
        meaning: "Comma-separated refs (`echo`, `fetch@1.0.0`) installed from the index at start; a failed install stops the start with its reason.",
    },
    VarDoc {
        name: "GIG_REGISTRY_PLAIN_HTTP",
        default: "0",
        meaning: "1: speak plain HTTP to OCI registries on loopback (tests, local mirrors); never honoured for other hosts.",
    },
    VarDoc {
        name: "GIG_OCI_LAYOUT",
        default: "(none)",
        meaning: "An OCI image-layout directory to take images from instead of their registries (air-gapped installs); every image is still verified against the index's digest.",
    },
    VarDoc {
        name: "GIG_SANDBOX_POOL",
        default: "198.19.0.0/16",
        meaning: "IPv4 range each sandbox's /30 veth pair comes from (RFC 2544 benchmarking space: clear of LANs, CGNAT and 169.254/16). Gateways on one host share it: each claims an equal part (up to 16, each at least a /26) with its own link names and firewall table.",
    },
    VarDoc {
        name: "GIG_SANDBOX_IDS",
        default: "1879048192-1879113727",
        meaning: "When the gateway runs as root: the host uids (and equal gids) sandboxes run as, one of its own per running sandbox, so no sandbox (or a kernel escape from one) can signal or ptrace another or share its process limit. Must start above 65535 and hold no host user or group (checked at start). Gateways on one host share it; each id is claimed with an abstract socket while its sandbox lives.",
    },
    VarDoc {
        name: "GIG_EGRESS_PORT",
        default: "1023",
        meaning: "The egress proxy's port on every sandbox's host-side address. Privileged by default, so no unprivileged local user can bind it first (IP_FREEBIND) and deny sandboxes their egress; it must not be taken by a service bound to 0.0.0.0.",
    },
    VarDoc {
        name: "GIG_EGRESS_EXTRA_ROOTS",
        default: "(none)",
        meaning: "PEM file of extra CA certificates trusted for upstream TLS besides the public roots: by the egress proxy, and by the gateway's own requests (OAuth client metadata documents).",
    },
    VarDoc {
        name: "GIG_EGRESS_HOSTS",
        default: "(none)",
        meaning: "Comma-separated `NAME=IP` the proxy resolves without DNS (like /etc/hosts).",
    },
    VarDoc {
        name: "GIG_EGRESS_ALLOW_ADDRESSES",
        default: "(none)",
        meaning: "Comma-separated IPs/CIDRs every sandboxed server, and the gateway's own requests (OAuth client metadata documents), may reach although they are not public (internal services). Loopback, private and link-local destinations are refused otherwise.",
    },
    VarDoc {
        name: "GIG_OIDC_ISSUER",
        default: "(none: control plane off)",
        meaning: "OpenID Connect issuer for sign-in to `/api` and the dashboard. Unset: every `/api` route answers 503 saying how to enable it; `/mcp` keeps working with the static token.",
    },
    VarDoc {
        name: "GIG_OIDC_CLIENT_ID",
        default: "(required with GIG_OIDC_ISSUER)",
        meaning: "The gateway's client id at the identity provider.",
    },
    VarDoc {
        name: "GIG_OIDC_CLIENT_SECRET",
        default: "(required with GIG_OIDC_ISSUER)",
        meaning: "The gateway's client secret at the identity provider (never logged).",
    },
    VarDoc {
        name: "GIG_OIDC_REDIRECT_URL",
        default: "$GIG_PUBLIC_URL/api/auth/callback",
        meaning: "Where the identity provider sends the browser back; register exactly this URL there.",
    },
    VarDoc {
        name: "GIG_OIDC_SCOPES",
        default: "openid email profile groups",
        meaning: "Scopes requested at sign-in (`openid` is always included).",
    },
    VarDoc {
        name: "GIG_OIDC_GROUPS_CLAIM",
        default: "groups",
        meaning: "The ID-token claim holding the user's groups (a list of strings).",
    },
    VarDoc {
        name: "GIG_OIDC_ROLE_MAP",
        default: "(none: everyone is member)",
        meaning: "Group to role, e.g. `gig-admins=admin,gig-ops=operator,gig-viewers=viewer`; a user in several mapped groups gets the highest role, in none `member`. Roles are set at every sign-in.",
    },
    VarDoc {
        name: "GIG_OIDC_DISCOVERY_TIMEOUT_SECS",
        default: "10",
        meaning: "How long the gateway waits for the issuer's discovery document at start before it stops with an error.",
    },
    VarDoc {
        name: "GIG_OAUTH_ACCESS_TOKEN_TTL_SECS",
        default: "3600",
        meaning: "Lifetime of the access tokens the gateway issues to MCP clients that sign in with OAuth (1 to 86400).",
    },
    VarDoc {
        name: "GIG_OAUTH_REFRESH_TOKEN_TTL_SECS",
        default: "2592000",
        meaning: "Lifetime of a refresh token (60 s to 365 days); every use replaces it, and presenting a used one again revokes the client's grant.",
    },
];
/// Reads `name` as a master key: exactly 64 hex characters. The value never appears in an error.
pub fn master_key_hex(env: &dyn Env, name: &'static str) -> Result<SecretString, ConfigError> {
    let value = env
        .var(name)
        .filter(|v| !v.is_empty())
        .ok_or(ConfigError::MissingMasterKey(name))?;
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(
            name,
            "[redacted]",
            format!(
                "must be exactly 64 hex characters (32 bytes), got {} characters; generate one with `openssl rand -hex 32`",
                value.len()
            ),
        ));
    }
    Ok(SecretString::from(value))
}

/// Validated gateway configuration.
#[derive(Debug)]
pub struct GatewayConfig {
    pub bearer_token: SecretString,
    pub listen: SocketAddr,
    pub public_url: url::Url,
    pub store: StoreConfig,
    pub servers_file: Option<PathBuf>,
    pub logging: LogConfig,
    pub worker_threads: usize,
    pub limits: Limits,
    /// OIDC sign-in for `/api`; `None`: the control plane is off.
    pub oidc: Option<OidcConfig>,
}

/// Where state lives; all the operator CLI needs besides the master key.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub data_dir: PathBuf,
    /// May carry a database password.
    pub database_url: SecretString,
}

impl StoreConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let data_dir = env
            .var("GIG_DATA_DIR")
            .filter(|d| !d.is_empty())
            .map_or_else(|| PathBuf::from("./data"), PathBuf::from);
        let database_url = match env.var("GIG_DATABASE_URL").filter(|u| !u.is_empty()) {
            Some(url)
                if url.starts_with("sqlite:")
                    || url.starts_with("postgres://")
                    || url.starts_with("postgresql://") =>
            {
                url
            }
            Some(_) => {
                return Err(invalid(
                    "GIG_DATABASE_URL",
                    "[redacted]",
                    "expected sqlite://PATH or postgres://...",
                ));
            }
            None => format!("sqlite://{}", data_dir.join("gigmcp.db").display()),
        };
        Ok(Self {
            data_dir,
            database_url: SecretString::from(database_url),
        })
    }
}

/// How and what to log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
    pub filter: String,
}

impl LogConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let format = match env.var("GIG_LOG_FORMAT").as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return Err(invalid("GIG_LOG_FORMAT", other, "expected text or json")),
        };
        Ok(Self {
            format,
            filter: env
                .var("GIG_LOG")
                .unwrap_or_else(|| "info,rmcp=warn".into()),
        })
    }
}

/// Bounds on everything a client or backend can make the gateway hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub call_timeout: Duration,
    pub max_message_bytes: usize,
    pub max_inflight_per_backend: usize,
    pub max_sessions: usize,
    pub session_idle: Duration,
    pub shutdown_grace: Duration,
    /// Client TCP connections at once (before the open-file limit lowers it).
    pub max_connections: usize,
    /// Client TCP connections from one source address.
    pub max_connections_per_ip: usize,
    /// Time a client has to send a request's headers.
    pub header_read_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(60),
            max_message_bytes: 4 * 1024 * 1024,
            max_inflight_per_backend: 256,
            max_sessions: 4096,
            session_idle: Duration::from_secs(1800),
            shutdown_grace: Duration::from_secs(15),
            max_connections: 4096,
            max_connections_per_ip: 1024,
            header_read_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "GIG_BEARER_TOKEN is not set: the gateway refuses to start without a client token \
         (generate one with `openssl rand -hex 24`, or use `make run`, which generates one)"
    )]
    MissingBearerToken,
    #[error(
        "{0} is not set: it is the master key that protects stored secrets \
         (generate one with `openssl rand -hex 32` and keep it safe; `make run` keeps a dev key under the data dir)"
    )]
    MissingMasterKey(&'static str),
    #[error("GIG_BEARER_TOKEN is too short ({0} characters): use at least 16 random characters")]
    WeakBearerToken(usize),
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

const MIN_TOKEN_CHARS: usize = 16;

impl GatewayConfig {
    /// `GIG_SERVERS_FILE`, for the operator CLI too (which needs no client token).
    pub fn servers_file(env: &dyn Env) -> Option<PathBuf> {
        env.var("GIG_SERVERS_FILE")
            .filter(|f| !f.is_empty())
            .map(PathBuf::from)
    }

    /// Reads and validates every `GIG_*` variable.
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let token = env
            .var("GIG_BEARER_TOKEN")
            .filter(|t| !t.is_empty())
            .ok_or(ConfigError::MissingBearerToken)?;
        let token_chars = token.chars().count();
        if token_chars < MIN_TOKEN_CHARS {
            return Err(ConfigError::WeakBearerToken(token_chars));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid(
                "GIG_BEARER_TOKEN",
                "[redacted]",
                "must be printable ASCII without spaces (it travels in an HTTP header)",
            ));
        }

        let listen_raw = env
            .var("GIG_LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_raw
            .parse()
            .map_err(|e| invalid("GIG_LISTEN", &listen_raw, e))?;

        let public_url = match env.var("GIG_PUBLIC_URL") {
            Some(raw) => {
                let url = url::Url::parse(&raw).map_err(|e| invalid("GIG_PUBLIC_URL", &raw, e))?;
                if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                    return Err(invalid(
                        "GIG_PUBLIC_URL",
                        &raw,
                        "must be an http(s) URL with a host",
                    ));
                }
                url
            }
            None => url::Url::parse(&format!("http://{listen}"))
                .map_err(|e| invalid("GIG_LISTEN", &listen_raw, e))?,
        };

        let defaults = Limits::default();
        let limits = Limits {
            call_timeout: secs(env, "GIG_CALL_TIMEOUT_SECS", defaults.call_timeout)?,
            max_message_bytes: positive(env, "GIG_MAX_MESSAGE_BYTES", defaults.max_message_bytes)?,
            max_inflight_per_backend: positive(
                env,
                "GIG_MAX_INFLIGHT_PER_BACKEND",
                defaults.max_inflight_per_backend,
            )?,
            max_sessions: positive(env, "GIG_MAX_SESSIONS", defaults.max_sessions)?,
            session_idle: secs(env, "GIG_SESSION_IDLE_SECS", defaults.session_idle)?,
            shutdown_grace: secs(env, "GIG_SHUTDOWN_GRACE_SECS", defaults.shutdown_grace)?,
            max_connections: positive(env, "GIG_MAX_CONNECTIONS", defaults.max_connections)?,
            max_connections_per_ip: positive(
                env,
                "GIG_MAX_CONNECTIONS_PER_IP",
                defaults.max_connections_per_ip,
            )?,
            header_read_timeout: secs(
                env,
                "GIG_HEADER_READ_TIMEOUT_SECS",
                defaults.header_read_timeout,
            )?,
        };

        let store = StoreConfig::from_env(env)?;
        let logging = LogConfig::from_env(env)?;
        let oidc = OidcConfig::from_env(env, &public_url)?;

        Ok(Self {
            bearer_token: SecretString::from(token),
            listen,
            public_url,
            store,
            servers_file: Self::servers_file(env),
            logging,
            worker_threads: positive(env, "GIG_WORKER_THREADS", 1)?,
            limits,
            oidc,
        })
    }
}

pub(crate) fn invalid(name: &'static str, value: &str, reason: impl ToString) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_string(),
    }
}

fn positive(env: &dyn Env, name: &'static str, default: usize) -> Result<usize, ConfigError> {
    match env.var(name) {
        None => Ok(default),
        Some(raw) => match raw.parse::<usize>() {
            Ok(0) => Err(invalid(name, &raw, "must be greater than zero")),
            Ok(n) => Ok(n),
            Err(e) => Err(invalid(name, &raw, e)),
        },
    }
}

fn secs(env: &dyn Env, name: &'static str, default: Duration) -> Result<Duration, ConfigError> {
    const MAX_SECS: usize = 7 * 24 * 3600;
    let n = positive(env, name, default.as_secs() as usize)?;
    if n > MAX_SECS {
        return Err(invalid(name, &n.to_string(), "must be at most one week"));
    }
    Ok(Duration::from_secs(n as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    /// A test environment from pairs (shared with the other modules' tests).
    pub(crate) fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const TOKEN: &str = "0123456789abcdef0123";

    #[test]
    fn missing_token_is_refused_with_a_hint() {
        let err = GatewayConfig::from_env(&env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingBearerToken));
        assert!(err.to_string().contains("openssl rand"));
        let err = GatewayConfig::from_env(&env(&[("GIG_BEARER_TOKEN", "")])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingBearerToken));
    }

    #[test]
    fn short_or_unprintable_tokens_are_refused_without_echoing_them() {
        let err = GatewayConfig::from_env(&env(&[("GIG_BEARER_TOKEN", "short")])).unwrap_err();
        assert!(matches!(err, ConfigError::WeakBearerToken(5)));
        let spaced = "0123456789 abcdef0123";
        let err = GatewayConfig::from_env(&env(&[("GIG_BEARER_TOKEN", spaced)])).unwrap_err();
        assert!(!err.to_string().contains(spaced));
    }

    #[test]
    fn defaults_are_loopback_and_bounded() {
        let cfg = GatewayConfig::from_env(&env(&[("GIG_BEARER_TOKEN", TOKEN)])).unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(cfg.public_url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(cfg.store.data_dir, PathBuf::from("./data"));
        assert_eq!(cfg.limits, Limits::default());
        assert_eq!(cfg.logging.format, LogFormat::Text);
        assert_eq!(cfg.bearer_token.expose_secret(), TOKEN);
        assert!(!format!("{cfg:?}").contains(TOKEN), "Debug must redact");
    }

    #[test]
    fn every_variable_is_validated() {
        for (name, bad) in [
            ("GIG_LISTEN", "localhost"),
            ("GIG_PUBLIC_URL", "ftp://x"),
            ("GIG_PUBLIC_URL", "not a url"),
            ("GIG_LOG_FORMAT", "xml"),
            ("GIG_CALL_TIMEOUT_SECS", "0"),
            ("GIG_CALL_TIMEOUT_SECS", "-1"),
            ("GIG_CALL_TIMEOUT_SECS", "99999999"),
            ("GIG_MAX_MESSAGE_BYTES", "lots"),
            ("GIG_MAX_SESSIONS", "0"),
            ("GIG_MAX_CONNECTIONS", "0"),
            ("GIG_MAX_CONNECTIONS_PER_IP", "x"),
            ("GIG_HEADER_READ_TIMEOUT_SECS", "0"),
            ("GIG_WORKER_THREADS", "0"),
        ] {
            let err = GatewayConfig::from_env(&env(&[("GIG_BEARER_TOKEN", TOKEN), (name, bad)]))
                .expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn overrides_apply() {
        let cfg = GatewayConfig::from_env(&env(&[
            ("GIG_BEARER_TOKEN", TOKEN),
            ("GIG_LISTEN", "0.0.0.0:9000"),
            ("GIG_PUBLIC_URL", "https://mcp.example.com"),
            ("GIG_CALL_TIMEOUT_SECS", "5"),
            ("GIG_LOG_FORMAT", "json"),
        ]))
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.public_url.host_str(), Some("mcp.example.com"));
        assert_eq!(cfg.limits.call_timeout, Duration::from_secs(5));
        assert_eq!(cfg.logging.format, LogFormat::Json);
    }

    #[test]
    fn master_keys_must_be_64_hex_characters_and_are_never_echoed() {
        let good = "ab".repeat(32);
        assert!(master_key_hex(&env(&[("GIG_MASTER_KEY", &good)]), "GIG_MASTER_KEY").is_ok());
        assert!(matches!(
            master_key_hex(&env(&[]), "GIG_MASTER_KEY"),
            Err(ConfigError::MissingMasterKey("GIG_MASTER_KEY"))
        ));
        for bad in [
            "ab".repeat(31),
            "zz".repeat(32),
            format!("{good}00"),
            "secret-password".into(),
        ] {
            let err = master_key_hex(&env(&[("GIG_MASTER_KEY", &bad)]), "GIG_MASTER_KEY")
                .unwrap_err()
                .to_string();
            assert!(err.contains("64 hex"), "{err}");
            assert!(!err.contains(&bad), "the key leaked into {err}");
        }
    }

    #[test]
    fn database_url_defaults_to_sqlite_in_the_data_dir() {
        let cfg = GatewayConfig::from_env(&env(&[
            ("GIG_BEARER_TOKEN", TOKEN),
            ("GIG_DATA_DIR", "/var/lib/gig"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.store.database_url.expose_secret(),
            "sqlite:///var/lib/gig/gigmcp.db"
        );
        let err = GatewayConfig::from_env(&env(&[
            ("GIG_BEARER_TOKEN", TOKEN),
            ("GIG_DATABASE_URL", "mysql://u:pw@h/db"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("GIG_DATABASE_URL") && !err.to_string().contains("pw"));
    }

    /// The documentation lists exactly the variables the code reads.
    #[test]
    /// docs/configuration.md's variable table is generated from [`VARIABLES`] and checked
    /// here; `UPDATE_DOCS=1 cargo test -p gig-config` rewrites it.
    fn configuration_doc_matches_the_code() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let doc = std::fs::read_to_string(&path).unwrap();
        let mut table = String::from("| Variable | Default | Meaning |\n|---|---|---|\n");
        for var in VARIABLES {
            table.push_str(&format!(
                "| `{}` | `{}` | {} |\n",
                var.name, var.default, var.meaning
            ));
        }
        let start = doc.find("| Variable |").expect("the variable table");
        let end = doc
            .find("## The servers file")
            .expect("the section after the table");
        let want = format!("{}{table}\n{}", &doc[..start], &doc[end..]);
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(&path, &want).unwrap();
            return;
        }
        assert!(
            doc == want,
            "docs/configuration.md is out of date: run UPDATE_DOCS=1 cargo test -p gig-config"
        );
        for word in doc.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("GIG_") && word.len() > 4 {
                assert!(
                    VARIABLES.iter().any(|v| v.name == word),
                    "docs mention {word}, which the code does not read"
                );
            }
        }
    }
}
