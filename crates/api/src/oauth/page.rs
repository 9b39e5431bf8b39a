//! The two pages a person sees during authorization: the consent form and the error page
//! (shown, never redirected, when the client or its redirect URI cannot be trusted with the
//! browser). Server-rendered, no script, every value escaped; never framed (clickjacking would
//! let another site press "Allow"), never cached, never sent as a referrer.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// What the consent form shows and submits.
pub(super) struct Consent<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    /// `Some(host)` for a metadata-document client: who vouches for the name.
    pub vouching_host: Option<&'a str>,
    pub redirect_host: &'a str,
    pub scopes: &'a [&'a str],
    pub user: &'a str,
    /// (id, name) of the user's profiles.
    pub profiles: &'a [(i64, String)],
    pub sealed_request: &'a str,
    pub csrf: &'a str,
}

/// `&`, `<`, `>`, `"` and `'` as entities.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}\
h1{font-size:1.4rem}.warn{background:#fff4d6;border:1px solid #c98a00;padding:.5rem .75rem;border-radius:4px}\
code{background:#f2f2f2;padding:0 .25rem;word-break:break-all}fieldset{border:1px solid #bbb;border-radius:4px}\
button{font-size:1rem;padding:.4rem 1.2rem;margin-right:.5rem}";

/// `referrer`: `no-referrer` for pages without a form; `same-origin` for the consent form,
/// whose POST must carry this gateway's `Origin` (browsers send `Origin: null` under
/// `no-referrer`) while nothing leaks to other sites.
fn page(status: StatusCode, title: &str, body: &str, referrer: &'static str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        escape(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static(referrer));
    response
}

/// A refusal shown to the person (the client is not told: it may not be who it claims).
pub(super) fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Authorization refused",
        &format!(
            "<h1>This sign-in cannot continue</h1><p>{}</p>",
            escape(message)
        ),
        "no-referrer",
    )
}

pub(super) fn consent(c: &Consent<'_>) -> Response {
    let name = escape(c.client_name);
    let identity = match c.vouching_host {
        Some(host) => format!(
            "<p>Identified by its metadata document at <code>{}</code> (published by <strong>{}</strong>).</p>",
            escape(c.client_id),
            escape(host)
        ),
        None => "<p class=\"warn\"><strong>Unverified client.</strong> It registered itself; \
                 its name is its own claim. Continue only if you just started this sign-in.</p>"
            .to_owned(),
    };
    let redirect_note = match c.vouching_host {
        Some(host) if host != c.redirect_host => format!(
            "<p class=\"warn\">It will receive access at <strong>{}</strong>, not at {}.</p>",
            escape(c.redirect_host),
            escape(host)
        ),
        _ => format!(
            "<p>It will receive access at <strong>{}</strong>.</p>",
            escape(c.redirect_host)
        ),
    };
    let scopes: String = c
        .scopes
        .iter()
        .map(|s| {
            let what = match *s {
                "mcp" => "use the tools, prompts and resources of the profile you choose",
                "offline_access" => "stay signed in (refresh its access without asking you)",
                other => other,
            };
            format!("<li><code>{}</code>: {}</li>", escape(s), escape(what))
        })
        .collect();
    let profiles: String = c
        .profiles
        .iter()
        .enumerate()
        .map(|(i, (id, name))| {
            format!(
                "<label><input type=\"radio\" name=\"profile\" value=\"{id}\"{}> {}</label><br>",
                if i == 0 { " checked" } else { "" },
                escape(name)
            )
        })
        .collect();
    let body = format!(
        "<h1>Allow {name} to use Gig'MCP as you?</h1>\
         <p>Signed in as <strong>{user}</strong>.</p>{identity}{redirect_note}\
         <p>It asks to:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"/oauth/authorize\">\
         <fieldset><legend>Which profile it gets</legend>{profiles}</fieldset>\
         <input type=\"hidden\" name=\"request\" value=\"{request}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <p><button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></p></form>",
        user = escape(c.user),
        request = escape(c.sealed_request),
        csrf = escape(c.csrf),
    );
    page(
        StatusCode::OK,
        &format!("Allow {}?", c.client_name),
        &body,
        "same-origin",
    )
}

/// The user has no profile to grant yet.
pub(super) fn no_profile(client_name: &str) -> Response {
    error(
        StatusCode::FORBIDDEN,
        &format!(
            "{client_name} needs one of your profiles, and you have none yet: create one in the \
             console (Profiles), then start the sign-in again from the client."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_inert() {
        assert_eq!(
            escape(r#"<script>"x"&'y'</script>"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;y&#39;&lt;/script&gt;"
        );
    }
}
