//! Free loopback ports.
//!
//! The kernel picks a free port when we bind `127.0.0.1:0`. Each listener is held until the whole
//! set has been picked, so one set never contains the same port twice; the ports are released just
//! before the servers bind them. (Another program could take a port in that gap; `redis` retries a
//! node on a fresh port when that happens.)

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use crate::Result;

/// Picks distinct free ports and keeps them reserved until dropped.
#[derive(Default)]
pub struct PortReserver {
    listeners: Vec<TcpListener>,
}

impl PortReserver {
    /// Reserves one more free port.
    pub fn reserve(&mut self) -> Result<u16> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        self.listeners.push(listener);
        Ok(port)
    }
}

/// Picks one free port and releases it at once.
pub fn free_port() -> Result<u16> {
    PortReserver::default().reserve()
}

/// Whether nothing is listening on a loopback port (we could bind it).
pub fn is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// The loopback address for a port.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ports_are_distinct_and_busy_until_released() {
        let mut reserver = PortReserver::default();
        let ports: Vec<u16> = (0..5).map(|_| reserver.reserve().unwrap()).collect();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
        assert!(ports.iter().all(|port| !is_free(*port)));
        drop(reserver);
        assert!(ports.iter().all(|port| is_free(*port)));
    }
}
