//! Issue 22 item 4: photo decoding is bounded per server, not per upload. Decompression bombs
//! (small PNGs declaring 10000x10000 RGBA, made here) are uploaded eight at once with people's
//! own tokens to the real `idsync serve` process; its peak resident memory (`VmHWM` in
//! `/proc/PID/status`) stays under the decode budget plus a margin, it goes on answering
//! (`GET /Users` during the load, a small photo upload after it), and the thumbnails of the
//! photos it took are served.
//!
//! The margin is what the server holds besides decoding: its own resident size before the load
//! (measured), plus 64 MiB for the uploads' bodies (sixteen of under 1.5 MB, each in up to three
//! copies: the request, the stored original, SQLite's page cache), the thumbnails and the
//! allocator's slack.

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

mod support;
use support::*;

const MIB: u64 = 1024 * 1024;
const MARGIN: u64 = 64 * MIB;
/// The default of `photos.decode_budget` (docs/profile-store-api.md).
const DEFAULT_BUDGET: u64 = 256 * MIB;
const BOMBS: usize = 8;

struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn start(db: &Path, args: &[&str]) -> Server {
        let port = free_port();
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("idsync"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
            .arg(db)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("idsync serve starts");
        let s = Server { child, port };
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(20),
                "idsync serve did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// The peak resident set size of the server process so far, in bytes.
    fn peak_memory(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the server's /proc status");
        let line = status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .expect("VmHWM in /proc/PID/status");
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("VmHWM in kB");
        kib * 1024
    }
}

/// A PNG of `w`x`h` RGBA pixels, all zero: a valid image (it decodes completely) whose file is
/// about a thousandth of its decoded size (10000x10000: 400 MB decoded, about 400 KB).
fn zero_png(w: u32, h: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, w, h);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::High);
    let mut writer = enc.write_header().unwrap();
    {
        use std::io::Write;
        let mut stream = writer.stream_writer().unwrap();
        let row = vec![0u8; w as usize * 4];
        for _ in 0..h {
            stream.write_all(&row).unwrap();
        }
        stream.finish().unwrap();
    }
    writer.finish().unwrap();
    out
}

