//! The profile store's connector against the real profile store (`idsync serve`): a reference
//! to a user by `userName` finds that user however it is spelled in case, with the same Unicode
//! case folding the profile store compares user names with (`idsync_model::fold`).

use idsync_connector_profile_store::ProfileStoreConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult};
use idsync_model::{Attributes, ConnectorId, CsId, Dn, ObjectTypeName, Reference, Value};

mod support;
use support::*;

fn add(name: &str, manager: Option<&str>) -> ExportItem {
    let mut a = Attributes::new();
    a.push("displayName", Value::String(name.to_owned()));
    if let Some(m) = manager {
        a.push("manager", Value::Reference(Reference::Dn(Dn::new(m))));
    }
    ExportItem {
        cs_id: CsId::new(format!("cs-{name}")),
        anchor: None,
        dn: Dn::new(name),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Add {
            object_classes: vec![],
            attributes: a,
        },
    }
}

fn applied_id(r: &ExportResult) -> String {
    match r {
        ExportResult::Applied { anchor: Some(a) } => a.as_str().to_owned(),
        other => panic!("not applied with an id: {other:?}"),
    }
}

fn manager_of(api: &Api, token: &str, user_name: &str) -> Option<String> {
    api.user(token, user_name)["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]
        ["manager"]["value"]
        .as_str()
        .map(str::to_owned)
}

#[test]
fn a_manager_named_in_another_unicode_case_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let db = dir.join("profiles.db");
    let engine_token = token(&db, &["--engine"]);
    std::fs::write(dir.join("engine.token"), format!("{engine_token}\n")).unwrap();
    let port = free_port();
    let _server = serve(&db, port);
    let api = Api::new(port);
    let settings: toml::Table = toml::from_str(&format!(
        "url = \"http://127.0.0.1:{port}\"\ntoken = \"file:engine.token\"\n"
    ))
    .unwrap();
    let connector =
        || ProfileStoreConnector::new(ConnectorId::new("profiles"), &settings, dir).unwrap();

    // In one batch: the manager created as `Ärger`, a report naming them `ärger`.
    let r = connector()
        .export(&[add("Ärger", None), add("ben", Some("ärger"))])
        .unwrap();
    let manager = applied_id(&r[0]);
    applied_id(&r[1]);
    assert_eq!(
        manager_of(&api, &engine_token, "ben").as_deref(),
        Some(manager.as_str())
    );

    // In a later batch, by a connector that has to look the name up (`userName eq "ÄRGER"`
    // answers `Ärger`): the answer is the user the reference names.
    let r = connector().export(&[add("carl", Some("ÄRGER"))]).unwrap();
    applied_id(&r[0]);
    assert_eq!(
        manager_of(&api, &engine_token, "carl").as_deref(),
        Some(manager.as_str())
    );

    // And by one that has just made it (its cache holds `Ärger` as the service spells it).
    let mut c = connector();
    let r = c.export(&[add("Öse", None)]).unwrap();
    let öse = applied_id(&r[0]);
    let r = c.export(&[add("dora", Some("öse"))]).unwrap();
    applied_id(&r[0]);
    assert_eq!(
        manager_of(&api, &engine_token, "dora").as_deref(),
        Some(öse.as_str())
    );
}
