//! Free loopback ports for replica processes. A port is leased to one replica until its
//! processes are gone: otherwise two replicas starting at once can be handed the same port,
//! and a runtime that has not bound its port yet would have its queue-proxy find another
//! replica's process there and send it traffic. Another program may still take a port
//! before the replica binds it; the replica then fails to start and is restarted.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::sync::Mutex;

/// Ports leased to live replicas of this process.
static LEASED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Tries before giving up on finding a port not already leased.
const ATTEMPTS: usize = 64;

/// Ports held for one replica; released when dropped.
#[derive(Debug)]
pub(crate) struct PortLease {
    ports: Vec<u16>,
}

impl PortLease {
    /// `n` ports that the OS says are free now and no live replica holds.
    pub(crate) fn take(n: usize) -> std::io::Result<Self> {
        let mut lease = Self { ports: Vec::new() };
        while lease.ports.len() < n {
            lease.ports.push(unleased_port()?);
        }
        Ok(lease)
    }

    pub(crate) fn ports(&self) -> &[u16] {
        &self.ports
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        let mut leased = LEASED.lock().unwrap_or_else(|e| e.into_inner());
        for port in &self.ports {
            leased.remove(port);
        }
    }
}

fn unleased_port() -> std::io::Result<u16> {
    for _ in 0..ATTEMPTS {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if LEASED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(port)
        {
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "no free loopback port that another replica does not hold",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_never_share_a_port_and_release_them_when_dropped() {
        let leases: Vec<PortLease> = (0..200).map(|_| PortLease::take(4).unwrap()).collect();
        let all: Vec<u16> = leases.iter().flat_map(|l| l.ports().to_vec()).collect();
        let distinct: BTreeSet<u16> = all.iter().copied().collect();
        assert_eq!(distinct.len(), all.len());
        let port = leases[0].ports()[0];
        drop(leases);
        assert!(!LEASED.lock().unwrap().contains(&port));
    }
}
