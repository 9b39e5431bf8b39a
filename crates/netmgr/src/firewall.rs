//! The nftables side: the ruleset as text (pure, unit tested) and the `nft` runner that applies
//! it as one atomic transaction.
//!
//! Why the `nft` CLI and not a netlink crate: the Rust nftables-over-netlink crates are either
//! thin bindings over the C `libnftnl` (a C dependency in the privileged process, and still no
//! rule parser: one writes bytecode expressions by hand) or young and lightly maintained; the
//! `nftables` JSON crate itself shells out to `nft`. Feeding `nft -f -` a text ruleset gives an
//! atomic transaction per call, text an operator can audit and compare with `nft list table`,
//! and the kernel's own parser/validator. The cost is one fork+exec per attach and teardown
//! (measured in the crate's `attach_bench` example).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::AsyncWriteExt;

use crate::NetError;

/// The table a manager owns, in the `inet` family so one table sees IPv4 and IPv6.
///
/// Every packet that enters through an interface named `<prefix>*` is dropped unless it is
/// IPv4/TCP from that interface's sandbox address to that interface's host address and proxy
/// port (one `allowed` element per sandbox). The wildcard fails closed: a sandbox link that exists
/// before (or after) its element is filtered all the same. The check runs twice: at `prerouting`
/// (priority raw, before NAT and conntrack, on the tuple the sandbox sent) and at `input` (after
/// any DNAT another table may do, on the tuple actually delivered); `forward` drops everything
/// from and to sandbox links, so nothing is routed whatever `ip_forward` says. A drop in any
/// table is final, so other tables' accepts cannot reopen this.
pub fn firewall_ruleset(table: &str, ifname_prefix: &str) -> String {
    let mut s = String::new();
    // `writeln!` into a String cannot fail.
    let _ = writeln!(
        s,
        r#"table inet {table} {{
	# "<host ifname>" . <sandbox addr> . <host addr> . <proxy port>: the only flow a sandbox may open.
	set allowed {{
		type ifname . ipv4_addr . ipv4_addr . inet_service
	}}

	chain from_sandbox {{
		iifname . ip saddr . ip daddr . tcp dport @allowed accept
		drop
	}}

	chain prerouting {{
		type filter hook prerouting priority raw; policy accept;
		iifname "{ifname_prefix}*" jump from_sandbox
	}}

	chain input {{
		type filter hook input priority filter; policy accept;
		iifname "{ifname_prefix}*" jump from_sandbox
	}}

	chain forward {{
		type filter hook forward priority filter; policy accept;
		iifname "{ifname_prefix}*" drop
		oifname "{ifname_prefix}*" drop
	}}

	chain output {{
		type filter hook output priority filter; policy accept;
		oifname "{ifname_prefix}*" meta nfproto ipv6 drop
	}}
}}"#
    );
    s
}

/// One transaction that removes whatever table of that name exists (a crashed gateway's) and
/// installs a fresh one: there is no moment without the table once it has been installed.
pub(crate) fn replace_table_script(table: &str, ifname_prefix: &str) -> String {
    format!(
        "table inet {table}\ndelete table inet {table}\n{}",
        firewall_ruleset(table, ifname_prefix)
    )
}

pub(crate) fn delete_table_script(table: &str) -> String {
    format!("table inet {table}\ndelete table inet {table}\n")
}

/// The set element that opens exactly one sandbox's proxy flow.
pub fn allow_element(
    table: &str,
    host_ifname: &str,
    sandbox_addr: Ipv4Addr,
    host_addr: Ipv4Addr,
    proxy_port: u16,
) -> String {
    format!(
        "element inet {table} allowed {{ \"{host_ifname}\" . {sandbox_addr} . {host_addr} . {proxy_port} }}"
    )
}

/// Runs `nft -f -` with a script on stdin; the whole script is one kernel transaction.
#[derive(Debug, Clone)]
pub(crate) struct Nft {
    path: PathBuf,
}

impl Nft {
    pub(crate) fn new(path: PathBuf) -> Self {
        Nft { path }
    }

    pub(crate) async fn apply(&self, action: &'static str, script: &str) -> Result<(), NetError> {
        let spawn_err = |source| NetError::NftSpawn {
            path: self.path.clone(),
            source,
        };
        let mut child = tokio::process::Command::new(&self.path)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env_clear()
            .kill_on_drop(true)
            .spawn()
            .map_err(spawn_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .await
                .map_err(spawn_err)?;
        }
        let out = child.wait_with_output().await.map_err(spawn_err)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NetError::Nft {
                action,
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Whether `inet <table>` exists (used to report what reclaim removed).
    pub(crate) async fn table_exists(&self, table: &str) -> Result<bool, NetError> {
        let out = tokio::process::Command::new(&self.path)
            .args(["list", "table", "inet", table])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .env_clear()
            .status()
            .await
            .map_err(|source| NetError::NftSpawn {
                path: self.path.clone(),
                source,
            })?;
        Ok(out.success())
    }
}

/// `nft` from the system's sbin/bin directories, never from `PATH`: the gateway runs as root,
/// and a `PATH` entry an unprivileged user can write would run their `nft` with CAP_NET_ADMIN.
/// `NetConfig::nft_path` names another one explicitly.
pub(crate) fn find_nft() -> Option<PathBuf> {
    ["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"]
        .map(PathBuf::from)
        .into_iter()
        .map(|dir| dir.join("nft"))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
