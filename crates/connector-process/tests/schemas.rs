//! The protocol's JSON Schemas (`docs/connector-protocol/*.schema.json`) hold the messages: the
//! examples of `docs/connector-protocol.md`, and every line idsync and a real program exchange
//! (recorded by `tests/programs/record.py`), are valid against the schema their `type` names.
//!
//! The validator here covers exactly the keywords the schemas use and refuses any other, so a
//! schema cannot say more than is checked.

use idsync_connector_process::ProcessConnector;
use idsync_connectors::{Connector, ExportItem, ExportOp, ExportResult, ImportChange, ImportSink};
use idsync_model::{Attributes, ConnectorId, CsEntry, CsId, Dn, ObjectTypeName, Value};
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn schemas() -> BTreeMap<String, Json> {
    let dir = repo().join("docs/connector-protocol");
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_str().unwrap().to_owned();
        let Some(kind) = name.strip_suffix(".schema.json") else {
            continue;
        };
        let s: Json = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(s["properties"]["type"]["const"], kind, "{name}");
        out.insert(kind.to_owned(), s);
    }
    assert_eq!(out.len(), 10, "{:?}", out.keys());
    out
}

/// Errors of `v` against `schema` (`root` resolves `#/$defs/...`).
fn validate(root: &Json, schema: &Json, v: &Json, at: &str, errors: &mut Vec<String>) {
    let Json::Object(s) = schema else {
        panic!("{at}: a schema is an object")
    };
    for (k, kw) in s {
        match k.as_str() {
            "$schema" | "$id" | "title" | "description" | "$defs" => {}
            "then" => {} // with "if"
            "$ref" => {
                let path = kw.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
                validate(root, &root["$defs"][path], v, at, errors);
            }
            "type" => {
                let types: Vec<&str> = match kw {
                    Json::String(t) => vec![t.as_str()],
                    Json::Array(ts) => ts.iter().map(|t| t.as_str().unwrap()).collect(),
                    _ => panic!("type"),
                };
                let ok = types.iter().any(|t| match *t {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "integer" => v.is_i64() || v.is_u64(),
                    "boolean" => v.is_boolean(),
                    "null" => v.is_null(),
                    other => panic!("type {other}"),
                });
                if !ok {
                    errors.push(format!("{at}: not of type {types:?}: {v}"));
                }
            }
            "const" => {
                if v != kw {
                    errors.push(format!("{at}: is not {kw}"));
                }
            }
            "enum" => {
                if !kw.as_array().unwrap().contains(v) {
                    errors.push(format!("{at}: {v} is not one of {kw}"));
                }
            }
            "minLength" => {
                if v.as_str()
                    .is_some_and(|t| (t.len() as u64) < kw.as_u64().unwrap())
                {
                    errors.push(format!("{at}: too short"));
                }
            }
            "minItems" => {
                if v.as_array()
                    .is_some_and(|a| (a.len() as u64) < kw.as_u64().unwrap())
                {
                    errors.push(format!("{at}: too few items"));
                }
            }
            "required" => {
                if let Some(o) = v.as_object() {
                    for r in kw.as_array().unwrap() {
                        if !o.contains_key(r.as_str().unwrap()) {
                            errors.push(format!("{at}: `{}` is missing", r.as_str().unwrap()));
                        }
                    }
                }
            }
            "properties" => {
                if let Some(o) = v.as_object() {
                    for (name, sub) in kw.as_object().unwrap() {
                        if let Some(x) = o.get(name) {
                            validate(root, sub, x, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "additionalProperties" => {
                if let Some(o) = v.as_object() {
                    let declared = s.get("properties").and_then(Json::as_object);
                    for (name, x) in o {
                        if declared.is_none_or(|d| !d.contains_key(name)) {
                            validate(root, kw, x, &format!("{at}.{name}"), errors);
                        }
                    }
                }
            }
            "items" => {
                if let Some(a) = v.as_array() {
                    for (i, x) in a.iter().enumerate() {
                        validate(root, kw, x, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            "oneOf" | "anyOf" | "allOf" => {
                let passing = kw
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| {
                        let mut e = Vec::new();
                        validate(root, sub, v, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                let n = kw.as_array().unwrap().len();
                let ok = match k.as_str() {
                    "oneOf" => passing == 1,
                    "anyOf" => passing >= 1,
                    _ => passing == n,
                };
                if !ok {
                    errors.push(format!("{at}: {k} holds for {passing} of {n}: {v}"));
                }
            }
            "if" => {
                let mut e = Vec::new();
                validate(root, kw, v, at, &mut e);
                if e.is_empty() {
                    if let Some(then) = s.get("then") {
                        validate(root, then, v, at, errors);
                    }
                }
            }
            other => panic!("{at}: the schemas use `{other}`, which this validator does not check"),
        }
    }
}

fn check(schemas: &BTreeMap<String, Json>, line: &str) -> Result<String, Vec<String>> {
    let v: Json = serde_json::from_str(line).map_err(|e| vec![format!("not JSON: {e}")])?;
    let kind = v["type"]
        .as_str()
        .ok_or_else(|| vec!["no `type`".to_owned()])?;
    let schema = schemas
        .get(kind)
        .ok_or_else(|| vec![format!("no schema for `{kind}`")])?;
    let mut errors = Vec::new();
    validate(schema, schema, &v, kind, &mut errors);
    if errors.is_empty() {
        Ok(kind.to_owned())
    } else {
        Err(errors)
    }
}

#[test]
fn the_documented_examples_hold_to_the_schemas_and_cover_every_message() {
    let schemas = schemas();
    let doc = std::fs::read_to_string(repo().join("docs/connector-protocol.md")).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let mut in_json = false;
    for (i, line) in doc.lines().enumerate() {
        match line.trim() {
            "```json" => in_json = true,
            "```" => in_json = false,
            l if in_json && !l.is_empty() => match check(&schemas, l) {
                Ok(kind) => {
                    seen.insert(kind);
                }
                Err(e) => panic!("docs/connector-protocol.md:{}: {e:?}", i + 1),
            },
            _ => {}
        }
    }
    let all: std::collections::BTreeSet<String> = schemas.keys().cloned().collect();
    assert_eq!(seen, all, "every message has an example");
}

#[test]
fn the_schemas_refuse_what_is_not_the_protocol() {
    let schemas = schemas();
    for bad in [
        r#"{"not":"protocol"}"#,
        r#"{"type":"object","object_type":"person"}"#,
        r#"{"type":"object","anchor":"a","object_type":"person","attributes":{"x":[1.5]}}"#,
        r#"{"type":"object","anchor":"a","object_type":"person","attributes":{"x":{"y":1}}}"#,
        r#"{"type":"result","ref":"r","status":"maybe"}"#,
        r#"{"type":"result","ref":"r","status":"refused"}"#,
        r#"{"type":"change","op":"rename","anchor":"a"}"#,
        r#"{"type":"change","op":"modify","anchor":"a","changes":[{"attribute":"x","replace":[],"add":[]}]}"#,
        r#"{"type":"ready","protocol":2,"capabilities":{}}"#,
        r#"{"type":"ready","protocol":1,"capabilities":{},"attribute_types":{"x":"float"}}"#,
    ] {
        assert!(check(&schemas, bad).is_err(), "{bad} passed");
    }
}

struct Sink(usize);
impl ImportSink for Sink {
    fn entry(&mut self, _: CsEntry) -> Result<(), String> {
        self.0 += 1;
        Ok(())
    }
    fn change(&mut self, _: ImportChange) -> Result<(), String> {
        self.0 += 1;
        Ok(())
    }
    fn object_error(&mut self, place: String, message: String) {
        panic!("{place}: {message}");
    }
}

/// Drives a program through a full import, a delta import and an export while `record.py`
/// writes down the conversation; every line must hold to its schema.
fn recorded_session(
    settings: &str,
    program: &[&str],
    cwd: &Path,
) -> (Vec<String>, Vec<ExportResult>) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("conversation");
    let recorder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs/record.py");
    let mut command = vec![
        "python3".to_owned(),
        recorder.display().to_string(),
        record.display().to_string(),
    ];
    command.extend(program.iter().map(|s| s.to_string()));
    let text = format!("command = {}\n{settings}", toml::Value::from(command));
    let t: toml::Table = toml::from_str(&text).unwrap();
    let mut c = ProcessConnector::new(ConnectorId::new("rec"), &t, cwd).unwrap();
    c.full_import(&mut Sink(0)).unwrap();
    let w = c.watermark_after_full_import().unwrap();
    c.delta_import(w.as_deref(), &mut Sink(0)).unwrap();
    let mut attrs = Attributes::new();
    attrs.set("displayName", vec![Value::String("Zoe Quinn".into())]);
    attrs.set("employeeNumber", vec![Value::String("E9999".into())]);
    let batch = [ExportItem {
        cs_id: CsId::new("cs-zoe"),
        anchor: None,
        dn: Dn::new("zoe"),
        object_type: ObjectTypeName::new("person"),
        op: ExportOp::Add {
            object_classes: vec![],
            attributes: attrs,
        },
    }];
    // The same add twice: the second is the re-send after a crash.
    let mut results = c.export(&batch).unwrap();
    results.extend(c.export(&batch).unwrap());
    c.close();
    let lines: Vec<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let schemas = schemas();
    for l in &lines {
        let msg = l.get(2..).unwrap();
        if let Err(e) = check(&schemas, msg) {
            panic!("{msg}: {e:?}");
        }
    }
    (lines, results)
}

#[test]
fn what_idsync_and_the_scripted_program_exchange_holds_to_the_schemas() {
    std::env::set_var("IDSYNC_TEST_SCHEMA_TOKEN", "s3cret");
    let programs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/programs");
    let (lines, _) = recorded_session(
        r#"api_token = "env:IDSYNC_TEST_SCHEMA_TOKEN"
[settings]
objects = [ { anchor = "e1", id = "alice", object_type = "person", attributes = { photo = "aGk=", mail = ["a@x", "b@x"] } } ]
changes = [ { op = "modify", anchor = "e1", id = "alice", changes = [ { attribute = "mail", add = ["c@x"] } ] }, { op = "delete", anchor = "e1" } ]
"#,
        &["python3", "scripted.py"],
        &programs,
    );
    for kind in [
        "hello",
        "ready",
        "full_import",
        "object",
        "end",
        "delta_import",
        "change",
        "export",
        "result",
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("\"type\":\"{kind}\""))
                    || l.contains(&format!("\"type\": \"{kind}\""))),
            "no `{kind}` in {lines:#?}"
        );
    }
}

/// The Python example against its HR service: what it says holds to the schemas, and the
/// re-sent add is answered `exists` with the anchor of the first.
#[test]
fn what_idsync_and_the_python_hr_example_exchange_holds_to_the_schemas() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hr.token"), "t0ken\n").unwrap();
    let employees: serde_json::Map<String, Json> = (1..=5)
        .map(|i| {
            (
                format!("E{}", 1000 + i),
                serde_json::json!({"account": format!("user{i}"), "displayName": format!("User {i}"),
                    "hired": "2020-01-01T00:00:00Z", "photo": "aGk="}),
            )
        })
        .collect();
    std::fs::write(
        dir.path().join("hr.json"),
        serde_json::json!({ "employees": employees }).to_string(),
    )
    .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let example = repo().join("examples/connectors/hr-python");
    let mut service = std::process::Command::new("python3")
        .arg(example.join("hr_service.py"))
        .args([
            "--port",
            &port.to_string(),
            "--data",
            "hr.json",
            "--token-file",
            "hr.token",
        ])
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed().as_secs() < 20, "the HR service did not listen");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let connector = example.join("hr_connector.py").display().to_string();
    let (lines, results) = recorded_session(
        &format!(
            "api_token = \"file:hr.token\"\n[settings]\nbase_url = \"http://127.0.0.1:{port}\"\npage_size = 2\n"
        ),
        &["python3", &connector],
        dir.path(),
    );
    let _ = service.kill();
    let _ = service.wait();
    let objects = lines
        .iter()
        .filter(|l| l.contains("\"type\":\"object\""))
        .count();
    assert_eq!(objects, 5, "{lines:#?}");
    match (&results[0], &results[1]) {
        (ExportResult::Applied { anchor: Some(a) }, ExportResult::Applied { anchor: Some(b) }) => {
            assert_eq!(a, b)
        }
        other => panic!("{other:?}"),
    }
    assert!(
        lines.iter().any(|l| l.contains("\"status\":\"exists\"")),
        "{lines:#?}"
    );
}
