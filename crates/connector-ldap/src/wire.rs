//! The full import's own LDAP reader: one connection (TLS and bind as [`ConnSettings`] say) that
//! runs a paged search (RFC 2696) and decodes the server's messages straight from the receive
//! buffer into [`RawEntry`]s.
//!
//! `ldap3` decodes every message into a tree of owned tags, copies the tree whole, then copies
//! each value again into a `SearchEntry`: at 100,000 entries that was most of an import's time
//! on the reading side. Here a message is read once: the BER is walked in place and each value
//! is copied once, into the vector the connector-space entry keeps. Requests (bind, StartTLS,
//! the search) are few and small, so they are built with `ldap3`'s ASN.1 types and its filter
//! parser and written by [`encode`].
//!
//! Malformed input from the server is an error naming what was wrong, never a panic.

use crate::conn::{result_text, Bind, ConnSettings};
use crate::entry::RawEntry;
use ldap3::asn1::{
    ASNTag, Boolean, Enumerated, Integer, OctetString, Sequence, StructureTag, Tag, TagClass, PL,
};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

const PAGED_OID: &str = "1.2.840.113556.1.4.319";
const STARTTLS_OID: &str = "1.3.6.1.4.1.1466.20037";

/// The server's messages the reader handles (application tags, constructed).
const BIND_RESPONSE: u8 = 0x61;
const SEARCH_ENTRY: u8 = 0x64;
const SEARCH_DONE: u8 = 0x65;
const SEARCH_REFERENCE: u8 = 0x73;
const EXTENDED_RESPONSE: u8 = 0x78;
const INTERMEDIATE_RESPONSE: u8 = 0x79;

enum Stream {
    /// Between the plain connection and its TLS session.
    Closed,
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Closed => Err(std::io::ErrorKind::NotConnected.into()),
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Closed => Ok(()),
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// A BER element read in place: its tag and its content.
struct Ber<'a>(&'a [u8]);

/// The length of the element at the start of `b`: `Ok(None)` while its header or content is
/// not all there yet.
fn element_len(b: &[u8]) -> Result<Option<(usize, usize)>, String> {
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] & 0x1f == 0x1f {
        return Err("a multi-byte BER tag (not used by LDAP)".to_owned());
    }
    let first = b[1];
    let (header, len) = if first < 0x80 {
        (2, first as usize)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err(format!("a BER length of {n} bytes"));
        }
        if b.len() < 2 + n {
            return Ok(None);
        }
        let len = b[2..2 + n]
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | x as usize);
        (2 + n, len)
    };
    Ok(Some((header, len)))
}

impl<'a> Ber<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    /// The next element's tag and content.
    fn next(&mut self, what: &str) -> Result<(u8, &'a [u8]), String> {
        let (header, len) = element_len(self.0)?.ok_or_else(|| format!("{what} is cut short"))?;
        let end = header
            .checked_add(len)
            .filter(|&e| e <= self.0.len())
            .ok_or_else(|| format!("{what} is cut short"))?;
        let tag = self.0[0];
        let content = &self.0[header..end];
        self.0 = &self.0[end..];
        Ok((tag, content))
    }

    /// The next element's content, which must carry `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> Result<&'a [u8], String> {
        let (t, content) = self.next(what)?;
        if t != tag {
            return Err(format!("{what} has tag {t:#04x}, not {tag:#04x}"));
        }
        Ok(content)
    }
}

fn integer(b: &[u8], what: &str) -> Result<i64, String> {
    if b.is_empty() || b.len() > 8 {
        return Err(format!("{what} is not an integer"));
    }
    let neg = b[0] & 0x80 != 0;
    let start: i64 = if neg { -1 } else { 0 };
    Ok(b.iter().fold(start, |acc, &x| (acc << 8) | x as i64))
}

fn text(b: &[u8], what: &str) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| format!("{what} is not UTF-8"))
}

