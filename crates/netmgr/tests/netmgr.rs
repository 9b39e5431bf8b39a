//! The real kernel, as root: sandboxes are network namespaces held by `unshare --net sleep`
//! processes this test spawns; the sandbox side is configured with `ip` through `nsenter` (what
//! bootstrap will do inside a real sandbox), and every check sends real packets. Packets go only
//! to namespaces and addresses the test creates (198.18.250.0/24 pool, 198.51.100.201 on a spare link (192.0.2.0/24 is this kind of machine's own LAN),
//! 203.0.113.0/24 "outside" netns) and to loopback.
//!
//! Every "blocked" probe is then repeated with the firewall table removed and must succeed: the
//! firewall, not an accident of the setup, is what blocks it.
//!
//! Needs root, `nft`, `ip`, `unshare`, `nsenter`. Off CI they are skipped with a message unless
//! `GIG_REQUIRE_SANDBOX=1`; on CI (`CI` set) or with it, a missing one fails.
//! The tests share the host's firewall and links, so they run one at a time (`SERIAL`), with their
//! own prefix (`nmt`), table and pool so a gateway on the same machine is not disturbed.

// Tests read their own switches (CI, GIG_REQUIRE_SANDBOX) and hand the environment to children.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket,
};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gig_netmgr::{NetConfig, NetError, NetManager, SandboxNet};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const TABLE: &str = "gignetmgrtest";
const PREFIX: &str = "nmt";
/// How long a "blocked" connect may take before it counts as dropped (not a performance bound).
const BLOCKED_TIMEOUT: Duration = Duration::from_millis(300);

fn config(pool: &str) -> NetConfig {
    NetConfig {
        pool: pool.parse().unwrap(),
        ifname_prefix: PREFIX.into(),
        nft_table: TABLE.into(),
        nft_path: None,
    }
}

/// False = skip (allowed only off CI and without GIG_REQUIRE_SANDBOX=1).
fn host_ready() -> bool {
    let mut missing = gig_netmgr::check_host(&config("198.18.250.0/24"))
        .err()
        .map(|e| e.to_string());
    for tool in ["ip", "unshare", "nsenter"] {
        if missing.is_none() && Command::new(tool).arg("--version").output().is_err() {
            missing = Some(format!(
                "{tool} not found (apt-get install iproute2 util-linux)"
            ));
        }
    }
    let Some(why) = missing else { return true };
    let required = std::env::var_os("CI").is_some()
        || std::env::var("GIG_REQUIRE_SANDBOX").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "sandbox networking required but unavailable: {why}"
    );
    eprintln!("SKIPPED (set GIG_REQUIRE_SANDBOX=1 to fail instead): {why}");
    false
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

/// A process alone in a fresh network namespace: a sandbox or an "outside" host. Killed and
/// reaped on drop, which also destroys its netns and any veth end inside it.
struct Netns(Child);

