//! The files view: the SharePoint team site's document libraries and who may use the
//! site. Each of the table's rows for them is one call here; every write goes through
//! the gate's guarded SharePoint port, as the root hands it out.

use std::sync::Arc;

use super::{Control, Integration};
use crate::error::{Error, ErrorCode, Result};
use crate::model::{Library, NewLibrary, RevokeOutcome, SiteGroup, SiteRole};
use crate::ports::SharePoint;

/// The team site's document libraries and groups, seen from one integration
/// ([`Integration::files`]).
#[derive(Clone, Copy)]
pub struct FilesView<'a> {
    i: &'a Integration,
}

impl Integration {
    /// The files view.
    pub fn files(&self) -> FilesView<'_> {
        FilesView { i: self }
    }
}

impl FilesView<'_> {
    fn sharepoint(&self) -> Result<Arc<dyn SharePoint>> {
        Ok(self.i.microsoft365().sharepoint()?.clone())
    }

    /// The team site's document libraries.
    ///
    /// # Errors
    /// [`ErrorCode::NotSupported`] when the integration has no SharePoint; SharePoint's
    /// errors.
    pub async fn libraries(&self) -> Result<Vec<Library>> {
        self.sharepoint()?.libraries().await
    }

    /// Creates a document library and waits for its drive. Cancelling `ctl` stops the
    /// wait (never a write in flight); running it again resumes.
    ///
    /// # Errors
    /// [`ErrorCode::Cancelled`]; the gate's refusals; SharePoint's errors.
    pub async fn create_library(&self, library: &NewLibrary, ctl: &Control) -> Result<Library> {
        let sp = self.sharepoint()?;
        tokio::select! {
            r = sp.create_library(library) => r,
            _ = ctl.cancel.cancelled() => Err(Error::new(
                ErrorCode::Cancelled,
                "creating the library was cancelled while waiting; run it again to resume",
            )),
        }
    }

    /// Deletes a document library.
    ///
    /// # Errors
    /// The gate's refusals; SharePoint's errors.
    pub async fn delete_library(&self, id: &str) -> Result<()> {
        self.sharepoint()?.delete_library(id).await
    }

    /// The team site's owners, members and visitors.
    ///
    /// # Errors
    /// SharePoint's errors.
    pub async fn site_groups(&self) -> Result<Vec<SiteGroup>> {
        self.sharepoint()?.site_groups().await
    }

    /// Adds a user (online user name) to the team site's owners, members or visitors.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] when `user_principal_name` is not an online user name;
    /// the gate's refusals; SharePoint's errors.
    pub async fn grant(&self, user_principal_name: &str, role: SiteRole) -> Result<()> {
        crate::validate::upn(user_principal_name)?;
        self.sharepoint()?.grant(user_principal_name, role).await
    }

    /// Removes a user from one of the team site's groups.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] when `user_principal_name` is not an online user name;
    /// the gate's refusals; SharePoint's errors.
    pub async fn revoke(&self, user_principal_name: &str, role: SiteRole) -> Result<RevokeOutcome> {
        crate::validate::upn(user_principal_name)?;
        self.sharepoint()?.revoke(user_principal_name, role).await
    }
}
