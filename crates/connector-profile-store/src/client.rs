//! The HTTP side: one `ureq` agent, bearer authentication, SCIM error bodies turned into
//! messages. Nothing here knows idsync's model.

use serde_json::Value as Json;
use std::time::Duration;
use ureq::http::StatusCode;
use ureq::Agent;

/// The largest body read from the service (an original photo is the largest thing it sends).
const MAX_BODY: u64 = 64 * 1024 * 1024;

pub struct Client {
    agent: Agent,
    /// `…/scim/v2`, without a trailing slash.
    pub scim: String,
    /// The service root, for the change feed.
    pub root: String,
    token: String,
}

/// A failure: `Status` when the service answered (with its SCIM detail), `Transport` when it
/// could not be reached.
#[derive(Debug)]
pub enum HttpError {
    Status(u16, String),
    Transport(String),
}

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HttpError::Status(s, m) => write!(f, "HTTP {s}: {m}"),
            HttpError::Transport(m) => f.write_str(m),
        }
    }
}

pub type HttpResult<T> = Result<T, HttpError>;

fn transport(e: ureq::Error) -> HttpError {
    HttpError::Transport(e.to_string())
}

impl Client {
    pub fn new(
        root: &str,
        scim_path: &str,
        token: String,
        ca_pem: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<Client, String> {
        let mut cfg = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .max_idle_connections_per_host(4);
        if let Some(pem) = ca_pem {
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(Ok(c)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cannot read the CA file: {e}"))?;
            if certs.is_empty() {
                return Err("the CA file holds no certificate".to_owned());
            }
            cfg = cfg.tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::new_with_certs(&certs))
                    .build(),
            );
        }
        let root = root.trim_end_matches('/').to_owned();
        Ok(Client {
            agent: cfg.build().into(),
            scim: format!("{root}/{}", scim_path.trim_matches('/')),
            root,
            token,
        })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    /// The SCIM error's detail, or the body's start, or the status text.
    fn failure(status: StatusCode, body: &[u8]) -> HttpError {
        let detail = serde_json::from_slice::<Json>(body)
            .ok()
            .and_then(|j| {
                j.get("detail")
                    .and_then(Json::as_str)
                    .map(str::to_owned)
                    .or_else(|| j.get("scimType").and_then(Json::as_str).map(str::to_owned))
            })
            .unwrap_or_else(|| {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                if text.is_empty() {
                    status.canonical_reason().unwrap_or("error").to_owned()
                } else {
                    text
                }
            });
        HttpError::Status(status.as_u16(), detail)
    }

    fn finish(mut resp: ureq::http::Response<ureq::Body>) -> HttpResult<(u16, Vec<u8>)> {
        let status = resp.status();
        // A body of known length (the service's pages of profiles are a megabyte or more) is
        // read into a buffer of that size: growing one by doubling cost more than parsing it.
        let body = match resp.body().content_length().filter(|&n| n <= MAX_BODY) {
            Some(n) => {
                let mut buf = Vec::with_capacity(n as usize);
                std::io::Read::read_to_end(
                    &mut resp.body_mut().with_config().limit(MAX_BODY).reader(),
                    &mut buf,
                )
                .map_err(|e| HttpError::Transport(e.to_string()))?;
                buf
            }
            None => resp
                .body_mut()
                .with_config()
                .limit(MAX_BODY)
                .read_to_vec()
                .map_err(transport)?,
        };
        if status.is_success() || status == StatusCode::NOT_MODIFIED {
            Ok((status.as_u16(), body))
        } else {
            Err(Self::failure(status, &body))
        }
    }

    fn json(body: &[u8], what: &str) -> HttpResult<Json> {
        serde_json::from_slice(body)
            .map_err(|e| HttpError::Transport(format!("{what}: the answer is not JSON: {e}")))
    }

    /// GET a JSON document at `url` with query parameters.
    pub fn get_json(&self, url: &str, query: &[(&str, &str)]) -> HttpResult<Json> {
        let mut req = self
            .agent
            .get(url)
            .header("Authorization", self.auth())
            .header("Accept", "application/scim+json, application/json");
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        let (_, body) = Self::finish(req.call().map_err(transport)?)?;
        Self::json(&body, url)
    }

    /// GET bytes (a photo).
    pub fn get_bytes(&self, url: &str) -> HttpResult<Vec<u8>> {
        let resp = self
            .agent
            .get(url)
            .header("Authorization", self.auth())
            .call()
            .map_err(transport)?;
        Self::finish(resp).map(|(_, b)| b)
    }

    /// Sends JSON with a method (POST, PATCH, PUT); the answer's JSON (or null when empty).
    pub fn send_json<T: serde::Serialize + ?Sized>(
        &self,
        method: &str,
        url: &str,
        body: &T,
    ) -> HttpResult<Json> {
        let text = serde_json::to_string(body)
            .map_err(|e| HttpError::Transport(format!("{url}: cannot encode the request: {e}")))?;
        self.send_text(method, url, &text)
    }

    /// Sends a JSON body already serialised (POST, PUT or PATCH).
    pub fn send_text(&self, method: &str, url: &str, text: &str) -> HttpResult<Json> {
        let auth = self.auth();
        let ct = "application/scim+json";
        let resp = match method {
            "POST" => self
                .agent
                .post(url)
                .header("Authorization", auth)
                .header("Content-Type", ct)
                .send(text.as_bytes()),
            "PUT" => self
                .agent
                .put(url)
                .header("Authorization", auth)
                .header("Content-Type", ct)
                .send(text.as_bytes()),
            _ => self
                .agent
                .patch(url)
                .header("Authorization", auth)
                .header("Content-Type", ct)
                .send(text.as_bytes()),
        }
        .map_err(transport)?;
        let (_, b) = Self::finish(resp)?;
        if b.is_empty() {
            Ok(Json::Null)
        } else {
            Self::json(&b, url)
        }
    }

    pub fn put_bytes(&self, url: &str, content_type: &str, bytes: &[u8]) -> HttpResult<()> {
        let resp = self
            .agent
            .put(url)
            .header("Authorization", self.auth())
            .header("Content-Type", content_type)
            .send(bytes)
            .map_err(transport)?;
        Self::finish(resp).map(|_| ())
    }

    pub fn delete(&self, url: &str) -> HttpResult<()> {
        let resp = self
            .agent
            .delete(url)
            .header("Authorization", self.auth())
            .call()
            .map_err(transport)?;
        Self::finish(resp).map(|_| ())
    }
}

/// The image type of photo bytes, by their first bytes.
pub fn image_type(b: &[u8]) -> &'static str {
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if b.starts_with(b"\x89PNG") {
        "image/png"
    } else if b.starts_with(b"GIF8") {
        "image/gif"
    } else if b.len() > 12 && &b[0..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        "image/webp"
    } else {
        "application/octet-stream"
    }
}