/// A small ordinary photo.
fn small_png() -> Vec<u8> {
    let img = image::RgbImage::from_fn(120, 90, |x, y| {
        image::Rgb([(x * 2) as u8, (y * 2) as u8, ((x + y) % 256) as u8])
    });
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

struct Estate {
    server: Server,
    engine: String,
    /// (id, the person's own token) for each person.
    people: Vec<(String, String)>,
    api: Api,
}

impl Estate {
    fn new(dir: &Path, name: &str, args: &[&str], people: usize) -> Estate {
        let db = dir.join(format!("{name}.db"));
        // The photo settings stay as given; only the request timeout is longer than its
        // default (60 s), so a bomb decoded by this unoptimized build on a busy machine is
        // answered by its decode and not by the timeout.
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, "request_timeout_secs = 600\n").unwrap();
        let engine = token(&db, &["--engine"]);
        let mut all = vec!["--store-config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let server = Server::start(&db, &all);
        let api = Api::new(server.port);
        let mut list = Vec::new();
        for i in 0..people {
            let user_name = format!("{name}{i}");
            let r = api
                .agent
                .post(&format!("{}/Users", api.base))
                .header("Authorization", format!("Bearer {engine}"))
                .header("Content-Type", "application/scim+json")
                .send_json(json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name,
                }))
                .unwrap();
            assert_eq!(r.status(), 201, "create {user_name}");
            let id = api.user(&engine, &user_name)["id"]
                .as_str()
                .unwrap()
                .to_string();
            list.push((id, token(&db, &["--user", &user_name])));
        }
        Estate {
            server,
            engine,
            people: list,
            api,
        }
    }

    fn put_photo(&self, person: usize, bytes: &[u8]) -> Answer {
        let (id, token) = &self.people[person];
        put(&self.api, id, token, bytes)
    }

    fn users_answer(&self) -> u16 {
        self.api
            .agent
            .get(&format!("{}/Users?count=5", self.api.base))
            .header("Authorization", format!("Bearer {}", self.engine))
            .call()
            .unwrap()
            .status()
            .as_u16()
    }

    /// The person's small thumbnail: an image/jpeg of `side` x `side`.
    fn check_thumbnail(&self, person: usize, side: u32) {
        let (id, _) = &self.people[person];
        let mut r = self
            .api
            .agent
            .get(&format!("{}/Users/{id}/photo?size=small", self.api.base))
            .header("Authorization", format!("Bearer {}", self.engine))
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "the small thumbnail of person {person}");
        assert_eq!(r.headers()["content-type"].to_str().unwrap(), "image/jpeg");
        let bytes = r.body_mut().read_to_vec().unwrap();
        let img = image::load_from_memory(&bytes).expect("the thumbnail decodes");
        assert_eq!((img.width(), img.height()), (side, side));
    }

    /// Uploads `bomb` for the first `BOMBS` people at once, each with their own token, while
    /// another thread keeps asking for `/Users`; the answers in person order, and how many
    /// times `/Users` answered during the load (each time 200).
    fn bombard(&self, bomb: &[u8]) -> (Vec<Answer>, usize) {
        let start = Arc::new(Barrier::new(BOMBS + 1));
        let done = Arc::new(AtomicBool::new(false));
        let port = self.server.port;
        let watcher = {
            let engine = self.engine.clone();
            let done = done.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let api = Api::new(port);
                start.wait();
                let mut answered = 0;
                // Bounded: at most 2000 requests, 20 ms apart.
                for _ in 0..2000 {
                    if done.load(Ordering::SeqCst) && answered > 0 {
                        break;
                    }
                    let r = api
                        .agent
                        .get(&format!("{}/Users?count=5", api.base))
                        .header("Authorization", format!("Bearer {engine}"))
                        .call()
                        .expect("GET /Users during the load");
                    assert_eq!(r.status(), 200, "GET /Users during the load");
                    answered += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                answered
            })
        };
        let uploads: Vec<_> = (0..BOMBS)
            .map(|i| {
                let (id, token) = self.people[i].clone();
                let bomb = bomb.to_vec();
                let start = start.clone();
                std::thread::spawn(move || {
                    let api = Api::new(port);
                    start.wait();
                    put(&api, &id, &token, &bomb)
                })
            })
            .collect();
        let answers: Vec<Answer> = uploads.into_iter().map(|t| t.join().unwrap()).collect();
        done.store(true, Ordering::SeqCst);
        let answered = watcher.join().unwrap();
        (answers, answered)
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: Value,
}

fn put(api: &Api, id: &str, token: &str, bytes: &[u8]) -> Answer {
    let mut r = api
        .agent
        .put(&format!("{}/Users/{id}/photo", api.base))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "image/png")
        .send(bytes)
        .expect("the photo upload is answered");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .map(|h| h.to_str().unwrap().to_string())
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type");
    let text = r.body_mut().read_to_string().unwrap();
    Answer {
        status: r.status().as_u16(),
        retry_after,
        content_type,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    }
}

/// A 503 is a SCIM error with Retry-After; anything else here is a 200.
fn check_taken_or_busy(a: &Answer) {
    match a.status {
        200 => {}
        503 => {
            assert_eq!(a.content_type.as_deref(), Some("application/scim+json"));
            assert_eq!(
                a.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
                "{a:?}"
            );
            assert_eq!(a.body["status"], "503", "{a:?}");
            let secs: u64 = a
                .retry_after
                .as_deref()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("503 without Retry-After seconds: {a:?}"));
            assert!(secs >= 1, "{a:?}");
        }
        _ => panic!("a photo upload answered neither 200 nor 503: {a:?}"),
    }
}