/// Writes a tag built with `ldap3`'s ASN.1 types as BER (definite lengths).
fn encode(t: &StructureTag, out: &mut Vec<u8>) {
    let class = match t.class {
        TagClass::Universal => 0x00,
        TagClass::Application => 0x40,
        TagClass::Context => 0x80,
        TagClass::Private => 0xc0,
    };
    let mut content = Vec::new();
    let constructed = match &t.payload {
        PL::P(v) => {
            content.extend_from_slice(v);
            0
        }
        PL::C(children) => {
            for c in children {
                encode(c, &mut content);
            }
            0x20
        }
    };
    // LDAP's tags are all below 31: one byte.
    out.push(class | constructed | (t.id as u8 & 0x1f));
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(&content);
}

fn octets(b: &[u8]) -> Tag {
    Tag::OctetString(OctetString {
        inner: b.to_vec(),
        ..Default::default()
    })
}

fn int(i: i64) -> Tag {
    Tag::Integer(Integer {
        inner: i,
        ..Default::default()
    })
}

fn enumerated(i: i64) -> Tag {
    Tag::Enumerated(Enumerated {
        inner: i,
        ..Default::default()
    })
}

fn boolean(b: bool) -> Tag {
    Tag::Boolean(Boolean {
        inner: b,
        ..Default::default()
    })
}

/// An octet string of another class (a context-tagged part).
fn context_octets(id: u64, b: &[u8]) -> Tag {
    Tag::OctetString(OctetString {
        id,
        class: TagClass::Context,
        inner: b.to_vec(),
    })
}

/// A universal SEQUENCE of `inner`.
fn seq(inner: Vec<Tag>) -> Tag {
    Tag::Sequence(Sequence {
        inner,
        ..Default::default()
    })
}

/// A constructed element of another class (an LDAP operation, a context-tagged part).
fn tagged(class: TagClass, id: u64, inner: Vec<Tag>) -> Tag {
    Tag::Sequence(Sequence { id, class, inner })
}

/// The paged-results control (RFC 2696) asking for `size` entries after `cookie`.
fn paged_control(size: i64, cookie: &[u8]) -> Tag {
    let mut value = Vec::new();
    encode(
        &seq(vec![int(size), octets(cookie)]).into_structure(),
        &mut value,
    );
    seq(vec![octets(PAGED_OID.as_bytes()), octets(&value)])
}

