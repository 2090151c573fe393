//! Free loopback ports.
//!
//! A port is picked at random below the kernel's ephemeral range (`ip_local_port_range`) and bound to see
//! that it is free. Not from that range: a port from it can be taken, between our pick and the server's
//! bind, as the local port of any outgoing connection on the machine (Kafka's controller port once was,
//! while the TLS test cluster's nodes connected to each other, and Kafka exited). Each listener is held
//! until the whole set has been picked, so one set never contains the same port twice; the ports are
//! released just before the servers bind them. (Another program could still take a port in that gap;
//! `redis` retries a node on a fresh port when that happens.) Without a range below the ephemeral one, the
//! kernel picks (`127.0.0.1:0`).

use std::hash::{BuildHasher, RandomState};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::ops::Range;

use crate::Result;

/// How many ports below the ephemeral range are candidates.
const CANDIDATE_PORTS: u16 = 12_000;
/// The lowest candidate, whatever the ephemeral range.
const LOWEST_PORT: u16 = 10_000;
/// Random candidates tried before the kernel picks.
const ATTEMPTS: usize = 100;

/// Picks distinct free ports and keeps them reserved until dropped.
#[derive(Default)]
pub struct PortReserver {
    listeners: Vec<TcpListener>,
}

impl PortReserver {
    /// Reserves one more free port.
    pub fn reserve(&mut self) -> Result<u16> {
        let random = RandomState::new();
        if let Some(range) = candidate_ports() {
            let span = u64::from(range.end - range.start);
            for attempt in 0..ATTEMPTS {
                let offset = u16::try_from(random.hash_one(attempt) % span).unwrap_or(0);
                let port = range.start + offset;
                if let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
                    self.listeners.push(listener);
                    return Ok(port);
                }
            }
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        self.listeners.push(listener);
        Ok(port)
    }
}

/// The ports below the kernel's ephemeral range, if there is room for them there.
fn candidate_ports() -> Option<Range<u16>> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let ephemeral_start: u16 = range.split_whitespace().next()?.parse().ok()?;
    let start = ephemeral_start
        .saturating_sub(CANDIDATE_PORTS)
        .max(LOWEST_PORT);
    (start < ephemeral_start).then_some(start..ephemeral_start)
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

    #[test]
    fn ports_come_from_below_the_ephemeral_range() {
        let Some(range) = candidate_ports() else {
            panic!("this machine's ip_local_port_range leaves no room below it");
        };
        let mut reserver = PortReserver::default();
        for _ in 0..20 {
            let port = reserver.reserve().unwrap();
            assert!(range.contains(&port), "{port} not in {range:?}");
        }
    }
}
