// Which of the engine's operations each tab of the page uses, and the ones it leaves out
// on purpose (with why). The suite compares this table with `o365-essentials operations
// --json` (tests/it/dashboard.rs): an operation an administrator needs with no place here
// fails it. Names are the engine's (snake_case).
export const PAGES = {
    m365: {
        label: "Microsoft 365",
        operations: ["status", "licences", "requirements", "setup", "integrate", "link_domain",
            "change_credentials", "roll_credential", "disable", "enable", "teardown"],
    },
    accounts: {
        label: "Online accounts",
        operations: ["list_links", "match_preview", "plan_bulk_create", "apply_plan", "plan_retry",
            "assign", "unassign", "import_users", "create_user_with_account", "online_user_names"],
    },
    groups: {
        label: "Distribution groups",
        operations: ["list_distribution_groups", "create_distribution_group", "add_group_members",
            "remove_group_members", "replace_group_members", "update_distribution_group",
            "delete_distribution_group"],
    },
    devices: {
        label: "Mobile devices",
        operations: ["get_device_policy", "set_device_policy", "get_default_access_level",
            "set_default_access_level", "list_access_rules", "add_access_rule", "remove_access_rule",
            "list_devices", "set_device_access", "wipe_device", "cancel_wipe", "wipe_status"],
    },
    domain: {
        label: "Domain",
        operations: ["domain_stage", "link_domain", "check_records", "health_report", "zone_fragment",
            "write_records_file", "apply_records"],
    },
    sharepoint: {
        label: "SharePoint libraries",
        operations: ["list_libraries", "create_library", "delete_library", "list_site_groups",
            "grant_site_access", "revoke_site_access"],
    },
    launchpad: {
        label: "Launchpad",
        operations: ["launchpad"],
    },
    service: {
        label: "Service",
        operations: ["status", "plan_sync", "apply_sync_plan", "sync_once", "deliver_passwords",
            "password_problems"],
    },
};

// Operations no administrator runs by hand: the page leaves them out on purpose.
export const NOT_IN_PAGE = {
    password_changed: "Samba's password hook queues a changed password itself; a password is changed in the directory (Cockpit's Accounts page, samba-tool), never typed into this page for another user.",
    capture_password: "the Samba hook's own operation: it takes samba-tool syncpasswords' LDIF on standard input, not an administrator's input.",
};