/// Accepts any certificate (`tls_verify = false`, an explicit and logged choice) while still
/// checking the handshake's signatures.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client configuration the settings ask for: the named CA, or the system's roots, or
/// (explicitly) no verification.
fn tls_client_config(s: &ConnSettings) -> Result<Arc<rustls::ClientConfig>, String> {
    if let Some(ca) = &s.ca_file {
        if s.tls_verify {
            return crate::conn::tls_config(ca);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if s.tls_verify {
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(c);
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// The host (as TLS names it), the addresses and whether TLS starts at once (`ldaps://`), from
/// the URL as `ldap3` parses it (the `url` crate), default ports 389 and 636.
fn endpoint(url: &str) -> Result<(String, Vec<std::net::SocketAddr>, bool), String> {
    let bad = |m: String| format!("cannot connect to {url}: {m}");
    let u = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let ldaps = match u.scheme() {
        "ldaps" => true,
        "ldap" => false,
        other => return Err(bad(format!("scheme `{other}` is not ldap or ldaps"))),
    };
    let host = match u.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Ipv6(a)) => a.to_string(),
        None => "localhost".to_owned(),
    };
    let port = u.port().unwrap_or(if ldaps { 636 } else { 389 });
    let addrs = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|e| bad(e.to_string()))?
        .collect();
    Ok((host, addrs, ldaps))
}

/// One LDAP connection for reading.
pub(crate) struct Wire {
    stream: Stream,
    /// The receive buffer; `buf[..end]` holds bytes read (the rest was read into before, or
    /// zeroed when the buffer grew: it is never zeroed again).
    buf: Vec<u8>,
    /// Where the next message starts in `buf`; `buf[pos..end]` is read but not yet decoded.
    pos: usize,
    end: usize,
    next_id: i32,
}

/// A message: its id, its operation's tag and the ranges of its operation and controls in the
/// receive buffer.
struct Message {
    id: i64,
    op: u8,
    body: std::ops::Range<usize>,
    controls: Option<std::ops::Range<usize>>,
}

impl Wire {
    /// Connects (TLS as configured) and binds.
    pub fn open(s: &ConnSettings) -> Result<Wire, String> {
        s.check_cleartext()?;
        Self::open_inner(s).map_err(|m| crate::conn::at_server(&s.url, m))
    }

    fn open_inner(s: &ConnSettings) -> Result<Wire, String> {
        let (host, addrs, ldaps) = endpoint(&s.url)?;
        let mut last = None;
        let mut tcp = None;
        for a in addrs {
            match TcpStream::connect_timeout(&a, s.timeout) {
                Ok(t) => {
                    tcp = Some(t);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            format!(
                "cannot connect to {}: {}",
                s.url,
                last.map(|e| e.to_string())
                    .unwrap_or_else(|| "no address".to_owned())
            )
        })?;
        tcp.set_read_timeout(Some(s.timeout))
            .and_then(|_| tcp.set_write_timeout(Some(s.timeout)))
            .and_then(|_| tcp.set_nodelay(true))
            .map_err(|e| format!("cannot connect to {}: {e}", s.url))?;
        let mut w = Wire {
            stream: Stream::Plain(tcp),
            buf: vec![0; 1 << 16],
            pos: 0,
            end: 0,
            next_id: 1,
        };
        if ldaps || s.starttls {
            if !ldaps {
                let name = context_octets(0, STARTTLS_OID.as_bytes());
                let req = tagged(TagClass::Application, 23, vec![name]);
                let id = w.send(req, None)?;
                let m = w.reply(id, EXTENDED_RESPONSE, "StartTLS")?;
                let (rc, msg) = w.result(&m)?;
                if rc != 0 {
                    return Err(format!(
                        "cannot connect to {}: StartTLS refused: {}",
                        s.url,
                        result_text(rc, &msg)
                    ));
                }
            }
            w.start_tls(s, &host)?;
        }
        w.bind(&s.bind)?;
        Ok(w)
    }

    fn start_tls(&mut self, s: &ConnSettings, host: &str) -> Result<(), String> {
        let config = tls_client_config(s)?;
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| format!("cannot connect to {}: {e}", s.url))?;
        let conn = rustls::ClientConnection::new(config, name)
            .map_err(|e| format!("cannot connect to {}: TLS: {e}", s.url))?;
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Closed) else {
            return Err("TLS started twice".to_owned());
        };
        let mut tls = rustls::StreamOwned::new(conn, tcp);
        // The handshake now, so a certificate the settings do not trust fails the connection.
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| format!("cannot connect to {}: TLS: {e}", s.url))?;
        }
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn bind(&mut self, bind: &Bind) -> Result<(), String> {
        let auth = match bind {
            Bind::Anonymous => return Ok(()),
            Bind::Simple { dn, password } => {
                (dn.as_str(), context_octets(0, password.expose().as_bytes()))
            }
            Bind::SaslExternal => ("", tagged(TagClass::Context, 3, vec![octets(b"EXTERNAL")])),
        };
        let req = tagged(
            TagClass::Application,
            0,
            vec![int(3), octets(auth.0.as_bytes()), auth.1],
        );
        let id = self.send(req, None)?;
        let m = self.reply(id, BIND_RESPONSE, "bind")?;
        let (rc, msg) = self.result(&m)?;
        if rc != 0 {
            return Err(format!(
                "bind{} refused: {}",
                match bind {
                    Bind::Simple { dn, .. } => format!(" as `{dn}`"),
                    _ => String::new(),
                },
                result_text(rc, &msg)
            ));
        }
        Ok(())
    }

    /// Sends one request; returns its message id.
    fn send(&mut self, op: Tag, controls: Option<Tag>) -> Result<i32, String> {
        let id = self.next_id;
        self.next_id += 1;
        let mut inner = vec![int(id as i64), op];
        inner.extend(controls);
        let msg = seq(inner);
        let mut out = Vec::new();
        encode(&msg.into_structure(), &mut out);
        self.stream
            .write_all(&out)
            .and_then(|_| self.stream.flush())
            .map_err(|e| format!("sending to the server failed: {e}"))?;
        Ok(id)
    }

    /// Reads until one whole message is in the buffer and returns where its parts are.
    fn next_message(&mut self) -> Result<Message, String> {
        loop {
            match frame(&self.buf[..self.end], self.pos)? {
                Frame::Whole(m, end) => {
                    self.pos = end;
                    return Ok(m);
                }
                Frame::Needs(total) => self.fill(total)?,
            }
        }
    }

    /// Reads more bytes from the server, moving the undecoded rest to the front first, with
    /// room for a message of `total` bytes (a long one is read whole).
    fn fill(&mut self, total: usize) -> Result<(), String> {
        if self.pos > 0 {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let want = total.max(self.end + 16 * 1024);
        if self.buf.len() < want {
            self.buf.resize(want.max(self.buf.len() + (64 << 10)), 0);
        }
        let n = loop {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(match e.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                            "the server did not answer in time".to_owned()
                        }
                        _ => format!("reading from the server failed: {e}"),
                    });
                }
            }
        };
        if n == 0 {
            return Err("the server closed the connection".to_owned());
        }
        self.end += n;
        Ok(())
    }

    /// The reply to request `id`, which must be an `op`.
    fn reply(&mut self, id: i32, op: u8, what: &str) -> Result<Message, String> {
        loop {
            let m = self.next_message()?;
            if m.id == 0 && m.op == EXTENDED_RESPONSE {
                let (rc, msg) = self.result(&m)?;
                return Err(format!(
                    "the server ended the connection: {}",
                    result_text(rc, &msg)
                ));
            }
            if m.id != id as i64 || m.op == INTERMEDIATE_RESPONSE {
                continue;
            }
            if m.op != op {
                return Err(format!("the server answered {what} with tag {:#04x}", m.op));
            }
            return Ok(m);
        }
    }

    /// An LDAPResult's code and diagnostic message.
    fn result(&self, m: &Message) -> Result<(u32, String), String> {
        ldap_result(&self.buf[m.body.clone()])
    }

    /// The paged-results cookie among a message's controls (empty: the last page).
    fn paged_cookie(&self, m: &Message) -> Result<Vec<u8>, String> {
        match m.controls.clone() {
            Some(range) => paged_cookie(&self.buf[range]),
            None => Ok(Vec::new()),
        }
    }

    /// Reads every entry under `base` matching `filter` page by page, handing each
    /// SearchResultEntry's content (its BER, for [`decode_entry`] or [`entry_marks`]) to
    /// `entry`, which returns `Ok(false)` to stop. Referrals are skipped.
    pub fn paged_search(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[String],
        page: i32,
        entry: &mut dyn FnMut(&[u8]) -> Result<bool, String>,
    ) -> Result<(), String> {
        let filter = ldap3::parse_filter(filter)
            .map_err(|_| format!("filter `{filter}` is not a valid LDAP filter"))?;
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            let req = tagged(
                TagClass::Application,
                3,
                vec![
                    octets(base.as_bytes()),
                    // wholeSubtree, neverDerefAliases, no limits, types and values.
                    enumerated(2),
                    enumerated(0),
                    int(0),
                    int(0),
                    boolean(false),
                    filter.clone(),
                    seq(attrs.iter().map(|a| octets(a.as_bytes())).collect()),
                ],
            );
            let controls = tagged(
                TagClass::Context,
                0,
                vec![paged_control(page as i64, &cookie)],
            );
            let id = self.send(req, Some(controls))? as i64;
            loop {
                let m = self.next_message()?;
                if m.id == 0 && m.op == EXTENDED_RESPONSE {
                    let (rc, msg) = self.result(&m)?;
                    return Err(format!(
                        "the server ended the connection: {}",
                        result_text(rc, &msg)
                    ));
                }
                if m.id != id {
                    continue;
                }
                match m.op {
                    SEARCH_ENTRY => {
                        if !entry(&self.buf[m.body.clone()])? {
                            return Ok(());
                        }
                    }
                    SEARCH_REFERENCE | INTERMEDIATE_RESPONSE => {}
                    SEARCH_DONE => {
                        let (rc, msg) = self.result(&m)?;
                        if rc != 0 {
                            return Err(result_text(rc, &msg));
                        }
                        cookie = self.paged_cookie(&m)?;
                        break;
                    }
                    other => {
                        return Err(format!(
                            "the server answered the search with tag {other:#04x}"
                        ))
                    }
                }
            }
            if cookie.is_empty() {
                return Ok(());
            }
        }
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        // unbindRequest: [APPLICATION 2] NULL. The server closes the connection.
        let unbind = StructureTag {
            class: TagClass::Application,
            id: 2,
            payload: PL::P(Vec::new()),
        };
        let msg = StructureTag {
            class: TagClass::Universal,
            id: 16,
            payload: PL::C(vec![int(self.next_id as i64).into_structure(), unbind]),
        };
        let mut out = Vec::new();
        encode(&msg, &mut out);
        let _ = self.stream.write_all(&out);
    }
}