impl Netns {
    fn new() -> Self {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "1000"])
            .spawn()
            .expect("spawning unshare");
        let ns = Netns(child);
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        // unshare(2) happens just after spawn: wait until the child is in its own netns.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_link(format!("/proc/{}/ns/net", ns.pid())).ok() == Some(ours.clone()) {
            assert!(
                Instant::now() < deadline,
                "unshare never entered a new netns"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        ns
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn ip(&self, args: &[&str]) {
        let pid = self.pid().to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-n", "ip"];
        full.extend_from_slice(args);
        run(&full);
    }

    fn sysctl(&self, key: &str, value: &str) {
        let pid = self.pid().to_string();
        run(&[
            "nsenter",
            "-t",
            &pid,
            "-n",
            "sysctl",
            "-q",
            "-w",
            &format!("{key}={value}"),
        ]);
    }

    /// Runs `f` on a thread inside this netns; sockets it creates stay in this netns.
    fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = File::open(format!("/proc/{}/ns/net", self.pid())).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread panicked")
    }

    fn ip_out(&self, args: &[&str]) -> String {
        let pid = self.pid().to_string();
        let mut full = vec!["nsenter", "-t", &pid, "-n", "ip"];
        full.extend_from_slice(args);
        run(&full)
    }

    /// `attach` configured the sandbox's side from the host: address, default route, `lo`
    /// up, IPv6 off.
    fn assert_configured_by_attach(&self, net: &SandboxNet) {
        let addr = format!("{}/{}", net.sandbox_addr, net.prefix_len);
        let eth0 = self.ip_out(&["addr", "show", "dev", &net.sandbox_ifname]);
        assert!(eth0.contains(&addr) && eth0.contains("UP"), "{eth0}");
        assert!(!eth0.contains("inet6"), "IPv6 address inside: {eth0}");
        let routes = self.ip_out(&["route", "show", "default"]);
        assert!(
            routes.contains(&format!("via {}", net.host_addr)),
            "{routes}"
        );
        let lo = self.ip_out(&["link", "show", "dev", "lo"]);
        assert!(lo.contains("UP"), "{lo}");
    }

    fn tcp_reaches(&self, to: SocketAddr) -> bool {
        self.run_in(move || tcp_reaches(to))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tcp_reaches(to: SocketAddr) -> bool {
    TcpStream::connect_timeout(&to, BLOCKED_TIMEOUT).is_ok()
}

/// Sends one ICMP echo request from a raw socket and waits for the matching reply.
fn icmp_echo_answered(to: Ipv4Addr) -> bool {
    use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockProtocol, SockType};
    use std::os::fd::AsRawFd;
    let fd = socket::socket(
        AddressFamily::Inet,
        SockType::Raw,
        SockFlag::empty(),
        SockProtocol::Icmp,
    )
    .expect("raw ICMP socket");
    let timeout = nix::sys::time::TimeVal::new(0, 50_000);
    socket::setsockopt(&fd, socket::sockopt::ReceiveTimeout, &timeout).unwrap();
    let id = (std::process::id() & 0xffff) as u16;
    let mut pkt = [
        8u8,
        0,
        0,
        0,
        (id >> 8) as u8,
        id as u8,
        0,
        1,
        b'g',
        b'i',
        b'g',
        b'!',
    ];
    let sum = pkt
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum::<u32>();
    let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    let dest = socket::SockaddrIn::from(std::net::SocketAddrV4::new(to, 0));
    socket::sendto(fd.as_raw_fd(), &pkt, &dest, MsgFlags::empty()).expect("sending echo");
    let deadline = Instant::now() + BLOCKED_TIMEOUT;
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        let Ok(n) = socket::recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) else {
            continue;
        };
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        let from = Ipv4Addr::new(buf[12], buf[13], buf[14], buf[15]);
        let icmp = &buf[ihl.min(n)..n];
        if from == to && icmp.len() >= 8 && icmp[0] == 0 && icmp[4..6] == pkt[4..6] {
            return true;
        }
    }
    false
}

/// An unused port (picked by the kernel, then released).
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deletes a link the test made itself on the host.
struct HostLink(&'static str);

impl Drop for HostLink {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).status();
    }
}

/// Sets `net.ipv4.ip_forward` and puts the original value back on drop.
struct IpForward(String);

impl IpForward {
    const PATH: &str = "/proc/sys/net/ipv4/ip_forward";
    fn set(value: &str) -> Self {
        let old = std::fs::read_to_string(Self::PATH).unwrap();
        std::fs::write(Self::PATH, value).unwrap();
        IpForward(old.trim().to_string())
    }
}

impl Drop for IpForward {
    fn drop(&mut self) {
        let _ = std::fs::write(Self::PATH, &self.0);
    }
}

/// Removes the test table even when a test fails halfway.
struct TableGuard;

impl Drop for TableGuard {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", TABLE])
            .stderr(Stdio::null())
            .status();
    }
}

fn allowed_set() -> String {
    run(&["nft", "list", "set", "inet", TABLE, "allowed"])
}

