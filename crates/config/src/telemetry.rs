//! OpenTelemetry traces: the standard `OTEL_*` variables the gateway honours.

use crate::{ConfigError, Env, invalid};

/// OpenTelemetry traces over OTLP/HTTP (protobuf), opt-in with the standard `OTEL_*` variables:
/// on when an endpoint is set and `OTEL_TRACES_EXPORTER` is not `none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesConfig {
    /// Where spans are POSTed (`…/v1/traces`); `None`: traces are off.
    pub endpoint: Option<url::Url>,
    pub service_name: String,
}

impl TracesConfig {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let service_name = env
            .var("OTEL_SERVICE_NAME")
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "gigmcp".into());
        let off = TracesConfig {
            endpoint: None,
            service_name: service_name.clone(),
        };
        match env.var("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("") | Some("otlp") => {}
            Some("none") => return Ok(off),
            Some(other) => {
                return Err(invalid(
                    "OTEL_TRACES_EXPORTER",
                    other,
                    "only otlp (or none) is supported",
                ));
            }
        }
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = env.var(name).filter(|v| !v.is_empty())
                && protocol != "http/protobuf"
            {
                return Err(invalid(name, &protocol, "only http/protobuf is supported"));
            }
        }
        let parse = |name: &'static str, raw: &str| {
            url::Url::parse(raw)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https"))
                .ok_or_else(|| invalid(name, raw, "expected an http(s) URL"))
        };
        // The signal-specific endpoint is used as given; the general one gets `/v1/traces`.
        let endpoint = if let Some(raw) = env
            .var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .filter(|v| !v.is_empty())
        {
            parse("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &raw)?
        } else if let Some(raw) = env
            .var("OTEL_EXPORTER_OTLP_ENDPOINT")
            .filter(|v| !v.is_empty())
        {
            let base = parse("OTEL_EXPORTER_OTLP_ENDPOINT", &raw)?;
            parse(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                &format!("{}/v1/traces", base.as_str().trim_end_matches('/')),
            )?
        } else {
            return Ok(off);
        };
        Ok(TracesConfig {
            endpoint: Some(endpoint),
            service_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn traces_follow_the_standard_variables() {
        assert_eq!(TracesConfig::from_env(&env(&[])).unwrap().endpoint, None);
        let base =
            TracesConfig::from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))
                .unwrap();
        assert_eq!(base.endpoint.unwrap().as_str(), "http://c:4318/v1/traces");
        assert_eq!(base.service_name, "gigmcp");
        let full = TracesConfig::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x"),
            ("OTEL_SERVICE_NAME", "gw-a"),
        ]))
        .unwrap();
        assert_eq!(full.endpoint.unwrap().as_str(), "http://t:9/x");
        assert_eq!(full.service_name, "gw-a");
        let none = TracesConfig::from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ]))
        .unwrap();
        assert_eq!(none.endpoint, None);
        for bad in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_EXPORTER", "zipkin"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
        ] {
            assert!(TracesConfig::from_env(&env(&[bad])).is_err(), "{bad:?}");
        }
    }
}
