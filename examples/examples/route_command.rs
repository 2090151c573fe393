//! Plans where commands go in a Redis Cluster with `cluster-router`, which does no I/O: give it a command and a
//! slot map, get a plan back. This is what rkproxy does before it touches a socket.
//!
//! Run: `cargo run -p rkproxy-examples --example route_command`

use cluster_router::commands::lookup;
use cluster_router::plan::{route, RoutePlan};
use cluster_router::topology::{NodeAddr, ShardInfo, SlotMap};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let map = SlotMap::from_shards(vec![
        ShardInfo::new(vec![(0, 5460)], NodeAddr::new("10.0.0.1", 6379), vec![]),
        ShardInfo::new(vec![(5461, 10922)], NodeAddr::new("10.0.0.2", 6379), vec![]),
        ShardInfo::new(
            vec![(10923, 16383)],
            NodeAddr::new("10.0.0.3", 6379),
            vec![],
        ),
    ])?;
    let commands: [&[&[u8]]; 4] = [
        &[b"GET", b"user:1000"],
        &[b"MGET", b"a", b"b", b"c", b"{a}.2"],
        &[b"SUNIONSTORE", b"dest", b"a", b"b"],
        &[b"DBSIZE"],
    ];
    for args in commands {
        let shown: Vec<String> = args
            .iter()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let spec = lookup(&args)?;
        match route(spec, &args, &map) {
            Ok(RoutePlan::Slot(slot)) => {
                let node = map
                    .master_for_slot(slot)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                println!("{shown:?}: slot {slot} on {node}");
            }
            Ok(RoutePlan::Split { parts, merge }) => {
                println!(
                    "{shown:?}: {} sub-commands, merged by {merge:?}",
                    parts.len()
                );
            }
            Ok(plan) => println!("{shown:?}: {plan:?}"),
            Err(error) => println!("{shown:?}: -{error}"),
        }
    }
    Ok(())
}