#[tokio::test]
async fn isolation_matrix_with_real_packets() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    let manager = NetManager::new(config("198.18.250.0/24")).await.unwrap();
    let (ns_a, ns_b) = (Netns::new(), Netns::new());
    let (proxy_a, proxy_b) = (free_port(), free_port());
    let a = manager.attach(ns_a.pid(), proxy_a).await.unwrap();
    let b = manager.attach(ns_b.pid(), proxy_b).await.unwrap();
    assert_eq!(
        (
            a.host_addr,
            a.sandbox_addr,
            a.prefix_len,
            a.host_ifname.as_str()
        ),
        (
            Ipv4Addr::new(198, 18, 250, 1),
            Ipv4Addr::new(198, 18, 250, 2),
            30,
            "nmt0"
        )
    );
    assert_eq!(b.host_ifname, "nmt1");
    ns_a.assert_configured_by_attach(&a);
    ns_b.assert_configured_by_attach(&b);

    // Whatever the host says about forwarding, nothing is forwarded.
    let _forward = IpForward::set("1");

    // The proxies: one listener per sandbox on its host-side address.
    let proxy_listener_a = TcpListener::bind((a.host_addr, proxy_a)).unwrap();
    let _proxy_listener_b = TcpListener::bind((b.host_addr, proxy_b)).unwrap();
    // A host service on every interface, one on loopback, a host address on another interface.
    let any_service = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
    let any_port = any_service.local_addr().unwrap().port();
    let loopback_service = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let loopback_port = loopback_service.local_addr().unwrap().port();
    // This kernel may lack the dummy driver: a veth end with no peer configured does as well.
    run(&[
        "ip", "link", "add", "nmd0", "type", "veth", "peer", "name", "nmd1",
    ]);
    let _dummy = HostLink("nmd0");
    run(&["ip", "addr", "add", "198.51.100.201/32", "dev", "nmd0"]);
    run(&["ip", "link", "set", "nmd0", "up"]);
    // An outside host, routed from the host through its own veth.
    let outside = Netns::new();
    let outside_pid = outside.pid().to_string();
    run(&[
        "ip",
        "link",
        "add",
        "nmo0",
        "type",
        "veth",
        "peer",
        "name",
        "eth1",
        "netns",
        &outside_pid,
    ]);
    let _outside_link = HostLink("nmo0");
    run(&["ip", "addr", "add", "203.0.113.1/24", "dev", "nmo0"]);
    run(&["ip", "link", "set", "nmo0", "up"]);
    outside.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth1"]);
    outside.ip(&["link", "set", "eth1", "up"]);
    outside.ip(&["route", "add", "default", "via", "203.0.113.1"]);
    let outside_service: SocketAddr = "203.0.113.2:8080".parse().unwrap();
    let _outside_listener = outside.run_in(move || TcpListener::bind(outside_service).unwrap());
    // A service inside sandbox B.
    let b_service = SocketAddr::new(IpAddr::V4(b.sandbox_addr), 9000);
    let _b_listener = ns_b.run_in(move || TcpListener::bind(b_service).unwrap());
    // Loopback through the host side: sandbox A routes 127.0.0.1 to its gateway, and the host
    // side is made to accept such packets (route_localnet), as a misconfigured host would.
    a_routes_loopback_to_host(&ns_a, &a);
    // IPv6 on the host side: off.
    let v6_conf = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", a.host_ifname);
    assert_eq!(std::fs::read_to_string(&v6_conf).unwrap().trim(), "1");
    let v6_service = TcpListener::bind((Ipv6Addr::UNSPECIFIED, 0)).unwrap();
    let v6_port = v6_service.local_addr().unwrap().port();
    // attach turned IPv6 off inside; a sandbox cannot turn it on (no CAP_NET_ADMIN), but this
    // probe does, to show the firewall blocks IPv6 even then.
    ns_a.sysctl("net.ipv6.conf.eth0.disable_ipv6", "0");
    ns_a.ip(&["-6", "addr", "add", "fe80::2/64", "dev", "eth0", "nodad"]);
    let v6_probe = move || {
        let scope = nix::net::if_::if_nametoindex("eth0").unwrap();
        let to = SocketAddr::V6(SocketAddrV6::new(
            "fe80::1".parse().unwrap(),
            v6_port,
            0,
            scope,
        ));
        tcp_reaches(to)
    };
    assert!(
        !ns_a.run_in(v6_probe),
        "IPv6 link-local reached the host side"
    );
    // Re-enable IPv6 on the host end by hand: the firewall alone must still stop it.
    std::fs::write(&v6_conf, "0").unwrap();
    run(&[
        "ip",
        "-6",
        "addr",
        "add",
        "fe80::1/64",
        "dev",
        &a.host_ifname,
        "nodad",
    ]);
    let dns = UdpSocket::bind((a.host_addr, 53)).unwrap();
    dns.set_read_timeout(Some(BLOCKED_TIMEOUT)).unwrap();
    let dns_probe = {
        let to = SocketAddr::new(IpAddr::V4(a.host_addr), 53);
        move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            s.send_to(b"query", to).unwrap();
        }
    };
    let udp_arrives = |ns: &Netns| {
        ns.run_in(dns_probe);
        let mut buf = [0u8; 16];
        dns.recv_from(&mut buf).is_ok()
    };

    // Allowed: each sandbox to its own proxy, with data both ways.
    let to_proxy_a = SocketAddr::new(IpAddr::V4(a.host_addr), proxy_a);
    let client = ns_a.run_in(move || {
        let mut s = TcpStream::connect_timeout(&to_proxy_a, Duration::from_secs(5)).unwrap();
        s.write_all(b"ping").unwrap();
        s
    });
    let (mut server, peer) = proxy_listener_a.accept().unwrap();
    assert_eq!(peer.ip(), IpAddr::V4(a.sandbox_addr));
    let mut buf = [0u8; 4];
    server.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    server.write_all(b"pong").unwrap();
    let mut client = client;
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"pong");
    assert!(ns_b.tcp_reaches(SocketAddr::new(IpAddr::V4(b.host_addr), proxy_b)));
    // The host itself reaches the outside host (the route works).
    assert!(
        tcp_reaches(outside_service),
        "host cannot reach the outside netns"
    );

    // Blocked, and why each must be blocked.
    let v4 = |ip: Ipv4Addr, port| SocketAddr::new(IpAddr::V4(ip), port);
    let blocked = [
        ("own host side, another port", v4(a.host_addr, any_port)),
        ("another sandbox's proxy address", v4(b.host_addr, proxy_b)),
        ("the other host-side address", v4(b.host_addr, any_port)),
        (
            "a host address on another interface",
            v4(Ipv4Addr::new(198, 51, 100, 201), any_port),
        ),
        (
            "the host's loopback service",
            v4(Ipv4Addr::LOCALHOST, loopback_port),
        ),
        ("the outside host, forwarded", outside_service),
        ("another sandbox, forwarded", b_service),
    ];
    for (what, to) in blocked {
        assert!(!ns_a.tcp_reaches(to), "sandbox A reached {what} ({to})");
    }
    assert!(
        !ns_a.run_in(v6_probe),
        "IPv6 link-local reached the host side"
    );
    assert!(!udp_arrives(&ns_a), "UDP 53 to the host side arrived");
    let gateway = a.host_addr;
    let ping_gateway = move || icmp_echo_answered(gateway);
    assert!(
        !ns_a.run_in(ping_gateway),
        "ICMP echo to the host side answered"
    );
    let ping_outside = move || icmp_echo_answered(Ipv4Addr::new(203, 0, 113, 2));
    assert!(
        !ns_a.run_in(ping_outside),
        "ICMP echo to the outside host answered"
    );
    assert!(
        !ns_b.tcp_reaches(v4(a.host_addr, proxy_a)),
        "sandbox B reached A's proxy"
    );

    // Control: without the table, the same probes get through. Proves the setup can fail.
    manager.remove_firewall().await.unwrap();
    for (what, to) in blocked {
        assert!(
            ns_a.tcp_reaches(to),
            "control: {what} ({to}) unreachable even without the firewall"
        );
    }
    assert!(
        ns_a.run_in(v6_probe),
        "control: IPv6 unreachable even without the firewall"
    );
    assert!(
        udp_arrives(&ns_a),
        "control: UDP unreachable even without the firewall"
    );
    assert!(
        ns_a.run_in(ping_gateway),
        "control: no ICMP echo reply without the firewall"
    );
    assert!(
        ns_a.run_in(ping_outside),
        "control: no forwarded ICMP without the firewall"
    );

    a.teardown().await;
    b.teardown().await;
}

