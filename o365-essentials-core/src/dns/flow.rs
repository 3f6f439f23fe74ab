//! Linking a custom domain, resumable across runs: add it to the tenant, fetch the
//! verification records, check them in DNS, verify, set the supported services, fetch and
//! check the service records. Verification can take an hour of DNS propagation, so each
//! run records where it stands in the state store and the next run picks up there.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::check::{RecordCheck, RecordStatus, check_records};
use super::registrable_domain;
use crate::error::{ErrorCode, Result};
use crate::model::{DnsRecord, DomainService};
use crate::ports::Domains;
use crate::store::Store;

/// How far the linking of a domain has come.
#[derive(
    schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum DomainStage {
    /// Not started.
    New,
    /// Added to the tenant; waiting for the verification record in DNS.
    Added,
    /// Verified by the tenant.
    Verified,
    /// Services set; waiting for the service records in DNS.
    ServicesSet,
    /// Every record is in DNS.
    Done,
}

/// Where a domain stands after a run, and what to do next.
#[derive(schemars::JsonSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainProgress {
    /// The domain (punycode).
    pub domain: String,
    /// The stage reached.
    pub stage: DomainStage,
    /// The records of the current step (verification, then service records).
    pub records: Vec<DnsRecord>,
    /// Their state in DNS.
    pub checks: Vec<RecordCheck>,
    /// What to do next, in words.
    pub next: String,
}

/// Links custom domains.
pub struct DomainLinker {
    domains: Arc<dyn Domains>,
    store: Arc<Store>,
    dns: SocketAddr,
    /// When the company's own DNS server hosts the zone: the key to update it with.
    update_key: Option<super::TsigKey>,
    /// Give Microsoft 365's MX the best preference even when the domain has other MX
    /// records (mail moves at once); by default it goes after them.
    take_over_mail: bool,
}

/// Whether an MX host is one of Microsoft 365's own.
fn microsoft_mx(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h.ends_with(".mail.protection.outlook.com") || h.contains(".mx.microsoft")
}

/// Whether an MX host is a domain verification record's (`ms12345.msv1.invalid`).
pub(crate) fn verification_mx(host: &str) -> bool {
    host.trim_end_matches('.')
        .to_ascii_lowercase()
        .ends_with(".msv1.invalid")
}

fn key(domain: &str) -> String {
    format!("domain_link:{domain}")
}

impl DomainLinker {
    /// Over a tenant's domains, the state store, and the DNS server to check records in.
    pub fn new(domains: Arc<dyn Domains>, store: Arc<Store>, dns: SocketAddr) -> Self {
        DomainLinker {
            domains,
            store,
            dns,
            update_key: None,
            take_over_mail: false,
        }
    }

    /// Gives Microsoft 365's MX the best preference even beside the company's own MX
    /// records (the administrator's choice: mail moves to Microsoft 365 at once).
    pub fn with_mail_takeover(mut self, take_over: bool) -> Self {
        self.take_over_mail = take_over;
        self
    }

    /// Publishes the records itself, with RFC 2136 updates signed by `key`, on the DNS
    /// server given to [`DomainLinker::new`] (which must host the zone).
    pub fn with_dynamic_updates(mut self, key: super::TsigKey) -> Self {
        self.update_key = Some(key);
        self
    }

    /// Where `domain` stands (without doing anything).
    ///
    /// # Errors
    /// [`ErrorCode::InvalidDomainName`]; store errors.
    pub fn stage(&self, domain: &str) -> Result<DomainStage> {
        let name = registrable_domain(domain)?;
        Ok(self.store.setting(&key(&name))?.unwrap_or(DomainStage::New))
    }

    fn save(&self, name: &str, stage: DomainStage) -> Result<()> {
        self.store.set_setting(&key(name), &stage)
    }

