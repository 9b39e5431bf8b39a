//! Remote entries: `add --remote URL` and what `show` prints of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use gig_policy::remote::{HeaderTemplate, RawOAuth, RawRemote};
use gig_registry_schema::RemoteEntry;

use crate::EntryArgs;

#[derive(Args, Debug)]
pub struct RemoteArgs {
    /// A remote server's URL (https): the entry is reached over HTTP instead of run from an image.
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// The remote's transport: `http` (Streamable HTTP, the default) or `sse` (legacy).
    #[arg(long = "type", value_name = "TYPE", requires = "remote")]
    pub transport: Option<String>,
    /// A header sent with every request, NAME=VALUE; the value names vault credentials as
    /// `${credential:NAME}` (set with `gigmcp secret set SERVER NAME`); repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE", requires = "remote")]
    pub headers: Vec<String>,
    /// OAuth toward the server as JSON: {"grant": "authorization_code"|"client_credentials",
    /// "scopes", "clientId", "clientSecret": "${credential:NAME}", "issuer"}.
    #[arg(long, value_name = "JSON", requires = "remote")]
    pub oauth: Option<String>,
}

/// The entry `add --remote` writes, checked as the gateway will check it.
pub fn entry(
    args: &RemoteArgs,
    image_options: &EntryArgs,
    description: String,
) -> Result<RemoteEntry> {
    refuse_image_options(image_options)?;
    let url = args
        .remote
        .clone()
        .ok_or_else(|| anyhow!("give --image and --entrypoint, or --remote URL"))?;
    let oauth = args
        .oauth
        .as_deref()
        .map(|json| {
            serde_json::from_str::<RawOAuth>(json).with_context(|| format!("--oauth {json}"))
        })
        .transpose()?;
    let entry = RemoteEntry {
        remote: RawRemote {
            url,
            transport: args.transport.clone(),
            headers: headers(&args.headers)?,
            allow_addresses: Vec::new(),
            oauth,
        },
        description,
    };
    entry.spec("entry").map_err(|e| anyhow!(e))?;
    Ok(entry)
}

/// `NAME=VALUE` pairs, each name once.
pub fn headers(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    let mut headers = BTreeMap::new();
    for pair in pairs {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| anyhow!("--header {pair}: expected NAME=VALUE"))?;
        if headers.insert(name.to_owned(), value.to_owned()).is_some() {
            bail!("--header {name} given twice");
        }
    }
    Ok(headers)
}

/// What only an image entry takes is refused for a remote one, rather than dropped.
pub fn refuse_image_options(e: &EntryArgs) -> Result<()> {
    let given = [
        ("--egress", !e.egress.is_empty()),
        ("--credential", !e.credentials.is_empty()),
        ("--env", !e.env.is_empty()),
        ("--arg", !e.args.is_empty()),
        ("--extract", e.extract != "entrypoint"),
        ("--limits", e.limits.is_some()),
        ("--instances", e.instances.is_some()),
    ];
    let given: Vec<&str> = given.iter().filter(|(_, g)| *g).map(|(n, _)| *n).collect();
    if !given.is_empty() {
        bail!(
            "a remote server runs nowhere here: {} are for image entries (its credentials are header references, ${{credential:NAME}})",
            given.join(", ")
        );
    }
    Ok(())
}

pub fn show(
    out: &mut String,
    version: &str,
    latest: &str,
    entry: &RemoteEntry,
) -> std::fmt::Result {
    let remote = &entry.remote;
    writeln!(out, "  {version}{latest}: {}", remote.url)?;
    writeln!(
        out,
        "    remote   {}",
        remote.transport.as_deref().unwrap_or("http")
    )?;
    if !entry.description.is_empty() {
        writeln!(out, "    about    {}", entry.description)?;
    }
    for (name, value) in &remote.headers {
        // Only the names and references: a value written out may itself be a secret.
        let references: Vec<String> = HeaderTemplate::parse(value)
            .map(|t| t.credentials().map(str::to_owned).collect())
            .unwrap_or_default();
        if references.is_empty() {
            writeln!(out, "    header   {name}")?;
        } else {
            writeln!(out, "    header   {name} (vault {})", references.join(", "))?;
        }
    }
    if let Some(oauth) = &remote.oauth {
        writeln!(
            out,
            "    oauth    {}",
            serde_json::to_string(oauth).unwrap_or_default()
        )?;
    }
    Ok(())
}
