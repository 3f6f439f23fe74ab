//! Plain data shared by every part of the engine: serde types, no I/O.

mod directory;
mod dns;
mod exchange;
mod identity;
mod plan;
mod sharepoint;
mod tenant;

pub use directory::{DirectoryChange, DirectoryChanges, DirectoryCursor, PasswordPolicy, Topology};
pub use dns::{DnsRecord, RecordData, RecordPurpose};
pub use exchange::{
    AccessLevel, AccessRule, DeviceAccessState, DeviceCharacteristic, DevicePolicy,
    DistributionGroup, DistributionGroupUpdate, Limit, MobileDevice, NewAccessRule,
    NewDistributionGroup, WipeKind, WipeStatus,
};
pub use identity::{
    AccountUpdate, Anchor, ExclusionReason, Link, LinkOrigin, LinkState, LocalGroup, LocalStanding,
    LocalUser, LocalUserIndex, LocalUserRef, NewLocalUser, NewOnlineAccount, ObjectGuid,
    OnlineAccount, OnlineAccountId, uac,
};
pub use plan::{
    CheckStatus, ItemAction, ItemResult, LocalVersion, Outcome, PasswordSource, Plan, PlanAction,
    PlanItem, PlanReason, Progress, RequirementCheck, RequirementsReport, RunKind, RunResults,
    SeatCount, SkipReason, SkippedUser,
};
pub use sharepoint::{Library, NewLibrary, RevokeOutcome, SiteGroup, SiteRole, TeamSite};
pub use tenant::{
    AdminRoleHolder, Domain, DomainService, Launchpad, LicenceAssignment, OnlineChange,
    OnlineChanges, Organization, Sku,
};

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn a_plan_round_trips_through_json_with_readable_tags() {
        let local = LocalVersion {
            guid: ObjectGuid::random(),
            sam_account_name: "jdoe".into(),
            usn_changed: 4711,
        };
        let plan = Plan {
            id: uuid::Uuid::new_v4(),
            created_at: datetime!(2026-11-26 10:00 UTC),
            tenant_id: "t".into(),
            items: vec![
                PlanItem {
                    seq: 1,
                    action: PlanAction::CreateAccount {
                        anchor: local.guid.anchor(),
                        local: local.clone(),
                        user_principal_name: "jdoe@contoso.com".into(),
                        display_name: "Jane Doe".into(),
                        mail_nickname: "jdoe".into(),
                        usage_location: Some("GB".into()),
                        licences: vec![],
                    },
                    reason: PlanReason::NoOnlineAccount,
                    message: "no online account yet".into(),
                    licence_short: false,
                },
                PlanItem {
                    seq: 2,
                    action: PlanAction::Disable {
                        local,
                        online_id: OnlineAccountId("abc".into()),
                    },
                    reason: PlanReason::DisabledLocally,
                    message: "disabled locally".into(),
                    licence_short: false,
                },
            ],
            skipped: vec![],
            seats: vec![],
            allow_unlicensed: false,
        };
        let json = serde_json::to_string_pretty(&plan).expect("serialise");
        assert!(json.contains("\"action\": \"create_account\""));
        assert!(json.contains("\"created_at\": \"2026-11-26T10:00:00Z\""));
        let back: Plan = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, plan);
        assert!(!plan.items[0].action.is_destructive());
        assert!(plan.items[1].action.is_destructive());
    }

    #[test]
    fn dns_records_serialise_with_their_type() {
        let r = DnsRecord {
            name: "contoso.com".into(),
            ttl: 3600,
            data: RecordData::Mx {
                exchange: "contoso-com.mail.protection.outlook.com".into(),
                preference: 0,
            },
            purpose: RecordPurpose::Service,
            supported_service: Some("Email".into()),
            optional: false,
        };
        let v = serde_json::to_value(&r).expect("serialise");
        assert_eq!(v["type"], "MX");
        assert_eq!(v["preference"], 0);
        assert_eq!(r.data.type_name(), "MX");
        assert_eq!(serde_json::from_value::<DnsRecord>(v).expect("parse"), r);
    }

    #[test]
    fn sku_free_units_never_underflow() {
        let mut s = Sku {
            sku_id: uuid::Uuid::nil(),
            sku_part_number: "O365_BUSINESS_PREMIUM".into(),
            enabled_units: 25,
            consumed_units: 20,
            capability_status: "Enabled".into(),
        };
        assert_eq!(s.free_units(), 5);
        s.consumed_units = 30;
        assert_eq!(s.free_units(), 0);
    }

    #[test]
    fn limits_serialise_readably() {
        let p = DevicePolicy {
            password_enabled: true,
            min_password_length: Some(6),
            max_password_failed_attempts: Limit::Unlimited,
            max_inactivity_lock_minutes: Limit::Value(15),
            alphanumeric_password_required: false,
        };
        let v = serde_json::to_value(&p).expect("serialise");
        assert_eq!(v["max_password_failed_attempts"], "unlimited");
        assert_eq!(v["max_inactivity_lock_minutes"]["value"], 15);
    }
}
