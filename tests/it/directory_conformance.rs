//! The `Directory` conformance suite: what every backend must agree on, written against
//! the port alone. The memory directory runs it here; the LDAP backend runs the same
//! functions against Samba.

use futures::TryStreamExt;
use o365_essentials::memory::MemoryDirectory;
use o365_essentials::model::{DirectoryChange, NewLocalUser, ObjectGuid};
use o365_essentials::ports::Directory;
use o365_essentials::{ErrorCode, SecretString};

pub(crate) fn new_user(sam: &str, domain: &str) -> NewLocalUser {
    NewLocalUser {
        sam_account_name: sam.into(),
        user_principal_name: format!("{sam}@{domain}"),
        given_name: Some("Conformance".into()),
        surname: Some(sam.into()),
        display_name: format!("Conformance {sam}"),
        mail: Some(format!("{sam}@{domain}")),
        ou: None,
    }
}

fn pw() -> SecretString {
    SecretString::from("Zebra-Crossing-2026!")
}

/// Every check, in order, against one directory. `domain` is its UPN suffix.
pub(crate) async fn run_all(dir: &dyn Directory, domain: &str) {
    missing_objects_are_not_found(dir).await;
    created_users_are_listed_and_findable(dir, domain).await;
    duplicates_are_refused_naming_the_attribute(dir, domain).await;
    lifecycle_changes_come_out_of_the_cursor(dir, domain).await;
    weak_passwords_are_refused_and_leave_nothing_behind(dir, domain).await;
}

async fn missing_objects_are_not_found(dir: &dyn Directory) {
    let g = ObjectGuid::random();
    assert_eq!(
        dir.user(g).await.expect_err("user").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.set_enabled(g, false).await.expect_err("disable").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.delete_user(g).await.expect_err("delete").code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.set_password(g, &pw())
            .await
            .expect_err("password")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        dir.group_members(g).await.expect_err("group").code(),
        ErrorCode::NotFound
    );
    assert!(
        dir.find_user("no-such-user-anywhere")
            .await
            .expect("find")
            .is_none()
    );
}

async fn created_users_are_listed_and_findable(dir: &dyn Directory, domain: &str) {
    let u = dir
        .create_user(&new_user("conf.alice", domain), &pw())
        .await
        .expect("create");
    assert!(u.enabled(), "created enabled");
    assert!(u.is_syncable());
    let listed: Vec<_> = dir.users().try_collect().await.expect("list");
    assert!(listed.iter().any(|l| l.guid == u.guid));
    assert!(
        listed.iter().all(|l| l.is_syncable()),
        "system accounts never listed"
    );
    let by_upn = dir
        .find_user(&format!("CONF.ALICE@{domain}"))
        .await
        .expect("find")
        .expect("by upn");
    assert_eq!(by_upn.guid, u.guid);
    assert_eq!(
        dir.user(u.guid).await.expect("get").sam_account_name,
        "conf.alice"
    );
}

async fn duplicates_are_refused_naming_the_attribute(dir: &dyn Directory, domain: &str) {
    let e = dir
        .create_user(&new_user("conf.alice", domain), &pw())
        .await
        .expect_err("dup");
    assert_eq!(e.code(), ErrorCode::AlreadyExists);
    assert!(e.message().contains("sAMAccountName"), "{e}");
}

async fn lifecycle_changes_come_out_of_the_cursor(dir: &dyn Directory, domain: &str) {
    let start = dir.changes_since(None).await.expect("initial");
    assert!(start.full_resync);
    let bob = dir
        .create_user(&new_user("conf.bob", domain), &pw())
        .await
        .expect("bob");
    let carol = dir
        .create_user(&new_user("conf.carol", domain), &pw())
        .await
        .expect("carol");
    let mid = dir
        .changes_since(Some(&start.cursor))
        .await
        .expect("after create");
    assert!(!mid.full_resync);
    let upserted: Vec<ObjectGuid> = mid
        .changes
        .iter()
        .filter_map(|c| match c {
            DirectoryChange::Upserted { user } => Some(user.guid),
            DirectoryChange::Deleted { .. } => None,
        })
        .collect();
    assert!(upserted.contains(&bob.guid) && upserted.contains(&carol.guid));

    dir.set_enabled(bob.guid, false).await.expect("disable");
    dir.delete_user(carol.guid).await.expect("delete");
    let end = dir
        .changes_since(Some(&mid.cursor))
        .await
        .expect("after lifecycle");
    assert!(!end.full_resync);
    let disabled = end.changes.iter().any(|c| matches!(c, DirectoryChange::Upserted { user } if user.guid == bob.guid && !user.enabled()));
    assert!(disabled, "disable reported: {:?}", end.changes);
    let deleted = end
        .changes
        .iter()
        .any(|c| matches!(c, DirectoryChange::Deleted { guid } if *guid == carol.guid));
    assert!(deleted, "tombstone reported: {:?}", end.changes);
    assert_eq!(
        dir.user(carol.guid).await.expect_err("gone").code(),
        ErrorCode::NotFound
    );
}

async fn weak_passwords_are_refused_and_leave_nothing_behind(dir: &dyn Directory, domain: &str) {
    let e = dir
        .create_user(&new_user("conf.weak", domain), &SecretString::from("a"))
        .await
        .expect_err("weak");
    assert_eq!(e.code(), ErrorCode::PasswordPolicy);
    assert!(dir.find_user("conf.weak").await.expect("find").is_none());
}

#[tokio::test]
async fn memory_directory_conforms() {
    let dir = MemoryDirectory::new("conformance.test").expect("dir");
    run_all(&dir, "conformance.test").await;
}
