//! The profile store service over real HTTP on a free loopback port: the scim2-cli compliance
//! run, the authorization matrix, bad input, filters/sorting/paging, PATCH, ETags, photos and
//! the change feed.

use idsync_profile_store::{
    create_token, schema::Schemas, serve, Config, ServeOptions, Server, SqliteStorage, TokenKind,
};
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::sync::Arc;

struct Fixture {
    server: Server,
    _dir: tempfile::TempDir,
    engine: String,
    http: Client,
}

const SCIM: &str = "application/scim+json";
const PROFILE: &str = "urn:idsync:params:scim:schemas:extension:profile:2.0:User";

impl Fixture {
    fn new() -> Fixture {
        Fixture::on(tempfile::tempdir().unwrap())
    }

    /// The service on `dir/profiles.db`, which may exist already.
    fn on(dir: tempfile::TempDir) -> Fixture {
        let db = dir.path().join("profiles.db");
        let server = serve(ServeOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            db: db.clone(),
            config: Config::default(),
        })
        .expect("the profile store starts");
        let engine = Fixture::token_in(&db, TokenKind::Engine);
        Fixture {
            server,
            _dir: dir,
            engine,
            http: Client::new(),
        }
    }

    /// Stops the service and hands its directory back.
    fn into_dir(self) -> tempfile::TempDir {
        self.server.stop();
        self._dir
    }

    fn token_in(db: &std::path::Path, kind: TokenKind) -> String {
        let schemas = Schemas::new(&Config::default().property).unwrap();
        let s = SqliteStorage::open(db, Arc::new(schemas)).unwrap();
        create_token(&s, kind, "test").unwrap().0
    }

    fn person(&self, user_name: &str) -> String {
        Fixture::token_in(
            &self._dir.path().join("profiles.db"),
            TokenKind::User(user_name.into()),
        )
    }

    /// The profile store's database, opened beside the service.
    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self._dir.path().join("profiles.db")).unwrap()
    }

    /// The stored sizes of a user's small, medium and large thumbnails.
    fn thumbnail_lengths(&self, id: &str) -> [i64; 3] {
        self.db()
            .query_row(
                "SELECT length(small), length(medium), length(large) FROM photo WHERE user_id = ?1",
                [id],
                |r| Ok([r.get(0)?, r.get(1)?, r.get(2)?]),
            )
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("/changes") {
            format!("http://{}{path}", self.server.addr)
        } else {
            format!("{}{path}", self.server.scim_url())
        }
    }

    fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> Response {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut r = self.http.request(m, self.url(path));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        if let Some(b) = body {
            r = r.header("content-type", SCIM).body(b.to_string());
        }
        r.send().unwrap()
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let r = self.send(method, path, Some(&self.engine), body);
        let status = r.status();
        let text = r.text().unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        }
    }

    fn user(&self, name: &str, extra: Value) -> Value {
        let mut body =
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        self.ok("POST", "/Users", Some(body))
    }
}

fn expect_error(r: Response, status: u16, scim_type: Option<&str>) -> Value {
    assert_eq!(r.status().as_u16(), status, "status");
    let ct = r
        .headers()
        .get("content-type")
        .map(|h| h.to_str().unwrap().to_string());
    assert_eq!(ct.as_deref(), Some(SCIM));
    let v: Value = r.json().unwrap();
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(v["status"], status.to_string());
    if let Some(t) = scim_type {
        assert_eq!(v["scimType"], t, "{v}");
    }
    v
}

fn venv_scim2() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        std::env::var("IDSYNC_PY_VENV")
            .ok()
            .map(std::path::PathBuf::from),
        Some(root.join("target/py-venv")),
    ];
    for c in candidates.into_iter().flatten() {
        let bin = c.join("bin/scim2");
        if bin.exists() {
            return bin;
        }
    }
    panic!("scim2-cli is missing: run scripts/test (it creates target/py-venv with `pip install scim2-server scim2-cli`)");
}

/// Checks the RFC 7644 `add` rule does not satisfy: after adding the whole profile extension
/// (which adds `skills`), the tester adds `skills` again on the same resource and expects the
/// list to equal only the new value, where RFC 7644 3.5.2.1 says a value "is added" to a
/// multi-valued attribute. See docs/profile-store-api.md.
const KNOWN_DISAGREEMENTS: [&str; 2] = [
    "urn:idsync:params:scim:schemas:extension:profile:2.0:User:skills",
    "urn:idsync:params:scim:schemas:extension:profile:2.0:User:interests",
];

#[test]
fn scim2_cli_compliance() {
    let f = Fixture::new();
    let out = std::process::Command::new(venv_scim2())
        .args([
            "--url",
            &f.server.scim_url(),
            "-h",
            &format!("Authorization: Bearer {}", f.engine),
            "test",
        ])
        .output()
        .expect("scim2 runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = text.lines().collect();
    let successes = lines.iter().filter(|l| l.starts_with("SUCCESS")).count();
    let mut failures = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with("ERROR") || l.starts_with("CRITICAL") || l.starts_with("FAIL") {
            let detail = lines.get(i + 1).copied().unwrap_or("");
            if !KNOWN_DISAGREEMENTS
                .iter()
                .any(|k| detail.contains(&format!("'{k}'")))
            {
                failures.push(format!("{l}: {detail}"));
            }
        }
    }
    assert!(
        successes >= 100,
        "too few checks ran ({successes}):\n{text}"
    );
    assert!(
        failures.is_empty(),
        "scim2-cli failures:\n{}\n\nfull output:\n{text}",
        failures.join("\n")
    );
}

