//! Phase 5, injection: each chosen credential's real secret is fetched (in the sandbox's server
//! scope) and written at its declared position only: its header (from the template), the
//! `Authorization` header (Basic), or its query parameter. Whatever the server put there is
//! overwritten: the injected value wins (decision 43).

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gig_policy::Injection;
use http::uri::PathAndQuery;
use http::{HeaderName, HeaderValue, StatusCode, Uri, header};
use zeroize::Zeroizing;

use super::Refusal;
use crate::proxy::{Cred, SandboxEgress, SecretScope, SecretSource};
use crate::scan::ScrubSet;

/// What went into a request: the credentials' names (for the record) and the scrubber for
/// their secrets (for the response).
#[derive(Debug)]
pub(crate) struct Injected {
    pub(crate) credentials: Vec<String>,
    pub(crate) scrub: Arc<ScrubSet>,
}

/// Writes the secrets of credentials `inject` (indexes from the placeholder phase) into
/// `parts`. A secret that cannot be had or written refuses the request with 502.
pub(crate) async fn credentials(
    sandbox: &SandboxEgress,
    secrets: &dyn SecretSource,
    inject: Vec<usize>,
    parts: &mut http::request::Parts,
) -> Result<Injected, Refusal> {
    let mut credentials = Vec::new();
    let mut values = Vec::new();
    for &i in &inject {
        let cred = &sandbox.creds[i];
        if sandbox.scope() == SecretScope::Nobody {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!(
                    "credential {}: this instance serves no user; credentials are injected only in a user's own instance",
                    cred.spec.env
                ),
            ));
        }
        let secret = match secrets
            .secret(
                sandbox.server_name(),
                sandbox.scope(),
                cred.spec.secret_name(),
            )
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(Refusal::new(
                    StatusCode::BAD_GATEWAY,
                    format!("credential {}: {e}", cred.spec.env),
                ));
            }
        };
        if let Err(why) = inject_credential(cred, &secret, parts) {
            return Err(Refusal::new(
                StatusCode::BAD_GATEWAY,
                format!("credential {} cannot be injected: {why}", cred.spec.env),
            ));
        }
        credentials.push(cred.spec.env.clone());
        values.push(secret);
    }
    let scrub = sandbox.scrub_set(inject, values);
    Ok(Injected { credentials, scrub })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phases::placeholders::tests::{parts, sandbox};
    use crate::proxy::StaticSecrets;

    const HDR_SECRET: &str = "sk-live-header/secret+1";
    const QRY_SECRET: &str = "maps key&=/";
    const BAS_SECRET: &str = "basic-pw";

    fn secrets() -> StaticSecrets {
        StaticSecrets::new()
            .with("HDR", HDR_SECRET)
            .with("QRY", QRY_SECRET)
            .with("BAS", BAS_SECRET)
    }

    /// Every place a request carries text, with the header values (each on its own line).
    fn everything(p: &http::request::Parts) -> String {
        let mut all = format!("{}\n", p.uri);
        for (k, v) in &p.headers {
            all.push_str(&format!("{k}: {}\n", String::from_utf8_lossy(v.as_bytes())));
        }
        all
    }

    #[tokio::test]
    async fn the_real_key_goes_only_to_the_declared_header_and_wins() {
        let (sb, ph) = sandbox();
        let mut p = parts(
            "/v1?a=1",
            &[
                ("authorization", "Bearer set-by-the-server"),
                ("x-keep", "kept"),
            ],
        );
        let injected = credentials(&sb, &secrets(), vec![0], &mut p).await.unwrap();
        assert_eq!(injected.credentials, vec!["HDR".to_string()]);
        let auth = &p.headers[header::AUTHORIZATION];
        assert_eq!(auth, &format!("Bearer {HDR_SECRET}"));
        assert!(auth.is_sensitive());
        assert_eq!(p.headers.get_all(header::AUTHORIZATION).iter().count(), 1);
        assert_eq!(p.headers["x-keep"], "kept");
        assert_eq!(p.uri, "/v1?a=1");
        assert_eq!(everything(&p).matches(HDR_SECRET).count(), 1);
        assert!(!everything(&p).contains(&ph["HDR"]));
        // The response scrubber knows the secret.
        assert_eq!(
            injected.scrub.scrub(HDR_SECRET.as_bytes()).unwrap(),
            ph["HDR"].as_bytes()
        );
    }

    #[tokio::test]
    async fn the_query_parameter_is_replaced_and_encoded() {
        let (sb, ph) = sandbox();
        let mut p = parts(
            &format!("/v1?a=1&key={}&k%65y=dup&b=2", ph["QRY"]),
            &[("x-other", "plain")],
        );
        let injected = credentials(&sb, &secrets(), vec![1], &mut p).await.unwrap();
        assert_eq!(injected.credentials, vec!["QRY".to_string()]);
        assert_eq!(p.uri, "/v1?a=1&b=2&key=maps%20key%26%3D%2F");
        assert!(
            !everything(&p).contains(QRY_SECRET),
            "only the encoded form"
        );
        assert!(!p.headers.contains_key(header::AUTHORIZATION));
    }

    #[tokio::test]
    async fn basic_credentials_are_written_to_authorization() {
        let (sb, _) = sandbox();
        let mut p = parts("/", &[]);
        credentials(&sb, &secrets(), vec![2], &mut p).await.unwrap();
        let expected = format!("Basic {}", STANDARD.encode(format!("svc:{BAS_SECRET}")));
        assert_eq!(p.headers[header::AUTHORIZATION], expected.as_str());
        assert_eq!(p.uri, "/");
    }

    #[tokio::test]
    async fn nothing_chosen_changes_nothing() {
        let (sb, _) = sandbox();
        let mut p = parts("/x?y=1", &[("x-a", "b")]);
        let injected = credentials(&sb, &secrets(), Vec::new(), &mut p)
            .await
            .unwrap();
        assert!(injected.credentials.is_empty());
        assert!(injected.scrub.is_empty());
        assert_eq!(
            everything(&p),
            everything(&parts("/x?y=1", &[("x-a", "b")]))
        );
    }

    #[tokio::test]
    async fn a_missing_or_unwritable_secret_refuses_with_502() {
        let (sb, _) = sandbox();
        let mut p = parts("/", &[]);
        let r = credentials(&sb, &StaticSecrets::new(), vec![0], &mut p)
            .await
            .unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_GATEWAY);
        assert_eq!(
            r.reason,
            "credential HDR: secret \"HDR\" is unavailable: no such secret"
        );
        let bad = StaticSecrets::new().with("HDR", "line\nbreak");
        let r = credentials(&sb, &bad, vec![0], &mut p).await.unwrap_err();
        assert_eq!(
            r.reason,
            "credential HDR cannot be injected: the secret is not a valid header value"
        );
        assert!(!r.reason.contains("break"));
        assert!(!p.headers.contains_key(header::AUTHORIZATION));
    }
}
