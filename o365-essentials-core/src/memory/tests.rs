use super::*;
use futures::TryStreamExt;

fn pw(s: &str) -> SecretString {
    SecretString::from(s)
}

fn new_user(sam: &str) -> NewLocalUser {
    NewLocalUser {
        sam_account_name: sam.into(),
        user_principal_name: format!("{sam}@essentials.test"),
        given_name: Some("Test".into()),
        surname: Some(sam.into()),
        display_name: format!("Test {sam}"),
        mail: None,
        ou: None,
    }
}

#[tokio::test]
async fn users_leave_out_builtin_and_system_accounts() {
    let dir = MemoryDirectory::demo_company().expect("demo");
    let users: Vec<LocalUser> = dir.users().try_collect().await.expect("list");
    assert_eq!(users.len(), 12);
    for sam in ["Administrator", "Guest", "krbtgt", "DC1$"] {
        assert!(
            users.iter().all(|u| u.sam_account_name != sam),
            "{sam} offered"
        );
        // Still readable directly, just never offered.
        assert!(dir.find_user(sam).await.expect("find").is_some());
    }
    assert_eq!(users.iter().filter(|u| !u.enabled()).count(), 1);
}

#[tokio::test]
async fn create_enforces_uniqueness_and_the_domain_policy() {
    let dir = MemoryDirectory::new("contoso.test").expect("dir");
    let u = dir
        .create_user(&new_user("jdoe"), &pw("Winter-2026!"))
        .await
        .expect("create");
    assert!(u.enabled());
    assert!(
        dir.check_password(u.guid, &pw("Winter-2026!"))
            .expect("check")
    );
    assert_eq!(u.dn, "CN=Test jdoe,CN=Users,DC=contoso,DC=test");

    let dup = dir
        .create_user(&new_user("JDOE"), &pw("Winter-2026!"))
        .await
        .expect_err("duplicate sam");
    assert_eq!(dup.code(), ErrorCode::AlreadyExists);
    assert!(dup.message().contains("sAMAccountName"));

    let mut other = new_user("jane");
    other.user_principal_name = "jdoe@essentials.test".into();
    let dup = dir
        .create_user(&other, &pw("Winter-2026!"))
        .await
        .expect_err("duplicate upn");
    assert!(dup.message().contains("userPrincipalName"));

    let weak = dir
        .create_user(&new_user("weak"), &pw("abc"))
        .await
        .expect_err("weak");
    assert_eq!(weak.code(), ErrorCode::PasswordPolicy);
    assert!(weak.message().contains("at least 7"));
    assert!(!weak.to_string().contains("abc\""));
    assert!(
        dir.find_user("weak").await.expect("find").is_none(),
        "nothing left behind"
    );

    for bad in ["a*b", "", "x".repeat(21).as_str(), "a\0b"] {
        let e = dir
            .create_user(&new_user(bad), &pw("Winter-2026!"))
            .await
            .expect_err(bad);
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad:?}");
    }
}

#[tokio::test]
async fn non_ascii_names_work() {
    let dir = MemoryDirectory::new("contoso.test").expect("dir");
    let mut n = new_user("jürgen");
    n.display_name = "Jürgen Groß 中文".into();
    let u = dir
        .create_user(&n, &pw("Winter-2026!"))
        .await
        .expect("create");
    assert_eq!(
        dir.user(u.guid).await.expect("get").display_name.as_deref(),
        Some("Jürgen Groß 中文")
    );
    assert!(
        dir.find_user("JÜRGEN").await.expect("find").is_some(),
        "case-insensitive like AD"
    );
    assert!(dir.find_user("jürgen").await.expect("find").is_some());
}