#[test]
fn authorization_matrix() {
    let f = Fixture::new();
    let alice = f.user("alice", json!({PROFILE: {"aboutMe": "hi", "office": "B1"}}));
    let bob = f.user("bob", json!({}));
    let (a, b) = (alice["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    let alice_t = f.person("alice");
    let before = f.ok("GET", &format!("/Users/{b}"), None);

    // Anonymous and wrong tokens: 401, on data and on the feed.
    expect_error(f.send("GET", "/Users", None, None), 401, None);
    expect_error(
        f.send("GET", &format!("/Users/{a}"), Some("ids_wrong"), None),
        401,
        None,
    );
    expect_error(f.send("GET", "/changes", None, None), 401, None);
    expect_error(
        f.send("PUT", &format!("/Users/{a}/photo"), None, None),
        401,
        None,
    );

    // A person reads profiles...
    assert_eq!(
        f.send("GET", &format!("/Users/{b}"), Some(&alice_t), None)
            .status(),
        200
    );
    // ...but may not edit someone else's profile or photo, create, delete, bulk or read the feed.
    let edit = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": format!("{PROFILE}:aboutMe"), "value": "pwned"}]});
    expect_error(
        f.send(
            "PATCH",
            &format!("/Users/{b}"),
            Some(&alice_t),
            Some(edit.clone()),
        ),
        403,
        None,
    );
    let png = tiny_png(4, 4);
    let r = f
        .http
        .put(f.url(&format!("/Users/{b}/photo")))
        .bearer_auth(&alice_t)
        .body(png.clone())
        .send()
        .unwrap();
    expect_error(r, 403, None);
    expect_error(
        f.send("DELETE", &format!("/Users/{b}"), Some(&alice_t), None),
        403,
        None,
    );
    expect_error(
        f.send(
            "POST",
            "/Users",
            Some(&alice_t),
            Some(json!({"userName": "mallory"})),
        ),
        403,
        None,
    );
    expect_error(f.send("GET", "/changes", Some(&alice_t), None), 403, None);
    expect_error(
        f.send(
            "POST",
            "/Bulk",
            Some(&alice_t),
            Some(json!({"Operations": []})),
        ),
        403,
        None,
    );
    // A person editing a non-editable property (or a core attribute) of their own profile.
    let office = json!({"Operations": [{"op": "replace", "path": format!("{PROFILE}:office"), "value": "X"}]});
    let v = expect_error(
        f.send(
            "PATCH",
            &format!("/Users/{a}"),
            Some(&alice_t),
            Some(office),
        ),
        403,
        None,
    );
    assert!(v["detail"].as_str().unwrap().contains("office"));
    assert!(!v["detail"].as_str().unwrap().contains("urn:"), "{v}");
    // An engine-owned attribute of the enterprise extension is named, not its extension.
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for (path, value) in [
        (format!("{ent}:employeeNumber"), json!("666")),
        (format!("{ent}:manager"), json!({"value": "someone"})),
    ] {
        let attr = path.rsplit(':').next().unwrap().to_string();
        let op = json!({"Operations": [{"op": "replace", "path": path, "value": value}]});
        let v = expect_error(
            f.send("PATCH", &format!("/Users/{a}"), Some(&alice_t), Some(op)),
            403,
            None,
        );
        assert_eq!(
            v["detail"].as_str().unwrap(),
            format!("`{attr}` is not user-editable"),
            "{v}"
        );
    }
    let title = json!({"Operations": [{"op": "replace", "path": "title", "value": "CEO"}]});
    expect_error(
        f.send("PATCH", &format!("/Users/{a}"), Some(&alice_t), Some(title)),
        403,
        None,
    );
    let mut put = f.ok("GET", &format!("/Users/{a}"), None);
    put["userName"] = json!("alice2");
    expect_error(
        f.send("PUT", &format!("/Users/{a}"), Some(&alice_t), Some(put)),
        403,
        None,
    );
    // Nothing changed.
    assert_eq!(f.ok("GET", &format!("/Users/{b}"), None), before);
    let now = f.ok("GET", &format!("/Users/{a}"), None);
    assert_eq!(now["userName"], "alice");
    assert_eq!(now[PROFILE]["office"], "B1");
    assert!(now.get("title").is_none());
    assert_eq!(
        f.send("GET", &format!("/Users/{b}/photo"), Some(&f.engine), None)
            .status(),
        404
    );

    // What a person may do: their own editable properties and photo.
    let r = f.send("PATCH", &format!("/Users/{a}"), Some(&alice_t), Some(edit));
    assert_eq!(r.status(), 200);
    let r = f
        .http
        .put(f.url(&format!("/Users/{a}/photo")))
        .bearer_auth(&alice_t)
        .body(png)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let now = f.ok("GET", &format!("/Users/{a}"), None);
    assert_eq!(now[PROFILE]["aboutMe"], "pwned");
    assert!(now[PROFILE]["photoHash"].is_string());
}

fn tiny_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7) as u8, (y * 5) as u8, 90]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

