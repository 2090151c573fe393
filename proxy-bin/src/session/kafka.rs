//! Kafka in the session: KPUSH, KPOP, KACK, KPARTITIONS and KOFFSET go to the session's Kafka pool; a Kafka
//! pool serves nothing else but connection commands; and the admin commands `RKPROXY KOFFSETS` and
//! `RKPROXY KRESET`.
//!
//! Each connection has its own `ConnectionDeliveries` (made on its first Kafka command): on an at-least-once
//! topic, its next `KPOP topic` acknowledges the records it received before, and what it has not acknowledged
//! when it closes is delivered again to its group at once.
//!
//! A Kafka command runs in a task of its own (see `crate::pools::kafka`) and its reply waits in the pending queue
//! like a backend reply, so the session keeps reading and replies stay in request order. The consumer group of
//! `KPOP topic` is the tenant (`default` when no tenants are configured). Tenants' traffic limits apply to
//! Kafka commands as to Redis commands.
//!
//! Replies of a Kafka pool to other commands:
//! - PING and ECHO are answered by the proxy; AUTH, HELLO, QUIT, RESET, CLIENT SETNAME and the other commands
//!   the proxy answers itself work as on any pool; USE and RKPROXY too.
//! - Everything else: `-ERR command 'get' is not served by Kafka pool 'events': it accepts KPUSH, KPOP,
//!   KPARTITIONS and KOFFSET`.
//!
//! A Kafka command on a Redis pool: `-ERR KPUSH is a Kafka command and this connection uses Redis pool 'main';
//! a Kafka pool serves it (a tenant of a Kafka pool, or USE <kafka pool>)`.

use std::sync::Arc;

use bytes::Bytes;
use cluster_router::commands::ProxyHandling;
use kafka_bridge::{is_kafka_command, CursorAdminKind, KafkaReply};
use resp_codec::Request;
use tenant_policy::{OverLimit, PolicyError, Verdict as PolicyVerdict};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::pending::{Expect, Pending};
use super::Session;
use crate::backend::{one_line, BackendReply};
use crate::pools::kafka::{KafkaPool, KafkaPoolError};
use crate::pools::PoolHandle;
use crate::reply;

impl Session {
    /// A cheap first test: whether the request may be a Kafka command (its name starts with K), a Kafka admin
    /// command (R, for RKPROXY), or is sent to a Kafka pool. Redis requests on Redis pools pay only this.
    #[inline]
    pub(super) fn may_concern_kafka(&self, request: &Request) -> bool {
        matches!(self.pool, PoolHandle::Kafka(_))
            || request
                .name()
                .first()
                .is_some_and(|first| matches!(first, b'k' | b'K' | b'r' | b'R'))
    }

    /// Serves the request when it concerns Kafka; otherwise hands it back for the Redis path.
    pub(super) fn route_kafka(&mut self, request: Request) -> Option<Request> {
        let name = request.name();
        if is_kafka_command(name) {
            self.kafka_command(request);
            return None;
        }
        if name.eq_ignore_ascii_case(b"RKPROXY") {
            if let Some(kind) = request.arg(1).and_then(CursorAdminKind::of) {
                self.kafka_admin(kind, &request);
                return None;
            }
        }
        if matches!(self.pool, PoolHandle::Kafka(_)) {
            return self.other_command_on_kafka_pool(request);
        }
        Some(request)
    }

    /// KPUSH, KPOP, KACK, KPARTITIONS, KOFFSET.
    fn kafka_command(&mut self, request: Request) {
        // Earlier batched Redis requests go first, so replies keep request order.
        self.flush_batch();
        if self.awaiting_auth() {
            self.pending
                .push_back(Pending::Ready(PolicyError::NoAuth.to_reply()));
            return;
        }
        let pool = match &self.pool {
            PoolHandle::Kafka(pool) => Arc::clone(pool),
            redis_pool => {
                let refusal = KafkaPoolError::KafkaCommandOnRedisPool {
                    command: String::from_utf8_lossy(request.name()).to_ascii_uppercase(),
                    pool: redis_pool.name().to_owned(),
                }
                .to_reply();
                // Like an unknown command inside a cluster pool's MULTI, it makes EXEC fail.
                self.fail_transaction();
                self.pending.push_back(Pending::Ready(refusal));
                return;
            }
        };
        // The tenant's size and traffic limits, as for Redis commands (tenant-policy decides).
        match self.police_request(None, &request, OverLimit::Wait) {
            // Commands outside the command table are never rewritten.
            PolicyVerdict::Proceed | PolicyVerdict::Rewritten(_) => {}
            PolicyVerdict::Wait(delay) => {
                // Like any request over the tenant's budget: the session stops reading and runs it later.
                self.deferred = Some(request);
                self.resume_at = Some(Instant::now() + delay);
                return;
            }
            PolicyVerdict::Refuse(error) => {
                self.stats.error(super::observe::refusal_kind(&error), 1);
                self.pending.push_back(Pending::Ready(error.to_reply()));
                return;
            }
        }
        let counted = self.count_kafka(&pool, &request);
        let deliveries = Arc::clone(self.kafka_deliveries.get_or_insert_with(Arc::default));
        let receiver = pool.execute(self.tenant().cloned(), request, self.resp3, deliveries);
        let receiver = match counted {
            Some(topic) => self.count_kpop_reply(&pool, topic, receiver),
            None => receiver,
        };
        self.pending
            .push_back(Pending::Waiting(receiver, Expect::Forward));
    }

