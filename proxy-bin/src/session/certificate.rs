//! Mutual TLS login: a client whose verified certificate has the subject a tenant is bound to (`tls_subject`)
//! is that tenant from its first command, without AUTH. Other clients authenticate as usual.

use tracing::{debug, warn};

use super::Session;
use crate::subject::Subject;

impl Session {
    /// Logs the client in as the tenant bound to its certificate's subject, if there is one.
    pub(super) fn log_in_by_certificate(&mut self) {
        let (Some(subject), Some(tenants)) = (self.stream.client_subject(), self.state.tenants())
        else {
            return;
        };
        let bound = self.state.config().tenants.iter().find(|(_, config)| {
            config
                .tls_subject
                .as_deref()
                .and_then(|text| Subject::parse(text).ok())
                .is_some_and(|wanted| &wanted == subject)
        });
        let Some(tenant) = bound.and_then(|(name, _)| tenants.get(name)).cloned() else {
            debug!(%subject, "client certificate bound to no tenant: AUTH needed");
            return;
        };
        let permit = match tenant.try_connect() {
            Ok(permit) => permit,
            Err(error) => {
                warn!(%subject, tenant = tenant.name(), %error, "certificate login refused");
                self.closing = Some(super::SessionEnd::TenantConnectionLimit);
                return;
            }
        };
        let Some(pool) = self.state.pool(tenant.pool()).cloned() else {
            return;
        };
        debug!(%subject, tenant = tenant.name(), "client logged in by its certificate");
        self.start_limits_refill(&tenant);
        self.tenant = Some(permit);
        self.unauthenticated = None;
        self.switch_pool(pool, tenant.db().unwrap_or(0));
    }
}
