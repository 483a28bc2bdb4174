//! One connection to the server: TLS (LDAPS or StartTLS, verified by default), bind (simple with
//! the password by reference, or SASL EXTERNAL), timeouts, on a tokio runtime the connection owns
//! (one worker thread drives the socket; calls block the caller until answered).
//!
//! `ldap3` has `unwrap`s and `panic!`s on malformed server input. Every call into it goes through
//! [`guarded`], so a server that sends garbage fails the step with a message instead of taking
//! the process down.

use idsync_connectors::Secret;
use ldap3::tokio::runtime::{Builder, Runtime};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to reach and authenticate to the server (resolved settings; the password already read
/// from its reference).
#[derive(Debug, Clone)]
pub struct ConnSettings {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub bind: Bind,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub enum Bind {
    Anonymous,
    Simple { dn: String, password: Secret },
    SaslExternal,
}

/// Runs `f`, turning a panic inside the LDAP client (malformed server input) into an error.
pub fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let detail = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(format!(
                "{what}: the server sent a reply the LDAP client could not decode ({detail})"
            ))
        }
    }
}

pub struct Conn {
    pub rt: Runtime,
    pub ldap: Ldap,
    pub timeout: Duration,
}

pub(crate) fn tls_config(ca_file: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read the CA file {}: {e}", ca_file.display()))?;
    for c in certs {
        let c = c.map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
        roots
            .add(c)
            .map_err(|e| format!("CA file {}: {e}", ca_file.display()))?;
    }
    if roots.is_empty() {
        return Err(format!(
            "CA file {} holds no certificate",
            ca_file.display()
        ));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

impl Conn {
    /// Connects and binds. Errors say what failed (connect, TLS, bind) without the password.
    pub fn open(s: &ConnSettings) -> Result<Conn, String> {
        guarded("connect", || Self::open_inner(s)).map_err(|m| at_server(&s.url, m))
    }

    fn open_inner(s: &ConnSettings) -> Result<Conn, String> {
        // One worker thread drives the connection (reads and decodes the server's messages)
        // while the calling thread hands entries to the engine: decoding the next entries
        // overlaps with storing the last ones.
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the LDAP client's runtime: {e}"))?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(s.timeout)
            .set_starttls(s.starttls);
        if let Some(ca) = &s.ca_file {
            settings = settings.set_config(tls_config(ca)?);
        }
        if !s.tls_verify {
            tracing::warn!(url = %s.url, "TLS certificate verification is turned off (tls_verify = false)");
            settings = settings.set_no_tls_verify(true);
        }
        let url = s.url.clone();
        let ldap = rt.block_on(async move {
            let (conn, ldap) = LdapConnAsync::with_settings(settings, &url)
                .await
                .map_err(|e| format!("cannot connect to {url}: {e}"))?;
            ldap3::tokio::spawn(async move {
                if let Err(e) = conn.drive().await {
                    tracing::debug!("LDAP connection ended: {e}");
                }
            });
            Ok::<_, String>(ldap)
        })?;
        let mut c = Conn {
            rt,
            ldap,
            timeout: s.timeout,
        };
        c.bind(&s.bind)?;
        Ok(c)
    }

    fn bind(&mut self, bind: &Bind) -> Result<(), String> {
        let timeout = self.timeout;
        let ldap = &mut self.ldap;
        let res = self.rt.block_on(async {
            match bind {
                Bind::Anonymous => Ok(None),
                Bind::Simple { dn, password } => ldap
                    .with_timeout(timeout)
                    .simple_bind(dn, password.expose())
                    .await
                    .map(Some),
                Bind::SaslExternal => ldap
                    .with_timeout(timeout)
                    .sasl_external_bind()
                    .await
                    .map(Some),
            }
        });
        match res {
            Ok(None) => Ok(()),
            Ok(Some(r)) if r.rc == 0 => Ok(()),
            Ok(Some(r)) => Err(format!(
                "bind{} refused: {}",
                match bind {
                    Bind::Simple { dn, .. } => format!(" as `{dn}`"),
                    _ => String::new(),
                },
                result_text(r.rc, &r.text)
            )),
            Err(ldap3::LdapError::Timeout { .. }) => Err(format!(
                "the server did not answer the bind within {} s",
                timeout.as_secs()
            )),
            Err(e) => Err(format!("bind failed: {e}")),
        }
    }
}

/// A failure to connect or bind, naming the server (once), with what to do about a server
/// certificate that names no host.
pub(crate) fn at_server(url: &str, message: String) -> String {
    let mut message = if message.contains(url) {
        message
    } else {
        format!("{url}: {message}")
    };
    // rustls's words for a certificate without subjectAltName (RFC 6125: the subject's CN is
    // not a host name any more), as Samba's self-made certificate.
    if message.contains("not valid for any names") {
        message.push_str(
            ". The server's certificate has no subjectAltName, so no host name can be checked \
             against it: give the server a certificate with a subjectAltName for the host in \
             `url` (DNS or IP), and name its CA with `ca_file`",
        );
    }
    message
}

/// A result code with its name and the server's message: `noSuchObject (32): …`.
pub(crate) fn result_text(rc: u32, text: &str) -> String {
    if text.is_empty() {
        format!("{} ({rc})", rc_name(rc))
    } else {
        format!("{} ({rc}): {text}", rc_name(rc))
    }
}

/// The name of an LDAP result code (RFC 4511, appendix A).
pub fn rc_name(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        16 => "noSuchAttribute",
        17 => "undefinedAttributeType",
        18 => "inappropriateMatching",
        19 => "constraintViolation",
        20 => "attributeOrValueExists",
        21 => "invalidAttributeSyntax",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        64 => "namingViolation",
        65 => "objectClassViolation",
        66 => "notAllowedOnNonLeaf",
        67 => "notAllowedOnRDN",
        68 => "entryAlreadyExists",
        69 => "objectClassModsProhibited",
        71 => "affectsMultipleDSAs",
        80 => "other",
        _ => "unknown result",
    }
}
