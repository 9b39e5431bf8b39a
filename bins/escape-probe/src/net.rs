//! The network half of the escape matrix: `escape-probe --net SPEC...`, run inside a sandbox
//! that has a link and an egress proxy (`gigmcp sandbox exec --allow-host ...`).
//!
//! The caller (the end-to-end test) creates every target itself (an "outside" host in its own
//! netns, listeners on the host, another sandbox) and names them in the SPECs, so the probe never
//! sends a packet anywhere the test did not make. Each attempt prints one JSON line
//! `{"attempt", "outcome", "errno", "detail"}`: `outcome` is `blocked`/`ESCAPED` for an escape
//! attempt and `reachable`/`UNREACHABLE` for what must keep working (the sandbox's own proxy);
//! `errno` names *why* it failed, so the test can tell a firewall drop (ETIMEDOUT) from a packet
//! that reached something (ECONNREFUSED) or a refusal of the kernel (EPERM).
//!
//! SPECs (repeatable, in any order):
//! - `proxy=IP:PORT`: the own proxy; a TCP connect must succeed.
//! - `connect-ok=HOST:PORT` / `connect-refused=HOST:PORT`: a CONNECT through the own proxy that
//!   must be answered 200 / must be refused.
//! - `tcp=NAME@ADDR`, `udp=NAME@ADDR`: a direct TCP connect / UDP datagram (a DNS query) that must
//!   not get through; ADDR is `IP:PORT` or `[IPv6%ifname]:PORT`.
//! - `icmp=NAME@IP`: an ICMP echo over an unprivileged ping socket and a raw socket.
//! - `spoof=NAME@SRC>IP:PORT`: TCP from a source address that is not the sandbox's (IP_FREEBIND);
//!   NAME says whose address SRC is.
//! - `resolve=HOST`: the libc resolver must not resolve anything.
//!
//! Fixed attempts follow: raw and packet sockets, and netlink/sysctl changes to the sandbox's own
//! addresses, routes, links and IPv6 switch (last, so a success could only cut off itself).

use std::io::{Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpStream, ToSocketAddrs,
    UdpSocket,
};
use std::time::Duration;

/// How long a dropped connect is given before it counts as dropped: a firewall DROP never answers.
const TIMEOUT: Duration = Duration::from_secs(2);

pub struct Row {
    pub attempt: String,
    pub outcome: &'static str,
    pub errno: String,
    pub detail: String,
}

fn blocked(attempt: &str, errno: &str, detail: impl Into<String>) -> Row {
    Row {
        attempt: attempt.into(),
        outcome: "blocked",
        errno: errno.into(),
        detail: detail.into(),
    }
}

fn escaped(attempt: &str, detail: impl Into<String>) -> Row {
    Row {
        attempt: attempt.into(),
        outcome: "ESCAPED",
        errno: String::new(),
        detail: detail.into(),
    }
}

/// The symbolic name of an errno (what the test compares against).
pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EACCES => "EACCES",
        libc::EINVAL => "EINVAL",
        libc::EROFS => "EROFS",
        libc::ENODEV => "ENODEV",
        libc::EBADF => "EBADF",
        libc::EPROTONOSUPPORT => "EPROTONOSUPPORT",
        libc::ESOCKTNOSUPPORT => "ESOCKTNOSUPPORT",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRNOTAVAIL => "EADDRNOTAVAIL",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::EHOSTUNREACH => "EHOSTUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::ECONNRESET => "ECONNRESET",
        libc::ETIMEDOUT => "ETIMEDOUT",
        libc::ENOSYS => "ENOSYS",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EEXIST => "EEXIST",
        libc::EAGAIN => "EAGAIN",
        _ => return format!("errno {e}"),
    };
    name.into()
}

fn io_errno(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno_name(code),
        None if matches!(
            e.kind(),
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
        ) =>
        {
            "ETIMEDOUT".into()
        }
        None => format!("{:?}", e.kind()),
    }
}

fn last_errno() -> String {
    io_errno(&std::io::Error::last_os_error())
}

