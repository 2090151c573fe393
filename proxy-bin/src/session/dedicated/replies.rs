//! The dedicated connection in the session loop: writing the requests framed for it, framing its replies and
//! pushes, and a lost connection (a subscriber connects and subscribes again; anyone else's session ends).

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio_util::codec::Decoder;
use tracing::info;

use super::{Dedicated, FrameEffect, RESUBSCRIBE_WINDOW};
use crate::backend::{connect, BackendError, Broken, Endpoint};
use crate::pools::PoolHandle;
use crate::session::pending::Pending;
use crate::session::{Session, SessionEnd};

impl Session {
    /// Writes the requests framed for the dedicated connection since the last turn of the session loop.
    pub(in crate::session) async fn write_dedicated(&mut self) -> Result<(), SessionEnd> {
        let Some(dedicated) = self.dedicated.as_mut() else {
            return Ok(());
        };
        if dedicated.to_backend.is_empty() {
            return Ok(());
        }
        let written = dedicated.writer.write_all(&dedicated.to_backend).await;
        dedicated.to_backend.clear();
        if let Err(error) = written {
            self.backend_lost(Broken::Write(error)).await?;
        }
        Ok(())
    }

    /// What a read from the dedicated connection brought: replies and pushes for the client, the end of the
    /// connection or an error. `Some` when the session ends here (Redis closed the connection after QUIT).
    pub(in crate::session) async fn on_dedicated_read(
        &mut self,
        read: std::io::Result<usize>,
    ) -> Result<Option<SessionEnd>, SessionEnd> {
        let read = match read {
            Ok(read) => read,
            Err(error) => {
                self.backend_lost(Broken::Read(error)).await?;
                return Ok(None);
            }
        };
        self.frame_dedicated_replies()?;
        if read == 0 {
            if matches!(self.closing, Some(SessionEnd::Quit)) {
                // Redis closes the connection after QUIT's +OK.
                self.flush_output().await?;
                return Ok(Some(SessionEnd::Quit));
            }
            self.backend_lost(Broken::Closed).await?;
        }
        Ok(None)
    }

    /// Frames what the dedicated connection sent. A reply goes to the first entry of the reply queue still
    /// owed by this connection: into the write buffer when that entry is at the front, else kept in the entry
    /// until it is (an earlier reply the proxy builds in a task, `RKPROXY RELOAD` say, comes first).
    fn frame_dedicated_replies(&mut self) -> Result<(), SessionEnd> {
        loop {
            let Some(dedicated) = self.dedicated.as_mut() else {
                return Ok(());
            };
            let frame = match dedicated.decoder.decode(&mut dedicated.from_backend) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(SessionEnd::BackendLost(format!("bad reply: {e}"))),
            };
            let owed = self
                .pending
                .iter_mut()
                .enumerate()
                .find_map(|(at, entry)| match entry {
                    Pending::Dedicated(owed) if owed.replies > 0 => Some((at, &mut **owed)),
                    _ => None,
                });
            let effect = match owed {
                Some((0, owed)) => {
                    dedicated.backend_frame(frame, Some(owed), &mut self.gathered.buffer)
                }
                Some((_, owed)) => {
                    let mut early = std::mem::take(&mut owed.early);
                    let effect = dedicated.backend_frame(frame, Some(&mut *owed), &mut early);
                    owed.early = early;
                    effect
                }
                None => dedicated.backend_frame(frame, None, &mut self.gathered.buffer),
            };
            if effect == FrameEffect::None {
                continue;
            }
            if effect == FrameEffect::RefusedSubscription {
                // Subscribed only if Redis said so, or another subscription is on its way.
                let on_its_way = self.pending.iter().any(
                    |entry| matches!(entry, Pending::Dedicated(owed) if owed.pubsub && owed.replies > 0),
                );
                dedicated.subscribed =
                    dedicated.channel_count > 0 || dedicated.shard_count > 0 || on_its_way;
            }
            // The entry is complete: it and the proxy's own replies queued behind it go out now.
            self.collect_ready_replies();
        }
    }

    /// The dedicated connection broke. A subscribed client is connected and subscribed again; anything else
    /// gets an error for every reply still owed, and the session ends.
    async fn backend_lost(&mut self, reason: Broken) -> Result<(), SessionEnd> {
        let Some(mut dedicated) = self.dedicated.take() else {
            return Ok(());
        };
        let resubscribed = dedicated.subscribed
            && self.closing.is_none()
            && self.resubscribe(&mut dedicated).await;
        // Replies owed by the old connection will never come.
        let lost = reason.to_string();
        let error = BackendError::lost(&dedicated.endpoint.address, reason);
        self.fail_owed(&error);
        if resubscribed {
            self.dedicated = Some(dedicated);
            return Ok(());
        }
        self.flush_output().await?;
        Err(SessionEnd::BackendLost(lost))
    }

    /// Connects again (within [`RESUBSCRIBE_WINDOW`]) and restores every subscription; whether it could.
    async fn resubscribe(&self, dedicated: &mut Dedicated) -> bool {
        let deadline = tokio::time::Instant::now() + RESUBSCRIBE_WINDOW;
        while tokio::time::Instant::now() < deadline {
            if let Some(candidate) = self.resubscribe_endpoint(dedicated) {
                dedicated.endpoint = candidate;
            }
            if let Ok(stream) = connect(&dedicated.endpoint).await {
                let (commands, confirmations) = dedicated.resubscribe_commands();
                dedicated.reconnected(stream);
                if dedicated.writer.write_all(&commands).await.is_ok() {
                    info!(backend = %dedicated.endpoint.address, "dedicated connection lost; subscribed again");
                    dedicated.swallow = confirmations;
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        false
    }

    /// Every reply still owed by the dedicated connection fails with `error`; the proxy's own replies keep
    /// their place. Each failed request is counted as a backend failure.
    fn fail_owed(&mut self, error: &BackendError) {
        let reply = error.to_reply();
        let mut failed = 0;
        for entry in self.pending.iter_mut() {
            if let Pending::Dedicated(owed) = entry {
                if owed.replies > 0 {
                    for _ in 0..std::mem::take(&mut owed.replies) {
                        owed.early.extend_from_slice(&reply);
                    }
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            self.stats
                .error(crate::session::observe::failure_kind(error), failed);
            self.stats.node(error.address(), 0, failed, None);
        }
        self.collect_ready_replies();
    }

    /// Where a resubscribing client goes: in a cluster, a master of the (refreshed) map.
    fn resubscribe_endpoint(&self, dedicated: &Dedicated) -> Option<Endpoint> {
        let PoolHandle::Cluster(pool) = &self.pool else {
            return None;
        };
        pool.request_refresh();
        let topology = pool.topology();
        let masters = topology.map.masters();
        if masters.is_empty() {
            return None;
        }
        // Shard channels live on their slot's node; plain channels and patterns on any node.
        let node = match dedicated.shard_channels.iter().next() {
            Some(channel) => topology
                .map
                .master_for_slot(cluster_router::key_slot(channel))?
                .clone(),
            None => masters[(self.id as usize) % masters.len()].clone(),
        };
        Some(pool.endpoint(&node, self.resp3, false))
    }
}