/// The largest message the reader accepts (a length beyond it is an error, not an allocation).
const MAX_MESSAGE: usize = 256 << 20;

/// What the receive buffer holds at `pos`.
enum Frame {
    /// A whole message, and where the next one starts.
    Whole(Message, usize),
    /// Not all of it yet: the bytes the message needs in all (0 while its length is unknown).
    Needs(usize),
}

/// The LDAPMessage at `buf[pos..]`, if it is all there.
fn frame(buf: &[u8], pos: usize) -> Result<Frame, String> {
    let bad = |m: String| format!("malformed message from the server: {m}");
    let Some((header, len)) = element_len(&buf[pos..]).map_err(bad)? else {
        return Ok(Frame::Needs(0));
    };
    if len > MAX_MESSAGE {
        return Err(bad(format!(
            "a message of {len} bytes (more than {MAX_MESSAGE})"
        )));
    }
    let end = pos + header + len;
    if end > buf.len() {
        return Ok(Frame::Needs(header + len));
    }
    if buf[pos] != 0x30 {
        return Err(bad(format!("tag {:#04x}", buf[pos])));
    }
    let at = |part: &[u8]| {
        let from = part.as_ptr() as usize - buf.as_ptr() as usize;
        from..from + part.len()
    };
    let mut r = Ber(&buf[pos + header..end]);
    let id = integer(r.expect(0x02, "the message id").map_err(bad)?, "the id").map_err(bad)?;
    let (op, body) = r.next("the operation").map_err(bad)?;
    let controls = if r.peek_tag() == Some(0xa0) {
        Some(at(r.expect(0xa0, "the controls").map_err(bad)?))
    } else {
        None
    };
    Ok(Frame::Whole(
        Message {
            id,
            op,
            body: at(body),
            controls,
        },
        end,
    ))
}

