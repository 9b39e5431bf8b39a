//! Pure logic: the allocator, config validation, names and the ruleset text. The kernel side is
//! tested as root in `tests/netmgr.rs`.

use std::net::Ipv4Addr;

use crate::link::is_managed_name;
use crate::pool::Pool;
use crate::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn pool_hands_out_host_dot1_sandbox_dot2_and_exhausts() {
    let mut pool = Pool::new(net("198.19.4.0/29"));
    assert_eq!(pool.capacity(), 2);
    let a = pool.allocate().unwrap();
    assert_eq!(
        (a.index, a.host_addr, a.sandbox_addr),
        (
            0,
            Ipv4Addr::new(198, 19, 4, 1),
            Ipv4Addr::new(198, 19, 4, 2)
        )
    );
    let b = pool.allocate().unwrap();
    assert_eq!(
        (b.index, b.host_addr, b.sandbox_addr),
        (
            1,
            Ipv4Addr::new(198, 19, 4, 5),
            Ipv4Addr::new(198, 19, 4, 6)
        )
    );
    assert_eq!(pool.allocate(), None);
    pool.release(0);
    assert_eq!(
        pool.allocate().unwrap().index,
        0,
        "lowest free slot is reused"
    );
    assert_eq!(pool.allocate(), None);
    pool.release(99); // out of range: ignored
}

#[test]
fn default_pool_avoids_common_ranges() {
    let pool = default_pool();
    assert_eq!(pool, net("198.19.0.0/16"));
    for other in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "127.0.0.0/8",
        "198.18.0.0/16",
    ] {
        let other = net(other);
        assert!(
            !other.contains(&pool.network()) && !pool.contains(&other.network()),
            "{pool} overlaps {other}"
        );
    }
    validate(&NetConfig::default()).unwrap();
    assert_eq!(Pool::new(pool).capacity(), 16384);
}

#[test]
fn config_validation_rejects_bad_pools_prefixes_and_tables() {
    let with = |f: &dyn Fn(&mut NetConfig)| {
        let mut c = NetConfig::default();
        f(&mut c);
        validate(&c)
    };
    for pool in [
        "198.19.0.0/31",
        "169.254.0.0/24",
        "127.0.0.0/16",
        "0.0.0.0/0",
        "224.0.0.0/24",
    ] {
        assert!(
            matches!(with(&|c| c.pool = net(pool)), Err(NetError::Config(_))),
            "{pool} accepted"
        );
    }
    for prefix in [
        "",
        "Gig",
        "gig*",
        "g-ig",
        "9gig",
        "e",
        "eth",
        "l",
        "averylongprefix",
    ] {
        assert!(
            matches!(
                with(&|c| c.ifname_prefix = prefix.into()),
                Err(NetError::Config(_))
            ),
            "prefix {prefix:?} accepted"
        );
    }
    for table in ["", "a b", "x;flush ruleset", "t\"", &"t".repeat(33)] {
        assert!(
            matches!(
                with(&|c| c.nft_table = table.into()),
                Err(NetError::Config(_))
            ),
            "table {table:?} accepted"
        );
    }
    // A /30 pool leaves room for a 14-character prefix (one digit).
    with(&|c| {
        c.pool = net("198.19.0.0/30");
        c.ifname_prefix = "abcdefghijklmn".into();
    })
    .unwrap();
}

#[test]
fn managed_names_are_prefix_plus_digits_only() {
    assert!(is_managed_name("gig0", "gig"));
    assert!(is_managed_name("gig16383", "gig"));
    assert!(!is_managed_name("gig", "gig"));
    assert!(!is_managed_name("gigabit0", "gig"));
    assert!(!is_managed_name("gigt3", "gig"));
    assert!(!is_managed_name("eth0", "gig"));
}

#[test]
fn ruleset_confines_prefix_links_to_the_allowed_set() {
    let r = firewall_ruleset("gigtest", "nmt");
    assert!(r.starts_with("table inet gigtest {"));
    assert!(r.contains("type ifname . ipv4_addr . ipv4_addr . inet_service"));
    assert!(r.contains("iifname . ip saddr . ip daddr . tcp dport @allowed accept\n\t\tdrop\n"));
    for hook in ["prerouting priority raw", "input priority filter"] {
        let chain = r.split(&format!("hook {hook};")).nth(1).unwrap();
        let body = &chain[..chain.find('}').unwrap()];
        assert!(body.contains("policy accept;"), "{hook}: {body}");
        assert!(
            body.contains("iifname \"nmt*\" jump from_sandbox"),
            "{hook}"
        );
    }
    let fwd = r.split("hook forward").nth(1).unwrap();
    assert!(fwd.contains("iifname \"nmt*\" drop") && fwd.contains("oifname \"nmt*\" drop"));
    assert!(r.contains("oifname \"nmt*\" meta nfproto ipv6 drop"));
    // Nothing else is accepted anywhere.
    assert_eq!(r.matches("accept").count(), 5, "{r}");
}

#[test]
fn allow_element_names_link_both_addresses_and_port() {
    assert_eq!(
        allow_element(
            "gigmcp",
            "gigmcp7",
            Ipv4Addr::new(198, 19, 0, 30),
            Ipv4Addr::new(198, 19, 0, 29),
            3128
        ),
        "element inet gigmcp allowed { \"gigmcp7\" . 198.19.0.30 . 198.19.0.29 . 3128 }"
    );
}

#[test]
fn replace_script_deletes_any_old_table_first() {
    let s = firewall::replace_table_script("t", "p");
    assert!(s.starts_with("table inet t\ndelete table inet t\ntable inet t {"));
}
