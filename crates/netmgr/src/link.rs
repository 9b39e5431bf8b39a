//! Netlink link and address operations on the host side (rtnetlink), plus the per-link sysctls
//! netlink cannot set.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::path::PathBuf;

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkVeth};

use crate::{NetError, PREFIX_LEN};

const ENODEV: i32 = 19;

fn nl_err(step: &'static str, ifname: &str) -> impl FnOnce(rtnetlink::Error) -> NetError {
    let ifname = ifname.to_string();
    move |source| NetError::Netlink {
        step,
        ifname,
        source,
    }
}

fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -errno)
}

/// Creates the veth pair in one RTM_NEWLINK: `host` here, `peer` born in the netns behind
/// `netns_fd` (IFLA_NET_NS_FD on the peer), so nothing is ever moved between namespaces.
/// Returns the host end's index.
pub(crate) async fn create_veth(
    handle: &Handle,
    host: &str,
    peer: &str,
    netns_fd: RawFd,
) -> Result<u32, NetError> {
    let peer_msg = LinkUnspec::new_with_name(peer)
        .setns_by_fd(netns_fd)
        .build();
    let msg = LinkVeth::new(host, peer)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
        .build();
    handle
        .link()
        .add(msg)
        .execute()
        .await
        .map_err(nl_err("creating veth pair", host))?;
    link_index(handle, host)
        .await?
        .ok_or_else(|| NetError::Netlink {
            step: "looking up the new link",
            ifname: host.to_string(),
            source: rtnetlink::Error::RequestFailed,
        })
}

async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, NetError> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(e) if is_errno(&e, ENODEV) => Ok(None),
        Err(e) => Err(nl_err("looking up link", name)(e)),
    }
}

/// Before the host end goes up: no IPv6 at all on it (so no link-local address for the sandbox
/// to talk to), ARP answers only for its own address (the sandbox cannot probe which other
/// addresses the host has), strict reverse-path filtering. Netlink cannot set these (only the
/// IPv6 address-generation mode, and not at creation), hence procfs.
pub(crate) fn harden_host_end(ifname: &str) -> Result<(), NetError> {
    for (path, value) in [
        (
            format!("/proc/sys/net/ipv6/conf/{ifname}/disable_ipv6"),
            "1",
        ),
        (format!("/proc/sys/net/ipv4/conf/{ifname}/arp_ignore"), "1"),
        (
            format!("/proc/sys/net/ipv4/conf/{ifname}/arp_announce"),
            "2",
        ),
        (format!("/proc/sys/net/ipv4/conf/{ifname}/rp_filter"), "1"),
    ] {
        // A kernel without IPv6 has no IPv6 to disable.
        if path.contains("/ipv6/") && !std::path::Path::new("/proc/sys/net/ipv6").exists() {
            continue;
        }
        std::fs::write(&path, value).map_err(|source| NetError::Sysctl {
            path: PathBuf::from(&path),
            source,
        })?;
    }
    Ok(())
}

pub(crate) async fn address_and_up(
    handle: &Handle,
    index: u32,
    ifname: &str,
    addr: Ipv4Addr,
) -> Result<(), NetError> {
    handle
        .address()
        .add(index, IpAddr::V4(addr), PREFIX_LEN)
        .execute()
        .await
        .map_err(nl_err("adding address to", ifname))?;
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(nl_err("setting up", ifname))
}

/// Deletes a link by name; a link that is already gone (its netns died first) is success.
pub(crate) async fn delete_by_name(handle: &Handle, name: &str) -> Result<(), NetError> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, ENODEV) => Ok(()),
        Err(e) => Err(nl_err("deleting", name)(e)),
    }
}

/// A name this manager would have given: `<prefix><decimal digits>` and nothing else, so a
/// manager with prefix `gig` never touches `gigabit0` or another manager's `gigt3`.
pub(crate) fn is_managed_name(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
}

fn link_name(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// Deletes every `<prefix><digits>` link in our netns: leftovers of a crashed manager.
pub(crate) async fn delete_stale(handle: &Handle, prefix: &str) -> Result<Vec<String>, NetError> {
    let links: Vec<LinkMessage> = handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("listing links", ""))?;
    let mut removed = Vec::new();
    for link in &links {
        let Some(name) = link_name(link).filter(|n| is_managed_name(n, prefix)) else {
            continue;
        };
        match handle.link().del(link.header.index).execute().await {
            Ok(()) => removed.push(name.to_string()),
            Err(e) if is_errno(&e, ENODEV) => {} // went with its peer's netns meanwhile
            Err(e) => return Err(nl_err("deleting stale link", name)(e)),
        }
    }
    Ok(removed)
}

/// Fails when an address already on the host lies in the pool: its /30s would shadow or be
/// shadowed by that network's routes. Runs after stale links are gone.
pub(crate) async fn refuse_pool_overlap(handle: &Handle, pool: Ipv4Net) -> Result<(), NetError> {
    let addrs: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(nl_err("listing addresses", ""))?;
    for msg in &addrs {
        for attr in &msg.attributes {
            if let AddressAttribute::Address(IpAddr::V4(a)) = attr {
                let theirs = Ipv4Net::new(*a, msg.header.prefix_len).unwrap_or_default();
                if pool.contains(a) || theirs.contains(&pool.network()) {
                    return Err(NetError::PoolInUse {
                        pool,
                        address: format!("{a}/{}", msg.header.prefix_len),
                        ifindex: msg.header.index,
                    });
                }
            }
        }
    }
    Ok(())
}
