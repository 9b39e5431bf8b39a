//! The sandbox's side of its veth pair, configured from the host.
//!
//! bubblewrap started by root creates the sandbox's network namespace owned by the host's user
//! namespace, so nothing inside it (not even bootstrap) could configure `eth0`: the host does it
//! over netlink from a thread that has entered the namespace, while bubblewrap is still held.
//! The sandbox therefore never holds CAP_NET_ADMIN, not even briefly.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, OwnedFd};

use futures::TryStreamExt;
use rtnetlink::LinkUnspec;
use rtnetlink::RouteMessageBuilder;

use crate::{NetError, PREFIX_LEN, SANDBOX_IFNAME};

/// Inside the namespace of `netns`: `lo` up, `eth0` addressed `sandbox_addr/30` and up, a
/// default route via `host_addr`, and IPv6 disabled. Runs on its own short-lived thread
/// because entering a namespace is per thread and must never touch the runtime's threads.
pub(crate) async fn configure(
    netns: &OwnedFd,
    sandbox_addr: Ipv4Addr,
    host_addr: Ipv4Addr,
) -> Result<(), NetError> {
    let netns = netns.try_clone().map_err(|source| NetError::Inside {
        step: "duplicating the netns fd",
        reason: source.to_string(),
    })?;
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("gig-netns-setup".into())
        .spawn(move || {
            let _ = done.send(configure_on_this_thread(&netns, sandbox_addr, host_addr));
        })
        .map_err(|e| NetError::Inside {
            step: "starting the setup thread",
            reason: e.to_string(),
        })?;
    result.await.unwrap_or_else(|_| {
        Err(NetError::Inside {
            step: "setup thread",
            reason: "ended without an answer".into(),
        })
    })
}

fn inside(step: &'static str) -> impl Fn(String) -> NetError {
    move |reason| NetError::Inside { step, reason }
}

fn configure_on_this_thread(
    netns: &OwnedFd,
    sandbox_addr: Ipv4Addr,
    host_addr: Ipv4Addr,
) -> Result<(), NetError> {
    nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| inside("entering the sandbox's netns")(e.to_string()))?;
    // This thread's view of /proc/sys/net is now the sandbox's namespace.
    for path in [
        "/proc/sys/net/ipv6/conf/all/disable_ipv6",
        "/proc/sys/net/ipv6/conf/default/disable_ipv6",
    ] {
        if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            std::fs::write(path, "1")
                .map_err(|e| inside("disabling IPv6")(format!("{path}: {e}")))?;
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| inside("building the setup runtime")(e.to_string()))?;
    runtime.block_on(async {
        // The netlink socket is bound to the namespace of the thread that creates it.
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| inside("opening netlink")(e.to_string()))?;
        tokio::spawn(connection);
        let index = |name: &'static str| {
            let handle = handle.clone();
            async move {
                handle
                    .link()
                    .get()
                    .match_name(name.to_string())
                    .execute()
                    .try_next()
                    .await
                    .map_err(|e| inside("looking up a link")(format!("{name}: {e}")))?
                    .map(|l| l.header.index)
                    .ok_or_else(|| inside("looking up a link")(format!("{name} is missing")))
            }
        };
        let lo = index("lo").await?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(lo).up().build())
            .execute()
            .await
            .map_err(|e| inside("bringing lo up")(e.to_string()))?;
        let eth0 = index(SANDBOX_IFNAME).await?;
        handle
            .address()
            .add(eth0, IpAddr::V4(sandbox_addr), PREFIX_LEN)
            .execute()
            .await
            .map_err(|e| inside("addressing eth0")(e.to_string()))?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(eth0).up().build())
            .execute()
            .await
            .map_err(|e| inside("bringing eth0 up")(e.to_string()))?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(host_addr)
            .output_interface(eth0)
            .build();
        handle
            .route()
            .add(route)
            .execute()
            .await
            .map_err(|e| inside("adding the default route")(e.to_string()))
    })
}
