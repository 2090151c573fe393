//! The proxy's own stats commands: `SLOWLOG`, `RKPROXY STATS`, `RKPROXY BIGKEYS` / `HOTKEYS` and INFO's
//! `# Proxy` section, each showing a tenant only its own rows.

use std::sync::Arc;

use bytes::Bytes;
use resp_codec::{Frame, Request};
use tenant_policy::PolicyError;
use tokio::sync::oneshot;

use super::super::errors::{AdminError, CommandError, ErrorReply};
use super::super::pending::{Expect, Pending};
use super::super::Session;
use super::facts::{kafka_section, probe_nodes, proxy_facts};
use crate::backend::BackendReply;
use crate::reply;
use crate::stats::report::{self, Section};
use crate::stats::slowlog::SlowEntry;

impl Session {
    /// The tenant whose rows this client may see: `None` (all) for admins and when no tenants are configured.
    pub(in crate::session) fn visible_tenant(&self) -> Option<String> {
        match self.tenant() {
            Some(tenant) if !tenant.is_admin() => Some(tenant.name().to_owned()),
            _ => None,
        }
    }

    /// SLOWLOG GET [count] | LEN | RESET | HELP, from the proxy's own slow log (a tenant sees only its own).
    pub(in crate::session) fn slowlog_command(
        &mut self,
        spec_name: &str,
        request: &Request,
    ) -> Bytes {
        if self.awaiting_auth() {
            return PolicyError::NoAuth.to_reply();
        }
        let mine = self.visible_tenant();
        let visible = |entry: &SlowEntry| mine.as_deref().is_none_or(|t| t == &*entry.tenant);
        let log = self.state.stats().slowlog();
        match spec_name {
            "slowlog|get" => {
                let count = match request.arg(2) {
                    None => Some(10),
                    Some(text) => match parse_count(text) {
                        Some(count) => count,
                        None => return CommandError::SlowlogCount.to_reply(),
                    },
                };
                let entries = log.get(count, visible);
                Frame::Array(entries.iter().map(SlowEntry::to_frame).collect()).to_bytes()
            }
            "slowlog|len" => reply::integer(i64::try_from(log.len(visible)).unwrap_or(i64::MAX)),
            "slowlog|reset" => {
                log.reset(visible);
                reply::ok()
            }
            _ => reply::array_of_bulks(
                [
                    &b"SLOWLOG GET [<count>] -- entries of the proxy's slow log (-1: all), newest first"[..],
                    b"SLOWLOG LEN -- how many entries",
                    b"SLOWLOG RESET -- empties it (a tenant: its own entries)",
                ]
                .into_iter(),
            ),
        }
    }

    /// `RKPROXY STATS [tenants|commands|pools|nodes|kafka]`: the section's lines; the nodes section probes
    /// every node first, so its reply comes from a task.
    pub(in crate::session) fn stats_command(&mut self, request: &Request) -> Pending {
        if self.awaiting_auth() {
            return Pending::Ready(PolicyError::NoAuth.to_reply());
        }
        let sub = request.arg(1).unwrap_or_default();
        if !sub.eq_ignore_ascii_case(b"STATS") {
            return Pending::Ready(self.keys_command(sub, request));
        }
        let Some(section) = Section::parse(request.arg(2)) else {
            return Pending::Ready(AdminError::UnknownStatsSection.to_reply());
        };
        let state = Arc::clone(&self.state);
        let visible = self.visible_tenant();
        if section == Section::Kafka {
            return Pending::Waiting(kafka_section(state, visible), Expect::Forward);
        }
        if section != Section::Nodes {
            let facts = proxy_facts(&state);
            let lines = report::stats_lines(
                section,
                &state.stats().snapshot(),
                &facts,
                visible.as_deref(),
            );
            return Pending::Ready(reply::array_of_bulks(lines.iter().map(String::as_bytes)));
        }
        if visible.is_some() {
            return Pending::Ready(AdminError::StatsNodesForAdmins.to_reply());
        }
        let (sender, receiver) = oneshot::channel::<BackendReply>();
        tokio::spawn(async move {
            let mut facts = proxy_facts(&state);
            facts.nodes = probe_nodes(&state).await;
            let lines = report::stats_lines(section, &state.stats().snapshot(), &facts, None);
            let _ = sender.send(Ok(reply::array_of_bulks(
                lines.iter().map(String::as_bytes),
            )));
        });
        Pending::Waiting(receiver, Expect::Forward)
    }

    /// `RKPROXY BIGKEYS [n]` and `RKPROXY HOTKEYS [n]`: each visible tenant's `n` (default 10) biggest or most
    /// requested keys, one `key=value` line each.
    fn keys_command(&mut self, sub: &[u8], request: &Request) -> Bytes {
        let per_tenant = match request.arg(2).map(parse_positive) {
            None => DEFAULT_KEYS_SHOWN,
            Some(Some(n)) => n,
            Some(None) => return AdminError::CountNotPositive.to_reply(),
        };
        if request.argc() > 3 {
            return AdminError::KeysSyntax.to_reply();
        }
        let visible = self.visible_tenant();
        let visible = |tenant: &str| visible.as_deref().is_none_or(|mine| mine == tenant);
        let stats = self.state.stats();
        let lines = if sub.eq_ignore_ascii_case(b"BIGKEYS") {
            report::big_key_lines(&stats.big_keys(&visible, per_tenant))
        } else {
            report::hot_key_lines(&stats.hot_keys(&visible, per_tenant))
        };
        reply::array_of_bulks(lines.iter().map(String::as_bytes))
    }

    /// INFO's `# Proxy` section as this client may see it.
    pub(in crate::session) fn proxy_section(&mut self) -> String {
        let facts = proxy_facts(&self.state);
        report::info_section(
            &self.state.stats().snapshot(),
            &facts,
            self.state.uptime().as_secs(),
            self.visible_tenant().as_deref(),
        )
    }
}

/// Keys per tenant that RKPROXY BIGKEYS and HOTKEYS show without a count.
const DEFAULT_KEYS_SHOWN: usize = 10;

fn parse_positive(text: &[u8]) -> Option<usize> {
    let count: usize = std::str::from_utf8(text).ok()?.parse().ok()?;
    (count > 0).then_some(count)
}

/// SLOWLOG GET's count: -1 for all, else at least 0.
fn parse_count(text: &[u8]) -> Option<Option<usize>> {
    let count: i64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    match count {
        -1 => Some(None),
        n if n >= 0 => Some(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        _ => None,
    }
}