/// `[fe80::1%eth0]:80` (an interface name as scope), or any address std parses.
fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((inner, port)) = rest.split_once("]:")
        && let Some((ip, scope)) = inner.split_once('%')
    {
        let ip: Ipv6Addr = ip.parse().map_err(|_| format!("bad IPv6 {ip}"))?;
        let port: u16 = port.parse().map_err(|_| format!("bad port {port}"))?;
        let name = std::ffi::CString::new(scope).map_err(|_| "bad scope".to_string())?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        return Ok(SocketAddr::V6(SocketAddrV6::new(ip, port, 0, index)));
    }
    text.parse().map_err(|_| format!("bad address {text}"))
}

/// A raw fd closed on drop.
struct Fd(i32);

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: the fd is owned by this guard and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn socket(domain: i32, kind: i32, protocol: i32) -> Result<Fd, String> {
    // SAFETY: plain integer arguments.
    let fd = unsafe { libc::socket(domain, kind | libc::SOCK_CLOEXEC, protocol) };
    if fd < 0 {
        Err(last_errno())
    } else {
        Ok(Fd(fd))
    }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A non-blocking IPv4 TCP connect, optionally from a source address the sandbox does not own
/// (IP_FREEBIND lets an unprivileged process bind one). Ok(()) = connected.
fn tcp4_connect(src: Option<Ipv4Addr>, dst: SocketAddrV4) -> Result<(), String> {
    let sock = socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_NONBLOCK, 0)?;
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    if let Some(src) = src {
        let one: libc::c_int = 1;
        // SAFETY: `one` is a live c_int of the size passed.
        let r = unsafe {
            libc::setsockopt(
                sock.0,
                libc::SOL_IP,
                libc::IP_FREEBIND,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if r != 0 {
            return Err(format!("IP_FREEBIND: {}", last_errno()));
        }
        let local = sockaddr_in(SocketAddrV4::new(src, 0));
        // SAFETY: `local` is a live sockaddr_in of `len` bytes.
        let r = unsafe { libc::bind(sock.0, (&local as *const libc::sockaddr_in).cast(), len) };
        if r != 0 {
            return Err(format!("bind {src}: {}", last_errno()));
        }
    }
    let remote = sockaddr_in(dst);
    // SAFETY: `remote` is a live sockaddr_in of `len` bytes.
    let r = unsafe { libc::connect(sock.0, (&remote as *const libc::sockaddr_in).cast(), len) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EINPROGRESS) {
        return Err(io_errno(&e));
    }
    let mut pfd = libc::pollfd {
        fd: sock.0,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one live pollfd.
    let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) };
    if n == 0 {
        return Err("ETIMEDOUT".into());
    }
    let mut err: libc::c_int = 0;
    let mut err_len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `err_len` are live and sized as the kernel expects.
    unsafe {
        libc::getsockopt(
            sock.0,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut err_len,
        )
    };
    if err == 0 {
        Ok(())
    } else {
        Err(errno_name(err))
    }
}

fn tcp_attempt(name: &str, addr: SocketAddr) -> Row {
    let attempt = format!("TCP to {name} ({addr})");
    let result = match addr {
        SocketAddr::V4(v4) => tcp4_connect(None, v4),
        SocketAddr::V6(_) => TcpStream::connect_timeout(&addr, TIMEOUT)
            .map(|_| ())
            .map_err(|e| io_errno(&e)),
    };
    match result {
        Ok(()) => escaped(&attempt, "connected"),
        Err(errno) => blocked(&attempt, &errno, "no connection"),
    }
}

fn spoof_attempt(name: &str, src: Ipv4Addr, dst: SocketAddrV4) -> Row {
    let attempt = format!("TCP from spoofed {src} ({name}) to {dst}");
    match tcp4_connect(Some(src), dst) {
        Ok(()) => escaped(&attempt, "connected"),
        Err(errno) => blocked(&attempt, &errno, "no connection"),
    }
}

/// A DNS query for `allowed.test`: a valid datagram for a resolver, and any echo counts as a reply.
fn dns_query() -> Vec<u8> {
    let mut q = vec![0x67, 0x69, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in ["allowed", "test"] {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

fn udp_attempt(name: &str, addr: SocketAddr) -> Row {
    let attempt = format!("UDP to {name} ({addr})");
    let bind: SocketAddr = match addr {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = match UdpSocket::bind(bind) {
        Ok(s) => s,
        Err(e) => return blocked(&attempt, &io_errno(&e), "socket refused"),
    };
    let _ = sock.set_read_timeout(Some(TIMEOUT));
    if let Err(e) = sock.send_to(&dns_query(), addr) {
        return blocked(&attempt, &io_errno(&e), "send failed");
    }
    let mut buf = [0u8; 512];
    match sock.recv_from(&mut buf) {
        Ok((n, from)) => escaped(&attempt, format!("{n}-byte reply from {from}")),
        // Sent without a local error: the test checks that nothing arrived anywhere.
        Err(_) => blocked(&attempt, "ETIMEDOUT", "sent, no reply"),
    }
}

/// An ICMP echo over the unprivileged ping socket and over a raw socket.
fn icmp_attempts(name: &str, ip: Ipv4Addr) -> Vec<Row> {
    let mut rows = Vec::new();
    let dst = sockaddr_in(SocketAddrV4::new(ip, 0));
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // Echo request; the ping socket fills in the id and checksum.
    let echo = [8u8, 0, 0, 0, 0, 0, 0, 1, b'g', b'i', b'g', 0];
    for (label, kind) in [
        ("ping socket", libc::SOCK_DGRAM),
        ("raw socket", libc::SOCK_RAW),
    ] {
        let attempt = format!("ICMP echo to {name} ({ip}) over a {label}");
        let sock = match socket(libc::AF_INET, kind, libc::IPPROTO_ICMP) {
            Ok(s) => s,
            Err(errno) => {
                rows.push(blocked(&attempt, &errno, "socket refused"));
                continue;
            }
        };
        // SAFETY: `echo` and `dst` are live buffers of the sizes passed.
        let sent = unsafe {
            libc::sendto(
                sock.0,
                echo.as_ptr().cast(),
                echo.len(),
                0,
                (&dst as *const libc::sockaddr_in).cast(),
                len,
            )
        };
        if sent < 0 {
            rows.push(blocked(&attempt, &last_errno(), "send failed"));
            continue;
        }
        let mut pfd = libc::pollfd {
            fd: sock.0,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one live pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, TIMEOUT.as_millis() as i32) };
        rows.push(if n > 0 {
            escaped(&attempt, "got a reply")
        } else {
            blocked(&attempt, "ETIMEDOUT", "sent, no reply")
        });
    }
    rows
}

fn resolve_attempt(host: &str) -> Row {
    let attempt = format!("resolve {host} with the libc resolver");
    match (host, 443).to_socket_addrs() {
        Ok(addrs) => escaped(
            &attempt,
            format!(
                "resolved to {:?}",
                addrs.map(|a| a.ip()).collect::<Vec<IpAddr>>()
            ),
        ),
        Err(e) => blocked(&attempt, "EAI", e.to_string()),
    }
}

/// Sends `request` to the own proxy and returns its status line.
fn proxy_exchange(proxy: SocketAddr, request: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&proxy, TIMEOUT).map_err(|e| io_errno(&e))?;
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    stream
        .write_all(request.as_bytes())
        .map_err(|e| io_errno(&e))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") && head.len() < 512 {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            Ok(_) => break,
            Err(e) => return Err(io_errno(&e)),
        }
    }
    Ok(String::from_utf8_lossy(&head).trim().to_string())
}

fn connect_attempt(proxy: SocketAddr, target: &str, must_succeed: bool) -> Row {
    let attempt = format!("CONNECT {target} through the own proxy");
    let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
    let answer = proxy_exchange(proxy, &request);
    let ok = answer
        .as_ref()
        .is_ok_and(|line| line.split(' ').nth(1) == Some("200"));
    let detail = answer.clone().unwrap_or_else(|e| format!("failed: {e}"));
    let errno = answer.err().unwrap_or_default();
    match (must_succeed, ok) {
        (true, true) => Row {
            attempt,
            outcome: "reachable",
            errno,
            detail,
        },
        (true, false) => Row {
            attempt,
            outcome: "UNREACHABLE",
            errno,
            detail,
        },
        (false, true) => escaped(&attempt, detail),
        (false, false) => blocked(&attempt, &errno, detail),
    }
}

/// IP_TRANSPARENT would let the sandbox send from (and accept for) any address.
fn transparent_attempt() -> Row {
    let attempt = "IP_TRANSPARENT (send from any address)";
    let sock = match socket(libc::AF_INET, libc::SOCK_STREAM, 0) {
        Ok(s) => s,
        Err(errno) => return blocked(attempt, &errno, "socket refused"),
    };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int of the size passed.
    let r = unsafe {
        libc::setsockopt(
            sock.0,
            libc::SOL_IP,
            libc::IP_TRANSPARENT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        escaped(attempt, "set")
    } else {
        blocked(attempt, &last_errno(), "refused")
    }
}

fn raw_socket_attempts() -> Vec<Row> {
    let cases: [(&str, i32, i32, i32); 6] = [
        (
            "raw IPv4 socket (TCP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_TCP,
        ),
        (
            "raw IPv4 socket (UDP)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_UDP,
        ),
        (
            "raw IPv4 socket (IPPROTO_RAW)",
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_RAW,
        ),
        (
            "raw IPv6 socket (ICMPv6)",
            libc::AF_INET6,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMPV6,
        ),
        (
            "AF_PACKET raw socket",
            libc::AF_PACKET,
            libc::SOCK_RAW,
            0x0300, /* ETH_P_ALL, BE */
        ),
        (
            "AF_PACKET dgram socket",
            libc::AF_PACKET,
            libc::SOCK_DGRAM,
            0x0008, /* ETH_P_IP, BE */
        ),
    ];
    cases
        .iter()
        .map(
            |&(attempt, domain, kind, protocol)| match socket(domain, kind, protocol) {
                Ok(_) => escaped(attempt, "socket created"),
                Err(errno) => blocked(attempt, &errno, "socket refused"),
            },
        )
        .collect()
}

/// A netlink request builder: header, fixed body, attributes.
struct Netlink(Vec<u8>);

impl Netlink {
    fn new(kind: u16, flags: u16, body: &[u8]) -> Self {
        let mut v = vec![0u8; 16];
        v[4..6].copy_from_slice(&kind.to_ne_bytes());
        let flags = flags | libc::NLM_F_REQUEST as u16 | libc::NLM_F_ACK as u16;
        v[6..8].copy_from_slice(&flags.to_ne_bytes());
        v[8..12].copy_from_slice(&1u32.to_ne_bytes());
        v.extend_from_slice(body);
        Netlink(v)
    }

    fn attr(mut self, kind: u16, data: &[u8]) -> Self {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }

    /// Sends the request; the kernel's ACK carries 0 or a negative errno.
    fn send(mut self) -> Result<(), String> {
        let len = self.0.len() as u32;
        self.0[0..4].copy_from_slice(&len.to_ne_bytes());
        let sock = socket(libc::AF_NETLINK, libc::SOCK_RAW, libc::NETLINK_ROUTE)?;
        // SAFETY: a zeroed sockaddr_nl is valid; only the family is set.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and address are live and sized as passed.
        let sent = unsafe {
            libc::sendto(
                sock.0,
                self.0.as_ptr().cast(),
                self.0.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(last_errno());
        }
        let mut buf = [0u8; 4096];
        // SAFETY: `buf` is a live buffer of the size passed.
        let n = unsafe { libc::recv(sock.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 20 {
            return Err(format!("short netlink answer ({n})"));
        }
        let error = i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]);
        if error == 0 {
            Ok(())
        } else {
            Err(errno_name(-error))
        }
    }
}

fn ifindex(name: &str) -> u32 {
    let name = std::ffi::CString::new(name).unwrap_or_default();
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    unsafe { libc::if_nametoindex(name.as_ptr()) }
}

/// Changes to the sandbox's own network: each needs CAP_NET_ADMIN, which nothing inside holds.
fn reconfigure_attempts() -> Vec<Row> {
    let eth0 = ifindex("eth0");
    let index = eth0.to_ne_bytes();
    let ifaddr = |prefix: u8| {
        let mut b = vec![libc::AF_INET as u8, prefix, 0, 0];
        b.extend_from_slice(&index);
        b
    };
    // struct ifinfomsg: family, pad, type (u16), index (i32), flags, change.
    let ifinfo = |index: u32, flags: u32, change: u32| {
        let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
        b.extend_from_slice(&index.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&change.to_ne_bytes());
        b
    };
    let new = (libc::NLM_F_CREATE | libc::NLM_F_EXCL) as u16;
    let extra: [u8; 4] = [198, 51, 100, 77];
    let mut route = vec![
        libc::AF_INET as u8,
        24,
        0,
        0,
        libc::RT_TABLE_MAIN,
        3,
        253,
        1,
    ];
    route.extend_from_slice(&0u32.to_ne_bytes());
    let mut v6 = vec![libc::AF_INET6 as u8, 64, 0, 0];
    v6.extend_from_slice(&index);
    let v6_addr: [u8; 16] = "fd00::99"
        .parse::<Ipv6Addr>()
        .unwrap_or(Ipv6Addr::LOCALHOST)
        .octets();
    let link_kind = {
        // IFLA_LINKINFO { IFLA_INFO_KIND "dummy" }
        let mut nested = Vec::new();
        nested.extend_from_slice(&10u16.to_ne_bytes());
        nested.extend_from_slice(&1u16.to_ne_bytes());
        nested.extend_from_slice(b"dummy\0");
        nested.extend_from_slice(&[0, 0]);
        nested
    };
    let requests: Vec<(&str, Netlink)> = vec![
        (
            "add an address to eth0 (netlink RTM_NEWADDR)",
            Netlink::new(libc::RTM_NEWADDR, new, &ifaddr(32))
                .attr(libc::IFA_LOCAL, &extra)
                .attr(libc::IFA_ADDRESS, &extra),
        ),
        (
            "add a route (netlink RTM_NEWROUTE)",
            Netlink::new(libc::RTM_NEWROUTE, new, &route)
                .attr(libc::RTA_DST, &[203, 0, 113, 0])
                .attr(libc::RTA_OIF, &index),
        ),
        (
            "add an IPv6 address to eth0 (netlink RTM_NEWADDR)",
            Netlink::new(libc::RTM_NEWADDR, new, &v6).attr(libc::IFA_LOCAL, &v6_addr),
        ),
        (
            "create a dummy link (netlink RTM_NEWLINK)",
            Netlink::new(libc::RTM_NEWLINK, new, &ifinfo(0, 0, 0))
                .attr(libc::IFLA_IFNAME, b"gigx0\0")
                .attr(libc::IFLA_LINKINFO, &link_kind),
        ),
        (
            "set eth0 down (netlink RTM_NEWLINK)",
            Netlink::new(libc::RTM_NEWLINK, 0, &ifinfo(eth0, 0, libc::IFF_UP as u32)),
        ),
    ];
    let mut rows: Vec<Row> = requests
        .into_iter()
        .map(|(attempt, request)| match request.send() {
            Ok(()) => escaped(attempt, "the kernel accepted it"),
            Err(errno) => blocked(attempt, &errno, "refused"),
        })
        .collect();
    for (path, value) in [
        ("/proc/sys/net/ipv6/conf/all/disable_ipv6", "0"),
        ("/proc/sys/net/ipv4/ip_forward", "1"),
        ("/proc/sys/net/ipv4/ping_group_range", "0 2147483647"),
        ("/proc/sys/net/ipv4/conf/all/route_localnet", "1"),
    ] {
        let attempt = format!("write {value} to {path}");
        rows.push(
            match std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut f| f.write_all(value.as_bytes()))
            {
                Ok(()) => escaped(&attempt, "written"),
                Err(e) => blocked(&attempt, &io_errno(&e), e.to_string()),
            },
        );
    }
    rows
}

enum Job {
    Tcp(String, SocketAddr),
    Udp(String, SocketAddr),
    Icmp(String, Ipv4Addr),
    Spoof(String, Ipv4Addr, SocketAddrV4),
}

impl Job {
    fn run(self) -> Vec<Row> {
        match self {
            Job::Tcp(name, addr) => vec![tcp_attempt(&name, addr)],
            Job::Udp(name, addr) => vec![udp_attempt(&name, addr)],
            Job::Icmp(name, ip) => icmp_attempts(&name, ip),
            Job::Spoof(name, src, dst) => vec![spoof_attempt(&name, src, dst)],
        }
    }
}

fn named(value: &str) -> Result<(String, &str), String> {
    value
        .split_once('@')
        .map(|(n, a)| (n.to_string(), a))
        .ok_or_else(|| format!("expected NAME@ADDRESS, got {value}"))
}

/// Runs every attempt the SPECs describe, then the fixed ones, and returns the rows in order.
pub fn run(specs: &[String]) -> Result<Vec<Row>, String> {
    let mut proxy = None;
    let mut connects = Vec::new();
    let mut jobs = Vec::new();
    let mut resolves = Vec::new();
    for spec in specs {
        let (kind, value) = spec
            .split_once('=')
            .ok_or_else(|| format!("expected KIND=VALUE, got {spec}"))?;
        match kind {
            "proxy" => proxy = Some(parse_addr(value)?),
            "connect-ok" => connects.push((value.to_string(), true)),
            "connect-refused" => connects.push((value.to_string(), false)),
            "tcp" => {
                let (name, addr) = named(value)?;
                jobs.push(Job::Tcp(name, parse_addr(addr)?));
            }
            "udp" => {
                let (name, addr) = named(value)?;
                jobs.push(Job::Udp(name, parse_addr(addr)?));
            }
            "icmp" => {
                let (name, ip) = named(value)?;
                jobs.push(Job::Icmp(
                    name,
                    ip.parse().map_err(|_| format!("bad IPv4 {ip}"))?,
                ));
            }
            "spoof" => {
                let (name, rest) = named(value)?;
                let (src, dst) = rest
                    .split_once('>')
                    .ok_or_else(|| format!("expected SRC>IP:PORT, got {rest}"))?;
                jobs.push(Job::Spoof(
                    name,
                    src.parse().map_err(|_| format!("bad IPv4 {src}"))?,
                    dst.parse().map_err(|_| format!("bad IPv4 address {dst}"))?,
                ));
            }
            "resolve" => resolves.push(value.to_string()),
            _ => return Err(format!("unknown spec {kind}")),
        }
    }
    let proxy = proxy.ok_or("proxy=IP:PORT is required")?;
    let mut rows = Vec::new();
    rows.push(match TcpStream::connect_timeout(&proxy, TIMEOUT) {
        Ok(_) => Row {
            attempt: format!("TCP to the own proxy ({proxy})"),
            outcome: "reachable",
            errno: String::new(),
            detail: "connected".into(),
        },
        Err(e) => Row {
            attempt: format!("TCP to the own proxy ({proxy})"),
            outcome: "UNREACHABLE",
            errno: io_errno(&e),
            detail: e.to_string(),
        },
    });
    for (target, must_succeed) in &connects {
        rows.push(connect_attempt(proxy, target, *must_succeed));
    }
    // Dropped packets are only noticed by a timeout: run those attempts side by side.
    let handles: Vec<_> = jobs
        .into_iter()
        .map(|job| std::thread::spawn(move || job.run()))
        .collect();
    for handle in handles {
        rows.extend(
            handle
                .join()
                .map_err(|_| "an attempt panicked".to_string())?,
        );
    }
    rows.extend(resolves.iter().map(|h| resolve_attempt(h)));
    rows.push(transparent_attempt());
    rows.extend(raw_socket_attempts());
    rows.extend(reconfigure_attempts());
    // The own proxy must still answer after all of the above.
    for (target, must_succeed) in connects.iter().filter(|(_, ok)| *ok) {
        let mut row = connect_attempt(proxy, target, *must_succeed);
        row.attempt = format!("{} (again, after every attempt)", row.attempt);
        rows.push(row);
    }
    Ok(rows)
}