/// A valid PNG whose header declares `w`x`h` (the pixel data is a tiny, wrong-sized stream).
fn bomb_png(w: u32, h: u32) -> Vec<u8> {
    let mut png = tiny_png(1, 1);
    // IHDR data starts at byte 16: width, height (big-endian); then fix the CRC.
    png[16..20].copy_from_slice(&w.to_be_bytes());
    png[20..24].copy_from_slice(&h.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// A JPEG of `w`x`h` with detail enough that its scan data is most of the file.
fn jpeg(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = x
            .wrapping_mul(2_654_435_761)
            .wrapping_add(y.wrapping_mul(40_503));
        image::Rgb([(n >> 3) as u8, (x * 3 + y) as u8, (n >> 11) as u8])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

#[test]
fn a_truncated_or_corrupt_jpeg_is_refused_and_nothing_is_stored() {
    let f = Fixture::new();
    let id = f.user("jo", json!({}))["id"].as_str().unwrap().to_string();
    let put_photo = |body: Vec<u8>| {
        f.http
            .put(f.url(&format!("/Users/{id}/photo")))
            .bearer_auth(&f.engine)
            .body(body)
            .send()
            .unwrap()
    };
    let good = jpeg(320, 240);
    // The scan data starts after the start-of-scan segment and ends at the end-of-image marker.
    let sos = good.windows(2).position(|m| m == [0xff, 0xda]).unwrap();
    let scan_start = sos + 2 + usize::from(u16::from_be_bytes([good[sos + 2], good[sos + 3]]));
    let scan_end = good.len() - 2;
    assert_eq!(&good[scan_end..], &[0xff, 0xd9]);
    for cut in [
        scan_start + 16,
        scan_start + (scan_end - scan_start) / 2,
        scan_end - 64,
    ] {
        let v = expect_error(put_photo(good[..cut].to_vec()), 400, Some("invalidValue"));
        assert!(
            v["detail"].as_str().unwrap().contains("cannot be decoded"),
            "cut at {cut} of {}: {v}",
            good.len()
        );
    }
    // A marker where scan data should be.
    let mut corrupt = good.clone();
    let middle = scan_start + (scan_end - scan_start) / 2;
    corrupt[middle..middle + 2].copy_from_slice(&[0xff, 0xc4]);
    expect_error(put_photo(corrupt), 400, Some("invalidValue"));
    let now = f.ok("GET", &format!("/Users/{id}"), None);
    assert!(now.get("photos").is_none(), "nothing stored: {now}");
    // The whole JPEG, and a grey one, are taken.
    assert_eq!(put_photo(good).status(), 200);
    let grey = image::GrayImage::from_fn(64, 48, |x, y| image::Luma([(x + y) as u8]));
    let mut grey_jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut grey_jpeg, 90)
        .encode_image(&grey)
        .unwrap();
    assert_eq!(put_photo(grey_jpeg).status(), 200);
    let r = f
        .http
        .get(f.url(&format!("/Users/{id}/photo?size=small")))
        .bearer_auth(&f.engine)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    let f = Fixture::new();
    let u = f.user("carol", json!({"title": "Dr"}));
    let id = u["id"].as_str().unwrap();
    let cursor = f.ok("GET", "/changes/latest", None)["cursor"].clone();
    let put_photo = |body: Vec<u8>| {
        f.http
            .put(f.url(&format!("/Users/{id}/photo")))
            .bearer_auth(&f.engine)
            .body(body)
            .send()
            .unwrap()
    };

    let r = f
        .http
        .post(f.url("/Users"))
        .bearer_auth(&f.engine)
        .header("content-type", SCIM)
        .body("{\"userName\": ")
        .send()
        .unwrap();
    let v = expect_error(r, 400, Some("invalidSyntax"));
    assert!(v["detail"].as_str().unwrap().contains("line 1"), "{v}");
    expect_error(
        f.send("GET", "/Users?filter=userName%20eq", Some(&f.engine), None),
        400,
        Some("invalidFilter"),
    );
    expect_error(
        f.send(
            "GET",
            "/Users?filter=shoeSize%20eq%203",
            Some(&f.engine),
            None,
        ),
        400,
        Some("invalidFilter"),
    );
    let v = expect_error(
        f.send(
            "POST",
            "/Users",
            Some(&f.engine),
            Some(json!({"userName": "x", "shoeSize": 44})),
        ),
        400,
        Some("invalidSyntax"),
    );
    assert!(v["detail"].as_str().unwrap().contains("shoeSize"));
    let r = f
        .http
        .post(f.url("/Users"))
        .bearer_auth(&f.engine)
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .unwrap();
    expect_error(r, 415, None);
    // 50 MB upload: refused before it is read whole. The service answers 413 and closes the
    // connection while the client may still be sending: the client then sees the connection
    // closed (broken pipe, reset) before it reads the answer. Either way nothing is stored
    // (checked below with the change feed) and the service goes on serving.
    let big = f
        .http
        .put(f.url(&format!("/Users/{id}/photo")))
        .bearer_auth(&f.engine)
        .body(vec![0xff; 50 * 1024 * 1024])
        .send();
    match big {
        Ok(r) => {
            expect_error(r, 413, None);
        }
        Err(e) => {
            let text = format!("{e:?}");
            assert!(
                text.contains("BrokenPipe") || text.contains("ConnectionReset"),
                "the 50 MB upload failed otherwise than by the service closing: {text}"
            );
        }
    }
    // A decompression bomb: a small PNG declaring 100000x100000 pixels.
    let v = expect_error(
        put_photo(bomb_png(100_000, 100_000)),
        400,
        Some("invalidValue"),
    );
    assert!(v["detail"].as_str().unwrap().contains("too large"), "{v}");
    // Bytes that are not an image, even when they say they are.
    let r = f
        .http
        .put(f.url(&format!("/Users/{id}/photo")))
        .bearer_auth(&f.engine)
        .header("content-type", "image/jpeg")
        .body(b"GIF89a but not really".to_vec())
        .send()
        .unwrap();
    expect_error(r, 400, Some("invalidValue"));
    expect_error(put_photo(b"hello".to_vec()), 400, Some("invalidValue"));
    // PATCH on a missing path and on an unknown one.
    let p = json!({"Operations": [{"op": "remove", "path": "emails[type eq \"work\"]"}]});
    expect_error(
        f.send("PATCH", &format!("/Users/{id}"), Some(&f.engine), Some(p)),
        400,
        Some("noTarget"),
    );
    let p = json!({"Operations": [{"op": "replace", "path": "nosuch.thing", "value": 1}]});
    expect_error(
        f.send("PATCH", &format!("/Users/{id}"), Some(&f.engine), Some(p)),
        400,
        Some("invalidPath"),
    );
    // A PATCH whose second operation fails changes nothing.
    let p = json!({"Operations": [{"op": "replace", "path": "title", "value": "Prof"}, {"op": "replace", "path": "active", "value": "maybe"}]});
    expect_error(
        f.send("PATCH", &format!("/Users/{id}"), Some(&f.engine), Some(p)),
        400,
        Some("invalidValue"),
    );
    expect_error(
        f.send("GET", "/changes?since=banana", Some(&f.engine), None),
        400,
        None,
    );
    expect_error(
        f.send("GET", "/changes?since=999999", Some(&f.engine), None),
        400,
        None,
    );
    expect_error(
        f.send("GET", "/Users/nope", Some(&f.engine), None),
        404,
        None,
    );
    expect_error(
        f.send("GET", "/nothing/here", Some(&f.engine), None),
        404,
        None,
    );
    expect_error(
        f.send(
            "POST",
            "/Users",
            Some(&f.engine),
            Some(json!({"userName": "CAROL"})),
        ),
        409,
        Some("uniqueness"),
    );

    // Nothing stored, and the service keeps serving.
    let now = f.ok("GET", &format!("/Users/{id}"), None);
    assert_eq!(now["title"], "Dr");
    assert_eq!(now["meta"]["version"], u["meta"]["version"]);
    assert!(now.get("photos").is_none());
    assert_eq!(f.ok("GET", "/Users", None)["totalResults"], 1);
    assert_eq!(f.ok("GET", "/changes/latest", None)["cursor"], cursor);
}

#[test]
fn filters_sorting_and_paging() {
    let f = Fixture::new();
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    for (i, (name, dept, mail_type)) in [
        ("ann", "Sales", "work"),
        ("Ben", "IT", "home"),
        ("cat", "IT", "work"),
        ("dan", "HR", "work"),
    ]
    .iter()
    .enumerate()
    {
        f.user(
            name,
            json!({"externalId": format!("e{i}"), "active": i % 2 == 0, "emails": [{"value": format!("{name}@example.com"), "type": mail_type}], ent: {"department": dept, "employeeNumber": format!("{}", 100 + i)}, PROFILE: {"skills": ["rust", format!("s{i}")]}}),
        );
    }
    let names = |q: &str| -> Vec<String> {
        let v = f.ok("GET", &format!("/Users?{q}"), None);
        v["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap().to_string())
            .collect()
    };
    let enc = |s: &str| {
        s.replace(' ', "%20")
            .replace('"', "%22")
            .replace('[', "%5B")
            .replace(']', "%5D")
    };
    assert_eq!(
        names(&format!("filter={}", enc("userName eq \"BEN\""))),
        ["Ben"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc("userName sw \"b\" or userName ew \"N\"")
        )),
        ["ann", "Ben", "dan"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc(&format!(
                "{ent}:department eq \"IT\" and not (active eq true)"
            ))
        )),
        ["Ben"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc("emails[type eq \"work\" and value co \"a\"]")
        )),
        ["ann", "cat", "dan"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc("emails.value ew \"n@example.com\"")
        )),
        ["ann", "Ben", "dan"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc(&format!("{PROFILE}:skills eq \"s2\""))
        )),
        ["cat"]
    );
    assert_eq!(
        names(&format!("filter={}", enc("externalId eq \"e3\""))),
        ["dan"]
    );
    assert_eq!(
        names(&format!("filter={}", enc("title pr"))),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc(&format!("{ent}:employeeNumber gt \"101\""))
        )),
        ["cat", "dan"]
    );
    assert_eq!(
        names(&format!(
            "filter={}",
            enc("meta.created gt \"2000-01-01T00:00:00Z\"")
        ))
        .len(),
        4
    );
    assert_eq!(
        names("sortBy=userName&sortOrder=descending"),
        ["dan", "cat", "Ben", "ann"]
    );
    assert_eq!(
        names(&format!("sortBy={ent}:department")),
        ["dan", "Ben", "cat", "ann"]
    );
    // Creation order without sortBy; 1-based startIndex; count.
    let page = f.ok("GET", "/Users?startIndex=2&count=2", None);
    assert_eq!(page["totalResults"], 4);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 2);
    assert_eq!(page["Resources"][0]["userName"], "Ben");
    assert_eq!(f.ok("GET", "/Users?count=0", None)["Resources"], json!([]));
    // attributes / excludedAttributes.
    let v = f.ok(
        "GET",
        &format!("/Users?attributes=userName,{ent}:department&count=1"),
        None,
    );
    let r = &v["Resources"][0];
    assert!(r.get("emails").is_none() && r.get("meta").is_none());
    assert_eq!(r[ent]["department"], "Sales");
    assert!(r[ent].get("employeeNumber").is_none());
    let v = f.ok("GET", "/Users?excludedAttributes=emails&count=1", None);
    assert!(v["Resources"][0].get("emails").is_none() && v["Resources"][0]["userName"].is_string());
    // POST .search.
    let v = f.ok("POST", "/Users/.search", Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": "userName eq \"dan\""})));
    assert_eq!(v["totalResults"], 1);
}

