//! Commands the proxy answers from the session's own state: QUIT, SELECT, HELLO, RESET, CLIENT SETNAME and
//! friends, AUTH (until tenants exist). INFO, CONFIG, CLIENT INFO/LIST/SETINFO/REPLY/TRACKING, READONLY and the
//! other introspection commands are in `introspection.rs`.

use bytes::Bytes;
use cluster_router::commands::CommandSpec;
use resp_codec::Request;

use super::errors::{CommandError, ErrorReply};
use super::pending::{Expect, Pending};
use super::{parse_u32, unsupported, Session, SessionEnd};
use crate::pools::PoolHandle;
use crate::reply;

impl Session {
    pub(super) fn answer_locally(&mut self, spec: &'static CommandSpec, request: Request) {
        // INFO and CLIENT LIST may show this session's own counts.
        self.stats.publish_commands();
        let reply = match spec.name {
            "quit" => {
                self.closing = Some(SessionEnd::Quit);
                reply::ok()
            }
            "select" => return self.select(&request),
            "hello" => match self.apply_hello(spec, &request) {
                Ok(()) => {
                    let entry = self.hello_reply();
                    self.pending.push_back(entry);
                    return;
                }
                Err(refusal) => refusal,
            },
            "info" => return self.info(spec, request),
            "config|get" | "config|set" | "config|resetstat" | "config|rewrite" => {
                return self.config(spec, request)
            }
            "client|reply" => return self.client_reply(&request),
            "reset" => {
                self.db = 0;
                self.resp3 = false;
                self.name = None;
                self.route = None;
                if let Some(cluster) = &mut self.cluster {
                    cluster.forget_connections();
                }
                reply::simple("RESET")
            }
            _ => self.answer_session_command(spec, &request),
        };
        self.pending.push_back(Pending::Ready(reply));
    }

    /// Commands answered from session state in both shared and dedicated mode.
    pub(super) fn answer_session_command(
        &mut self,
        spec: &CommandSpec,
        request: &Request,
    ) -> Bytes {
        match spec.name {
            "auth" => self.authenticate(spec, request),
            "client|setname" => match request.arg(2) {
                Some(name) if name.iter().any(|b| *b <= b' ' || *b > b'~') => {
                    CommandError::ClientName.to_reply()
                }
                Some(name) => {
                    self.name = if name.is_empty() {
                        None
                    } else {
                        Some(Bytes::copy_from_slice(name))
                    };
                    reply::ok()
                }
                None => reply::wrong_arity("client|setname"),
            },
            "client|getname" => match &self.name {
                Some(name) => reply::bulk(name),
                None => reply::null(self.resp3),
            },
            "client|id" => reply::integer(self.id as i64),
            "acl|whoami" => reply::bulk(b"default"),
            _ => self
                .answer_introspection(spec, request)
                .unwrap_or_else(|| unsupported(request)),
        }
    }

    /// SELECT: the session moves to the shared connection of that db. A PING on it checks that the db exists.
    fn select(&mut self, request: &Request) {
        let checked = match self.tenant() {
            Some(tenant) => tenant
                .check_select(self.pool.name(), request.arg(1).unwrap_or_default())
                .map_err(|error| error.to_reply()),
            None => request
                .arg(1)
                .and_then(parse_u32)
                .ok_or_else(|| CommandError::NotAnInteger.to_reply()),
        };
        let db = match checked {
            Ok(db) => db,
            Err(reply) => {
                self.pending.push_back(Pending::Ready(reply));
                return;
            }
        };
        let PoolHandle::Standalone(pool) = &self.pool else {
            let reply = if db == 0 {
                reply::ok()
            } else {
                CommandError::SelectInCluster.to_reply()
            };
            self.pending.push_back(Pending::Ready(reply));
            return;
        };
        self.db = db;
        let route = pool.shared_connection(self.worker, self.id, db, self.resp3);
        let receiver = route.send(Bytes::from_static(b"*1\r\n$4\r\nPING\r\n"));
        self.route = Some(route);
        self.pending
            .push_back(Pending::Waiting(receiver, Expect::SelectCheck));
    }

    /// HELLO in dedicated mode: the reply with the backend version known so far.
    pub(super) fn hello(&mut self, spec: &CommandSpec, request: &Request) -> Bytes {
        match self.apply_hello(spec, request) {
            Ok(()) => self.hello_reply_now(),
            Err(refusal) => refusal,
        }
    }

    /// HELLO [protover [AUTH user pass] [SETNAME name]]: checks it and applies it to the session; the
    /// refusal when it fails.
    fn apply_hello(&mut self, spec: &CommandSpec, request: &Request) -> Result<(), Bytes> {
        let mut resp3 = self.resp3;
        if let Some(version) = request.arg(1) {
            match version {
                b"2" => resp3 = false,
                b"3" => resp3 = true,
                _ if parse_u32(version).is_none() => {
                    return Err(CommandError::ProtocolVersion.to_reply())
                }
                _ => return Err(CommandError::NoProto.to_reply()),
            }
        }
        if self.awaiting_auth() && !hello_carries_auth(request) {
            return Err(tenant_policy::PolicyError::NoAuth.to_reply());
        }
        let mut index = 2;
        let mut new_name = None;
        while index < request.argc() {
            let option = request.arg(index).unwrap_or_default();
            if option.eq_ignore_ascii_case(b"AUTH") && index + 2 < request.argc() {
                let outcome = self.authenticate(spec, request);
                if outcome.first() == Some(&b'-') {
                    return Err(outcome);
                }
                index += 3;
            } else if option.eq_ignore_ascii_case(b"SETNAME") && index + 1 < request.argc() {
                new_name = request.arg(index + 1).map(Bytes::copy_from_slice);
                index += 2;
            } else {
                let option = String::from_utf8_lossy(option).into_owned();
                return Err(CommandError::HelloOption(option).to_reply());
            }
        }
        if resp3 != self.resp3 {
            self.resp3 = resp3;
            self.route = None;
            if let Some(cluster) = &mut self.cluster {
                cluster.forget_connections();
            }
        }
        if let Some(name) = new_name {
            self.name = Some(name);
        }
        Ok(())
    }
}

/// Whether a HELLO has an AUTH option (which may authenticate a client that has not yet).
fn hello_carries_auth(request: &Request) -> bool {
    (2..request.argc()).any(|index| {
        request
            .arg(index)
            .is_some_and(|option| option.eq_ignore_ascii_case(b"AUTH"))
    })
}
