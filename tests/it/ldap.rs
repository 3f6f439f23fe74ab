//! The LDAP backend against a real Samba AD domain controller.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use o365_essentials::ldap::{LdapConfig, LdapDirectory};
use o365_essentials::model::{DirectoryChange, DirectoryCursor, NewLocalUser};
use o365_essentials::ports::Directory;
use o365_essentials::{ErrorCode, SecretString};

use crate::directory_conformance;
use crate::samba::{self, ADMIN_PASSWORD, BASE_DN, REALM};

fn dir() -> LdapDirectory {
    LdapDirectory::new(samba::shared().config()).unwrap()
}

fn pw() -> SecretString {
    SecretString::from("Ldap-Test-2026!")
}

fn new_user(sam: &str, display: &str) -> NewLocalUser {
    NewLocalUser {
        sam_account_name: sam.into(),
        user_principal_name: format!("{sam}@{REALM}"),
        given_name: Some("Test".into()),
        surname: Some(sam.into()),
        display_name: display.into(),
        mail: None,
        ou: None,
    }
}

#[tokio::test]
async fn samba_conforms_to_the_directory_contract() {
    let d = dir();
    directory_conformance::run_all(&d, REALM).await;
}

#[tokio::test]
async fn built_in_and_system_accounts_are_never_offered() {
    let users: Vec<_> = dir().users().try_collect().await.unwrap();
    for sam in ["Administrator", "Guest", "krbtgt", "DC1$"] {
        assert!(
            users
                .iter()
                .all(|u| !u.sam_account_name.eq_ignore_ascii_case(sam)),
            "{sam} offered"
        );
    }
    // They exist; they are just excluded.
    assert!(dir().find_user("krbtgt").await.unwrap().is_some());
}

#[tokio::test]
async fn tls_is_verified_and_plain_ldap_needs_consent() {
    let s = samba::shared();
    // No CA configured: the system roots do not know the test CA.
    let mut c = s.config();
    c.ca_file = None;
    let e = LdapDirectory::new(c).unwrap().topology().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Tls, "{e}");

    let mut c = s.config();
    c.url = format!("ldap://{}", s.ip);
    let e = LdapDirectory::new(c.clone()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig);
    assert!(e.message().contains("allow_plain"));

    // Allowed plain: the service account's password is not sent that way without
    // allow_plain_password (and Samba itself refuses a simple bind without encryption).
    c.allow_plain = true;
    let plain = LdapDirectory::new(c.clone()).unwrap();
    let e = plain.topology().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidConfig, "{e}");
    assert!(e.message().contains("allow_plain_password"), "{e}");
    let g = o365_essentials::model::ObjectGuid::random();
    assert_eq!(
        plain.set_password(g, &pw()).await.unwrap_err().code(),
        ErrorCode::NotSupported
    );
    assert_eq!(
        plain
            .create_user(&new_user("plainx", "Plain X"), &pw())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotSupported
    );

    // StartTLS on 389 works.
    c.allow_plain = false;
    c.starttls = true;
    let t = LdapDirectory::new(c).unwrap().topology().await.unwrap();
    assert_eq!(t.connected_dc, "dc1.essentials.test");
}

#[tokio::test]
async fn the_service_account_binds_as_dn_upn_or_domain_user_and_wrong_passwords_are_auth_errors() {
    let s = samba::shared();
    for bind in [
        format!("CN=Administrator,CN=Users,{BASE_DN}"),
        format!("Administrator@{REALM}"),
        "ESSENTIALS\\Administrator".to_string(),
    ] {
        let mut c = s.config();
        c.bind = bind.clone();
        let t = LdapDirectory::new(c)
            .unwrap()
            .topology()
            .await
            .unwrap_or_else(|e| panic!("{bind}: {e}"));
        assert_eq!(
            t.domain_controllers,
            vec!["dc1.essentials.test".to_string()]
        );
        assert!(t.this_host_is_dc);
        assert_eq!(t.domain_dns_name, REALM);
        assert_eq!(t.netbios_name.as_deref(), Some("ESSENTIALS"));
        assert!(t.domain_functional_level >= 2);
    }
    let mut c = s.config();
    c.password = SecretString::from("not-the-password");
    let e = LdapDirectory::new(c).unwrap().topology().await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::Auth);
    assert!(!e.to_string().contains("not-the-password"));
    let mut c = s.config();
    c.host_name = Some("workstation7".into());
    assert!(
        !LdapDirectory::new(c)
            .unwrap()
            .topology()
            .await
            .unwrap()
            .this_host_is_dc
    );
}