/// An LDAPResult's code and diagnostic message.
fn ldap_result(body: &[u8]) -> Result<(u32, String), String> {
    let bad = |e: String| format!("malformed result from the server: {e}");
    let mut r = Ber(body);
    let rc = integer(r.expect(0x0a, "the result code").map_err(bad)?, "the code").map_err(bad)?;
    r.expect(0x04, "the matched DN").map_err(bad)?;
    let msg = r.expect(0x04, "the diagnostic message").map_err(bad)?;
    Ok((rc as u32, String::from_utf8_lossy(msg).into_owned()))
}

/// The paged-results cookie among a message's controls (empty: none, or the last page).
fn paged_cookie(controls: &[u8]) -> Result<Vec<u8>, String> {
    let bad = |e: String| format!("malformed control from the server: {e}");
    let mut r = Ber(controls);
    while !r.is_empty() {
        let mut c = Ber(r.expect(0x30, "a control").map_err(bad)?);
        let oid = c.expect(0x04, "a control's type").map_err(bad)?;
        if oid != PAGED_OID.as_bytes() {
            continue;
        }
        if c.peek_tag() == Some(0x01) {
            c.next("the criticality").map_err(bad)?;
        }
        if c.is_empty() {
            return Ok(Vec::new());
        }
        let value = c.expect(0x04, "the control's value").map_err(bad)?;
        let mut v = Ber(Ber(value).expect(0x30, "the paged value").map_err(bad)?);
        v.expect(0x02, "the size").map_err(bad)?;
        return Ok(v.expect(0x04, "the cookie").map_err(bad)?.to_vec());
    }
    Ok(Vec::new())
}

