//! An in-memory [`Directory`] for the quickstart, demos and engine tests.
//!
//! It implements the whole port with the semantics of the LDAP backend — a uSN that grows
//! with every change, tombstones for deletions, cursors that expire with the tombstones,
//! the domain's password policy — so the engine can be exercised without a domain
//! controller. It is never a stand-in in tests of the LDAP backend itself.

// Transport, store and demo code keep wall-clock time of their own (token expiry,
// TSIG, timestamps); only the engine must read it from its Clock.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::{Error, ErrorCode, Result};
use crate::model::{
    DirectoryChange, DirectoryChanges, DirectoryCursor, LocalGroup, LocalUser, NewLocalUser,
    ObjectGuid, PasswordPolicy, Topology, uac,
};
use crate::ports::Directory;
use crate::validate::{self, PasswordContext};

const SAM_MAX_LEN: usize = 20;

struct Group {
    group: LocalGroup,
    members: Vec<ObjectGuid>,
    /// The SID of a well-known group (`Domain Admins` …); ordinary groups have none here.
    sid: Option<String>,
}

/// The memory directory's domain SID (its well-known groups are relative to it).
const DOMAIN_SID: &str = "S-1-5-21-1000-2000-3000";

/// `u` with what the gate needs: the privileged groups it is a member of.
fn with_standing(s: &State, u: &LocalUser) -> LocalUser {
    let mut u = u.clone();
    u.standing.privileged_groups = s
        .groups
        .values()
        .filter(|g| g.members.contains(&u.guid))
        .filter_map(|g| g.sid.as_deref())
        .filter_map(crate::engine::guard::privileged_group)
        .collect();
    u.standing.privileged_groups.sort();
    u
}

struct State {
    users: BTreeMap<ObjectGuid, LocalUser>,
    groups: BTreeMap<ObjectGuid, Group>,
    /// Password history, newest last; never printed.
    passwords: HashMap<ObjectGuid, Vec<SecretString>>,
    /// The highest uSN handed out.
    usn: u64,
    /// Deleted users as (uSN of the deletion, GUID), oldest first.
    tombstones: Vec<(u64, ObjectGuid)>,
    /// Cursors below this uSN are no longer accepted (their tombstones are gone).
    tombstone_floor: u64,
    policy: PasswordPolicy,
    topology: Topology,
}

/// The in-memory directory. Cheap to create; share it as `Arc<MemoryDirectory>`.
pub struct MemoryDirectory {
    /// Distinguishes this instance's cursors from another's.
    epoch: Uuid,
    base_dn: String,
    state: Mutex<State>,
}

impl std::fmt::Debug for MemoryDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (users, usn) = self
            .state
            .lock()
            .map(|s| (s.users.len(), s.usn))
            .unwrap_or_default();
        f.debug_struct("MemoryDirectory")
            .field("base_dn", &self.base_dn)
            .field("users", &users)
            .field("usn", &usn)
            .finish()
    }
}