fn check_memory(server: &Server, baseline: u64, budget: u64, what: &str) {
    let peak = server.peak_memory();
    let bound = budget + baseline + MARGIN;
    assert!(
        peak <= bound,
        "{what}: the server peaked at {} MiB, above the budget ({} MiB) + its resident size before \
         the load ({} MiB) + {} MiB",
        peak / MIB,
        budget / MIB,
        baseline / MIB,
        MARGIN / MIB,
    );
    eprintln!(
        "{what}: peak {} MiB (bound {} MiB)",
        peak / MIB,
        bound / MIB
    );
}

#[test]
fn concurrent_decompression_bombs_stay_within_the_decode_budget_and_the_server_keeps_answering() {
    let tmp = tempfile::tempdir().unwrap();
    let bomb = zero_png(10_000, 10_000);
    assert!(bomb.len() < 1_500_000, "the bomb is {} bytes", bomb.len());
    let half_bomb = zero_png(5_000, 5_000);
    let small = small_png();

    // The defaults: a photo declaring 10000x10000 RGBA (400 MB decoded) is more than the whole
    // budget, refused before it is decoded, eight at once.
    let e = Estate::new(tmp.path(), "d", &[], BOMBS + 1);
    let baseline = e.server.peak_memory();
    let (answers, answered) = e.bombard(&bomb);
    check_memory(
        &e.server,
        baseline,
        DEFAULT_BUDGET,
        "defaults, 10000x10000 bombs",
    );
    assert!(answered > 0);
    for a in &answers {
        assert_eq!(a.status, 400, "{a:?}");
        assert_eq!(a.body["scimType"], "invalidValue", "{a:?}");
        assert!(
            a.body["detail"].as_str().unwrap().contains("too large"),
            "{a:?}"
        );
    }
    // 5000x5000 RGBA (100 MB decoded) fits: two at a time within the default budget, the
    // others wait for their turn (or, past the wait, are told to come back).
    let (answers, answered) = e.bombard(&half_bomb);
    check_memory(
        &e.server,
        baseline,
        DEFAULT_BUDGET,
        "defaults, 5000x5000 bombs",
    );
    assert!(answered > 0);
    answers.iter().for_each(check_taken_or_busy);
    let taken: Vec<usize> = (0..BOMBS).filter(|&i| answers[i].status == 200).collect();
    assert!(!taken.is_empty(), "{answers:?}");
    // A small photo after the load, then the thumbnails.
    let a = e.put_photo(BOMBS, &small);
    assert_eq!(a.status, 200, "{a:?}");
    assert_eq!(e.users_answer(), 200);
    for &i in &taken {
        e.check_thumbnail(i, 48);
    }
    e.check_thumbnail(BOMBS, 48);
    check_memory(
        &e.server,
        baseline,
        DEFAULT_BUDGET,
        "defaults, after the thumbnails",
    );
    drop(e);

    // A budget that takes one 10000x10000 bomb at a time (set by `idsync serve`'s flag): the
    // bombs are decoded one after another, never together.
    let budget = 512 * MIB;
    let e = Estate::new(
        tmp.path(),
        "b",
        &[
            "--photo-decode-budget-mib",
            "512",
            "--photo-decode-wait-secs",
            "5",
        ],
        BOMBS + 1,
    );
    let baseline = e.server.peak_memory();
    let (answers, answered) = e.bombard(&bomb);
    check_memory(
        &e.server,
        baseline,
        budget,
        "512 MiB budget, 10000x10000 bombs",
    );
    assert!(answered > 0);
    answers.iter().for_each(check_taken_or_busy);
    let taken: Vec<usize> = (0..BOMBS).filter(|&i| answers[i].status == 200).collect();
    assert!(!taken.is_empty(), "{answers:?}");
    let a = e.put_photo(BOMBS, &small);
    assert_eq!(a.status, 200, "{a:?}");
    for &i in &taken {
        e.check_thumbnail(i, 48);
    }
    e.check_thumbnail(BOMBS, 48);
    check_memory(
        &e.server,
        baseline,
        budget,
        "512 MiB budget, after the thumbnails",
    );
}
