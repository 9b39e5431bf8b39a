//! The /30 allocator: pure bookkeeping, no kernel I/O.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// One sandbox's /30: `.0` network, `.1` host side, `.2` sandbox side, `.3` broadcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// Position of the /30 in the pool; also the interface name's suffix.
    pub index: u32,
    pub host_addr: Ipv4Addr,
    pub sandbox_addr: Ipv4Addr,
}

/// Hands out the /30s of a pool, lowest free first. A slot comes back only once its link is
/// gone (see `NetManager`), so a reused index never meets a half-deleted interface.
#[derive(Debug)]
pub(crate) struct Pool {
    net: Ipv4Net,
    used: Vec<bool>,
    /// Lowest index that may be free: keeps allocation O(1) amortised for the common case.
    next_hint: usize,
}

impl Pool {
    /// `net` must already be validated (IPv4, prefix ≤ 30).
    pub(crate) fn new(net: Ipv4Net) -> Self {
        let slots = 1usize << (30 - u32::from(net.prefix_len()));
        Pool {
            net,
            used: vec![false; slots],
            next_hint: 0,
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.used.len()
    }

    pub(crate) fn allocate(&mut self) -> Option<Slot> {
        let index = (self.next_hint..self.used.len()).find(|&i| !self.used[i])?;
        self.used[index] = true;
        self.next_hint = index + 1;
        Some(self.slot(index))
    }

    pub(crate) fn release(&mut self, index: u32) {
        let i = index as usize;
        if let Some(used) = self.used.get_mut(i) {
            *used = false;
            self.next_hint = self.next_hint.min(i);
        }
    }

    fn slot(&self, index: usize) -> Slot {
        let base = u32::from(self.net.network()) + 4 * index as u32;
        Slot {
            index: index as u32,
            host_addr: Ipv4Addr::from(base + 1),
            sandbox_addr: Ipv4Addr::from(base + 2),
        }
    }
}