impl MemoryDirectory {
    /// An empty directory for the DNS domain `domain` (e.g. `essentials.test`), holding
    /// only the built-in accounts (Administrator, Guest, krbtgt) and the DC's computer
    /// account, as a freshly provisioned domain does.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidDomainName`] for a malformed domain.
    pub fn new(domain: &str) -> Result<Self> {
        validate::domain_name(domain)?;
        let base_dn = domain
            .split('.')
            .map(|l| format!("DC={l}"))
            .collect::<Vec<_>>()
            .join(",");
        let netbios = domain
            .split('.')
            .next()
            .unwrap_or(domain)
            .to_ascii_uppercase();
        let dc_host = format!("dc1.{domain}");
        let dir = MemoryDirectory {
            epoch: Uuid::new_v4(),
            base_dn: base_dn.clone(),
            state: Mutex::new(State {
                users: BTreeMap::new(),
                groups: BTreeMap::new(),
                passwords: HashMap::new(),
                usn: 1000,
                tombstones: Vec::new(),
                tombstone_floor: 0,
                policy: PasswordPolicy::default(),
                topology: Topology {
                    domain_controllers: vec![dc_host.clone()],
                    connected_dc: dc_host,
                    this_host_is_dc: true,
                    domain_functional_level: 7,
                    domain_dns_name: domain.to_string(),
                    netbios_name: Some(netbios),
                },
            }),
        };
        {
            let mut s = dir.lock()?;
            for (sam, bits, critical) in [
                (
                    "Administrator",
                    uac::NORMAL_ACCOUNT | uac::DONT_EXPIRE_PASSWORD,
                    true,
                ),
                ("Guest", uac::NORMAL_ACCOUNT | uac::ACCOUNTDISABLE, true),
                ("krbtgt", uac::NORMAL_ACCOUNT | uac::ACCOUNTDISABLE, true),
                ("DC1$", uac::SERVER_TRUST_ACCOUNT, true),
            ] {
                let dn = if sam.ends_with('$') {
                    format!("CN=DC1,OU=Domain Controllers,{base_dn}")
                } else {
                    format!("CN={sam},CN=Users,{base_dn}")
                };
                let u = new_user_record(&mut s, dn, sam, None, None, None, sam, None, bits);
                let mut u = u;
                u.critical_system_object = critical;
                u.standing.rid = Some(match sam {
                    "Administrator" => 500,
                    "Guest" => 501,
                    "krbtgt" => 502,
                    _ => 1000,
                });
                s.users.insert(u.guid, u);
            }
            // The privileged groups a provisioned domain has, the Administrator in them.
            let admin = s
                .users
                .values()
                .find(|u| u.sam_account_name == "Administrator")
                .map(|u| u.guid);
            for (name, rid) in [("Domain Admins", 512), ("Administrators", 544)] {
                let guid = ObjectGuid::random();
                let (sid, dn) = if rid == 544 {
                    (
                        format!("S-1-5-32-{rid}"),
                        format!("CN={name},CN=Builtin,{base_dn}"),
                    )
                } else {
                    (
                        format!("{DOMAIN_SID}-{rid}"),
                        format!("CN={name},CN=Users,{base_dn}"),
                    )
                };
                s.groups.insert(
                    guid,
                    Group {
                        group: LocalGroup {
                            guid,
                            dn: dn.clone(),
                            sam_account_name: name.to_string(),
                            display_name: Some(name.to_string()),
                            mail: None,
                        },
                        members: admin.into_iter().collect(),
                        sid: Some(sid),
                    },
                );
                if let Some(a) = admin.and_then(|a| s.users.get_mut(&a)) {
                    a.member_of.push(dn);
                }
            }
        }
        Ok(dir)
    }

    /// A directory for `essentials.test` seeded with a small company: a dozen people,
    /// one of them disabled, and two groups.
    ///
    /// # Errors
    /// Only [`ErrorCode::Internal`] (a poisoned lock).
    pub fn demo_company() -> Result<Self> {
        let dir = MemoryDirectory::new("essentials.test")?;
        let people = [
            ("Ava", "Adams", "Sales"),
            ("Ben", "Brooks", "Sales"),
            ("Chloe", "Carter", "Office"),
            ("Daniel", "Diaz", "Workshop"),
            ("Emma", "Evans", "Office"),
            ("Finn", "Fischer", "Workshop"),
            ("Grace", "Garcia", "Sales"),
            ("Hugo", "Hughes", "Workshop"),
            ("Isla", "Ito", "Office"),
            ("Jack", "Jensen", "Workshop"),
            ("Kira", "Kowalski", "Sales"),
            ("Liam", "Lopez", "Office"),
        ];
        let mut sales = Vec::new();
        let mut office = Vec::new();
        for (i, (given, sn, dept)) in people.iter().enumerate() {
            let sam = format!("{}.{}", given.to_lowercase(), sn.to_lowercase());
            let mut s = dir.lock()?;
            let dn = format!("CN={given} {sn},OU=Staff,{}", dir.base_dn);
            let upn = format!("{sam}@essentials.test");
            let bits = if i == 11 {
                uac::NORMAL_ACCOUNT | uac::ACCOUNTDISABLE
            } else {
                uac::NORMAL_ACCOUNT
            };
            let u = new_user_record(
                &mut s,
                dn,
                &sam,
                Some(upn),
                Some(given),
                Some(sn),
                &format!("{given} {sn}"),
                None,
                bits,
            );
            // The same GUID in every process: the demo is one company wherever it is
            // opened (a second process sees the links the first one made).
            let mut u = u;
            u.guid = demo_guid(&sam);
            match *dept {
                "Sales" => sales.push(u.guid),
                "Office" => office.push(u.guid),
                _ => {}
            }
            s.users.insert(u.guid, u);
        }
        dir.add_group("Sales", sales)?;
        dir.add_group("Office", office)?;
        Ok(dir)
    }

