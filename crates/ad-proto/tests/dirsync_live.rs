//! DirSync against a real Samba AD DC: a first read returns everything, a read with the cookie
//! only what changed since, with group member changes as incremental values.

use idsync_ad_proto::*;
use idsync_testbed::SambaDc;
use ldap3::{LdapConn, Scope, SearchEntry};

fn dirsync(conn: &mut LdapConn, base: &str, cookie: &[u8]) -> (Vec<SearchEntry>, DirSyncResponse) {
    let ctrl = dirsync_request(
        DIRSYNC_OBJECT_SECURITY | DIRSYNC_INCREMENTAL_VALUES,
        1 << 20,
        cookie,
    );
    let res = conn
        .with_controls(vec![ctrl])
        .search(
            base,
            Scope::Subtree,
            "(|(objectClass=user)(objectClass=group))",
            vec!["*"],
        )
        .unwrap();
    let (entries, result) = res.success().expect("dirsync search succeeds");
    let resp = result
        .ctrls
        .iter()
        .find(|c| c.1.ctype == DIRSYNC_OID)
        .and_then(|c| c.1.val.as_deref())
        .and_then(parse_dirsync_response)
        .expect("a dirsync response control");
    (
        entries.into_iter().map(SearchEntry::construct).collect(),
        resp,
    )
}

#[test]
fn dirsync_returns_only_changes_with_incremental_members() {
    let dc = SambaDc::start().expect("samba starts");
    let mut conn = LdapConn::new(&dc.url()).unwrap();
    conn.simple_bind(&dc.bind_dn(), idsync_testbed::samba::ADMIN_PASSWORD)
        .unwrap()
        .success()
        .unwrap();
    let base = dc.base_dn();
    let mut cookie = Vec::new();
    loop {
        let (_, r) = dirsync(&mut conn, base, &cookie);
        cookie = r.cookie;
        if !r.more {
            break;
        }
    }
    dc.modify(&format!(
        "dn: CN=Ann Example,CN=Users,{base}\nchangetype: add\nobjectClass: user\nsAMAccountName: ann\ndisplayName: Ann\n\ndn: CN=team1,CN=Users,{base}\nchangetype: add\nobjectClass: group\nsAMAccountName: team1\n\ndn: CN=team1,CN=Users,{base}\nchangetype: modify\nadd: member\nmember: CN=Ann Example,CN=Users,{base}\n-\n"
    ))
    .unwrap();
    let (entries, r) = dirsync(&mut conn, base, &cookie);
    let names: Vec<&str> = entries.iter().map(|e| e.dn.as_str()).collect();
    assert!(
        names.iter().any(|d| d.starts_with("CN=Ann Example")),
        "{names:?}"
    );
    let group = entries
        .iter()
        .find(|e| e.dn.starts_with("CN=team1"))
        .expect("the group changed");
    assert!(
        group
            .attrs
            .keys()
            .any(|k| incremental(k) == Some(("member".into(), Incremental::Added))),
        "{:?}",
        group.attrs.keys().collect::<Vec<_>>()
    );
    let guid = entries[0]
        .bin_attrs
        .get("objectGUID")
        .expect("objectGUID comes with every change");
    assert!(guid_text(&guid[0]).is_some());
    cookie = r.cookie;

    // A member removed and the user disabled: only those come back.
    dc.modify(&format!(
        "dn: CN=team1,CN=Users,{base}\nchangetype: modify\ndelete: member\nmember: CN=Ann Example,CN=Users,{base}\n-\n\ndn: CN=Ann Example,CN=Users,{base}\nchangetype: modify\nreplace: userAccountControl\nuserAccountControl: 514\n-\n"
    ))
    .unwrap();
    let (entries, _) = dirsync(&mut conn, base, &cookie);
    let group = entries
        .iter()
        .find(|e| e.dn.starts_with("CN=team1"))
        .expect("the group changed");
    assert!(
        group
            .attrs
            .keys()
            .any(|k| incremental(k) == Some(("member".into(), Incremental::Removed))),
        "{:?}",
        group.attrs
    );
    let ann = entries
        .iter()
        .find(|e| e.dn.starts_with("CN=Ann"))
        .expect("ann changed");
    assert_eq!(
        ann.attrs
            .get("userAccountControl")
            .and_then(|v| uac_disabled(&v[0])),
        Some(true)
    );
    // Only the changed attribute (and the identifiers DirSync always adds) come back.
    assert!(!ann.attrs.contains_key("displayName"), "{:?}", ann.attrs);
}