/// Sandbox A sends packets for 127.0.0.1 out of eth0 to its gateway, and the host end accepts
/// them (route_localnet), as on a misconfigured host: without the firewall the host's
/// loopback-only service answers (the control proves it), with it nothing gets through.
fn a_routes_loopback_to_host(ns: &Netns, net: &SandboxNet) {
    ns.sysctl("net.ipv4.conf.eth0.route_localnet", "1");
    ns.sysctl("net.ipv4.conf.all.route_localnet", "1");
    // With lo flushed and down the local table has no 127/8 route to override this (attach brought lo up;
    // the probe plays a sandbox that somehow had the privileges to undo it).
    ns.ip(&["addr", "flush", "dev", "lo"]);
    ns.ip(&["link", "set", "lo", "down"]);
    ns.ip(&[
        "route",
        "add",
        "127.0.0.1/32",
        "via",
        &net.host_addr.to_string(),
        "dev",
        "eth0",
    ]);
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/route_localnet", net.host_ifname),
        "1",
    )
    .unwrap();
}

#[tokio::test]
async fn pool_exhaustion_is_a_clear_error_and_teardown_frees_the_slot() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    let manager = NetManager::new(config("198.18.251.0/29")).await.unwrap();
    assert_eq!(manager.capacity(), 2);
    let nss = [Netns::new(), Netns::new(), Netns::new()];
    let first = manager.attach(nss[0].pid(), 3128).await.unwrap();
    let second = manager.attach(nss[1].pid(), 3128).await.unwrap();
    let err = manager.attach(nss[2].pid(), 3128).await.unwrap_err();
    assert!(
        matches!(err, NetError::PoolExhausted { slots: 2, .. }),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "address pool 198.18.251.0/29 is exhausted: all 2 /30s are in use"
    );
    first.teardown().await;
    let third = manager.attach(nss[2].pid(), 3128).await.unwrap();
    assert_eq!(third.host_ifname, "nmt0");
    assert_eq!(third.sandbox_addr, Ipv4Addr::new(198, 18, 251, 2));
    second.teardown().await;
    third.teardown().await;
}