    /// The demo company with `extra` more staff (`staff0001` "Staff 0001", ... in
    /// OU=Staff).
    ///
    /// # Errors
    /// Only [`ErrorCode::Internal`].
    pub fn demo_company_of(extra: usize) -> Result<Self> {
        let dir = MemoryDirectory::demo_company()?;
        let ou = format!("OU=Staff,{}", dir.base_dn);
        let staff: Vec<NewLocalUser> = (1..=extra)
            .map(|i| NewLocalUser {
                sam_account_name: format!("staff{i:04}"),
                user_principal_name: format!("staff{i:04}@essentials.test"),
                given_name: Some("Staff".into()),
                surname: Some(format!("{i:04}")),
                display_name: format!("Staff {i:04}"),
                mail: None,
                ou: Some(ou.clone()),
            })
            .collect();
        let loaded = dir.load_users(&staff)?;
        let mut s = dir.lock()?;
        for u in loaded {
            if let Some(mut rec) = s.users.remove(&u.guid) {
                rec.guid = demo_guid(&rec.sam_account_name);
                s.users.insert(rec.guid, rec);
            }
        }
        drop(s);
        Ok(dir)
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| Error::internal("the memory directory's lock was poisoned by a panic"))
    }

    /// The base DN (`DC=essentials,DC=test`).
    pub fn base_dn(&self) -> &str {
        &self.base_dn
    }

    /// Adds a group with the given user members.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] naming a member that does not exist;
    /// [`ErrorCode::AlreadyExists`] for a taken name.
    pub fn add_group(&self, name: &str, members: Vec<ObjectGuid>) -> Result<LocalGroup> {
        let mut s = self.lock()?;
        if let Some(m) = members.iter().find(|m| !s.users.contains_key(m)) {
            return Err(Error::not_found(format!(
                "no local user has objectGUID {m}"
            )));
        }
        if s.groups
            .values()
            .any(|g| g.group.sam_account_name.eq_ignore_ascii_case(name))
        {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("a group named `{name}` already exists (sAMAccountName)"),
            ));
        }
        let guid = ObjectGuid::random();
        let dn = format!("CN={name},OU=Groups,{}", self.base_dn);
        for m in &members {
            if let Some(u) = s.users.get_mut(m) {
                u.member_of.push(dn.clone());
            }
        }
        let group = LocalGroup {
            guid,
            dn,
            sam_account_name: name.to_string(),
            display_name: Some(name.to_string()),
            mail: None,
        };
        s.groups.insert(
            guid,
            Group {
                group: group.clone(),
                members,
                sid: None,
            },
        );
        Ok(group)
    }

    /// Adds a user to a group (by the group's sAMAccountName), as an administrator
    /// would; the user's uSN moves, as AD's `memberOf` back link does not but its
    /// `tokenGroups` does — the gate reads membership live either way.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] for the group or the user.
    pub fn add_to_group(&self, group: &str, user: ObjectGuid) -> Result<()> {
        self.set_membership(group, user, true)
    }

    /// Removes a user from a group (by the group's sAMAccountName).
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`] for the group or the user.
    pub fn remove_from_group(&self, group: &str, user: ObjectGuid) -> Result<()> {
        self.set_membership(group, user, false)
    }

    fn set_membership(&self, group: &str, user: ObjectGuid, member: bool) -> Result<()> {
        let mut s = self.lock()?;
        if !s.users.contains_key(&user) {
            return Err(not_found(user));
        }
        let g = s
            .groups
            .values_mut()
            .find(|g| g.group.sam_account_name.eq_ignore_ascii_case(group))
            .ok_or_else(|| Error::not_found(format!("no local group is named `{group}`")))?;
        let dn = g.group.dn.clone();
        g.members.retain(|m| *m != user);
        if member {
            g.members.push(user);
        }
        s.usn += 1;
        let usn = s.usn;
        if let Some(u) = s.users.get_mut(&user) {
            u.member_of.retain(|m| *m != dn);
            if member {
                u.member_of.push(dn);
            }
            u.usn_changed = usn;
        }
        Ok(())
    }

    /// Changes a user as an administrator would in "Active Directory Users and
    /// Computers": applies `edit` and bumps the uSN, so the change is reported by
    /// [`Directory::changes_since`]. The GUID cannot be changed.
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`]; [`ErrorCode::AlreadyExists`] when the edit makes the
    /// sAMAccountName or UPN clash with another user's.
    pub fn edit_user(
        &self,
        guid: ObjectGuid,
        edit: impl FnOnce(&mut LocalUser),
    ) -> Result<LocalUser> {
        let mut s = self.lock()?;
        let mut u = s.users.get(&guid).cloned().ok_or_else(|| not_found(guid))?;
        edit(&mut u);
        u.guid = guid;
        check_unique(
            &s,
            &u.sam_account_name,
            u.user_principal_name.as_deref(),
            Some(guid),
        )?;
        s.usn += 1;
        u.usn_changed = s.usn;
        u.when_changed = Some(OffsetDateTime::now_utc());
        s.users.insert(guid, u.clone());
        Ok(u)
    }

    /// Adds many users at once, as a directory export would load them (no passwords):
    /// all of them or, when one is invalid or clashes with another's name, none.
    /// Uniqueness is checked once for the whole batch, so loading a large test company
    /// costs time in proportion to its size.
    ///
    /// # Errors
    /// [`ErrorCode::InvalidInput`] for a malformed name; [`ErrorCode::AlreadyExists`]
    /// when a sAMAccountName or UPN is taken (by the directory or the batch).
    pub fn load_users(&self, users: &[NewLocalUser]) -> Result<Vec<LocalUser>> {
        let mut s = self.lock()?;
        let mut names: HashSet<String> =
            HashSet::with_capacity(s.users.len() * 2 + users.len() * 2);
        for u in s.users.values() {
            names.insert(u.sam_account_name.to_lowercase());
            if let Some(upn) = &u.user_principal_name {
                names.insert(upn.to_lowercase());
            }
        }
        for u in users {
            check_sam(&u.sam_account_name)?;
            validate::display_name(&u.display_name)?;
            let upn = u.user_principal_name.trim();
            if !matches!(upn.split_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@'))
            {
                return Err(Error::invalid_input(format!(
                    "the userPrincipalName `{upn}` is not of the form name@domain"
                )));
            }
            for n in [u.sam_account_name.as_str(), upn] {
                if !names.insert(n.to_lowercase()) {
                    return Err(Error::new(
                        ErrorCode::AlreadyExists,
                        format!("the name `{n}` is already used"),
                    ));
                }
            }
        }
        let mut out = Vec::with_capacity(users.len());
        for u in users {
            let ou =
                u.ou.clone()
                    .unwrap_or_else(|| format!("CN=Users,{}", self.base_dn));
            let dn = format!("CN={},{ou}", u.display_name.replace(',', "\\,"));
            let rec = new_user_record(
                &mut s,
                dn,
                &u.sam_account_name,
                Some(u.user_principal_name.trim().to_string()),
                u.given_name.as_deref(),
                u.surname.as_deref(),
                &u.display_name,
                u.mail.clone(),
                uac::NORMAL_ACCOUNT,
            );
            s.users.insert(rec.guid, rec.clone());
            out.push(rec);
        }
        Ok(out)
    }

    /// Replaces the domain's password policy.
    ///
    /// # Errors
    /// Only [`ErrorCode::Internal`].
    pub fn set_password_policy(&self, policy: PasswordPolicy) -> Result<()> {
        self.lock()?.policy = policy;
        Ok(())
    }

    /// Replaces the topology (to demonstrate the requirements check).
    ///
    /// # Errors
    /// Only [`ErrorCode::Internal`].
    pub fn set_topology(&self, topology: Topology) -> Result<()> {
        self.lock()?.topology = topology;
        Ok(())
    }

    /// Forgets tombstones older than the current uSN, as AD does after the tombstone
    /// lifetime; cursors from before are then answered with a full resync.
    ///
    /// # Errors
    /// Only [`ErrorCode::Internal`].
    pub fn expire_tombstones(&self) -> Result<()> {
        let mut s = self.lock()?;
        s.tombstones.clear();
        s.tombstone_floor = s.usn;
        Ok(())
    }

    /// Whether `password` is the user's current password (for tests and demos).
    ///
    /// # Errors
    /// [`ErrorCode::NotFound`].
    pub fn check_password(&self, guid: ObjectGuid, password: &SecretString) -> Result<bool> {
        let s = self.lock()?;
        if !s.users.contains_key(&guid) {
            return Err(not_found(guid));
        }
        Ok(s.passwords
            .get(&guid)
            .and_then(|h| h.last())
            .is_some_and(|p| p.expose_secret() == password.expose_secret()))
    }

    fn cursor(&self, usn: u64) -> DirectoryCursor {
        DirectoryCursor(format!("mem:{}:{usn}", self.epoch.simple()))
    }

    fn parse_cursor(&self, cursor: &DirectoryCursor) -> Option<u64> {
        let rest = cursor.0.strip_prefix("mem:")?;
        let (epoch, usn) = rest.split_once(':')?;
        if epoch != self.epoch.simple().to_string() {
            return None;
        }
        usn.parse().ok()
    }
}