#[tokio::test]
async fn an_account_without_rights_gets_permission_denied() {
    let admin = dir();
    admin
        .create_user(&new_user("lowpriv", "Low Priv"), &pw())
        .await
        .unwrap();
    let mut c = samba::shared().config();
    c.bind = format!("lowpriv@{REALM}");
    c.password = pw();
    let low = LdapDirectory::new(c).unwrap();
    assert!(
        low.find_user("lowpriv").await.unwrap().is_some(),
        "reading is allowed"
    );
    let e = low
        .create_user(&new_user("byLowPriv", "By Low Priv"), &pw())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied, "{e}");
}

#[tokio::test]
async fn password_policy_and_password_rules() {
    let d = dir();
    let p = d.password_policy().await.unwrap();
    assert_eq!(
        (p.min_length, p.complexity, p.history_length),
        (7, true, 24)
    );
    let u = d
        .create_user(&new_user("pwpolicy", "Pw Policy"), &pw())
        .await
        .unwrap();
    let e = d
        .set_password(u.guid, &SecretString::from("abc"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PasswordPolicy, "{e}");
    d.set_password(u.guid, &SecretString::from("Another-Pass-2027!"))
        .await
        .unwrap();
    let e = d
        .create_user(
            &new_user("weakling", "Weak Ling"),
            &SecretString::from("abc"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PasswordPolicy);
    assert!(
        d.find_user("weakling").await.unwrap().is_none(),
        "nothing left behind"
    );
}

#[tokio::test]
async fn small_pages_still_return_everyone_once() {
    let d = dir();
    for i in 0..9 {
        d.create_user(
            &new_user(&format!("pager{i}"), &format!("Pager {i}")),
            &pw(),
        )
        .await
        .unwrap();
    }
    let mut c = samba::shared().config();
    c.page_size = 2;
    let small = LdapDirectory::new(c).unwrap();
    let users: Vec<_> = small.users().try_collect().await.unwrap();
    let pagers = users
        .iter()
        .filter(|u| u.sam_account_name.starts_with("pager"))
        .count();
    assert_eq!(pagers, 9);
    let guids: HashSet<_> = users.iter().map(|u| u.guid).collect();
    assert_eq!(guids.len(), users.len(), "nobody twice");
}

#[tokio::test]
async fn filter_and_dn_special_characters_are_escaped() {
    let d = dir();
    let u = d
        .create_user(&new_user("weird1", "Weird (x) * \\ , + name"), &pw())
        .await
        .unwrap();
    assert!(
        u.dn.starts_with("CN=Weird (x) * \\5C \\, \\+ name") || u.dn.contains("Weird (x)"),
        "{}",
        u.dn
    );
    assert_eq!(
        d.user(u.guid).await.unwrap().display_name.as_deref(),
        Some("Weird (x) * \\ , + name")
    );
    for probe in ["*", "weird*", "weird1)(sAMAccountName=*", "x\0y", "(", "\\"] {
        assert!(
            d.find_user(probe).await.unwrap().is_none(),
            "{probe:?} must not match anything"
        );
    }
    let e = d
        .create_user(&new_user("bad*sam", "Bad Sam"), &pw())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::InvalidInput);
}

#[tokio::test]
async fn non_ascii_names_round_trip() {
    let d = dir();
    let u = d
        .create_user(&new_user("juergen", "Jürgen Groß 中文"), &pw())
        .await
        .unwrap();
    let back = d.user(u.guid).await.unwrap();
    assert_eq!(back.display_name.as_deref(), Some("Jürgen Groß 中文"));
    assert!(back.dn.contains("Jürgen Groß 中文"));
    assert_eq!(
        d.find_user("JUERGEN").await.unwrap().map(|x| x.guid),
        Some(u.guid)
    );
}

#[tokio::test]
async fn a_user_moved_between_two_searches_is_still_found_by_guid() {
    let d = dir();
    let u = d
        .create_user(&new_user("mover", "Mover Person"), &pw())
        .await
        .unwrap();
    samba::shared().ldif(
        "ldapadd",
        &format!("dn: OU=Moved,{BASE_DN}\nobjectClass: organizationalUnit\nou: Moved\n"),
    );
    samba::shared().ldif("ldapmodify", &format!("dn: {}\nchangetype: modrdn\nnewrdn: CN=Mover Person\ndeleteoldrdn: 1\nnewsuperior: OU=Moved,{BASE_DN}\n", u.dn));
    d.set_enabled(u.guid, false).await.unwrap();
    let after = d.user(u.guid).await.unwrap();
    assert!(after.dn.contains("OU=Moved"), "{}", after.dn);
    assert!(!after.enabled());
}

#[tokio::test]
async fn writes_enable_disable_delete_and_set_the_consistency_guid() {
    let d = dir();
    let u = d
        .create_user(&new_user("writer", "Writer Person"), &pw())
        .await
        .unwrap();
    assert!(u.enabled());
    d.set_enabled(u.guid, false).await.unwrap();
    assert!(!d.user(u.guid).await.unwrap().enabled());
    d.set_enabled(u.guid, true).await.unwrap();
    assert!(d.user(u.guid).await.unwrap().enabled());
    let cg = o365_essentials::model::ObjectGuid::random();
    d.set_consistency_guid(u.guid, cg).await.unwrap();
    let back = d.user(u.guid).await.unwrap();
    assert_eq!(back.consistency_guid, Some(cg));
    assert_eq!(back.anchor(), cg.anchor());
    d.delete_user(u.guid).await.unwrap();
    assert_eq!(
        d.user(u.guid).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn changes_via_dirsync_and_the_usn_fallback_with_resync_on_a_bad_cursor() {
    let d = dir();
    let start = d.changes_since(None).await.unwrap();
    assert!(start.full_resync && start.cursor.0.starts_with("dirsync:"));
    let a = d
        .create_user(&new_user("chg.a", "Chg A"), &pw())
        .await
        .unwrap();
    let b = d
        .create_user(&new_user("chg.b", "Chg B"), &pw())
        .await
        .unwrap();
    d.set_enabled(a.guid, false).await.unwrap();
    d.delete_user(b.guid).await.unwrap();
    let round = d.changes_since(Some(&start.cursor)).await.unwrap();
    assert!(!round.full_resync);
    assert!(round.changes.iter().any(|c| matches!(c, DirectoryChange::Upserted { user } if user.guid == a.guid && !user.enabled())), "{:?}", round.changes);
    assert!(
        round
            .changes
            .iter()
            .any(|c| matches!(c, DirectoryChange::Deleted { guid } if *guid == b.guid)),
        "tombstone: {:?}",
        round.changes
    );

    // The uSNChanged fallback sees the same kinds of change.
    let usn0 = match d
        .changes_since(Some(&DirectoryCursor("usn:999999999".into())))
        .await
        .unwrap()
    {
        r if r.full_resync => r.cursor,
        r => panic!("a uSN beyond the server's is a resync: {:?}", r.cursor),
    };
    let c = d
        .create_user(&new_user("chg.c", "Chg C"), &pw())
        .await
        .unwrap();
    d.delete_user(a.guid).await.unwrap();
    let by_usn = d.changes_since(Some(&usn0)).await.unwrap();
    assert!(!by_usn.full_resync);
    assert!(
        by_usn
            .changes
            .iter()
            .any(|x| matches!(x, DirectoryChange::Upserted { user } if user.guid == c.guid))
    );
    assert!(
        by_usn
            .changes
            .iter()
            .any(|x| matches!(x, DirectoryChange::Deleted { guid } if *guid == a.guid)),
        "{:?}",
        by_usn.changes
    );

    let garbage = d
        .changes_since(Some(&DirectoryCursor("dirsync:bm90IGEgY29va2ll".into())))
        .await
        .unwrap();
    assert!(
        garbage.full_resync,
        "a cookie the server refuses leads to a full resync"
    );
    assert!(
        garbage
            .changes
            .iter()
            .any(|x| matches!(x, DirectoryChange::Upserted { user } if user.guid == c.guid))
    );
}

#[tokio::test]
async fn a_group_with_ten_thousand_members() {
    const N: usize = 10_000;
    let s = samba::shared();
    let mut ldif = String::with_capacity(N * 200);
    for i in 0..N {
        ldif.push_str(&format!(
            "dn: CN=member{i:05},CN=Users,{BASE_DN}\nobjectClass: user\nsAMAccountName: member{i:05}\nuserPrincipalName: member{i:05}@{REALM}\n\n"
        ));
    }
    ldif.push_str(&format!(
        "dn: CN=Big Group,CN=Users,{BASE_DN}\nobjectClass: group\nsAMAccountName: biggroup\n"
    ));
    for i in 0..N {
        ldif.push_str(&format!("member: CN=member{i:05},CN=Users,{BASE_DN}\n"));
    }
    s.ldif("ldapadd", &ldif);
    let d = dir();
    let groups: Vec<_> = d.groups().try_collect().await.unwrap();
    let big = groups
        .iter()
        .find(|g| g.sam_account_name == "biggroup")
        .unwrap();
    let members = d.group_members(big.guid).await.unwrap();
    assert_eq!(members.len(), N);
    assert_eq!(members.iter().collect::<HashSet<_>>().len(), N);
    assert_eq!(
        d.group_members(o365_essentials::model::ObjectGuid::random())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn a_server_restart_mid_search_is_an_error_then_the_next_call_reconnects() {
    let own = samba::Samba::start("restart");
    let mut c = own.config();
    c.page_size = 1;
    let d = LdapDirectory::new(c).unwrap();
    for i in 0..4 {
        d.create_user(&new_user(&format!("rs{i}"), &format!("Restart {i}")), &pw())
            .await
            .unwrap();
    }
    let mut stream = d.users();
    assert!(stream.next().await.unwrap().is_ok());
    own.stop();
    let mut failed = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            failed = Some(e);
            break;
        }
    }
    drop(stream);
    let e = failed.expect("the stopped server ends the search with an error");
    assert!(
        matches!(
            e.code(),
            ErrorCode::Transport
                | ErrorCode::Timeout
                | ErrorCode::ServiceUnavailable
                | ErrorCode::UnexpectedResponse
        ),
        "{e}"
    );
    own.launch();
    let users: Vec<_> = d.users().try_collect().await.unwrap();
    assert_eq!(
        users
            .iter()
            .filter(|u| u.sam_account_name.starts_with("rs"))
            .count(),
        4
    );
    own.stop();
    let _ = ADMIN_PASSWORD;
}

#[test]
fn bad_configuration_is_refused() {
    let base = || LdapConfig::new("ldaps://127.0.0.1", "svc@x.test", "pw");
    assert!(LdapDirectory::new(base()).is_ok());
    let mut c = base();
    c.url = "http://x".into();
    assert_eq!(
        LdapDirectory::new(c).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );
    let mut c = base();
    c.bind = "".into();
    assert!(
        LdapDirectory::new(c)
            .unwrap_err()
            .message()
            .contains("bind")
    );
    let mut c = base();
    c.ca_file = Some("/nonexistent/ca.pem".into());
    assert!(
        LdapDirectory::new(c)
            .unwrap_err()
            .message()
            .contains("/nonexistent/ca.pem")
    );
    let mut c = base();
    c.page_size = 0;
    assert_eq!(
        LdapDirectory::new(c).unwrap_err().code(),
        ErrorCode::InvalidConfig
    );
    assert!(!format!("{:?}", base()).contains("\"pw\""));
}
