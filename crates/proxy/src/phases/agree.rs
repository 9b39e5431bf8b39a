//! Phase 1, agreement: every name a request gives for its destination (the `CONNECT` host, the
//! TLS SNI, the request target or `:authority`, the `Host` header) must be the one name that is
//! checked by the policy and connected to. Names are compared normalised: lowercase, no trailing
//! dot, canonical IP literals, the port defaulted by scheme.

use gig_policy::{host_ip, normalize_dns_name};
use http::uri::Authority;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};

use super::Refusal;

/// An absolute-form request on the plaintext connection: only `http://host[:port]/…`.
pub(crate) fn absolute_form(uri: &Uri) -> Result<(String, u16), Refusal> {
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(auth)) => parse_authority(auth, 80),
        (Some(_), Some(_)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "only http:// may be requested in absolute form; use CONNECT for https",
        )),
        _ => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "this is an egress proxy: send CONNECT or an absolute-form http:// request",
        )),
    }
}

/// A `CONNECT` target: `host:port`, the port required. Returns the authority as sent (for the
/// placeholder scan) and the normalised host and port.
pub(crate) fn connect_target(uri: &Uri) -> Result<(Authority, String, u16), Refusal> {
    let needs_port = || Refusal::new(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    let auth = uri.authority().cloned().ok_or_else(needs_port)?;
    if auth.port_u16().is_none() {
        return Err(needs_port());
    }
    let (host, port) = parse_authority(&auth, 443)?;
    Ok((auth, host, port))
}

/// The TLS SNI inside a tunnel must name the `CONNECT` host (`connect_host` is normalised);
/// clients send no SNI for IP literals. The error is the reason the tunnel ends.
pub(crate) fn sni(server_name: Option<&str>, connect_host: &str) -> Result<(), String> {
    let sni = server_name.map(str::to_ascii_lowercase);
    let sni_ok = match (&sni, host_ip(connect_host)) {
        (Some(sni), None) => sni.trim_end_matches('.') == connect_host,
        // Clients send no SNI for IP literals.
        (None, Some(_)) => true,
        _ => false,
    };
    if sni_ok {
        Ok(())
    } else {
        Err(format!(
            "TLS SNI {:?} does not match the CONNECT host {}",
            sni.as_deref().unwrap_or(""),
            connect_host
        ))
    }
}

/// A request inside an intercepted tunnel to `host:port`: no nested `CONNECT`, no other scheme,
/// its target or `:authority` (required on h2) and its `Host` naming the tunnel's host.
pub(crate) fn tunnel_request(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    host: &str,
    port: u16,
    h2: bool,
) -> Result<(), Refusal> {
    if method == Method::CONNECT {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "CONNECT inside a tunnel is not supported",
        ));
    }
    if let Some(scheme) = uri.scheme_str()
        && scheme != "https"
    {
        return Err(Refusal::forbidden(format!(
            "a {scheme}:// target inside a TLS tunnel"
        )));
    }
    if let Some(auth) = uri.authority()
        && !same_target(auth, host, port)
    {
        let what = if h2 { ":authority" } else { "request target" };
        return Err(Refusal::forbidden(format!(
            "{what} {auth} does not match the tunnel's host {host}"
        )));
    }
    if h2 && uri.authority().is_none() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "h2 request without :authority",
        ));
    }
    host_headers(headers, host, port, h2)
}

