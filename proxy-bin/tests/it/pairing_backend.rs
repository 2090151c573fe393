//! Reply pairing on a shared backend connection: a cluster transaction of hundreds or thousands of commands
//! must not shift the replies of the other clients on the same connection (issue 9, defect 1: the number of
//! replies to drop was a `u8`, capped at 255, and other clients got each other's values).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::support::*;

/// Readers, each pipelining GETs of its own keys.
const READERS: usize = 4;
/// Keys per reader, all read in one pipeline.
const KEYS_PER_READER: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_of_300_commands_do_not_shift_other_clients_replies() {
    transactions_beside_pipelining_readers(300, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_of_2000_commands_do_not_shift_other_clients_replies() {
    transactions_beside_pipelining_readers(2000, 2).await;
}

/// Four clients pipeline GETs of their own `{tag}:secret...` keys while a fifth runs `rounds` transactions
/// of `commands` SETs on the same hash tag. One shared connection per node, so all five share it.
async fn transactions_beside_pipelining_readers(commands: usize, rounds: usize) {
    let work = async {
        let proxy = start_cluster_proxy(&cluster_nodes(), "connections_per_node = 1").await;
        let tag = unique("pairing");
        let mut setup = client(&proxy).await;
        for reader in 0..READERS {
            for key in 0..KEYS_PER_READER {
                let _: () = redis::cmd("SET")
                    .arg(secret_key(&tag, reader, key))
                    .arg(secret_value(&tag, reader, key))
                    .query_async(&mut setup)
                    .await
                    .unwrap();
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for reader in 0..READERS {
            let connection = client(&proxy).await;
            readers.push(tokio::spawn(read_own_secrets(
                connection,
                tag.clone(),
                reader,
                Arc::clone(&stop),
            )));
        }
        let mut writer = client(&proxy).await;
        for round in 0..rounds {
            let mut transaction = redis::pipe();
            transaction.atomic();
            for n in 0..commands {
                transaction
                    .cmd("SET")
                    .arg(format!("{{{tag}}}:written{n}"))
                    .arg(format!("round{round}-{n}"));
            }
            let replies: Vec<String> = transaction.query_async(&mut writer).await.unwrap();
            assert_eq!(replies.len(), commands, "EXEC must answer every command");
            assert!(replies.iter().all(|reply| reply == "OK"), "{replies:?}");
        }
        stop.store(true, Ordering::Relaxed);
        for reader in readers {
            let pipelines = reader.await.unwrap();
            assert!(pipelines > 0, "a reader never completed a pipeline");
        }
        // The last round's values are there: the transactions really ran.
        let last: String = redis::cmd("GET")
            .arg(format!("{{{tag}}}:written{}", commands - 1))
            .query_async(&mut writer)
            .await
            .unwrap();
        assert_eq!(last, format!("round{}-{}", rounds - 1, commands - 1));
        proxy.shutdown().await;
    };
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("the test finished within 60 s");
}

fn secret_key(tag: &str, reader: usize, key: usize) -> String {
    format!("{{{tag}}}:secret{reader}:{key}")
}

fn secret_value(tag: &str, reader: usize, key: usize) -> String {
    format!("secret of reader {reader}, key {key}, run {tag}")
}

/// Pipelines GETs of this reader's keys until `stop`, checking every value; returns the pipelines completed.
async fn read_own_secrets(
    mut connection: MultiplexedConnection,
    tag: String,
    reader: usize,
    stop: Arc<AtomicBool>,
) -> usize {
    let mut completed = 0;
    while !stop.load(Ordering::Relaxed) || completed == 0 {
        let mut pipeline = redis::pipe();
        for key in 0..KEYS_PER_READER {
            pipeline.cmd("GET").arg(secret_key(&tag, reader, key));
        }
        let values: Vec<String> = pipeline
            .query_async(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("reader {reader} got an error: {error}"));
        for (key, value) in values.iter().enumerate() {
            assert_eq!(
                value,
                &secret_value(&tag, reader, key),
                "reader {reader} got a reply meant for someone else"
            );
        }
        completed += 1;
    }
    completed
}