#[allow(clippy::too_many_arguments)]
fn new_user_record(
    s: &mut State,
    dn: String,
    sam: &str,
    upn: Option<String>,
    given: Option<&str>,
    sn: Option<&str>,
    display: &str,
    mail: Option<String>,
    bits: u32,
) -> LocalUser {
    s.usn += 1;
    LocalUser {
        guid: ObjectGuid::random(),
        consistency_guid: None,
        dn,
        sam_account_name: sam.to_string(),
        user_principal_name: upn,
        given_name: given.map(str::to_string),
        surname: sn.map(str::to_string),
        display_name: Some(display.to_string()),
        mail,
        proxy_addresses: Vec::new(),
        user_account_control: bits,
        member_of: Vec::new(),
        when_changed: Some(OffsetDateTime::now_utc()),
        usn_changed: s.usn,
        critical_system_object: false,
        standing: Default::default(),
        account_expires: None,
    }
}

/// A demo user's GUID, derived from its name (FNV-1a, 128 bits, as a version-4 UUID).
fn demo_guid(sam: &str) -> ObjectGuid {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in format!("o365-essentials demo {sam}").bytes() {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    ObjectGuid(uuid::Builder::from_random_bytes(h.to_le_bytes()).into_uuid())
}

/// AD compares names case-insensitively, beyond ASCII too.
fn same_name(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b) || a.to_lowercase() == b.to_lowercase()
}

