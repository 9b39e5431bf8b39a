//! `GIG_METRICS_LISTEN`: where Prometheus scrapes `/metrics`. Off unless set, and never the
//! address `/mcp` listens on: a scrape carries no client token, so it gets a port of its own.

use std::net::SocketAddr;

use crate::{ConfigError, Env, invalid};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    /// `None`: no metrics listener.
    pub listen: Option<SocketAddr>,
}

impl MetricsConfig {
    /// `gateway_listen` is `GIG_LISTEN`, which the metrics listener may not share.
    pub fn from_env(env: &dyn Env, gateway_listen: SocketAddr) -> Result<Self, ConfigError> {
        let Some(raw) = env.var("GIG_METRICS_LISTEN").filter(|v| !v.is_empty()) else {
            return Ok(MetricsConfig::default());
        };
        let listen: SocketAddr = raw
            .parse()
            .map_err(|e| invalid("GIG_METRICS_LISTEN", &raw, e))?;
        if listen.port() == gateway_listen.port() && listen.port() != 0 {
            return Err(invalid(
                "GIG_METRICS_LISTEN",
                &raw,
                format!(
                    "the port of GIG_LISTEN ({gateway_listen}): metrics need a port of their own"
                ),
            ));
        }
        Ok(MetricsConfig {
            listen: Some(listen),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(value: Option<&str>) -> BTreeMap<String, String> {
        value
            .map(|v| ("GIG_METRICS_LISTEN".to_owned(), v.to_owned()))
            .into_iter()
            .collect()
    }

    #[test]
    fn metrics_are_off_by_default_and_never_on_the_mcp_port() {
        let gateway: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            MetricsConfig::from_env(&env(None), gateway).unwrap().listen,
            None
        );
        assert_eq!(
            MetricsConfig::from_env(&env(Some("")), gateway)
                .unwrap()
                .listen,
            None
        );
        let on = MetricsConfig::from_env(&env(Some("127.0.0.1:9464")), gateway).unwrap();
        assert_eq!(on.listen, Some("127.0.0.1:9464".parse().unwrap()));
        for shared in ["127.0.0.1:8080", "0.0.0.0:8080"] {
            let err = MetricsConfig::from_env(&env(Some(shared)), gateway).unwrap_err();
            assert!(err.to_string().contains("GIG_METRICS_LISTEN"), "{err}");
        }
        assert!(MetricsConfig::from_env(&env(Some("localhost")), gateway).is_err());
    }
}