#[tokio::test]
async fn attach_refuses_the_gateways_own_netns_and_missing_pids() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    let manager = NetManager::new(config("198.18.252.0/30")).await.unwrap();
    let err = manager.attach(std::process::id(), 3128).await.unwrap_err();
    assert!(matches!(err, NetError::SharedNetns(_)), "{err}");
    let err = manager.attach(0x3fff_fff0, 3128).await.unwrap_err();
    assert!(matches!(err, NetError::Netns { .. }), "{err}");
    assert!(!link_exists("nmt0"), "a refused attach left a link");
    // The single slot is still free.
    let ns = Netns::new();
    manager
        .attach(ns.pid(), 3128)
        .await
        .unwrap()
        .teardown()
        .await;
}

#[tokio::test]
async fn teardown_removes_link_and_allowance_also_when_dropped_or_the_sandbox_died() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    let manager = NetManager::new(config("198.18.253.0/24")).await.unwrap();
    let ns = Netns::new();
    let net = manager.attach(ns.pid(), 4000).await.unwrap();
    let name = net.host_ifname.clone();
    assert!(link_exists(&name));
    assert!(
        ns.run_in(|| nix::net::if_::if_nametoindex("eth0").is_ok()),
        "no eth0 in the netns"
    );
    assert!(allowed_set().contains(&format!("\"{name}\" . 198.18.253.2 . 198.18.253.1 . 4000")));
    net.teardown().await;
    assert!(!link_exists(&name), "teardown left the link");
    assert!(
        !allowed_set().contains(&name),
        "teardown left the allowance"
    );
    assert!(
        ns.run_in(|| nix::net::if_::if_nametoindex("eth0").is_err()),
        "peer survived"
    );

    // Forgotten: Drop schedules the same teardown.
    let net = manager.attach(ns.pid(), 4000).await.unwrap();
    let name = net.host_ifname.clone();
    drop(net);
    let deadline = Instant::now() + Duration::from_secs(10);
    while link_exists(&name) || allowed_set().contains(&name) {
        assert!(
            Instant::now() < deadline,
            "dropped SandboxNet was never torn down"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The sandbox died first: its netns took the pair with it; teardown still cleans up.
    let doomed = Netns::new();
    let net = manager.attach(doomed.pid(), 4000).await.unwrap();
    let name = net.host_ifname.clone();
    drop(doomed);
    let deadline = Instant::now() + Duration::from_secs(10);
    while link_exists(&name) {
        assert!(Instant::now() < deadline, "link outlived its netns");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    net.teardown().await;
    assert!(!allowed_set().contains(&name));
    let again = manager.attach(ns.pid(), 4000).await.unwrap();
    assert_eq!(again.host_ifname, "nmt0", "slots were not all released");
    again.teardown().await;
}

#[tokio::test]
async fn a_new_manager_reclaims_stale_links_and_table() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    // What a crashed gateway leaves: a managed link, and a table with an old allowance.
    run(&[
        "ip",
        "link",
        "add",
        "nmt77",
        "type",
        "veth",
        "peer",
        "name",
        "nmtpeer77",
    ]);
    let _stale = HostLink("nmt77");
    run(&[
        "ip", "link", "add", "nmtkeep", "type", "veth", "peer", "name", "nmokeep",
    ]);
    let _keep = HostLink("nmtkeep");
    let stale_table = format!(
        "table inet {TABLE} {{\n\tchain stale {{\n\t}}\n}}\n{}\n",
        gig_netmgr::firewall_ruleset(TABLE, PREFIX)
    );
    let mut nft = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    nft.stdin
        .take()
        .unwrap()
        .write_all(stale_table.as_bytes())
        .unwrap();
    assert!(nft.wait().unwrap().success());
    run(&[
        "nft",
        "add",
        "element",
        "inet",
        TABLE,
        "allowed",
        "{ \"nmt77\" . 198.18.254.2 . 198.18.254.1 . 3128 }",
    ]);

    let manager = NetManager::new(config("198.18.254.0/24")).await.unwrap();
    let report = manager.reclaimed();
    assert_eq!(report.removed_links, vec!["nmt77".to_string()]);
    assert!(report.removed_table);
    assert!(!link_exists("nmt77") && !link_exists("nmtpeer77"));
    assert!(
        link_exists("nmtkeep"),
        "reclaim deleted a link that is not prefix+digits"
    );
    let table = run(&["nft", "list", "table", "inet", TABLE]);
    assert!(
        !table.contains("stale") && !table.contains("nmt77"),
        "{table}"
    );
    assert!(table.contains("chain from_sandbox"), "{table}");

    // A clean start reports nothing (the table was ours, now it is this manager's).
    manager.remove_firewall().await.unwrap();
    let manager = NetManager::new(config("198.18.254.0/24")).await.unwrap();
    assert_eq!(manager.reclaimed(), &gig_netmgr::ReclaimReport::default());
}

#[tokio::test]
async fn concurrent_attaches_get_distinct_slots_and_all_tear_down() {
    let _serial = SERIAL.lock().await;
    if !host_ready() {
        return;
    }
    let _table = TableGuard;
    let manager = NetManager::new(config("198.18.248.0/24")).await.unwrap();
    let nss: Vec<Netns> = (0..8).map(|_| Netns::new()).collect();
    let nets: Vec<SandboxNet> =
        futures::future::join_all(nss.iter().map(|ns| manager.attach(ns.pid(), 3128)))
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
    let mut names: Vec<&str> = nets.iter().map(|n| n.host_ifname.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 8, "two sandboxes got the same slot");
    let set = allowed_set();
    for net in &nets {
        assert!(link_exists(&net.host_ifname));
        assert!(set.contains(&format!("\"{}\"", net.host_ifname)), "{set}");
    }
    let names: Vec<String> = nets.iter().map(|n| n.host_ifname.clone()).collect();
    futures::future::join_all(nets.into_iter().map(SandboxNet::teardown)).await;
    let set = allowed_set();
    for name in &names {
        assert!(!link_exists(name), "{name} left behind");
        assert!(!set.contains(name), "{name}'s allowance left behind");
    }
}