fn not_found(guid: ObjectGuid) -> Error {
    Error::not_found(format!("no local user has objectGUID {guid}"))
}

fn check_unique(s: &State, sam: &str, upn: Option<&str>, except: Option<ObjectGuid>) -> Result<()> {
    for u in s.users.values().filter(|u| Some(u.guid) != except) {
        if same_name(&u.sam_account_name, sam) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("the sAMAccountName `{sam}` is already used by {}", u.dn),
            ));
        }
        if let (Some(a), Some(b)) = (upn, u.user_principal_name.as_deref())
            && same_name(a, b)
        {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("the userPrincipalName `{a}` is already used by {}", u.dn),
            ));
        }
    }
    Ok(())
}

fn check_sam(sam: &str) -> Result<()> {
    if sam.trim().is_empty() {
        return Err(Error::invalid_input("the sAMAccountName is empty"));
    }
    if sam.chars().count() > SAM_MAX_LEN {
        return Err(Error::invalid_input(format!(
            "the sAMAccountName `{sam}` is longer than {SAM_MAX_LEN} characters"
        )));
    }
    if let Some(c) = sam
        .chars()
        .find(|c| "\"/\\[]:;|=,+*?<>@".contains(*c) || c.is_control())
    {
        return Err(Error::invalid_input(format!(
            "the sAMAccountName `{}` contains `{}`, which AD does not allow",
            sam.escape_default(),
            c.escape_default()
        )));
    }
    if sam.ends_with('.') {
        return Err(Error::invalid_input(
            "a sAMAccountName may not end with a period",
        ));
    }
    Ok(())
}