#[tokio::test]
async fn missing_users_are_not_found_everywhere() {
    let dir = MemoryDirectory::new("contoso.test").expect("dir");
    let g = ObjectGuid::random();
    assert_eq!(
        dir.user(g).await.expect_err("user").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.set_enabled(g, false).await.expect_err("en").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.delete_user(g).await.expect_err("del").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.set_password(g, &pw("Winter-2026!"))
            .await
            .expect_err("pw")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.set_consistency_guid(g, g).await.expect_err("cg").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.group_members(g).await.expect_err("grp").code(),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn changes_since_a_cursor_report_edits_disables_and_tombstones_in_order() {
    let dir = MemoryDirectory::demo_company().expect("demo");
    let first = dir.changes_since(None).await.expect("initial");
    assert!(first.full_resync);
    assert_eq!(first.changes.len(), 12);

    let nothing = dir.changes_since(Some(&first.cursor)).await.expect("again");
    assert!(!nothing.full_resync);
    assert!(nothing.changes.is_empty());
    assert_eq!(nothing.cursor, first.cursor);

    let ava = dir
        .find_user("ava.adams")
        .await
        .expect("find")
        .expect("ava");
    let ben = dir
        .find_user("ben.brooks")
        .await
        .expect("find")
        .expect("ben");
    dir.set_enabled(ava.guid, false).await.expect("disable");
    dir.set_enabled(ava.guid, false)
        .await
        .expect("disable twice is a no-op");
    dir.delete_user(ben.guid).await.expect("delete");
    let created = dir
        .create_user(&new_user("newbie"), &pw("Winter-2026!"))
        .await
        .expect("create");

    let delta = dir.changes_since(Some(&first.cursor)).await.expect("delta");
    assert!(!delta.full_resync);
    assert_eq!(delta.changes.len(), 3, "{:?}", delta.changes);
    match &delta.changes[0] {
        DirectoryChange::Upserted { user } => {
            assert_eq!(user.guid, ava.guid);
            assert!(!user.enabled());
        }
        other => panic!("expected ava disabled, got {other:?}"),
    }
    assert_eq!(
        delta.changes[1],
        DirectoryChange::Deleted { guid: ben.guid }
    );
    assert!(
        matches!(&delta.changes[2], DirectoryChange::Upserted { user } if user.guid == created.guid)
    );

    // Group membership follows the deletion.
    let sales = dir
        .groups()
        .try_collect::<Vec<_>>()
        .await
        .expect("groups")
        .into_iter()
        .find(|g| g.sam_account_name == "Sales")
        .expect("sales");
    let members = dir.group_members(sales.guid).await.expect("members");
    assert!(!members.contains(&ben.guid));
    assert!(members.contains(&ava.guid));
}

#[tokio::test]
async fn stale_or_foreign_cursors_lead_to_a_full_resync() {
    let dir = MemoryDirectory::demo_company().expect("demo");
    let c = dir.changes_since(None).await.expect("initial").cursor;
    let ava = dir
        .find_user("ava.adams")
        .await
        .expect("find")
        .expect("ava");
    dir.delete_user(ava.guid).await.expect("delete");
    dir.expire_tombstones().expect("expire");
    let r = dir.changes_since(Some(&c)).await.expect("resync");
    assert!(
        r.full_resync,
        "tombstones gone: the old cursor cannot be honoured"
    );
    assert_eq!(r.changes.len(), 11);

    let other = MemoryDirectory::demo_company().expect("other");
    let foreign = other.changes_since(None).await.expect("other").cursor;
    assert!(
        dir.changes_since(Some(&foreign))
            .await
            .expect("foreign")
            .full_resync
    );
    let garbage = DirectoryCursor("not a cursor".into());
    assert!(
        dir.changes_since(Some(&garbage))
            .await
            .expect("garbage")
            .full_resync
    );
}

#[tokio::test]
async fn set_password_applies_policy_and_history() {
    let dir = MemoryDirectory::new("contoso.test").expect("dir");
    let u = dir
        .create_user(&new_user("jdoe"), &pw("Winter-2026!"))
        .await
        .expect("create");
    dir.set_password(u.guid, &pw("Spring-2027!"))
        .await
        .expect("change");
    assert!(
        dir.check_password(u.guid, &pw("Spring-2027!"))
            .expect("check")
    );
    let reused = dir
        .set_password(u.guid, &pw("Winter-2026!"))
        .await
        .expect_err("history");
    assert_eq!(reused.code(), ErrorCode::PasswordPolicy);
    assert!(reused.message().contains("last 24 passwords"));
    let named = dir
        .set_password(u.guid, &pw("xx-JDOE-2027"))
        .await
        .expect_err("name");
    assert!(named.message().contains("account name"));
    dir.set_password_policy(PasswordPolicy {
        min_length: 4,
        complexity: false,
        history_length: 0,
    })
    .expect("policy");
    dir.set_password(u.guid, &pw("Winter-2026!"))
        .await
        .expect("history off");
}

#[tokio::test]
async fn consistency_guid_changes_the_anchor_and_is_reported() {
    let dir = MemoryDirectory::demo_company().expect("demo");
    let c = dir.changes_since(None).await.expect("initial").cursor;
    let ava = dir
        .find_user("ava.adams")
        .await
        .expect("find")
        .expect("ava");
    let cg = ObjectGuid::random();
    dir.set_consistency_guid(ava.guid, cg).await.expect("set");
    let now = dir.user(ava.guid).await.expect("get");
    assert_eq!(now.anchor(), cg.anchor());
    assert!(now.usn_changed > ava.usn_changed);
    assert_eq!(
        dir.changes_since(Some(&c))
            .await
            .expect("delta")
            .changes
            .len(),
        1
    );
}

#[test]
fn debug_output_holds_no_passwords() {
    let dir = MemoryDirectory::demo_company().expect("demo");
    let s = format!("{dir:?}");
    assert!(s.contains("users"));
    assert!(!s.contains("Winter"));
}

#[tokio::test]
async fn loading_many_users_is_all_or_nothing() {
    let dir = MemoryDirectory::new("essentials.test").expect("dir");
    dir.create_user(&new_user("kept"), &pw("Quiet-Harbour-Wide!"))
        .await
        .expect("create");
    let batch: Vec<NewLocalUser> = (0..500).map(|i| new_user(&format!("load{i:03}"))).collect();
    let loaded = dir.load_users(&batch).expect("load");
    assert_eq!(loaded.len(), 500);
    assert_eq!(
        dir.find_user("load499")
            .await
            .expect("find")
            .map(|u| u.guid),
        Some(loaded[499].guid)
    );
    // A clash with the directory, and one inside the batch: nothing is added.
    for clash in [
        vec![new_user("fresh1"), new_user("KEPT")],
        vec![new_user("fresh2"), new_user("fresh2")],
    ] {
        let e = dir.load_users(&clash).expect_err("clash");
        assert_eq!(e.code(), ErrorCode::AlreadyExists, "{e}");
        assert!(dir.find_user("fresh1").await.expect("find").is_none());
        assert!(dir.find_user("fresh2").await.expect("find").is_none());
    }
    let mut bad = new_user("x");
    bad.user_principal_name = "no-domain".into();
    assert_eq!(
        dir.load_users(&[bad]).expect_err("bad").code(),
        ErrorCode::InvalidInput
    );
    let users: Vec<LocalUser> = dir.users().try_collect().await.expect("list");
    assert_eq!(users.len(), 501);
}

#[tokio::test]
async fn the_demo_company_is_the_same_company_in_every_process() {
    let a = MemoryDirectory::demo_company_of(5).expect("demo");
    let b = MemoryDirectory::demo_company_of(5).expect("demo");
    for sam in ["ava.adams", "liam.lopez", "staff0005"] {
        let ga = a.find_user(sam).await.expect("find").expect("there").guid;
        let gb = b.find_user(sam).await.expect("find").expect("there").guid;
        assert_eq!(ga, gb, "{sam}");
    }
    let users: Vec<LocalUser> = a.users().try_collect().await.expect("list");
    let guids: std::collections::HashSet<_> = users.iter().map(|u| u.guid).collect();
    assert_eq!(guids.len(), 17, "distinct");
}