    /// Runs the flow as far as DNS allows, and says where it stopped and why.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidDomainName`] with advice; the tenant's errors;
    /// [`ErrorCode::Transport`] when the DNS server does not answer (the stage is kept, so
    /// the next run resumes).
    pub async fn run(&self, domain: &str, services: &[DomainService]) -> Result<DomainProgress> {
        let name = registrable_domain(domain)?;
        let mut stage = self.stage(&name)?;
        if stage < DomainStage::Added {
            match self.domains.add_domain(&name).await {
                Ok(_) => {}
                Err(e) if e.code() == ErrorCode::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            stage = DomainStage::Added;
            self.save(&name, stage)?;
        }
        if stage < DomainStage::Verified {
            let current = self.domains.domain(&name).await?;
            if !current.is_verified {
                let records = self.domains.verification_records(&name).await?;
                if let Some(key) = &self.update_key {
                    super::apply_records(self.dns, &name, key, &records, false).await?;
                }
                let checks = check_records(self.dns, &records).await?;
                let txt_present = checks.iter().any(|c| c.status == RecordStatus::Present);
                if !txt_present {
                    return Ok(DomainProgress {
                        domain: name.clone(),
                        stage,
                        next: format!(
                            "publish the verification record (TXT {}) for {name}, then run again; DNS changes can take up to an hour to be seen",
                            records
                                .iter()
                                .find_map(|r| {
                                    if let crate::model::RecordData::Txt { text } = &r.data {
                                        Some(text.clone())
                                    } else {
                                        None
                                    }
                                })
                                .unwrap_or_default()
                        ),
                        records,
                        checks,
                    });
                }
                match self.domains.verify(&name).await {
                    Ok(d) if d.is_verified => {}
                    // Only "the record is not seen yet" is worth waiting for; a failure
                    // of another kind (credentials, permission, network) is the caller's
                    // to see and fix.
                    Err(e)
                        if !matches!(
                            e.code(),
                            ErrorCode::DnsRecordMismatch | ErrorCode::DomainNotVerified
                        ) =>
                    {
                        return Err(e.context(format!("verifying {name}")));
                    }
                    Ok(_) | Err(_) => {
                        return Ok(DomainProgress {
                            domain: name.clone(),
                            stage,
                            next: "the record is in DNS but Microsoft 365 does not see it yet; run again in a few minutes".into(),
                            records,
                            checks,
                        });
                    }
                }
            }
            stage = DomainStage::Verified;
            self.save(&name, stage)?;
        }
        // Verified: the verification records have done their work. Left in the zone,
        // the verification MX reads as a mail server to every sender and health check.
        let mut notes = Vec::new();
        if stage < DomainStage::Done {
            let verification = self.domains.verification_records(&name).await?;
            match &self.update_key {
                Some(key) => {
                    super::update::remove_records(self.dns, &name, key, &verification).await?;
                }
                None => {
                    let present = check_records(self.dns, &verification)
                        .await?
                        .into_iter()
                        .filter(|c| c.status == RecordStatus::Present)
                        .map(|c| c.advice)
                        .collect::<Vec<_>>();
                    if !present.is_empty() {
                        notes.push(format!(
                            "remove the verification record(s), no longer needed: {}",
                            present.join("; ")
                        ));
                    }
                }
            }
        }
        if stage < DomainStage::ServicesSet {
            self.domains.set_supported_services(&name, services).await?;
            stage = DomainStage::ServicesSet;
            self.save(&name, stage)?;
        }
        let mut records = self.domains.service_records(&name).await?;
        // The company's own mail servers keep the mail until the administrator moves it:
        // Microsoft 365's MX goes after theirs unless taking over was asked for.
        let others: Vec<u16> = super::check::query_mx(self.dns, &name)
            .await?
            .into_iter()
            .filter(|(_, h)| !microsoft_mx(h) && !verification_mx(h))
            .map(|(p, _)| p)
            .collect();
        if let (Some(worst), false) = (others.iter().max(), self.take_over_mail) {
            for r in &mut records {
                if let crate::model::RecordData::Mx {
                    exchange,
                    preference,
                } = &mut r.data
                    && microsoft_mx(exchange)
                    && *preference <= *worst
                {
                    *preference = worst.saturating_add(10);
                    notes.push(format!(
                        "Microsoft 365's MX is published at preference {preference}, after the domain's own mail server(s), so mail keeps arriving where it does now; link again with take_over_mail when the mailboxes are ready"
                    ));
                }
            }
        }
        if let Some(key) = &self.update_key {
            super::apply_records(self.dns, &name, key, &records, false).await?;
        }
        let checks = check_records(self.dns, &records).await?;
        let missing: Vec<&RecordCheck> = checks
            .iter()
            .filter(|c| c.status != RecordStatus::Present)
            .collect();
        let next = if missing.is_empty() {
            stage = DomainStage::Done;
            self.save(&name, stage)?;
            notes.insert(
                0,
                format!("{name} is linked and every service record is in DNS"),
            );
            notes.join("; ")
        } else {
            format!(
                "publish {} service record(s): {}",
                missing.len(),
                missing
                    .iter()
                    .map(|c| c.advice.clone())
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        Ok(DomainProgress {
            domain: name,
            stage,
            records,
            checks,
            next,
        })
    }
}