/// HTTP/1 needs exactly one `Host`, naming the target; h2 may omit it but not contradict.
pub(crate) fn host_headers(
    headers: &HeaderMap,
    host: &str,
    port: u16,
    h2: bool,
) -> Result<(), Refusal> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn absolute_form_is_normalised_and_only_http() {
        assert_eq!(
            absolute_form(&uri("http://API.Example.Test./x")).unwrap(),
            ("api.example.test".to_string(), 80)
        );
        assert_eq!(
            absolute_form(&uri("http://[::FFFF:7f00:1]:8080/")).unwrap(),
            ("::ffff:127.0.0.1".to_string(), 8080)
        );
        for bad in [
            "https://api.example.test/",
            "/relative",
            "http://u:p@api.example.test/",
        ] {
            let r = absolute_form(&uri(bad)).unwrap_err();
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn connect_needs_a_port_and_no_credentials() {
        let (auth, host, port) = connect_target(&uri("API.example.test:8443")).unwrap();
        assert_eq!(auth.as_str(), "API.example.test:8443");
        assert_eq!((host.as_str(), port), ("api.example.test", 8443));
        assert_eq!(
            connect_target(&uri("api.example.test")).unwrap_err().reason,
            "CONNECT needs host:port"
        );
        assert_eq!(
            connect_target(&uri("/")).unwrap_err().reason,
            "CONNECT needs host:port"
        );
    }

    #[test]
    fn sni_must_name_the_connect_host() {
        assert!(sni(Some("api.example.test"), "api.example.test").is_ok());
        // Case and a trailing dot are normalised.
        assert!(sni(Some("API.Example.TEST."), "api.example.test").is_ok());
        // IP literals come without SNI.
        assert!(sni(None, "127.0.0.1").is_ok());
        let err = sni(Some("other.example.test"), "api.example.test").unwrap_err();
        assert_eq!(
            err,
            "TLS SNI \"other.example.test\" does not match the CONNECT host api.example.test"
        );
        assert!(sni(None, "api.example.test").is_err(), "a name needs SNI");
        assert!(
            sni(Some("api.example.test"), "127.0.0.1").is_err(),
            "an IP tunnel with SNI"
        );
    }

    #[test]
    fn host_header_must_agree_with_the_destination() {
        let ok = |h: &[&str], h2| host_headers(&headers(h), "api.example.test", 443, h2);
        assert!(ok(&["api.example.test"], false).is_ok());
        assert!(ok(&["API.EXAMPLE.TEST:443"], false).is_ok());
        assert!(ok(&["api.example.test."], false).is_ok());
        assert!(ok(&[], true).is_ok(), "h2 may omit Host");
        assert_eq!(ok(&[], false).unwrap_err().reason, "no Host header");
        let r = ok(&["other.example.test"], false).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(!r.exfiltration);
        assert_eq!(
            ok(&["api.example.test:8443"], true).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ok(&["u@api.example.test"], false).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            ok(&["api.example.test", "api.example.test"], false)
                .unwrap_err()
                .reason,
            "more than one Host header"
        );
        assert_eq!(
            ok(&["bad host"], false).unwrap_err().reason,
            "unparseable Host header"
        );
    }

    #[test]
    fn h2_authority_must_be_the_tunnel_host() {
        let check = |method: Method, target: &str, hosts: &[&str], h2| {
            tunnel_request(
                &method,
                &uri(target),
                &headers(hosts),
                "api.example.test",
                443,
                h2,
            )
        };
        assert!(check(Method::GET, "https://API.example.test/x", &[], true).is_ok());
        assert!(check(Method::GET, "https://api.example.test:443/x", &[], true).is_ok());
        let r = check(Method::GET, "https://other.example.test/x", &[], true).unwrap_err();
        assert_eq!(
            r.reason,
            ":authority other.example.test does not match the tunnel's host api.example.test"
        );
        let r = check(Method::GET, "https://api.example.test:8443/", &[], true).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let r = check(Method::GET, "/x", &[], true).unwrap_err();
        assert_eq!(r.reason, "h2 request without :authority");
        // :authority agrees but Host contradicts it.
        let r = check(
            Method::GET,
            "https://api.example.test/",
            &["other.example.test"],
            true,
        )
        .unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }

    #[test]
    fn http1_inside_a_tunnel_checks_target_scheme_and_host() {
        let check = |method: Method, target: &str, hosts: &[&str]| {
            tunnel_request(
                &method,
                &uri(target),
                &headers(hosts),
                "api.example.test",
                443,
                false,
            )
        };
        assert!(check(Method::GET, "/x", &["api.example.test"]).is_ok());
        assert_eq!(
            check(Method::GET, "/x", &["other.example.test"])
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        assert!(
            check(
                Method::GET,
                "http://api.example.test/",
                &["api.example.test"]
            )
            .unwrap_err()
            .reason
            .contains("http:// target inside a TLS tunnel")
        );
        assert!(
            check(
                Method::GET,
                "https://other.example.test/",
                &["api.example.test"]
            )
            .unwrap_err()
            .reason
            .starts_with("request target other.example.test")
        );
        assert_eq!(
            check(
                Method::CONNECT,
                "api.example.test:443",
                &["api.example.test"]
            )
            .unwrap_err()
            .status,
            StatusCode::BAD_REQUEST
        );
    }
}
