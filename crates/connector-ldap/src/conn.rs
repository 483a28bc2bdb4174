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
    /// The connector's name, for warnings.
    pub connector: String,
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub tls_verify: bool,
    pub bind: Bind,
    pub timeout: Duration,
    /// A simple bind may send its password unencrypted to a host that is not loopback.
    pub allow_cleartext_bind: bool,
    /// Whether that was said already (once per connector, not per connection).
    pub cleartext_warned: Arc<std::sync::Once>,
}

impl ConnSettings {
    /// Whether a bind would send a password unencrypted to another machine: a simple bind on
    /// plain `ldap://` without StartTLS to a host other than loopback (127.0.0.0/8, ::1,
    /// `localhost`). A name that resolves to loopback is not taken as loopback: only what the
    /// URL says is, so what is checked is what is sent to.
    pub fn cleartext_bind(&self) -> bool {
        matches!(self.bind, Bind::Simple { .. })
            && !self.starttls
            && self
                .url
                .get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("ldap://"))
            && !is_loopback_url(&self.url)
    }

    /// Called before each connection is opened: refuses a cleartext bind that is not allowed
    /// (the connector's constructor already did; this guards every way to a socket), and warns
    /// once when one is allowed.
    pub(crate) fn check_cleartext(&self) -> Result<(), String> {
        if !self.cleartext_bind() {
            return Ok(());
        }
        if !self.allow_cleartext_bind {
            return Err(cleartext_refused(&self.url));
        }
        self.cleartext_warned.call_once(|| {
            tracing::warn!(
                "connector `{}`: the bind password is sent unencrypted to {} (plain ldap:// \
                 without StartTLS; allowed by allow_cleartext_bind = true)",
                self.connector,
                self.url
            )
        });
        Ok(())
    }
}

/// Why a cleartext bind is refused, and what to change (the caller names the connector).
pub(crate) fn cleartext_refused(url: &str) -> String {
    format!(
        "a simple bind to {url} would send bind_password unencrypted (plain ldap:// without \
         StartTLS, to a host that is not loopback): use ldaps:// or starttls = true, or set \
         allow_cleartext_bind = true to send it anyway"
    )
}

/// Whether the URL's host is this machine's loopback: an address in 127.0.0.0/8, ::1 (also
/// as an IPv4-mapped address), or the name `localhost`; no host at all means localhost.
fn is_loopback_url(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    match u.host() {
        None => true,
        // `ldap:` is not a scheme the URL standard knows, so an IPv4 address comes as a name.
        Some(url::Host::Domain(d)) => match d.parse::<std::net::Ipv4Addr>() {
            Ok(a) => a.is_loopback(),
            Err(_) => d
                .strip_suffix('.')
                .unwrap_or(d)
                .eq_ignore_ascii_case("localhost"),
        },
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => {
            a.is_loopback() || a.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
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
        s.check_cleartext()?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, starttls: bool, bind: Bind) -> ConnSettings {
        ConnSettings {
            connector: "dir".to_owned(),
            url: url.to_owned(),
            starttls,
            ca_file: None,
            tls_verify: true,
            bind,
            timeout: Duration::from_secs(1),
            allow_cleartext_bind: false,
            cleartext_warned: Arc::new(std::sync::Once::new()),
        }
    }

    fn simple() -> Bind {
        std::env::set_var("IDSYNC_CONN_TEST_PW", "pw");
        let password =
            idsync_connectors::resolve_secret("env:IDSYNC_CONN_TEST_PW", std::path::Path::new("."))
                .unwrap();
        Bind::Simple {
            dn: "cn=admin,dc=example,dc=test".to_owned(),
            password,
        }
    }

    #[test]
    fn only_a_password_in_cleartext_to_another_machine_is_a_cleartext_bind() {
        for url in [
            "ldap://192.0.2.10",
            "ldap://192.0.2.10:389/",
            "LDAP://ldap.example.test",
            "ldap://[2001:db8::1]:389",
            "ldap://localhost.example.test",
            "ldap://128.0.0.1",
        ] {
            let s = settings(url, false, simple());
            assert!(s.cleartext_bind(), "{url}");
            let e = s.check_cleartext().unwrap_err();
            assert!(e.contains("allow_cleartext_bind") && e.contains(url), "{e}");
        }
        for url in [
            "ldap://127.0.0.1:389",
            "ldap://127.8.9.10",
            "ldap://localhost:1389",
            "ldap://LOCALHOST.",
            "ldap://[::1]:389",
            "ldap://[::ffff:127.0.0.1]",
            "ldap:///",
        ] {
            assert!(!settings(url, false, simple()).cleartext_bind(), "{url}");
        }
        // Encrypted, or no password sent.
        let remote = "ldap://192.0.2.10";
        assert!(!settings("ldaps://192.0.2.10", false, simple()).cleartext_bind());
        assert!(!settings(remote, true, simple()).cleartext_bind());
        assert!(!settings(remote, false, Bind::Anonymous).cleartext_bind());
        assert!(!settings(remote, false, Bind::SaslExternal).cleartext_bind());
        // Allowed: let through (and warned about once).
        let mut s = settings(remote, false, simple());
        s.allow_cleartext_bind = true;
        assert!(s.check_cleartext().is_ok());
        assert!(s.cleartext_warned.is_completed());
    }
}