/// Decodes a stream of server messages as the reader would (for fuzzing): every input ends in
/// decoded messages or an error, never a panic or an allocation beyond [`MAX_MESSAGE`].
#[doc(hidden)]
pub fn decode_stream(data: &[u8]) -> Result<usize, String> {
    let mut pos = 0;
    let mut n = 0;
    while pos < data.len() {
        let Frame::Whole(m, end) = frame(data, pos)? else {
            return Err("cut short".to_owned());
        };
        match m.op {
            SEARCH_ENTRY => {
                let body = &data[m.body.clone()];
                let decoded = decode_entry(body);
                // An entry the import lets wait unconverted must decode when it is converted.
                assert_eq!(
                    entry_marks(body, "entryUUID").is_ok(),
                    decoded.is_ok(),
                    "entry_marks and decode_entry disagree"
                );
                decoded?;
            }
            SEARCH_DONE | BIND_RESPONSE | EXTENDED_RESPONSE => {
                ldap_result(&data[m.body.clone()])?;
            }
            _ => {}
        }
        if let Some(c) = m.controls.clone() {
            paged_cookie(&data[c])?;
        }
        pos = end;
        n += 1;
    }
    Ok(n)
}

/// The values [`entry_marks`] finds.
pub(crate) struct Marks<'a> {
    pub anchor: Option<&'a [u8]>,
    pub modified: Option<&'a [u8]>,
}

/// What an import needs of an entry before it converts it, read in place: the first value of
/// the attribute named `anchor` and of modifyTimestamp (names compared without their options,
/// ignoring case). The whole entry is checked as [`decode_entry`] checks it, so an entry that
/// passes here decodes there.
pub(crate) fn entry_marks<'a>(b: &'a [u8], anchor: &str) -> Result<Marks<'a>, String> {
    let bad = |m: String| format!("malformed search entry from the server: {m}");
    let mut r = Ber(b);
    let dn = r.expect(0x04, "the DN").map_err(bad)?;
    std::str::from_utf8(dn).map_err(|_| bad("the DN is not UTF-8".to_owned()))?;
    let mut list = Ber(r.expect(0x30, "the attribute list").map_err(bad)?);
    let (mut first, mut modified) = (None, None);
    while !list.is_empty() {
        let mut pa = Ber(list.expect(0x30, "an attribute").map_err(bad)?);
        let name = pa.expect(0x04, "an attribute type").map_err(bad)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| bad("an attribute type is not UTF-8".to_owned()))?;
        let base = name.split(';').next().unwrap_or(name);
        let mut vals = Ber(pa.expect(0x31, "the values").map_err(bad)?);
        let mut one = None;
        while !vals.is_empty() {
            let v = vals.expect(0x04, "a value").map_err(bad)?;
            one = one.or(Some(v));
        }
        if base.eq_ignore_ascii_case(anchor) {
            first = first.or(one);
        } else if base.eq_ignore_ascii_case("modifyTimestamp") {
            modified = modified.or(one);
        }
    }
    Ok(Marks {
        anchor: first,
        modified,
    })
}