fn check_directory_password(
    s: &State,
    guid: Option<ObjectGuid>,
    sam: &str,
    display: Option<&str>,
    password: &SecretString,
) -> Result<()> {
    let who = PasswordContext {
        sam_account_name: Some(sam),
        display_name: display,
    };
    let broken: Vec<String> =
        validate::password_rules_broken(password.expose_secret(), Some(&s.policy), who)
            .into_iter()
            .filter(|r| r.is_directory_rule())
            .map(|r| r.to_string())
            .collect();
    if !broken.is_empty() {
        return Err(Error::new(
            ErrorCode::PasswordPolicy,
            format!("the domain refused the password: {}", broken.join("; ")),
        ));
    }
    if let Some(history) = guid.and_then(|g| s.passwords.get(&g)) {
        let n = s.policy.history_length as usize;
        if history
            .iter()
            .rev()
            .take(n)
            .any(|p| p.expose_secret() == password.expose_secret())
        {
            return Err(Error::new(
                ErrorCode::PasswordPolicy,
                format!(
                    "the domain refused the password: it is one of the last {n} passwords of this user"
                ),
            ));
        }
    }
    Ok(())
}

#[async_trait]
impl Directory for MemoryDirectory {
    fn users(&self) -> BoxStream<'_, Result<LocalUser>> {
        let snapshot: Vec<Result<LocalUser>> = match self.lock() {
            Ok(s) => s
                .users
                .values()
                .filter(|u| u.is_syncable())
                .map(|u| Ok(with_standing(&s, u)))
                .collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(snapshot).boxed()
    }

    async fn user(&self, guid: ObjectGuid) -> Result<LocalUser> {
        let s = self.lock()?;
        s.users
            .get(&guid)
            .map(|u| with_standing(&s, u))
            .ok_or_else(|| not_found(guid))
    }

    async fn user_by_anchor(&self, guid: ObjectGuid) -> Result<LocalUser> {
        let s = self.lock()?;
        s.users
            .values()
            .find(|u| u.consistency_guid.unwrap_or(u.guid) == guid)
            .map(|u| with_standing(&s, u))
            .ok_or_else(|| not_found(guid))
    }

    async fn find_user(&self, name: &str) -> Result<Option<LocalUser>> {
        let s = self.lock()?;
        Ok(s.users
            .values()
            .find(|u| {
                same_name(&u.sam_account_name, name)
                    || u.user_principal_name
                        .as_deref()
                        .is_some_and(|p| same_name(p, name))
            })
            .cloned())
    }