#[test]
fn patch_etags_groups_and_bulk() {
    let f = Fixture::new();
    let u = f.user(
        "erin",
        json!({"emails": [{"value": "e@w", "type": "work"}, {"value": "e@h", "type": "home"}]}),
    );
    let id = u["id"].as_str().unwrap().to_string();
    let v1 = u["meta"]["version"].as_str().unwrap().to_string();
    let patch = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "erin@work"},
        {"op": "add", "path": "name.givenName", "value": "Erin"},
        {"op": "remove", "path": "emails[type eq \"home\"]"},
        {"op": "add", "value": {"title": "Eng"}}
    ]});
    // If-Match with a stale version: 412, nothing changed.
    let r = f
        .http
        .patch(f.url(&format!("/Users/{id}")))
        .bearer_auth(&f.engine)
        .header("content-type", SCIM)
        .header("if-match", "W/\"999\"")
        .body(patch.to_string())
        .send()
        .unwrap();
    expect_error(r, 412, None);
    let r = f
        .http
        .patch(f.url(&format!("/Users/{id}")))
        .bearer_auth(&f.engine)
        .header("content-type", SCIM)
        .header("if-match", &v1)
        .body(patch.to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let v: Value = r.json().unwrap();
    assert_eq!(v["emails"], json!([{"value": "erin@work", "type": "work"}]));
    assert_eq!(v["name"]["givenName"], "Erin");
    assert_eq!(v["title"], "Eng");
    assert_ne!(etag, v1);
    assert_eq!(v["meta"]["version"], etag);
    let r = f
        .http
        .get(f.url(&format!("/Users/{id}")))
        .bearer_auth(&f.engine)
        .header("if-none-match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = f
        .http
        .delete(f.url(&format!("/Users/{id}")))
        .bearer_auth(&f.engine)
        .header("if-match", &v1)
        .send()
        .unwrap();
    expect_error(r, 412, None);

    // Groups and the user's read-only groups attribute.
    let g = f.ok(
        "POST",
        "/Groups",
        Some(json!({"displayName": "Eng", "members": [{"value": id, "type": "User"}]})),
    );
    let gid = g["id"].as_str().unwrap();
    let u = f.ok("GET", &format!("/Users/{id}"), None);
    assert_eq!(u["groups"][0]["value"], gid);
    expect_error(
        f.send(
            "POST",
            "/Groups",
            Some(&f.engine),
            Some(json!({"displayName": "X", "members": [{"value": "ghost"}]})),
        ),
        400,
        Some("invalidValue"),
    );

    // Bulk: bulkId references, one failing operation does not undo the others.
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "boss", "data": {"userName": "boss"}},
        {"method": "POST", "path": "/Users", "bulkId": "w", "data": {"userName": "worker", ent: {"manager": {"value": "bulkId:boss"}}}},
        {"method": "POST", "path": "/Users", "bulkId": "dup", "data": {"userName": "ERIN"}},
        {"method": "DELETE", "path": format!("/Groups/{gid}")}
    ]});
    let v = f.ok("POST", "/Bulk", Some(bulk));
    let st: Vec<&str> = v["Operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["status"].as_str().unwrap())
        .collect();
    assert_eq!(st, ["201", "201", "409", "204"]);
    let w = f.ok("GET", "/Users?filter=userName%20eq%20%22worker%22", None);
    let boss = f.ok("GET", "/Users?filter=userName%20eq%20%22boss%22", None);
    assert_eq!(
        w["Resources"][0][ent]["manager"]["value"],
        boss["Resources"][0]["id"]
    );
    assert_eq!(f.ok("GET", "/Users", None)["totalResults"], 3);
    let too_many: Vec<Value> = (0..1001).map(|i| json!({"method": "POST", "path": "/Users", "bulkId": format!("b{i}"), "data": {"userName": format!("u{i}")}})).collect();
    expect_error(
        f.send(
            "POST",
            "/Bulk",
            Some(&f.engine),
            Some(json!({"Operations": too_many})),
        ),
        413,
        None,
    );
}