/// A SearchResultEntry's content as a [`RawEntry`]: each value copied once.
pub(crate) fn decode_entry(b: &[u8]) -> Result<RawEntry, String> {
    let bad = |m: String| format!("malformed search entry from the server: {m}");
    let mut r = Ber(b);
    let dn = text(r.expect(0x04, "the DN").map_err(bad)?, "the DN").map_err(bad)?;
    let mut list = Ber(r
        .expect(0x30, "the attribute list")
        .map_err(|m| bad(format!("{dn}: {m}")))?);
    let mut attrs = Vec::new();
    while !list.is_empty() {
        let in_dn = |m: String| bad(format!("{dn}: {m}"));
        let mut pa = Ber(list.expect(0x30, "an attribute").map_err(in_dn)?);
        let name = text(
            pa.expect(0x04, "an attribute type").map_err(in_dn)?,
            "an attribute type",
        )
        .map_err(in_dn)?;
        let mut vals = Ber(pa
            .expect(0x31, "the values")
            .map_err(|m| bad(format!("{dn}, attribute {name}: {m}")))?);
        let mut values = Vec::new();
        while !vals.is_empty() {
            let v = vals
                .expect(0x04, "a value")
                .map_err(|m| bad(format!("{dn}, attribute {name}: {m}")))?;
            values.push(v.to_vec());
        }
        attrs.push((name, values));
    }
    Ok(RawEntry { dn, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_addresses_and_tls() {
        let (host, addrs, tls) = endpoint("ldap://127.0.0.1:3890").unwrap();
        assert_eq!((host.as_str(), tls), ("127.0.0.1", false));
        assert_eq!(addrs, ["127.0.0.1:3890".parse().unwrap()]);
        let (host, addrs, tls) = endpoint("ldaps://[::1]/dc=x").unwrap();
        assert_eq!((host.as_str(), tls), ("::1", true));
        assert_eq!(addrs, ["[::1]:636".parse().unwrap()]);
        let (_, addrs, _) = endpoint("ldap://127.0.0.1").unwrap();
        assert_eq!(addrs[0].port(), 389);
        assert!(endpoint("ldap://h:port").is_err());
        assert!(endpoint("http://127.0.0.1").is_err());
    }

    /// A SearchResultEntry `uid=a,dc=x` with one attribute `cn` holding `values`.
    fn entry_tag(values: &[&[u8]]) -> Tag {
        let cn = seq(vec![
            octets(b"cn"),
            Tag::Set(ldap3::asn1::Set {
                inner: values.iter().map(|v| octets(v)).collect(),
                ..Default::default()
            }),
        ]);
        tagged(
            TagClass::Application,
            4,
            vec![octets(b"uid=a,dc=x"), seq(vec![cn])],
        )
    }

    #[test]
    fn an_entry_decodes_from_its_ber_and_bad_ber_is_an_error() {
        let mut out = Vec::new();
        encode(&entry_tag(&[b"A", &[0u8; 300]]).into_structure(), &mut out);
        let mut r = Ber(&out);
        let (t, body) = r.next("entry").unwrap();
        assert_eq!(t, SEARCH_ENTRY);
        let e = decode_entry(body).unwrap();
        assert_eq!(e.dn, "uid=a,dc=x");
        assert_eq!(e.attrs[0].0, "cn");
        assert_eq!(e.attrs[0].1, vec![b"A".to_vec(), vec![0u8; 300]]);
        // Every truncation is an error, never a panic.
        for cut in 0..body.len() {
            assert!(decode_entry(&body[..cut]).is_err(), "cut at {cut}");
            assert!(entry_marks(&body[..cut], "cn").is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn an_entry_s_anchor_and_timestamp_are_read_in_place() {
        let attr = |name: &[u8], v: &[u8]| {
            seq(vec![
                octets(name),
                Tag::Set(ldap3::asn1::Set {
                    inner: vec![octets(v)],
                    ..Default::default()
                }),
            ])
        };
        let entry = tagged(
            TagClass::Application,
            4,
            vec![
                octets(b"uid=a,dc=x"),
                seq(vec![
                    attr(b"cn", b"A"),
                    attr(b"ENTRYUUID;x-opt", b"u-1"),
                    attr(b"modifyTimestamp", b"20260101000000Z"),
                ]),
            ],
        );
        let mut out = Vec::new();
        encode(&entry.into_structure(), &mut out);
        let (_, body) = Ber(&out).next("entry").unwrap();
        let m = entry_marks(body, "entryUUID").unwrap();
        assert_eq!(m.anchor, Some(&b"u-1"[..]));
        assert_eq!(m.modified, Some(&b"20260101000000Z"[..]));
        assert!(entry_marks(body, "nsUniqueId").unwrap().anchor.is_none());
    }

    /// A server's answer to a paged search: one entry, then the result with the cookie.
    fn answer() -> Vec<u8> {
        let msg = |id: i64, op: Tag, controls: Option<Tag>| {
            let mut inner = vec![int(id), op];
            inner.extend(controls);
            let mut out = Vec::new();
            encode(&seq(inner).into_structure(), &mut out);
            out
        };
        let done = tagged(
            TagClass::Application,
            5,
            vec![enumerated(0), octets(b""), octets(b"")],
        );
        let controls = tagged(TagClass::Context, 0, vec![paged_control(0, b"next")]);
        let mut out = msg(2, entry_tag(&[b"A"]), None);
        out.extend(msg(2, done, Some(controls)));
        out
    }

    #[test]
    fn a_page_is_framed_decoded_and_its_cookie_read() {
        let data = answer();
        assert_eq!(decode_stream(&data), Ok(2));
        let Frame::Whole(first, end) = frame(&data, 0).unwrap() else {
            panic!("the entry is whole")
        };
        assert_eq!((first.id, first.op), (2, SEARCH_ENTRY));
        let Frame::Whole(done, _) = frame(&data, end).unwrap() else {
            panic!("the result is whole")
        };
        assert_eq!(done.op, SEARCH_DONE);
        assert_eq!(ldap_result(&data[done.body.clone()]).unwrap().0, 0);
        assert_eq!(
            paged_cookie(&data[done.controls.unwrap()]).unwrap(),
            b"next"
        );
        // Every prefix is framed as incomplete or refused, never a panic.
        for cut in 0..data.len() {
            assert!(decode_stream(&data[..cut]).is_err() || cut == 0 || cut == end);
        }
        // A length beyond the limit is refused before anything is allocated for it.
        let huge = [0x30, 0x84, 0x7f, 0xff, 0xff, 0xff, 0x02, 0x01, 0x01];
        let err = decode_stream(&huge).unwrap_err();
        assert!(err.contains("more than"), "{err}");
    }

    #[test]
    fn integers_are_twos_complement() {
        assert_eq!(integer(&[0x05], "x").unwrap(), 5);
        assert_eq!(integer(&[0x00, 0x80], "x").unwrap(), 128);
        assert_eq!(integer(&[0xff], "x").unwrap(), -1);
        assert!(integer(&[], "x").is_err());
    }
}
