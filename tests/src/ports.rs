//! Loopback ports for the servers a test starts, as `controller/src/local/ports.rs` hands
//! them to replicas: a port is leased to one test until the lease drops, so two tests that
//! run at once in one test binary are never handed the same port. A program outside this
//! process may still take a leased port before the server binds it; the server then fails
//! to start and the test says so.
//!
//! A server the test runs in-process skips the lease: [`bind_loopback`] binds port 0 and the
//! test passes the bound listener on.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

/// Ports leased to live tests of this process.
static LEASED: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// Tries before giving up on finding a port not already leased.
const ATTEMPTS: usize = 64;

fn leased() -> MutexGuard<'static, BTreeSet<u16>> {
    LEASED.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loopback port held for one test (or one server a test starts); released when dropped.
/// It formats as the bare port number, so `format!("--listen=127.0.0.1:{port}")` works.
#[derive(Debug)]
pub struct PortLease {
    port: u16,
}

impl PortLease {
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}

impl std::fmt::Display for PortLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.port)
    }
}

impl Drop for PortLease {
    fn drop(&mut self) {
        leased().remove(&self.port);
    }
}

/// A loopback port that the OS says is free now and no live lease of this process holds.
/// Keep the lease until the server that is given the port has bound it.
pub fn lease_port() -> PortLease {
    // The lock is held from the OS's answer to the insert, so that [`bind_loopback`] cannot
    // take the port in between without seeing it leased.
    let mut leased = leased();
    for _ in 0..ATTEMPTS {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on 127.0.0.1")
            .port();
        if leased.insert(port) {
            return PortLease { port };
        }
    }
    panic!("no free loopback port that another test does not hold");
}

/// A listener on a loopback port no lease holds, for a server the test runs in-process.
/// It is bound before the leases are checked, so no lease can be handed its port later.
pub async fn bind_loopback() -> tokio::net::TcpListener {
    for _ in 0..ATTEMPTS {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a port on 127.0.0.1");
        let port = listener.local_addr().expect("bound address").port();
        if !leased().contains(&port) {
            return listener;
        }
    }
    panic!("no free loopback port that a lease does not hold");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_leases_never_share_a_port_and_release_them_when_dropped() {
        let leases: Vec<PortLease> = (0..500).map(|_| lease_port()).collect();
        let distinct: BTreeSet<u16> = leases.iter().map(PortLease::port).collect();
        assert_eq!(distinct.len(), leases.len());
        let port = leases[0].port();
        assert_eq!(leases[0].to_string(), port.to_string());
        drop(leases);
        assert!(!leased().contains(&port));
    }

    #[tokio::test]
    async fn an_in_process_listener_never_gets_a_leased_port() {
        let leases: Vec<PortLease> = (0..200).map(|_| lease_port()).collect();
        for _ in 0..200 {
            let listener = bind_loopback().await;
            let port = listener.local_addr().unwrap().port();
            assert!(leases.iter().all(|l| l.port() != port), "{port} is leased");
        }
    }
}
