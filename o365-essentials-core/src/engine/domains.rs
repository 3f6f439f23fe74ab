//! The domains view: linking the company's own domain to Microsoft 365 and its DNS
//! records (records file, zone fragment, checks, health, RFC 2136 updates). Each row of
//! the table's domain operations is one call here.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Control, Integration};
use crate::dns::{self, DomainLinker};
use crate::error::{Error, ErrorCode, Result};
use crate::model::DomainService;

/// Where `write_records_file` wrote.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct RecordsFile {
    /// The file.
    pub path: PathBuf,
}

/// A zone-file fragment.
#[derive(schemars::JsonSchema, Debug, Clone, Serialize, Deserialize)]
pub struct ZoneFragment {
    /// The text, for the zone file.
    pub text: String,
}

/// The company's domain and its DNS records, seen from one integration
/// ([`Integration::domains`]).
#[derive(Clone, Copy)]
pub struct DomainsView<'a> {
    i: &'a Integration,
}

impl Integration {
    /// The domains view.
    pub fn domains(&self) -> DomainsView<'_> {
        DomainsView { i: self }
    }
}

impl DomainsView<'_> {
    fn domain_or_configured(&self, d: Option<String>) -> Result<String> {
        d.or_else(|| self.i.settings.custom_domain.clone())
            .ok_or_else(|| Error::invalid_input("name the domain (no custom_domain is configured)"))
    }

    fn dns_server(&self) -> Result<std::net::SocketAddr> {
        match self.i.settings.dns.as_ref().and_then(|d| d.server) {
            Some(s) => Ok(s),
            None => dns::system_resolvers()?
                .into_iter()
                .next()
                .ok_or_else(|| Error::new(ErrorCode::InvalidConfig, "no DNS server")),
        }
    }

    fn domain_linker(&self) -> Result<DomainLinker> {
        let domains = self.i.microsoft365().domains()?.clone();
        let linker = DomainLinker::new(domains, self.i.store.clone(), self.dns_server()?);
        Ok(match &self.i.settings.tsig {
            Some(k) => linker.with_dynamic_updates(k.clone()),
            None => linker,
        })
    }

    async fn domain_records(&self, domain: &str) -> Result<Vec<crate::model::DnsRecord>> {
        let m = self.i.microsoft365();
        let d = m.domains()?;
        let name = dns::registrable_domain(domain)?;
        let current = d.domain(&name).await?;
        let mut records = if current.is_verified {
            Vec::new()
        } else {
            d.verification_records(&name).await?
        };
        records.extend(d.service_records(&name).await?);
        Ok(records)
    }

    /// Links the domain (the configured one when `None`) as far as DNS allows, resumably:
    /// add, verify, services, records; held by the domain lease.
    ///
    /// # Errors
    /// [`ErrorCode::IntegrationDisabled`]; [`ErrorCode::WorkHeld`]; the tenant's and DNS
    /// errors; [`ErrorCode::Cancelled`] while waiting.
    pub async fn link(
        &self,
        domain: Option<String>,
        services: Option<Vec<DomainService>>,
        take_over_mail: bool,
        ctl: &Control,
    ) -> Result<dns::DomainProgress> {
        let domain = self.domain_or_configured(domain)?;
        let services = services.unwrap_or_else(|| vec![DomainService::Email]);
        self.i.require_writes()?;
        let linker = self.domain_linker()?.with_mail_takeover(take_over_mail);
        let _lease = self.i.lease(crate::store::Work::Domain, ctl).await?;
        let progress = tokio::select! {
            r = linker.run(&domain, &services) => r?,
            _ = ctl.cancel.cancelled() => return Err(Error::new(
                ErrorCode::Cancelled,
                "linking the domain was cancelled while waiting; run it again to resume",
            )),
        };
        if progress.stage >= dns::DomainStage::Verified {
            self.i.refresh_verified_domains().await?;
        }
        Ok(progress)
    }

    /// How far the linking of the domain has come.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] without a domain; the store's errors.
    pub fn stage(&self, domain: Option<String>) -> Result<dns::DomainStage> {
        self.domain_linker()?
            .stage(&self.domain_or_configured(domain)?)
    }

    /// Writes the domain's records as a records file in `folder` (the results folder
    /// when `None`).
    ///
    /// # Errors
    /// The tenant's errors; [`ErrorCode::StoreIo`] when the file cannot be written.
    pub async fn write_records_file(
        &self,
        domain: Option<String>,
        folder: Option<PathBuf>,
    ) -> Result<RecordsFile> {
        let domain = self.domain_or_configured(domain)?;
        let records = self.domain_records(&domain).await?;
        let folder = folder.unwrap_or_else(|| self.i.results_folder());
        Ok(RecordsFile {
            path: dns::write_records_file(&folder, &dns::registrable_domain(&domain)?, &records)?,
        })
    }

    /// The domain's records as a zone-file fragment.
    ///
    /// # Errors
    /// The tenant's errors.
    pub async fn zone_fragment(&self, domain: Option<String>) -> Result<ZoneFragment> {
        let domain = self.domain_or_configured(domain)?;
        let records = self.domain_records(&domain).await?;
        Ok(ZoneFragment {
            text: dns::zone_fragment(&dns::registrable_domain(&domain)?, &records),
        })
    }

    /// Checks each of the domain's records in DNS.
    ///
    /// # Errors
    /// The tenant's and the resolver's errors.
    pub async fn check_records(&self, domain: Option<String>) -> Result<Vec<dns::RecordCheck>> {
        let domain = self.domain_or_configured(domain)?;
        let records = self.domain_records(&domain).await?;
        dns::check_records(self.dns_server()?, &records).await
    }

    /// The domain's mail DNS health.
    ///
    /// # Errors
    /// The resolver's errors.
    pub async fn health_report(&self, domain: Option<String>) -> Result<dns::HealthReport> {
        dns::health_report(self.dns_server()?, &self.domain_or_configured(domain)?).await
    }

    /// Publishes the missing records on the company's DNS server (RFC 2136 + TSIG).
    ///
    /// # Errors
    /// [`ErrorCode::IntegrationDisabled`]; [`ErrorCode::InvalidConfig`] without a TSIG
    /// key; the tenant's and the DNS server's errors.
    pub async fn apply_records(
        &self,
        domain: Option<String>,
        replace_spf: bool,
    ) -> Result<dns::ApplyOutcome> {
        self.i.require_writes()?;
        let domain = dns::registrable_domain(&self.domain_or_configured(domain)?)?;
        let key = self.i.settings.tsig.clone().ok_or_else(|| Error::new(ErrorCode::InvalidConfig, "no TSIG key is configured (`dns.tsig_key_file`); publish the records by hand from the records file"))?;
        let records = self.domain_records(&domain).await?;
        dns::apply_records(self.dns_server()?, &domain, &key, &records, replace_spf).await
    }
}
