//! Moving a client to a dedicated connection (connecting, or taking the spare one) and back to shared
//! connections once the server holds no state for it.

use bytes::Bytes;
use cluster_router::commands;
use cluster_router::plan::{route, RouteError, RoutePlan};
use cluster_router::topology::NodeAddr;
use resp_codec::Request;
use tokio::io::AsyncWriteExt;
use tracing::debug;

use super::{Dedicated, SpareConnection};
use crate::backend::{connect, BackendError, Endpoint};
use crate::pools::PoolHandle;
use crate::session::errors::{AdminError, ClusterError, ErrorReply, Unsupported};
use crate::session::pending::Pending;
use crate::session::{Session, SessionEnd};

impl Session {
    /// At a barrier, with a request that needs a backend connection of its own: connects (or takes the spare
    /// connection) and sends the request there. If that fails, the request gets the error and the client stays
    /// on shared connections.
    pub(in crate::session) async fn start_dedicated(&mut self, first: Request) {
        let (endpoint, node) = match self.dedicated_endpoint(&first) {
            Ok(found) => found,
            Err(reply) => {
                self.pending.push_back(Pending::Ready(reply));
                return;
            }
        };
        let spare = self
            .spare_dedicated
            .take()
            .filter(|spare| spare.fits(&endpoint));
        let backend = match spare {
            Some(spare) => Ok(spare.stream),
            None => connect(&endpoint).await,
        };
        let stream = match backend {
            Ok(stream) => stream,
            Err(reason) => {
                let error = BackendError::connect(&endpoint.address, reason);
                self.pending.push_back(Pending::Ready(error.to_reply()));
                return;
            }
        };
        debug!(backend = %endpoint.address, "client moved to a dedicated backend connection");
        self.route = None;
        let tenant = self.tenant().cloned();
        self.dedicated = Some(Dedicated::new(stream, endpoint, node, tenant));
        // The first request was checked (and rewritten) in shared mode already.
        self.deferred_is_policed = true;
        self.handle(first);
    }

    /// At a barrier (no reply owed) on a dedicated connection: a removed tenant's session ends, and at shutdown
    /// the session closes (a subscriber is told why its messages stop); once the server holds no state for the
    /// client, it goes back to shared connections. `Some` when the session ends.
    pub(in crate::session) async fn dedicated_barrier(
        &mut self,
    ) -> Result<Option<SessionEnd>, SessionEnd> {
        let Some(dedicated) = &self.dedicated else {
            return Ok(None);
        };
        let (subscribed, holds_state) = (dedicated.subscribed, dedicated.holds_state());
        if let Some(refusal) = self.tenant_removed_by_reload() {
            // A subscriber, or a client between the commands of a transaction, of a removed tenant.
            self.gathered.buffer.extend_from_slice(&refusal);
            self.flush_output().await?;
            return Ok(Some(SessionEnd::TenantRemoved));
        }
        if self.shutting_down {
            self.flush_output().await?;
            if subscribed {
                let stopped = AdminError::ShuttingDown.to_reply();
                self.stream.write_all(&stopped).await?;
            }
            return self.close_after_shutdown().await.map(Some);
        }
        if !holds_state {
            self.leave_dedicated();
        }
        Ok(None)
    }

    /// Nothing left on the server for this client (a blocking command returned, a transaction ended): back to
    /// shared connections, keeping this one for the next time.
    fn leave_dedicated(&mut self) {
        let Some(dedicated) = self.dedicated.take() else {
            return;
        };
        if let Some(stream) = dedicated.reader.reunite(dedicated.writer) {
            if dedicated.from_backend.is_empty() && !dedicated.reconfigured {
                self.spare_dedicated = Some(SpareConnection {
                    address: dedicated.endpoint.address.clone(),
                    db: dedicated.endpoint.db,
                    resp3: dedicated.endpoint.resp3,
                    stream,
                });
            }
        }
        // Idle time counts from here: a subscriber may not have sent anything for long.
        self.last_activity = tokio::time::Instant::now();
        debug!("client back on shared connections");
    }

    /// The backend a dedicated connection for `first` goes to, and in a cluster its node.
    fn dedicated_endpoint(&self, first: &Request) -> Result<(Endpoint, Option<NodeAddr>), Bytes> {
        match &self.pool {
            PoolHandle::Standalone(pool) => Ok((pool.endpoint(self.db, self.resp3), None)),
            // The Kafka session code refuses every command that could need one; this is a safety net.
            PoolHandle::Kafka(pool) => Err(Unsupported::KafkaWithoutRedis {
                pool: pool.name().to_owned(),
            }
            .to_reply()),
            PoolHandle::Cluster(pool) => {
                let spec = commands::lookup(first).map_err(|e| Bytes::from(e.to_reply()))?;
                let topology = pool.topology();
                let masters = topology.map.masters();
                // No master for the slot, or none at all (keyless), as on shared connections.
                let node = match route(spec, first, &topology.map) {
                    Ok(RoutePlan::Slot(slot)) => {
                        topology.map.master_for_slot(slot).cloned().ok_or_else(|| {
                            Bytes::from(RouteError::SlotNotServed { slot }.to_reply())
                        })
                    }
                    Ok(_) if !masters.is_empty() => {
                        Ok(masters[(self.id as usize) % masters.len()].clone())
                    }
                    Ok(_) => Err(ClusterError::NoSlotMap {
                        pool: pool.name().to_owned(),
                    }
                    .to_reply()),
                    Err(error) => return Err(Bytes::from(error.to_reply())),
                };
                let node = node.inspect_err(|_| pool.request_refresh())?;
                let endpoint = pool.endpoint(&node, self.resp3, false);
                Ok((endpoint, Some(node)))
            }
        }
    }
}
