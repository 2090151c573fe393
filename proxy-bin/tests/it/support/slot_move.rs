//! One slot's move between two masters of a test's own cluster, step by step, the way `redis-cli --cluster
//! reshard` does it: the target `IMPORTING`, the source `MIGRATING`, the keys moved by `MIGRATE`, then the new
//! owner announced with `SETSLOT NODE`. Tests stop between the steps to meet ASK, TRYAGAIN and MOVED on purpose.

use super::redis_cli_at;

/// A slot on its way from `source` to `target` (both `host:port` of masters).
pub struct SlotMove {
    slot: String,
    source: String,
    target: String,
    target_id: String,
}

/// A node's cluster id.
fn node_id(addr: &str) -> String {
    redis_cli_at(addr, &["CLUSTER", "MYID"]).trim().to_owned()
}

/// The nodes of `addrs` that are masters now.
pub fn masters_among(addrs: &[String]) -> Vec<String> {
    addrs
        .iter()
        .filter(|addr| redis_cli_at(addr, &["ROLE"]).starts_with("master"))
        .cloned()
        .collect()
}

impl SlotMove {
    /// Starts moving `slot`: `IMPORTING` on the target, then `MIGRATING` on the source. From here the source
    /// answers ASK for keys it no longer holds.
    pub fn begin(slot: u16, source: &str, target: &str) -> Result<SlotMove, String> {
        let slot = slot.to_string();
        let (source_id, target_id) = (node_id(source), node_id(target));
        expect_ok(
            target,
            &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &source_id],
        )?;
        expect_ok(
            source,
            &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &target_id],
        )?;
        tracing::debug!(target: "slot_move", %slot, source, target, "importing and migrating");
        Ok(SlotMove {
            slot,
            source: source.to_owned(),
            target: target.to_owned(),
            target_id,
        })
    }

    /// Moves `keys` to the target with one `MIGRATE` (keys the source does not hold are skipped by Redis).
    pub fn migrate(&self, keys: &[&str]) -> Result<(), String> {
        let (host, port) = self
            .target
            .rsplit_once(':')
            .ok_or_else(|| format!("bad address {}", self.target))?;
        let mut migrate = vec!["MIGRATE", host, port, "", "0", "5000", "KEYS"];
        migrate.extend(keys);
        let reply = redis_cli_at(&self.source, &migrate);
        tracing::debug!(target: "slot_move", slot = %self.slot, ?keys, reply = reply.trim(), "migrated");
        if matches!(reply.trim(), "OK" | "NOKEY") {
            Ok(())
        } else {
            Err(format!("{migrate:?} on {}: {reply}", self.source))
        }
    }

    /// Moves every key of the slot still on the source, `per_step` keys per `MIGRATE`, pausing `pause`
    /// between steps (so clients see the slot split between two nodes for a while).
    pub fn migrate_all(&self, per_step: usize, pause: std::time::Duration) -> Result<(), String> {
        let count = per_step.to_string();
        loop {
            let listed = redis_cli_at(
                &self.source,
                &["CLUSTER", "GETKEYSINSLOT", &self.slot, &count],
            );
            let keys: Vec<&str> = listed.lines().filter(|line| !line.is_empty()).collect();
            if keys.is_empty() {
                return Ok(());
            }
            self.migrate(&keys)?;
            std::thread::sleep(pause);
        }
    }

    /// Ends the move: `SETSLOT NODE <target>` on the target first (so the slot is never owned by nobody), then
    /// on the source, then on each of `others` (the other masters; gossip would tell them later anyway).
    pub fn finish(self, others: &[String]) -> Result<(), String> {
        let rest = others
            .iter()
            .filter(|addr| **addr != self.target && **addr != self.source);
        for addr in [&self.target, &self.source].into_iter().chain(rest) {
            expect_ok(
                addr,
                &["CLUSTER", "SETSLOT", &self.slot, "NODE", &self.target_id],
            )?;
            tracing::debug!(target: "slot_move", slot = %self.slot, on = addr, owner = self.target, "node set");
        }
        Ok(())
    }
}

fn expect_ok(addr: &str, args: &[&str]) -> Result<(), String> {
    let reply = redis_cli_at(addr, args);
    if reply.trim() == "OK" {
        Ok(())
    } else {
        Err(format!("{args:?} on {addr}: {reply}"))
    }
}