    fn groups(&self) -> BoxStream<'_, Result<LocalGroup>> {
        let snapshot: Vec<Result<LocalGroup>> = match self.lock() {
            Ok(s) => s.groups.values().map(|g| Ok(g.group.clone())).collect(),
            Err(e) => vec![Err(e)],
        };
        futures::stream::iter(snapshot).boxed()
    }

    async fn group_members(&self, group: ObjectGuid) -> Result<Vec<ObjectGuid>> {
        let s = self.lock()?;
        let g = s
            .groups
            .get(&group)
            .ok_or_else(|| Error::not_found(format!("no local group has objectGUID {group}")))?;
        Ok(g.members
            .iter()
            .filter(|m| s.users.contains_key(m))
            .copied()
            .collect())
    }

    async fn changes_since(&self, cursor: Option<&DirectoryCursor>) -> Result<DirectoryChanges> {
        let s = self.lock()?;
        let from = cursor
            .and_then(|c| self.parse_cursor(c))
            .filter(|usn| *usn >= s.tombstone_floor && *usn <= s.usn);
        let Some(from) = from else {
            let mut users: Vec<&LocalUser> = s.users.values().filter(|u| u.is_syncable()).collect();
            users.sort_by_key(|u| u.usn_changed);
            return Ok(DirectoryChanges {
                changes: users
                    .into_iter()
                    .map(|u| DirectoryChange::Upserted {
                        user: Box::new(u.clone()),
                    })
                    .collect(),
                cursor: self.cursor(s.usn),
                full_resync: true,
            });
        };
        let mut changed: Vec<(u64, DirectoryChange)> = s
            .users
            .values()
            .filter(|u| u.usn_changed > from && u.is_syncable())
            .map(|u| {
                (
                    u.usn_changed,
                    DirectoryChange::Upserted {
                        user: Box::new(u.clone()),
                    },
                )
            })
            .collect();
        changed.extend(
            s.tombstones
                .iter()
                .filter(|(usn, _)| *usn > from)
                .map(|(usn, guid)| (*usn, DirectoryChange::Deleted { guid: *guid })),
        );
        changed.sort_by_key(|(usn, _)| *usn);
        Ok(DirectoryChanges {
            changes: changed.into_iter().map(|(_, c)| c).collect(),
            cursor: self.cursor(s.usn),
            full_resync: false,
        })
    }

    async fn create_user(&self, user: &NewLocalUser, password: &SecretString) -> Result<LocalUser> {
        check_sam(&user.sam_account_name)?;
        let upn = user.user_principal_name.trim();
        match upn.split_once('@') {
            Some((l, d)) if !l.is_empty() && !d.is_empty() && !d.contains('@') => {}
            _ => {
                return Err(Error::invalid_input(format!(
                    "the userPrincipalName `{upn}` is not of the form name@domain"
                )));
            }
        }
        validate::display_name(&user.display_name)?;
        let mut s = self.lock()?;
        check_unique(&s, &user.sam_account_name, Some(upn), None)?;
        check_directory_password(
            &s,
            None,
            &user.sam_account_name,
            Some(&user.display_name),
            password,
        )?;
        let ou = user
            .ou
            .clone()
            .unwrap_or_else(|| format!("CN=Users,{}", self.base_dn));
        let dn = format!("CN={},{ou}", user.display_name.replace(',', "\\,"));
        if s.users.values().any(|u| u.dn.eq_ignore_ascii_case(&dn)) {
            return Err(Error::new(
                ErrorCode::AlreadyExists,
                format!("an object named {dn} already exists (cn)"),
            ));
        }
        let u = new_user_record(
            &mut s,
            dn,
            &user.sam_account_name,
            Some(upn.to_string()),
            user.given_name.as_deref(),
            user.surname.as_deref(),
            &user.display_name,
            user.mail.clone(),
            uac::NORMAL_ACCOUNT,
        );
        s.passwords
            .insert(u.guid, vec![SecretString::from(password.expose_secret())]);
        s.users.insert(u.guid, u.clone());
        Ok(u)
    }

    async fn set_enabled(&self, guid: ObjectGuid, enabled: bool) -> Result<()> {
        let current = self.user(guid).await?;
        if current.enabled() == enabled {
            return Ok(());
        }
        self.edit_user(guid, |u| {
            if enabled {
                u.user_account_control &= !uac::ACCOUNTDISABLE;
            } else {
                u.user_account_control |= uac::ACCOUNTDISABLE;
            }
        })
        .map(|_| ())
    }

    async fn delete_user(&self, guid: ObjectGuid) -> Result<()> {
        let mut s = self.lock()?;
        let u = s.users.remove(&guid).ok_or_else(|| not_found(guid))?;
        s.passwords.remove(&guid);
        for g in s.groups.values_mut() {
            g.members.retain(|m| *m != guid);
        }
        s.usn += 1;
        let usn = s.usn;
        s.tombstones.push((usn, u.guid));
        Ok(())
    }

    async fn set_password(&self, guid: ObjectGuid, password: &SecretString) -> Result<()> {
        let mut s = self.lock()?;
        let u = s.users.get(&guid).ok_or_else(|| not_found(guid))?;
        let (sam, display) = (u.sam_account_name.clone(), u.display_name.clone());
        check_directory_password(&s, Some(guid), &sam, display.as_deref(), password)?;
        s.passwords
            .entry(guid)
            .or_default()
            .push(SecretString::from(password.expose_secret()));
        Ok(())
    }

    async fn set_consistency_guid(&self, guid: ObjectGuid, value: ObjectGuid) -> Result<()> {
        self.edit_user(guid, |u| u.consistency_guid = Some(value))
            .map(|_| ())
    }

    async fn password_policy(&self) -> Result<PasswordPolicy> {
        Ok(self.lock()?.policy)
    }

    async fn topology(&self) -> Result<Topology> {
        Ok(self.lock()?.topology.clone())
    }
}

#[cfg(test)]
mod tests;