#[test]
fn photos_thumbnails_and_the_change_feed() {
    let f = Fixture::new();
    let u = f.user("fay", json!({}));
    let id = u["id"].as_str().unwrap().to_string();
    let start = f.ok("GET", "/changes/latest", None)["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let png = tiny_png(400, 200);
    let r = f
        .http
        .put(f.url(&format!("/Users/{id}/photo")))
        .bearer_auth(&f.engine)
        .body(png.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let hash = blake3::hash(&png).to_hex().to_string();
    assert_eq!(r.headers()["etag"].to_str().unwrap(), format!("\"{hash}\""));
    let after = f.ok("GET", &format!("/Users/{id}"), None);
    let url = after["photos"][0]["value"].as_str().unwrap().to_string();
    assert!(url.ends_with(&format!("/Users/{id}/photo")));
    assert_eq!(after[PROFILE]["photoHash"], hash);
    assert_ne!(after["meta"]["version"], u["meta"]["version"]);
    // The thumbnails were made by the upload, from the image it decoded: nothing has read
    // them yet, and they are stored (issue 22 item 4: a thumbnail read decodes nothing).
    assert_eq!(
        f.thumbnail_lengths(&id).iter().filter(|&&n| n > 0).count(),
        3
    );
    let r = f.http.get(&url).bearer_auth(&f.engine).send().unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().unwrap().as_ref(), &png[..]);
    for (size, px) in [("small", 48), ("medium", 72), ("large", 200)] {
        let r = f
            .http
            .get(format!("{url}?size={size}"))
            .bearer_auth(&f.engine)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let img = image::load_from_memory(&r.bytes().unwrap()).unwrap();
        assert_eq!(
            (img.width(), img.height()),
            (px, px),
            "{size}: square, never upscaled"
        );
    }
    let r = f
        .http
        .get(&url)
        .bearer_auth(&f.engine)
        .header("if-none-match", format!("\"{hash}\""))
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    // A photo stored before thumbnails were made at upload has none: its first thumbnail read
    // makes and keeps them.
    f.db()
        .execute(
            "UPDATE photo SET small = x'', medium = x'', large = x'' WHERE user_id = ?1",
            [&id],
        )
        .unwrap();
    let r = f
        .http
        .get(format!("{url}?size=medium"))
        .bearer_auth(&f.engine)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        format!("\"{hash}-medium\"")
    );
    let img = image::load_from_memory(&r.bytes().unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (72, 72));
    assert_eq!(
        f.thumbnail_lengths(&id).iter().filter(|&&n| n > 0).count(),
        3
    );

    // The same bytes again change nothing: no new version, no change in the feed.
    let latest = f.ok("GET", "/changes/latest", None)["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let r = f
        .http
        .put(f.url(&format!("/Users/{id}/photo")))
        .bearer_auth(&f.engine)
        .body(png.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), format!("\"{hash}\""));
    let same = f.ok("GET", &format!("/Users/{id}"), None);
    assert_eq!(
        same["meta"], after["meta"],
        "the same photo again is no change"
    );
    let feed = f.ok("GET", &format!("/changes?since={latest}"), None);
    assert_eq!(feed["changes"], json!([]), "{feed}");

    // A new photo behind the same URL: new hash, a change in the feed.
    let png2 = tiny_png(64, 64);
    f.http
        .put(f.url(&format!("/Users/{id}/photo")))
        .bearer_auth(&f.engine)
        .body(png2.clone())
        .send()
        .unwrap();
    let again = f.ok("GET", &format!("/Users/{id}"), None);
    assert_eq!(again["photos"][0]["value"], url.as_str());
    assert_eq!(
        again[PROFILE]["photoHash"],
        blake3::hash(&png2).to_hex().to_string()
    );
    let feed = f.ok("GET", &format!("/changes?since={start}"), None);
    assert_eq!(
        feed["changes"].as_array().unwrap().len(),
        1,
        "repeated changes collapse: {feed}"
    );
    assert_eq!(feed["changes"][0]["id"], id.as_str());
    assert_eq!(feed["changes"][0]["operation"], "upsert");
    assert_eq!(feed["more"], false);

    // Paging through the feed, and deletes.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            f.user(&format!("p{i}"), json!({}))["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    f.ok("DELETE", &format!("/Users/{}", ids[0]), None);
    let r = f.send(
        "DELETE",
        &format!("/Users/{id}/photo"),
        Some(&f.engine),
        None,
    );
    assert_eq!(r.status(), 204);
    let mut cursor = feed["next"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    loop {
        let page = f.ok("GET", &format!("/changes?since={cursor}&limit=2"), None);
        for c in page["changes"].as_array().unwrap() {
            seen.push((
                c["id"].as_str().unwrap().to_string(),
                c["operation"].as_str().unwrap().to_string(),
            ));
        }
        cursor = page["next"].as_str().unwrap().to_string();
        if page["more"] == false {
            break;
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    assert!(seen.contains(&(ids[0].clone(), "delete".into())));
    assert_eq!(seen.last().unwrap(), &(id.clone(), "upsert".into()));
    assert_eq!(
        f.ok("GET", "/changes/latest", None)["cursor"],
        cursor.as_str()
    );
    assert_eq!(
        f.ok("GET", &format!("/changes?since={cursor}"), None)["changes"],
        json!([])
    );
}

/// Every byte outside the unreserved set percent-encoded (UTF-8 included).
fn query_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The userNames a filter finds, over `GET /Users` and `POST /Users/.search`, which must agree.
fn found(f: &Fixture, filter: &str) -> Vec<String> {
    let names = |v: &Value| -> Vec<String> {
        v["Resources"]
            .as_array()
            .unwrap_or_else(|| panic!("{filter}: {v}"))
            .iter()
            .map(|r| r["userName"].as_str().unwrap().to_string())
            .collect()
    };
    let listed = names(&f.ok(
        "GET",
        &format!("/Users?filter={}", query_encode(filter)),
        None,
    ));
    let searched = names(&f.ok(
        "POST",
        "/Users/.search",
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": filter})),
    ));
    assert_eq!(listed, searched, "{filter}");
    listed
}

#[test]
fn case_insensitive_filters_fold_unicode_capitals() {
    let f = Fixture::new();
    let arger = f.user("Ärger", json!({"displayName": "Ärger", "title": "Ärger"}));
    // Imported as the engine exports: by /Bulk, with a decomposed `Å` in one spelling.
    let bulk = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": [
        {"method": "POST", "path": "/Users", "bulkId": "a", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "Ångström 李", "displayName": "Ångström", "name": {"familyName": "A\u{30A}ngstro\u{308}m"}}},
        {"method": "POST", "path": "/Users", "bulkId": "b", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ben", "displayName": "Angstrom"}},
        {"method": "POST", "path": "/Users", "bulkId": "c", "data": {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "cat", "displayName": "äb"}}
    ]});
    let v = f.ok("POST", "/Bulk", Some(bulk));
    for op in v["Operations"].as_array().unwrap() {
        assert_eq!(op["status"], "201", "{v}");
    }
    for (filter, expect) in [
        // An exact value always matches itself.
        (r#"displayName eq "Ärger""#, vec!["Ärger"]),
        (r#"title eq "Ärger""#, vec!["Ärger"]),
        (r#"userName eq "Ärger""#, vec!["Ärger"]),
        (r#"displayName eq "ÄRGER""#, vec!["Ärger"]),
        (r#"displayName eq "ärger""#, vec!["Ärger"]),
        (r#"userName eq "ärger""#, vec!["Ärger"]),
        (r#"displayName sw "är""#, vec!["Ärger"]),
        (r#"displayName eq "Ångström""#, vec!["Ångström 李"]),
        (r#"displayName co "Å""#, vec!["Ångström 李"]),
        (r#"displayName co "å""#, vec!["Ångström 李"]),
        (r#"userName eq "ÅNGSTRÖM 李""#, vec!["Ångström 李"]),
        (r#"userName co "Ö""#, vec!["Ångström 李"]),
        (r#"userName ew "m 李""#, vec!["Ångström 李"]),
        // Canonically equivalent spellings: composed and decomposed `Å`, the Angstrom sign.
        (r#"name.familyName eq "Ångström""#, vec!["Ångström 李"]),
        (
            "displayName eq \"\u{212B}ngstr\u{d6}m\"",
            vec!["Ångström 李"],
        ),
        (r#"displayName co "A""#, vec!["ben"]),
        (
            r#"displayName ne "ärger""#,
            vec!["Ångström 李", "ben", "cat"],
        ),
    ] {
        assert_eq!(found(&f, filter), expect, "{filter}");
    }
    // Sorting folds the same way: `Ärger` is `ärger`, after `äb` (ASCII folding put it first).
    assert_eq!(
        f.ok("GET", "/Users?sortBy=displayName", None)["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["displayName"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["Angstrom", "äb", "Ärger", "Ångström"]
    );
    // userName is unique under the same folding.
    let taken = f.send(
        "POST",
        "/Users",
        Some(&f.engine),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ÄRGER"}),
        ),
    );
    expect_error(taken, 409, Some("uniqueness"));
    // A person's token names its user by the same folding: it may edit its own profile.
    let own = f.person("ÄRGER");
    let edit = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "replace", "path": format!("{PROFILE}:aboutMe"), "value": "hallo"}]});
    let r = f.send(
        "PATCH",
        &format!("/Users/{}", arger["id"].as_str().unwrap()),
        Some(&own),
        Some(edit),
    );
    assert_eq!(r.status(), 200, "{}", r.text().unwrap());
}

/// A profile store database as version 1 wrote it: `name COLLATE NOCASE` held the userName's
/// uniqueness, which folds ASCII only. (The other tables are as they are now.)
fn version_1_store(dir: &std::path::Path, users: &[(&str, &str)]) {
    let c = rusqlite::Connection::open(dir.join("profiles.db")).unwrap();
    c.execute_batch(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT INTO meta(key, value) VALUES ('schema_version', '1');
         CREATE TABLE resource (
             seq INTEGER PRIMARY KEY AUTOINCREMENT,
             kind TEXT NOT NULL,
             id TEXT NOT NULL UNIQUE,
             name TEXT COLLATE NOCASE,
             external_id TEXT,
             doc TEXT NOT NULL,
             created TEXT NOT NULL,
             last_modified TEXT NOT NULL,
             version INTEGER NOT NULL,
             photo_hash TEXT
         );
         CREATE UNIQUE INDEX resource_user_name ON resource(name) WHERE kind = 'User';
         CREATE INDEX resource_kind ON resource(kind, seq);
         CREATE INDEX resource_external_id ON resource(kind, external_id);",
    )
    .unwrap();
    for (id, name) in users {
        let doc = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": name, "displayName": name});
        c.execute(
            "INSERT INTO resource(kind, id, name, doc, created, last_modified, version) \
             VALUES ('User', ?1, ?2, ?3, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 1)",
            rusqlite::params![id, name, doc.to_string()],
        )
        .unwrap();
    }
}

#[test]
fn a_version_1_store_gets_folded_user_name_keys_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    version_1_store(dir.path(), &[("u1", "Ärger"), ("u2", "Ångström 李")]);
    let f = Fixture::on(dir);
    assert_eq!(found(&f, r#"userName eq "ärger""#), ["Ärger"]);
    assert_eq!(found(&f, r#"userName eq "ÅNGSTRÖM 李""#), ["Ångström 李"]);
    assert_eq!(found(&f, r#"userName eq "Ärger""#), ["Ärger"]);
    // The uniqueness moved to the folded key: `ÄRGER` is taken, a new name is not.
    let taken = f.send(
        "POST",
        "/Users",
        Some(&f.engine),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "ÄRGER"}),
        ),
    );
    expect_error(taken, 409, Some("uniqueness"));
    f.user("Ödön", json!({}));
    assert_eq!(found(&f, r#"userName eq "ÖDÖN""#), ["Ödön"]);
    // Opened again (now version 2, keys made by this folding): nothing is made again, all found.
    let dir = f.into_dir();
    let f = Fixture::on(dir);
    assert_eq!(found(&f, r#"userName sw "ö""#), ["Ödön"]);
    assert_eq!(found(&f, r#"userName eq "ärger""#), ["Ärger"]);
}

#[test]
fn a_version_1_store_with_two_names_one_under_unicode_folding_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    version_1_store(
        dir.path(),
        &[("u1", "Ärger"), ("u2", "ärger"), ("u3", "ann")],
    );
    let err = serve(ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        db: dir.path().join("profiles.db"),
        config: Config::default(),
    })
    .err()
    .expect("two users with one folded name are refused")
    .to_string();
    for part in [
        "cannot upgrade",
        "u1",
        "`Ärger`",
        "u2",
        "`ärger`",
        "profiles.db",
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }
    // Nothing was changed: the file is still version 1, as its owner left it.
    let c = rusqlite::Connection::open(dir.path().join("profiles.db")).unwrap();
    let v: String = c
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(v, "1");
}

/// One request written as it is on a new connection (reqwest refuses a URI past 64 KiB), and
/// the answer: status, lower-cased headers, body.
fn raw_http(f: &Fixture, head: &str) -> (u16, Vec<(String, String)>, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(f.server.addr).unwrap();
    c.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    c.read_to_end(&mut answer).unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (top, body) = answer.split_once("\r\n\r\n").expect("a whole head");
    let mut lines = top.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    (status, headers, body.to_string())
}

fn expect_raw_error(answer: (u16, Vec<(String, String)>, String), status: u16) -> Value {
    let (got, headers, body) = answer;
    assert_eq!(got, status, "{headers:?} {body}");
    let header = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("content-type"), Some(SCIM));
    assert_eq!(
        header("content-length"),
        Some(body.len().to_string().as_str())
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["schemas"][0],
        "urn:ietf:params:scim:api:messages:2.0:Error"
    );
    assert_eq!(v["status"], status.to_string());
    v
}

#[test]
fn a_uri_too_long_or_too_many_headers_is_answered_with_a_scim_error() {
    let f = Fixture::new();
    let host = f.server.addr;
    // Past the HTTP server's URI limit (64 KiB).
    let long = format!(
        "GET /scim/v2/Users?filter={} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\n\r\n",
        "a".repeat(70_000),
        f.engine
    );
    let v = expect_raw_error(raw_http(&f, &long), 414);
    assert!(v["detail"].as_str().unwrap().contains("URI"), "{v}");
    // Past its header limit (100 fields).
    let fillers: String = (0..120).map(|i| format!("X-Filler-{i}: 1\r\n")).collect();
    let many = format!("GET /scim/v2/Users HTTP/1.1\r\nHost: {host}\r\n{fillers}\r\n");
    let v = expect_raw_error(raw_http(&f, &many), 431);
    assert!(v["detail"].as_str().unwrap().contains("header"), "{v}");
    // The service still answers, and an ordinary answer is untouched.
    let fine = format!("GET /scim/v2/Users?count=1 HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n", f.engine);
    let (status, _, body) = raw_http(&f, &fine);
    assert_eq!(status, 200, "{body}");
    f.ok("GET", "/Users?count=1", None);
}

#[test]
fn a_bad_filters_detail_is_a_bounded_excerpt_around_the_position() {
    let f = Fixture::new();
    let head = "title pr and ".repeat(40);
    let filter = format!("{head}userName zz \"x\"{}", " and title pr".repeat(40));
    let v = expect_error(
        f.send(
            "GET",
            &format!("/Users?filter={}", query_encode(&filter)),
            Some(&f.engine),
            None,
        ),
        400,
        Some("invalidFilter"),
    );
    let detail = v["detail"].as_str().unwrap();
    let at = head.chars().count() + "userName ".len() + 1;
    assert!(detail.contains(&format!("character {at}")), "{detail}");
    assert!(detail.contains("zz"), "{detail}");
    assert!(detail.len() < 200, "{} bytes: {detail}", detail.len());
    // A 1 MB filter (by POST, under the body limit) answers a short error, not itself.
    let huge = format!("userName eq \"{}\"", "x".repeat(1 << 20));
    let r = f.send(
        "POST",
        "/Users/.search",
        Some(&f.engine),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": huge})),
    );
    let v = expect_error(r, 400, Some("invalidFilter"));
    let detail = v["detail"].as_str().unwrap();
    assert!(detail.len() < 200, "{} bytes", detail.len());
}

#[test]
fn sort_order_is_ascending_or_descending_only() {
    let f = Fixture::new();
    f.user("ann", json!({}));
    f.user("ben", json!({}));
    let v = expect_error(
        f.send(
            "GET",
            "/Users?sortBy=userName&sortOrder=sideways",
            Some(&f.engine),
            None,
        ),
        400,
        Some("invalidValue"),
    );
    assert!(v["detail"].as_str().unwrap().contains("sideways"), "{v}");
    let r = f.send(
        "POST",
        "/Users/.search",
        Some(&f.engine),
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "sortBy": "userName", "sortOrder": "sideways"})),
    );
    expect_error(r, 400, Some("invalidValue"));
    for (order, first) in [
        ("descending", "ben"),
        ("ascending", "ann"),
        ("Descending", "ben"),
    ] {
        let v = f.ok(
            "GET",
            &format!("/Users?sortBy=userName&sortOrder={order}"),
            None,
        );
        assert_eq!(v["Resources"][0]["userName"], first, "{order}");
    }
}

#[test]
fn a_date_time_compared_with_a_value_that_is_no_date_is_invalid() {
    let f = Fixture::new();
    f.user("ann", json!({}));
    for filter in [
        r#"meta.lastModified gt "notadate""#,
        r#"meta.created eq "2026-13-45T99:00:00Z""#,
        r#"meta.lastModified le "yesterday""#,
    ] {
        let v = expect_error(
            f.send(
                "GET",
                &format!("/Users?filter={}", query_encode(filter)),
                Some(&f.engine),
                None,
            ),
            400,
            Some("invalidValue"),
        );
        assert!(
            v["detail"].as_str().unwrap().contains("meta."),
            "{filter}: {v}"
        );
    }
    // Dates still compare as instants, in any offset.
    assert_eq!(
        found(&f, r#"meta.created gt "2000-01-01T00:00:00+02:00""#),
        ["ann"]
    );
    assert_eq!(
        found(&f, r#"meta.created lt "2000-01-01T00:00:00Z""#),
        Vec::<String>::new()
    );
}
