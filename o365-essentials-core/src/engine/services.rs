//! The Microsoft 365 side of an integration: Graph, domains, Exchange and SharePoint,
//! built from one configuration so one credential (one token cache, one pacer) serves
//! them all and a credential change switches them together.

use std::sync::Arc;

use crate::error::{Error, ErrorCode, Result};
use crate::exchange::ExchangeOnline;
use crate::graph::{GraphConfig, GraphTenant};
use crate::ports::{Domains, Exchange, SharePoint, Tenant};
use crate::sharepoint::SharePointOnline;

/// The tenant's services an integration talks to.
#[derive(Clone)]
pub struct Microsoft365 {
    /// Online accounts, licences, organization, delta.
    pub tenant: Arc<dyn Tenant>,
    /// Custom domains; `None` when not available.
    pub domains: Option<Arc<dyn Domains>>,
    /// Exchange Online; `None` when not available.
    pub exchange: Option<Arc<dyn Exchange>>,
    /// SharePoint Online; `None` when not available.
    pub sharepoint: Option<Arc<dyn SharePoint>>,
}

impl std::fmt::Debug for Microsoft365 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microsoft365")
            .field("domains", &self.domains.is_some())
            .field("exchange", &self.exchange.is_some())
            .field("sharepoint", &self.sharepoint.is_some())
            .finish_non_exhaustive()
    }
}

impl Microsoft365 {
    /// Every service over one Graph client: Exchange and SharePoint share its credential,
    /// token cache and HTTP client.
    pub fn from_graph(graph: GraphTenant) -> Microsoft365 {
        Microsoft365 {
            tenant: Arc::new(graph.clone()),
            domains: Some(Arc::new(graph.clone())),
            exchange: Some(Arc::new(ExchangeOnline::with_graph(graph.clone()))),
            sharepoint: Some(Arc::new(SharePointOnline::with_graph(graph))),
        }
    }

    /// Every service from a configuration.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidConfig`] naming what is wrong in it.
    pub fn from_config(config: GraphConfig) -> Result<Microsoft365> {
        Ok(Microsoft365::from_graph(GraphTenant::new(config)?))
    }

    /// Only the accounts side (tests and embedders with their own tenant backend).
    pub fn tenant_only(tenant: Arc<dyn Tenant>) -> Microsoft365 {
        Microsoft365 {
            tenant,
            domains: None,
            exchange: None,
            sharepoint: None,
        }
    }

    /// Exchange Online.
    ///
    /// # Errors
    /// [`ErrorCode::NotSupported`] when the integration has none.
    pub fn exchange(&self) -> Result<&Arc<dyn Exchange>> {
        self.exchange
            .as_ref()
            .ok_or_else(|| missing("Exchange Online"))
    }

    /// SharePoint Online.
    ///
    /// # Errors
    /// [`ErrorCode::NotSupported`] when the integration has none.
    pub fn sharepoint(&self) -> Result<&Arc<dyn SharePoint>> {
        self.sharepoint
            .as_ref()
            .ok_or_else(|| missing("SharePoint Online"))
    }

    /// Custom domains.
    ///
    /// # Errors
    /// [`ErrorCode::NotSupported`] when the integration has none.
    pub fn domains(&self) -> Result<&Arc<dyn Domains>> {
        self.domains
            .as_ref()
            .ok_or_else(|| missing("custom domains"))
    }
}

fn missing(what: &str) -> Error {
    Error::new(
        ErrorCode::NotSupported,
        format!(
            "this integration was opened without {what}; open it with Integration::open(config)"
        ),
    )
}