    /// Counts a KPUSH or KPOP to a topic the pool serves; returns the topic of a KPOP, whose reply bytes are
    /// counted when it arrives.
    fn count_kafka(&mut self, pool: &KafkaPool, request: &Request) -> Option<Arc<str>> {
        let name = request.name();
        let push = name.eq_ignore_ascii_case(b"KPUSH");
        if !push && !name.eq_ignore_ascii_case(b"KPOP") {
            return None;
        }
        let topic = std::str::from_utf8(request.arg(1)?).ok()?;
        if !pool.has_topic(topic) {
            return None;
        }
        self.stats.kafka(topic, push, request.raw().len());
        (!push).then(|| Arc::from(topic))
    }

    /// Passes a KPOP's reply on, counting its bytes for the topic (in the task, off the session's path).
    fn count_kpop_reply(
        &self,
        pool: &KafkaPool,
        topic: Arc<str>,
        receiver: oneshot::Receiver<BackendReply>,
    ) -> oneshot::Receiver<BackendReply> {
        if !self.stats.enabled() {
            return receiver;
        }
        let key = (
            Arc::from(pool.name()),
            topic,
            Arc::clone(self.stats.tenant()),
        );
        let stats = Arc::clone(self.state.stats());
        let (sender, counted) = oneshot::channel();
        tokio::spawn(async move {
            if let Ok(reply) = receiver.await {
                if let Ok(bytes) = &reply {
                    stats.kafka_reply(key, bytes.len());
                }
                let _ = sender.send(reply);
            }
        });
        counted
    }

    /// `RKPROXY KOFFSETS group topic` and `RKPROXY KRESET group topic partition next_offset`: admins only when
    /// tenants are configured.
    fn kafka_admin(&mut self, kind: CursorAdminKind, request: &Request) {
        self.flush_batch();
        let refusal = match self.kafka_admin_reply(kind, request) {
            Ok(receiver) => {
                self.pending
                    .push_back(Pending::Waiting(receiver, Expect::Forward));
                return;
            }
            Err(refusal) => refusal,
        };
        self.pending.push_back(Pending::Ready(refusal));
    }

    /// Checks the caller (authenticated, an admin), parses the command (kafka-bridge) and hands it to the pool
    /// that has its topic; a refusal is the error reply.
    fn kafka_admin_reply(
        &self,
        kind: CursorAdminKind,
        request: &Request,
    ) -> Result<oneshot::Receiver<BackendReply>, Bytes> {
        if self.awaiting_auth() {
            return Err(PolicyError::NoAuth.to_reply());
        }
        if let Some(tenant) = self.tenant() {
            tenant
                .may_run_proxy_admin(kind.command_name().as_bytes())
                .map_err(|error| error.to_reply())?;
        }
        let args: Vec<&[u8]> = request.args().collect();
        let command = kind
            .parse(&args)
            .map_err(|error| KafkaReply::from(error).resp_bytes(self.resp3))?;
        let pool = self
            .kafka_pool_of_topic(command.topic())
            .map_err(|error| error.to_reply())?;
        Ok(pool.run_cursor_admin(command, self.resp3))
    }

    /// The Kafka pool serving `topic`: the session's pool when it has the topic, else the only pool that has it.
    fn kafka_pool_of_topic(&self, topic: &str) -> Result<Arc<KafkaPool>, KafkaPoolError> {
        if let PoolHandle::Kafka(pool) = &self.pool {
            if pool.has_topic(topic) {
                return Ok(Arc::clone(pool));
            }
        }
        let having: Vec<&Arc<KafkaPool>> = self
            .state
            .kafka_pools()
            .filter(|pool| pool.has_topic(topic))
            .collect();
        match having.as_slice() {
            [pool] => Ok(Arc::clone(pool)),
            [] => Err(KafkaPoolError::TopicInNoPool {
                topic: one_line(topic),
            }),
            several => {
                let names: Vec<&str> = several.iter().map(|pool| pool.name()).collect();
                Err(KafkaPoolError::TopicInSeveralPools {
                    topic: one_line(topic),
                    pools: names.join(", "),
                })
            }
        }
    }

    /// A command other than K* on a Kafka pool: PING and ECHO answered here, the proxy's own connection
    /// commands passed on, everything else refused.
    fn other_command_on_kafka_pool(&mut self, request: Request) -> Option<Request> {
        // An unknown command or a wrong arity gets the command table's own error on the normal path.
        let Ok(spec) = self.lookup(&request) else {
            return Some(request);
        };
        let answer = match spec.name {
            "ping" => match request.arg(1) {
                Some(message) => reply::bulk(message),
                None => reply::simple("PONG"),
            },
            "echo" => reply::bulk(request.arg(1).unwrap_or_default()),
            // Before AUTH the normal path refuses everything but AUTH, HELLO and QUIT with NOAUTH.
            _ if self.awaiting_auth() => return Some(request),
            "select" => KafkaPoolError::SelectOnKafkaPool {
                pool: self.pool.name().to_owned(),
            }
            .to_reply(),
            _ if spec.proxy == ProxyHandling::Local => return Some(request),
            _ => KafkaPoolError::NotServedByKafkaPool {
                command: spec.name,
                pool: self.pool.name().to_owned(),
            }
            .to_reply(),
        };
        self.pending.push_back(Pending::Ready(answer));
        None
    }
}
