//! TLS ClientHello inspection.
//!
//! kscflow is passive: it never terminates TLS, so the only things it can
//! learn about an encrypted flow come from the first message the client
//! sends in the clear, the ClientHello. This module looks at the first
//! client payload of a flow (possibly reassembled from a few TCP segments)
//! once, and answers four questions: is this TLS at all, is the ClientHello
//! complete yet, which protocol version does the client offer, and which
//! server name (SNI) does it ask for. The offered version is what an audit
//! flags (anything older than TLS 1.2), and the server name helps tell apart
//! services that share an address and port.
//!
//! # Wire format
//!
//! A ClientHello is a handshake message carried in one or more
//! `TLSPlaintext` records ([RFC 5246 § 6.2.1], [RFC 8446 § 5.1]):
//!
//! ```text
//! record:    type(1) = 22 | legacy_record_version(2) | length(2) | fragment
//! handshake: msg_type(1) = 1 | length(3) | body
//! body:      legacy_version(2) | random(32) | legacy_session_id<0..32>
//!            | cipher_suites<2..2^16-2> | legacy_compression_methods<1..2^8-1>
//!            | extensions<0..2^16-1>        (the block may be absent before TLS 1.3)
//! ```
//!
//! ([RFC 5246 § 7.4.1.2], [RFC 8446 § 4.1.2].) The handshake layer is a
//! byte stream: one message may be split over several consecutive
//! handshake records, so the parser reads through a cursor that steps over
//! record headers transparently instead of copying the fragments together.
//! Nothing here allocates; the module only uses `core`.
//!
//! The version a TLS 1.3 client really offers is not `legacy_version`
//! (frozen at 0x0303, "TLS 1.2") but the highest entry of the
//! `supported_versions` extension ([RFC 8446 § 4.2.1]), ignoring the GREASE
//! values that clients insert to keep servers tolerant ([RFC 8701 § 2]).
//! The server name is the first `host_name` entry of the `server_name`
//! extension ([RFC 6066 § 3]); the first ALPN protocol ([RFC 7301 § 3.1]) is
//! reported as well because it is cheap.
//!
//! Very old clients open with an SSL 2.0-compatible ClientHello: a two-byte
//! header with the high bit set, message type 1, and the version the client
//! offers (0x0002 for SSL 2.0 itself, 0x0300 and up for SSL 3.0/TLS clients
//! that also want to reach SSL 2.0 servers) ([RFC 6101 appendix E],
//! [RFC 5246 appendix E.2]). It has no extensions, hence no SNI.
//!
//! # Outcome
//!
//! The inspector distinguishes a prefix that is still consistent with a
//! ClientHello ([`Inspect::NeedMore`]) from one that already contradicts
//! itself ([`Inspect::Malformed`]): every declared length is checked
//! against its enclosing length *before* checking whether the bytes are
//! present, so truncating a valid hello anywhere yields `NeedMore`, never
//! `Malformed`. Every access goes through `get` or fixed-size array
//! patterns: no input can make it panic.
//!
//! [RFC 5246 § 6.2.1]: https://www.rfc-editor.org/rfc/rfc5246#section-6.2.1
//! [RFC 5246 § 7.4.1.2]: https://www.rfc-editor.org/rfc/rfc5246#section-7.4.1.2
//! [RFC 5246 appendix E.2]: https://www.rfc-editor.org/rfc/rfc5246#appendix-E.2
//! [RFC 6066 § 3]: https://www.rfc-editor.org/rfc/rfc6066#section-3
//! [RFC 6101 appendix E]: https://www.rfc-editor.org/rfc/rfc6101#appendix-E
//! [RFC 7301 § 3.1]: https://www.rfc-editor.org/rfc/rfc7301#section-3.1
//! [RFC 8446 § 4.1.2]: https://www.rfc-editor.org/rfc/rfc8446#section-4.1.2
//! [RFC 8446 § 4.2.1]: https://www.rfc-editor.org/rfc/rfc8446#section-4.2.1
//! [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
//! [RFC 8701 § 2]: https://www.rfc-editor.org/rfc/rfc8701#section-2

use core::fmt;

/// `ContentType.handshake` ([RFC 5246 § 6.2.1], [RFC 8446 § 5.1]).
///
/// [RFC 5246 § 6.2.1]: https://www.rfc-editor.org/rfc/rfc5246#section-6.2.1
/// [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
const CONTENT_TYPE_HANDSHAKE: u8 = 22;
/// `HandshakeType.client_hello`; also the SSL 2.0 `MSG-CLIENT-HELLO` code.
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
/// Largest record fragment accepted. Plaintext records are limited to 2^14
/// bytes ([RFC 8446 § 5.1]); we tolerate the 2^14 + 2048 bound of
/// `TLSCiphertext` ([RFC 5246 § 6.2.3]) so that a sloppy but real client is
/// still recognised, and reject anything larger as not a sane record.
///
/// [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
/// [RFC 5246 § 6.2.3]: https://www.rfc-editor.org/rfc/rfc5246#section-6.2.3
const MAX_RECORD_LEN: usize = (1 << 14) + 2048;
/// Smallest ClientHello body: version, random, empty session id, one cipher
/// suite, one compression method, no extensions.
const MIN_CLIENT_HELLO_LEN: usize = 2 + 32 + 1 + (2 + 2) + (1 + 1);
/// Largest ClientHello body the vector bounds of [RFC 8446 § 4.1.2] allow;
/// a declared length beyond it cannot be a ClientHello.
///
/// [RFC 8446 § 4.1.2]: https://www.rfc-editor.org/rfc/rfc8446#section-4.1.2
const MAX_CLIENT_HELLO_LEN: usize = 2 + 32 + (1 + 32) + (2 + 65534) + (1 + 255) + (2 + 65535);
/// `ExtensionType.server_name` ([RFC 6066 § 3]).
///
/// [RFC 6066 § 3]: https://www.rfc-editor.org/rfc/rfc6066#section-3
const EXT_SERVER_NAME: u16 = 0;
/// `ExtensionType.application_layer_protocol_negotiation` ([RFC 7301 § 3.1]).
///
/// [RFC 7301 § 3.1]: https://www.rfc-editor.org/rfc/rfc7301#section-3.1
const EXT_ALPN: u16 = 16;
/// `ExtensionType.supported_versions` ([RFC 8446 § 4.2.1]).
///
/// [RFC 8446 § 4.2.1]: https://www.rfc-editor.org/rfc/rfc8446#section-4.2.1
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// `NameType.host_name` ([RFC 6066 § 3]).
///
/// [RFC 6066 § 3]: https://www.rfc-editor.org/rfc/rfc6066#section-3
const SNI_HOST_NAME: u8 = 0;

/// A protocol version as carried on the wire: major byte, then minor byte.
///
/// Ordering is that of the raw wire value, which matches protocol age for
/// every released version: SSL 2.0 is 0x0002, SSL 3.0 is 0x0300, and TLS
/// 1.0 to 1.3 are 0x0301 to 0x0304.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TlsVersion(pub u16);

impl TlsVersion {
    /// SSL 2.0, as announced in an SSL 2.0 ClientHello ([RFC 6101 appendix E]).
    ///
    /// [RFC 6101 appendix E]: https://www.rfc-editor.org/rfc/rfc6101#appendix-E
    pub const SSL2: TlsVersion = TlsVersion(0x0002);
    /// SSL 3.0 ([RFC 6101]).
    ///
    /// [RFC 6101]: https://www.rfc-editor.org/rfc/rfc6101
    pub const SSL3: TlsVersion = TlsVersion(0x0300);
    /// TLS 1.0 ([RFC 2246]).
    ///
    /// [RFC 2246]: https://www.rfc-editor.org/rfc/rfc2246
    pub const TLS10: TlsVersion = TlsVersion(0x0301);
    /// TLS 1.1 ([RFC 4346]).
    ///
    /// [RFC 4346]: https://www.rfc-editor.org/rfc/rfc4346
    pub const TLS11: TlsVersion = TlsVersion(0x0302);
    /// TLS 1.2 ([RFC 5246]).
    ///
    /// [RFC 5246]: https://www.rfc-editor.org/rfc/rfc5246
    pub const TLS12: TlsVersion = TlsVersion(0x0303);
    /// TLS 1.3 ([RFC 8446]).
    ///
    /// [RFC 8446]: https://www.rfc-editor.org/rfc/rfc8446
    pub const TLS13: TlsVersion = TlsVersion(0x0304);

    /// Human-readable name: `"SSLv2"`, `"SSLv3"`, `"TLS 1.0"` ... `"TLS 1.3"`,
    /// or `"unknown"` for any other value (GREASE, TLS 1.3 drafts 0x7fXX,
    /// garbage).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self.0 {
            0x0002 => "SSLv2",
            0x0300 => "SSLv3",
            0x0301 => "TLS 1.0",
            0x0302 => "TLS 1.1",
            0x0303 => "TLS 1.2",
            0x0304 => "TLS 1.3",
            _ => "unknown",
        }
    }

    /// Whether the version is older than TLS 1.2. SSL 2.0 and 3.0 are
    /// prohibited ([RFC 6176], [RFC 7568]) and TLS 1.0/1.1 deprecated
    /// ([RFC 8996]); this is what an audit flags.
    ///
    /// [RFC 6176]: https://www.rfc-editor.org/rfc/rfc6176
    /// [RFC 7568]: https://www.rfc-editor.org/rfc/rfc7568
    /// [RFC 8996]: https://www.rfc-editor.org/rfc/rfc8996
    #[must_use]
    pub const fn is_obsolete(self) -> bool {
        self.0 < Self::TLS12.0
    }

    /// GREASE values are 0x0a0a, 0x1a1a, ... 0xfafa ([RFC 8701 § 2]): they
    /// carry no meaning and must be ignored.
    ///
    /// [RFC 8701 § 2]: https://www.rfc-editor.org/rfc/rfc8701#section-2
    const fn is_grease(self) -> bool {
        self.0 & 0x0f0f == 0x0a0a && self.0 >> 8 == self.0 & 0xff
    }

    /// Sort key used to pick the highest offered version. It is the wire
    /// value, except that the TLS 1.3 draft code points 0x7f00 | draft (sent
    /// by 2017-2018 clients next to 0x0304) rank between TLS 1.2 and the
    /// final TLS 1.3 rather than above everything.
    const fn rank(self) -> u32 {
        let v = self.0 as u32;
        if v & 0xff00 == 0x7f00 {
            (0x0303 << 8) | (v & 0xff)
        } else {
            v << 8
        }
    }
}

impl fmt::Display for TlsVersion {
    /// Writes [`TlsVersion::name`]; unknown values also show the wire value,
    /// e.g. `unknown (0x7f1c)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            "unknown" => write!(f, "unknown (0x{:04x})", self.0),
            name => f.pad(name),
        }
    }
}

/// What a complete ClientHello says. Borrowed fields point into the buffer
/// given to [`inspect_client_hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientHello<'a> {
    /// `TLSPlaintext.legacy_record_version` of the first record; usually
    /// 0x0301 even for TLS 1.3 ([RFC 8446 § 5.1]). [`TlsVersion::SSL2`] for an
    /// SSL 2.0-compatible hello.
    ///
    /// [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
    pub record_version: TlsVersion,
    /// `ClientHello.legacy_version` (`client_version` before TLS 1.3): the
    /// highest version a pre-1.3 client supports; 0x0303 for TLS 1.3
    /// clients ([RFC 8446 § 4.1.2]).
    ///
    /// [RFC 8446 § 4.1.2]: https://www.rfc-editor.org/rfc/rfc8446#section-4.1.2
    pub legacy_version: TlsVersion,
    /// The highest version the client offers: the maximum non-GREASE entry
    /// of `supported_versions` if that extension is present (servers must
    /// then ignore `legacy_version`, [RFC 8446 § 4.2.1]), else
    /// `legacy_version`.
    ///
    /// [RFC 8446 § 4.2.1]: https://www.rfc-editor.org/rfc/rfc8446#section-4.2.1
    pub version: TlsVersion,
    /// The first `host_name` of the `server_name` extension ([RFC 6066 § 3]),
    /// if it is valid UTF-8 (RFC 6066 requires ASCII). `None` when absent,
    /// not valid UTF-8, or cut in two by a record boundary (it cannot be
    /// borrowed then; only happens if the client fragments the hello inside
    /// the name).
    ///
    /// [RFC 6066 § 3]: https://www.rfc-editor.org/rfc/rfc6066#section-3
    pub sni: Option<&'a str>,
    /// The first protocol of the ALPN extension ([RFC 7301 § 3.1]), e.g.
    /// `b"h2"`. `None` when absent or cut in two by a record boundary.
    ///
    /// [RFC 7301 § 3.1]: https://www.rfc-editor.org/rfc/rfc7301#section-3.1
    pub alpn_first: Option<&'a [u8]>,
}

/// Outcome of [`inspect_client_hello`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inspect<'a> {
    /// A complete ClientHello was parsed.
    Hello(ClientHello<'a>),
    /// The bytes start like a TLS handshake record (or an SSL 2.0 hello) and
    /// are consistent so far, but the ClientHello is not complete in the
    /// buffer yet. An empty buffer is `NeedMore` too.
    NeedMore,
    /// The bytes are not a TLS handshake record: plaintext such as HTTP or
    /// the KSC legacy protocol. For buffers of five bytes or more this is
    /// exactly when [`looks_like_tls`] is false; shorter buffers that could
    /// still grow into a TLS record give `NeedMore` instead.
    NotTls,
    /// A TLS handshake record header, but the contents are inconsistent:
    /// lengths that overflow their container, a handshake message other
    /// than ClientHello, a non-handshake record in the middle of the hello,
    /// an oversized or empty record, and the like.
    Malformed,
}

/// Parses the ClientHello at the start of the first client payload of a
/// flow.
///
/// `buf` holds the client's first bytes, reassembled across TCP segments if
/// need be. A ClientHello fragmented over several consecutive handshake
/// records ([RFC 8446 § 5.1]) is followed through the record headers without
/// copying. Bytes after the ClientHello are ignored. Call again with a
/// longer buffer when the answer is [`Inspect::NeedMore`].
///
/// [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
#[must_use]
pub fn inspect_client_hello(buf: &[u8]) -> Inspect<'_> {
    let parsed = match classify(buf) {
        Start::Short => return Inspect::NeedMore,
        Start::NotTls => return Inspect::NotTls,
        Start::Ssl2 => parse_ssl2(buf),
        Start::Tls => parse_tls(buf),
    };
    match parsed {
        Ok(hello) => Inspect::Hello(hello),
        Err(Stop::NeedMore) => Inspect::NeedMore,
        Err(Stop::Malformed) => Inspect::Malformed,
    }
}

/// Cheap test on the first bytes of the first client payload: is it a TLS
/// record or an SSL 2.0-compatible ClientHello?
///
/// True for content type 22 (handshake) followed by record version major 3
/// and minor 0..=4 ([RFC 5246 § 6.2.1]), and for a two-byte SSL 2.0 header
/// followed by message type 1 and version 0x0002 or 0x0300..=0x0304
/// ([RFC 5246 appendix E.2]). Lengths and contents are not checked, so this
/// says "the first payload is a TLS record" even when the hello cannot be
/// parsed. Needs 3 bytes (TLS) or 5 bytes (SSL 2.0); shorter buffers give
/// `false`.
///
/// [RFC 5246 § 6.2.1]: https://www.rfc-editor.org/rfc/rfc5246#section-6.2.1
/// [RFC 5246 appendix E.2]: https://www.rfc-editor.org/rfc/rfc5246#appendix-E.2
#[must_use]
pub fn looks_like_tls(buf: &[u8]) -> bool {
    matches!(classify(buf), Start::Tls | Start::Ssl2)
}

/// Whether `buf` starts with any TLS record header — change_cipher_spec
/// (20), alert (21), handshake (22), application_data (23) or heartbeat
/// (24), version 3.x, and a length within the RFC 8446 §5.2 limit. Used for
/// connections seen mid-stream, whose first captured client bytes are
/// usually application data rather than a ClientHello.
#[must_use]
pub fn looks_like_tls_record(buf: &[u8]) -> bool {
    match *buf {
        [ct, 3, minor, hi, lo, ..] if (20..=24).contains(&ct) && minor <= 4 => {
            u16::from_be_bytes([hi, lo]) as usize <= (1 << 14) + 2048
        }
        _ => false,
    }
}

/// What the first bytes of a payload say about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// A TLS record header (type 22, version 3.0..=3.4).
    Tls,
    /// An SSL 2.0-compatible ClientHello header.
    Ssl2,
    /// Neither.
    NotTls,
    /// Too short to tell, but consistent with one of the above so far.
    Short,
}

/// Decides from the first three (TLS) or five (SSL 2.0) bytes; the single
/// source of truth for both [`looks_like_tls`] and the first step of
/// [`inspect_client_hello`], so the two always agree.
fn classify(buf: &[u8]) -> Start {
    match *buf {
        [] => Start::Short,
        [CONTENT_TYPE_HANDSHAKE, ref rest @ ..] => match *rest {
            [] | [3] => Start::Short,
            [3, minor, ..] if minor <= 4 => Start::Tls,
            _ => Start::NotTls,
        },
        // SSL 2.0 record header with the high bit set (two-byte form, the
        // only one a compatible hello may use), then msg_type and version.
        [b0, _, ref rest @ ..] if b0 & 0x80 != 0 => match *rest {
            [] | [HANDSHAKE_CLIENT_HELLO] | [HANDSHAKE_CLIENT_HELLO, 0 | 3] => Start::Short,
            [HANDSHAKE_CLIENT_HELLO, 0, 2, ..] => Start::Ssl2,
            [HANDSHAKE_CLIENT_HELLO, 3, minor, ..] if minor <= 4 => Start::Ssl2,
            _ => Start::NotTls,
        },
        [b0] if b0 & 0x80 != 0 => Start::Short,
        _ => Start::NotTls,
    }
}

/// Why parsing stopped without a ClientHello.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Consistent so far, but the buffer ends too early.
    NeedMore,
    /// A declared length or value contradicts its container.
    Malformed,
}

type Res<T> = Result<T, Stop>;

/// Parses an SSL 2.0-compatible ClientHello ([RFC 5246 appendix E.2]):
///
/// ```text
/// msg_length(2, high bit set) | msg_type(1) = 1 | version(2)
/// | cipher_spec_length(2) | session_id_length(2) | challenge_length(2)
/// | cipher_specs | session_id | challenge
/// ```
///
/// [RFC 5246 appendix E.2]: https://www.rfc-editor.org/rfc/rfc5246#appendix-E.2
fn parse_ssl2(buf: &[u8]) -> Res<ClientHello<'_>> {
    let Some(&[b0, b1, _msg_type, v_major, v_minor, specs_hi, specs_lo, sid_hi, sid_lo, chal_hi, chal_lo]) =
        buf.first_chunk::<11>()
    else {
        return Err(Stop::NeedMore);
    };
    let msg_len = usize::from(u16::from_be_bytes([b0 & 0x7f, b1]));
    let cipher_specs = usize::from(u16::from_be_bytes([specs_hi, specs_lo]));
    let session_id = usize::from(u16::from_be_bytes([sid_hi, sid_lo]));
    let challenge = usize::from(u16::from_be_bytes([chal_hi, chal_lo]));
    // Cipher specs are 3 bytes each and there is at least one; the session
    // id is empty or 16 bytes; the challenge is 16..=32 bytes (RFC 6101
    // appendix E); and the three vectors fill the message exactly.
    let consistent = cipher_specs != 0
        && cipher_specs % 3 == 0
        && (session_id == 0 || session_id == 16)
        && (16..=32).contains(&challenge)
        && 9 + cipher_specs + session_id + challenge == msg_len;
    if !consistent {
        return Err(Stop::Malformed);
    }
    if buf.len() < 2 + msg_len {
        return Err(Stop::NeedMore);
    }
    let version = TlsVersion(u16::from_be_bytes([v_major, v_minor]));
    Ok(ClientHello { record_version: TlsVersion::SSL2, legacy_version: version, version, sni: None, alpn_first: None })
}

/// Parses a ClientHello carried in TLS handshake records
/// ([RFC 8446 § 4.1.2], [RFC 5246 § 7.4.1.2]).
///
/// [RFC 8446 § 4.1.2]: https://www.rfc-editor.org/rfc/rfc8446#section-4.1.2
/// [RFC 5246 § 7.4.1.2]: https://www.rfc-editor.org/rfc/rfc5246#section-7.4.1.2
fn parse_tls(buf: &[u8]) -> Res<ClientHello<'_>> {
    let Some(&[_, major, minor]) = buf.first_chunk::<3>() else {
        return Err(Stop::NeedMore);
    };
    let record_version = TlsVersion(u16::from_be_bytes([major, minor]));
    let mut cur = Cursor::new(buf);

    // Handshake header: a client speaks first with a ClientHello; any other
    // handshake message from the client at this point is a protocol error.
    if cur.u8(usize::MAX)? != HANDSHAKE_CLIENT_HELLO {
        return Err(Stop::Malformed);
    }
    let len = cur.u24(usize::MAX)?;
    if !(MIN_CLIENT_HELLO_LEN..=MAX_CLIENT_HELLO_LEN).contains(&len) {
        return Err(Stop::Malformed);
    }
    let end = cur.end_of(len, usize::MAX)?;

    let legacy_version = TlsVersion(cur.u16(end)?);
    cur.skip(32, end)?; // random
    let session_id = usize::from(cur.u8(end)?);
    if session_id > 32 {
        return Err(Stop::Malformed);
    }
    cur.skip(session_id, end)?;
    let cipher_suites = usize::from(cur.u16(end)?);
    if cipher_suites < 2 || cipher_suites % 2 != 0 {
        return Err(Stop::Malformed);
    }
    cur.skip(cipher_suites, end)?;
    let compression_methods = usize::from(cur.u8(end)?);
    if compression_methods == 0 {
        return Err(Stop::Malformed);
    }
    cur.skip(compression_methods, end)?;

    let mut hello =
        ClientHello { record_version, legacy_version, version: legacy_version, sni: None, alpn_first: None };
    // "The presence of extensions can be detected by determining whether
    // there are bytes following the compression_methods" (RFC 5246 §7.4.1.2).
    if cur.off == end {
        return Ok(hello);
    }
    let extensions = usize::from(cur.u16(end)?);
    if cur.end_of(extensions, end)? != end {
        return Err(Stop::Malformed);
    }

    // "There MUST NOT be more than one extension of the same type in a
    // given extension block" (RFC 8446 §4.2, RFC 5246 §7.4.1.4); enforced
    // for the ones we read so that the answer is unambiguous.
    let (mut seen_sni, mut seen_alpn, mut seen_versions) = (false, false, false);
    while cur.off < end {
        let ext_type = cur.u16(end)?;
        let ext_len = usize::from(cur.u16(end)?);
        let ext_end = cur.end_of(ext_len, end)?;
        match ext_type {
            EXT_SERVER_NAME => {
                once(&mut seen_sni)?;
                hello.sni = parse_server_name(&mut cur, ext_end)?;
            }
            EXT_ALPN => {
                once(&mut seen_alpn)?;
                hello.alpn_first = parse_alpn(&mut cur, ext_end)?;
            }
            EXT_SUPPORTED_VERSIONS => {
                once(&mut seen_versions)?;
                if let Some(v) = parse_supported_versions(&mut cur, ext_end)? {
                    hello.version = v;
                }
            }
            _ => cur.skip(ext_len, ext_end)?,
        }
        if cur.off != ext_end {
            return Err(Stop::Malformed);
        }
    }
    Ok(hello)
}

/// Marks an extension as seen; a second occurrence is malformed.
fn once(seen: &mut bool) -> Res<()> {
    if core::mem::replace(seen, true) {
        Err(Stop::Malformed)
    } else {
        Ok(())
    }
}

/// `server_name` extension body ([RFC 6066 § 3]):
/// `ServerName server_name_list<1..2^16-1>`, each entry
/// `name_type(1) | HostName<1..2^16-1>`. Returns the first `host_name` if it
/// is valid UTF-8 and lies within one record.
///
/// [RFC 6066 § 3]: https://www.rfc-editor.org/rfc/rfc6066#section-3
fn parse_server_name<'a>(cur: &mut Cursor<'a>, end: usize) -> Res<Option<&'a str>> {
    let list_len = usize::from(cur.u16(end)?);
    if list_len == 0 || cur.end_of(list_len, end)? != end {
        return Err(Stop::Malformed);
    }
    let mut first_host: Option<Option<&'a str>> = None;
    while cur.off < end {
        let name_type = cur.u8(end)?;
        let name_len = usize::from(cur.u16(end)?);
        if name_type == SNI_HOST_NAME && name_len == 0 {
            return Err(Stop::Malformed);
        }
        let name = cur.take(name_len, end)?;
        if name_type == SNI_HOST_NAME && first_host.is_none() {
            first_host = Some(name.and_then(|n| core::str::from_utf8(n).ok()));
        }
    }
    Ok(first_host.flatten())
}

/// ALPN extension body ([RFC 7301 § 3.1]):
/// `ProtocolName protocol_name_list<2..2^16-1>`, each `opaque<1..2^8-1>`.
/// Returns the first protocol if it lies within one record.
///
/// [RFC 7301 § 3.1]: https://www.rfc-editor.org/rfc/rfc7301#section-3.1
fn parse_alpn<'a>(cur: &mut Cursor<'a>, end: usize) -> Res<Option<&'a [u8]>> {
    let list_len = usize::from(cur.u16(end)?);
    if list_len < 2 || cur.end_of(list_len, end)? != end {
        return Err(Stop::Malformed);
    }
    let mut first: Option<Option<&'a [u8]>> = None;
    while cur.off < end {
        let name_len = usize::from(cur.u8(end)?);
        if name_len == 0 {
            return Err(Stop::Malformed);
        }
        let name = cur.take(name_len, end)?;
        first.get_or_insert(name);
    }
    Ok(first.flatten())
}

/// `supported_versions` extension body in a ClientHello ([RFC 8446 § 4.2.1]):
/// `ProtocolVersion versions<2..254>`. Returns the highest non-GREASE
/// version, or `None` if there is none.
///
/// [RFC 8446 § 4.2.1]: https://www.rfc-editor.org/rfc/rfc8446#section-4.2.1
fn parse_supported_versions(cur: &mut Cursor<'_>, end: usize) -> Res<Option<TlsVersion>> {
    let list_len = usize::from(cur.u8(end)?);
    if list_len < 2 || list_len % 2 != 0 || cur.end_of(list_len, end)? != end {
        return Err(Stop::Malformed);
    }
    let mut best: Option<TlsVersion> = None;
    while cur.off < end {
        let v = TlsVersion(cur.u16(end)?);
        if !v.is_grease() && best.is_none_or(|b| v.rank() > b.rank()) {
            best = Some(v);
        }
    }
    Ok(best)
}

/// Reads the handshake byte stream out of consecutive handshake records in
/// place, stepping over record headers as it goes.
///
/// Every read takes the logical offset `end` (in handshake-stream bytes) of
/// the innermost enclosing vector: reading past it is [`Stop::Malformed`],
/// while reading past the end of `buf` is [`Stop::NeedMore`]. The bound is
/// checked first, so a truncated but valid hello always asks for more.
struct Cursor<'a> {
    buf: &'a [u8],
    /// Index in `buf` of the next unread handshake byte.
    pos: usize,
    /// Index in `buf` just past the current record's fragment, as declared
    /// by its header; may lie beyond `buf.len()`. Invariant: `pos <= frag_end`.
    frag_end: usize,
    /// Handshake-stream bytes consumed so far.
    off: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor before the first record header of `buf`.
    fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0, frag_end: 0, off: 0 }
    }

    /// Logical end of a vector of `len` bytes starting here, which must not
    /// extend past `end`.
    fn end_of(&self, len: usize, end: usize) -> Res<usize> {
        self.off.checked_add(len).filter(|&e| e <= end).ok_or(Stop::Malformed)
    }

    /// Steps over the record header at `pos` (the previous fragment is
    /// exhausted). The ClientHello must continue in another non-empty
    /// handshake record: records of other types must not be interleaved
    /// with a fragmented handshake message, and zero-length handshake
    /// fragments are forbidden ([RFC 8446 § 5.1], [RFC 5246 § 6.2.1]).
    ///
    /// [RFC 8446 § 5.1]: https://www.rfc-editor.org/rfc/rfc8446#section-5.1
    /// [RFC 5246 § 6.2.1]: https://www.rfc-editor.org/rfc/rfc5246#section-6.2.1
    fn next_record(&mut self) -> Res<()> {
        let header = self.buf.get(self.pos..).ok_or(Stop::NeedMore)?;
        let Some(&[content_type, major, minor, len_hi, len_lo]) = header.first_chunk::<5>() else {
            return Err(Stop::NeedMore);
        };
        let len = usize::from(u16::from_be_bytes([len_hi, len_lo]));
        if content_type != CONTENT_TYPE_HANDSHAKE || major != 3 || minor > 4 || len == 0 || len > MAX_RECORD_LEN {
            return Err(Stop::Malformed);
        }
        self.pos += 5;
        self.frag_end = self.pos + len;
        Ok(())
    }

    /// Makes sure the current fragment has at least one unread byte.
    fn ensure_fragment(&mut self) -> Res<()> {
        if self.pos == self.frag_end {
            self.next_record()?;
        }
        Ok(())
    }

    /// Reads one byte.
    fn u8(&mut self, end: usize) -> Res<u8> {
        let new_off = self.end_of(1, end)?;
        self.ensure_fragment()?;
        let byte = *self.buf.get(self.pos).ok_or(Stop::NeedMore)?;
        self.pos += 1;
        self.off = new_off;
        Ok(byte)
    }

    /// Reads a big-endian `uint16`, which may straddle a record boundary.
    fn u16(&mut self, end: usize) -> Res<u16> {
        Ok(u16::from_be_bytes([self.u8(end)?, self.u8(end)?]))
    }

    /// Reads a big-endian `uint24` (handshake message length).
    fn u24(&mut self, end: usize) -> Res<usize> {
        let [hi, mid, lo] = [self.u8(end)?, self.u8(end)?, self.u8(end)?];
        Ok(usize::from(hi) << 16 | usize::from(mid) << 8 | usize::from(lo))
    }

    /// Consumes `n` bytes. Returns them as one slice of `buf` if they lie
    /// in a single record fragment, `None` if they span a record boundary.
    fn take(&mut self, n: usize, end: usize) -> Res<Option<&'a [u8]>> {
        let new_off = self.end_of(n, end)?;
        if n == 0 {
            return Ok(Some(&[]));
        }
        self.ensure_fragment()?;
        if n <= self.frag_end - self.pos {
            let bytes = self.buf.get(self.pos..self.pos + n).ok_or(Stop::NeedMore)?;
            self.pos += n;
            self.off = new_off;
            return Ok(Some(bytes));
        }
        let mut left = n;
        while left > 0 {
            self.ensure_fragment()?;
            let step = left.min(self.frag_end - self.pos);
            if self.pos + step > self.buf.len() {
                return Err(Stop::NeedMore);
            }
            self.pos += step;
            left -= step;
        }
        self.off = new_off;
        Ok(None)
    }

    /// Consumes `n` bytes without looking at them.
    fn skip(&mut self, n: usize, end: usize) -> Res<()> {
        self.take(n, end).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real ClientHellos, captured on loopback only. A throwaway self-signed
    // certificate for CN=audit.example.com was served by
    //   openssl s_server -accept 127.0.0.1:44433 -cert cert.pem -key key.pem -www
    // (OpenSSL 3.0.19) while `tcpdump -i lo -w hello.pcap 'tcp port 44433'`
    // was running; each array is the TCP payload of the client's first data
    // segment, extracted from the pcap. Random, session id and key share are
    // whatever the client drew at the time.

    /// `openssl s_client -connect 127.0.0.1:44433 -servername audit.example.com
    /// -alpn h2,http/1.1` (negotiated TLS 1.3). Record version 0x0301,
    /// legacy_version 0x0303, supported_versions [0x0304, 0x0303, 0x0302,
    /// 0x0301].
    const TLS13_HELLO: [u8; 341] = [
        0x16, 0x03, 0x01, 0x01, 0x50, 0x01, 0x00, 0x01, 0x4c, 0x03, 0x03, 0x17, 0xb7, 0x5e, 0xad, 0x52, 0xd2, 0x7b,
        0x2b, 0xd9, 0x52, 0x12, 0x6c, 0x17, 0xde, 0xce, 0x42, 0x5d, 0x06, 0xe1, 0x94, 0xe2, 0x3b, 0x2f, 0x84, 0x8e,
        0x0c, 0x0d, 0x16, 0x61, 0x41, 0xca, 0xde, 0x20, 0x88, 0xb7, 0xb9, 0x2c, 0x0d, 0xb7, 0x25, 0xf0, 0x01, 0x65,
        0xae, 0x5c, 0xab, 0xc3, 0x12, 0x2a, 0x39, 0xcd, 0xaf, 0xd7, 0x30, 0x8a, 0x91, 0x8d, 0xc8, 0xfa, 0x98, 0xb8,
        0x8c, 0x75, 0x0e, 0x86, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f,
        0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
        0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33,
        0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0xc5,
        0x00, 0x00, 0x00, 0x16, 0x00, 0x14, 0x00, 0x00, 0x11, 0x61, 0x75, 0x64, 0x69, 0x74, 0x2e, 0x65, 0x78, 0x61,
        0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a,
        0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01,
        0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00, 0x0c, 0x02, 0x68,
        0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x16, 0x00, 0x00, 0x00, 0x17, 0x00, 0x00,
        0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x07, 0x08, 0x08, 0x08, 0x09,
        0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x03, 0x03,
        0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03,
        0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33, 0x00, 0x26, 0x00, 0x24, 0x00,
        0x1d, 0x00, 0x20, 0xd8, 0x2a, 0xfd, 0xe1, 0x8d, 0x69, 0x66, 0x11, 0x5f, 0xe8, 0x74, 0x8c, 0xf2, 0xea, 0x07,
        0xd2, 0x4f, 0x39, 0xce, 0x26, 0xb0, 0x9b, 0xb6, 0xe3, 0xa4, 0xf2, 0x69, 0x1b, 0xd3, 0x76, 0x03, 0x66,
    ];

    /// `openssl s_client -connect 127.0.0.1:44433 -servername audit.example.com
    /// -tls1_2`: no supported_versions extension, legacy_version 0x0303.
    const TLS12_HELLO: [u8; 214] = [
        0x16, 0x03, 0x01, 0x00, 0xd1, 0x01, 0x00, 0x00, 0xcd, 0x03, 0x03, 0x2f, 0xe9, 0x29, 0xda, 0x24, 0x50, 0x6e,
        0x08, 0xdd, 0x4d, 0x58, 0xb8, 0xf3, 0xbf, 0xe9, 0xac, 0x89, 0x5e, 0x19, 0x17, 0x17, 0x61, 0x43, 0x0c, 0x8a,
        0xa8, 0xad, 0xcc, 0x9a, 0xeb, 0xf8, 0x08, 0x00, 0x00, 0x38, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f, 0xcc, 0xa9,
        0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b, 0xc0, 0x23,
        0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33, 0x00, 0x9d,
        0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x6c, 0x00, 0x00,
        0x00, 0x16, 0x00, 0x14, 0x00, 0x00, 0x11, 0x61, 0x75, 0x64, 0x69, 0x74, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70,
        0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c,
        0x00, 0x0a, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16,
        0x00, 0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03,
        0x08, 0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01,
        0x05, 0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02,
    ];

    /// `openssl s_client -connect 127.0.0.1:44433 -servername audit.example.com
    /// -tls1 -cipher DEFAULT@SECLEVEL=0`: legacy_version 0x0301 (the server,
    /// at its default security level, then refused it with an alert; the
    /// hello itself is genuine).
    const TLS10_HELLO: [u8; 130] = [
        0x16, 0x03, 0x01, 0x00, 0x7d, 0x01, 0x00, 0x00, 0x79, 0x03, 0x01, 0x20, 0x92, 0x06, 0x1c, 0x00, 0x5c, 0x5c,
        0xa4, 0xf3, 0xf8, 0xd3, 0xf6, 0xcd, 0x27, 0xf3, 0xdf, 0xb9, 0xe8, 0xdc, 0xc5, 0x64, 0x26, 0x45, 0x6f, 0x6e,
        0x0e, 0x20, 0xbd, 0x59, 0xa3, 0x63, 0x2d, 0x00, 0x00, 0x12, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09,
        0xc0, 0x13, 0x00, 0x33, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x00, 0x3e, 0x00, 0x00, 0x00, 0x16,
        0x00, 0x14, 0x00, 0x00, 0x11, 0x61, 0x75, 0x64, 0x69, 0x74, 0x2e, 0x65, 0x78, 0x61, 0x6d, 0x70, 0x6c, 0x65,
        0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a, 0x00, 0x0c, 0x00, 0x0a,
        0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x00, 0x23, 0x00, 0x00, 0x00, 0x16, 0x00, 0x00,
        0x00, 0x17, 0x00, 0x00,
    ];

    /// A ClientHello fragmented by the client itself over two handshake
    /// records (512 + 112 bytes), both in one TCP segment:
    /// `openssl s_client -connect 127.0.0.1:44433 -servername audit.example.com
    /// -max_send_frag 512 -alpn h2,http/1.1,x-kscflow-test-proto-00,...,-11`
    /// (the long ALPN list only makes the hello exceed 512 bytes).
    const TLS13_FRAGMENTED_HELLO: [u8; 634] = [
        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x02, 0x6c, 0x03, 0x03, 0xb5, 0x9e, 0x39, 0xa2, 0xb7, 0x26, 0xa5,
        0xfb, 0xd4, 0x09, 0x8f, 0x85, 0x07, 0xfd, 0x01, 0x5c, 0x2e, 0xf0, 0xc9, 0x0f, 0xdb, 0x16, 0x15, 0x3a, 0xee,
        0x8d, 0x81, 0x67, 0x97, 0x7c, 0x04, 0x6a, 0x20, 0x6a, 0x49, 0xdc, 0x83, 0x01, 0x23, 0x71, 0x0b, 0x4c, 0xd9,
        0x85, 0xbb, 0x2c, 0x11, 0xe8, 0xc6, 0x28, 0x24, 0xb3, 0x1a, 0x3c, 0x44, 0xa6, 0x64, 0xb4, 0xe8, 0xcc, 0xad,
        0xce, 0x2e, 0x7d, 0xf5, 0x00, 0x3e, 0x13, 0x02, 0x13, 0x03, 0x13, 0x01, 0xc0, 0x2c, 0xc0, 0x30, 0x00, 0x9f,
        0xcc, 0xa9, 0xcc, 0xa8, 0xcc, 0xaa, 0xc0, 0x2b, 0xc0, 0x2f, 0x00, 0x9e, 0xc0, 0x24, 0xc0, 0x28, 0x00, 0x6b,
        0xc0, 0x23, 0xc0, 0x27, 0x00, 0x67, 0xc0, 0x0a, 0xc0, 0x14, 0x00, 0x39, 0xc0, 0x09, 0xc0, 0x13, 0x00, 0x33,
        0x00, 0x9d, 0x00, 0x9c, 0x00, 0x3d, 0x00, 0x3c, 0x00, 0x35, 0x00, 0x2f, 0x00, 0xff, 0x01, 0x00, 0x01, 0xe5,
        0x00, 0x00, 0x00, 0x16, 0x00, 0x14, 0x00, 0x00, 0x11, 0x61, 0x75, 0x64, 0x69, 0x74, 0x2e, 0x65, 0x78, 0x61,
        0x6d, 0x70, 0x6c, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0x00, 0x0b, 0x00, 0x04, 0x03, 0x00, 0x01, 0x02, 0x00, 0x0a,
        0x00, 0x16, 0x00, 0x14, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x1e, 0x00, 0x19, 0x00, 0x18, 0x01, 0x00, 0x01, 0x01,
        0x01, 0x02, 0x01, 0x03, 0x01, 0x04, 0x00, 0x23, 0x00, 0x00, 0x00, 0x10, 0x01, 0x2e, 0x01, 0x2c, 0x02, 0x68,
        0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c,
        0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x30, 0x17, 0x78,
        0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74,
        0x6f, 0x2d, 0x30, 0x31, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73,
        0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x32, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c,
        0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x33, 0x17, 0x78,
        0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74,
        0x6f, 0x2d, 0x30, 0x34, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73,
        0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x35, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c,
        0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x36, 0x17, 0x78,
        0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74,
        0x6f, 0x2d, 0x30, 0x37, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73,
        0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x38, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c,
        0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x30, 0x39, 0x17, 0x78,
        0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74,
        0x6f, 0x2d, 0x31, 0x30, 0x17, 0x78, 0x2d, 0x6b, 0x73, 0x63, 0x66, 0x6c, 0x6f, 0x77, 0x2d, 0x74, 0x65, 0x73,
        0x74, 0x2d, 0x70, 0x72, 0x6f, 0x74, 0x6f, 0x2d, 0x31, 0x31, 0x00, 0x16, 0x00, 0x16, 0x03, 0x01, 0x00, 0x70,
        0x00, 0x00, 0x17, 0x00, 0x00, 0x00, 0x0d, 0x00, 0x2a, 0x00, 0x28, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08,
        0x07, 0x08, 0x08, 0x08, 0x09, 0x08, 0x0a, 0x08, 0x0b, 0x08, 0x04, 0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05,
        0x01, 0x06, 0x01, 0x03, 0x03, 0x03, 0x01, 0x03, 0x02, 0x04, 0x02, 0x05, 0x02, 0x06, 0x02, 0x00, 0x2b, 0x00,
        0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02, 0x03, 0x01, 0x00, 0x2d, 0x00, 0x02, 0x01, 0x01, 0x00, 0x33,
        0x00, 0x26, 0x00, 0x24, 0x00, 0x1d, 0x00, 0x20, 0x03, 0x55, 0xa6, 0xda, 0x93, 0x1d, 0x32, 0x70, 0x6b, 0x13,
        0x3d, 0x82, 0x84, 0xf1, 0x43, 0xb5, 0xf1, 0xdb, 0xd0, 0x8c, 0xeb, 0xbf, 0x27, 0xed, 0x1b, 0xfe, 0xd2, 0xbf,
        0xe5, 0x57, 0xc6, 0x5b,
    ];

    /// The ClientHello in `inspect_client_hello(buf)`; fails the test otherwise.
    fn hello(buf: &[u8]) -> ClientHello<'_> {
        match inspect_client_hello(buf) {
            Inspect::Hello(hello) => hello,
            other => panic!("expected a ClientHello, got {other:?}"),
        }
    }

    /// The outcome for a buffer that must not parse, detached from the
    /// buffer's lifetime.
    fn verdict(buf: &[u8]) -> Inspect<'static> {
        match inspect_client_hello(buf) {
            Inspect::Hello(h) => panic!("unexpected ClientHello {h:?}"),
            Inspect::NeedMore => Inspect::NeedMore,
            Inspect::NotTls => Inspect::NotTls,
            Inspect::Malformed => Inspect::Malformed,
        }
    }

    /// Wraps a handshake message in records with fragments of the given
    /// sizes; whatever is left goes into one last record.
    fn records(handshake: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut push = |fragment: &[u8]| {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
            out.extend_from_slice(fragment);
        };
        let mut rest = handshake;
        for &n in sizes {
            let (fragment, tail) = rest.split_at(n.min(rest.len()));
            push(fragment);
            rest = tail;
        }
        if !rest.is_empty() {
            push(rest);
        }
        out
    }

    /// Wraps a handshake message in records of `n` bytes each.
    fn records_of(handshake: &[u8], n: usize) -> Vec<u8> {
        records(handshake, &vec![n; handshake.len().div_ceil(n)])
    }

    /// A minimal hand-built ClientHello handshake message; `extensions:
    /// None` leaves the extension block out altogether (SSL 3.0 style).
    fn client_hello(legacy_version: u16, extensions: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&legacy_version.to_be_bytes());
        body.extend_from_slice(&[0x42; 32]); // random
        body.push(0); // empty legacy_session_id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x00, 0x2f]); // two suites
        body.extend_from_slice(&[1, 0]); // null compression
        if let Some(extensions) = extensions {
            let mut block = Vec::new();
            for (ext_type, data) in extensions {
                block.extend_from_slice(&ext_type.to_be_bytes());
                block.extend_from_slice(&(data.len() as u16).to_be_bytes());
                block.extend_from_slice(data);
            }
            body.extend_from_slice(&(block.len() as u16).to_be_bytes());
            body.extend_from_slice(&block);
        }
        let mut message = vec![1];
        message.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        message.extend_from_slice(&body);
        message
    }

    fn ext_sni(names: &[(u8, &[u8])]) -> (u16, Vec<u8>) {
        let mut list = Vec::new();
        for (name_type, name) in names {
            list.push(*name_type);
            list.extend_from_slice(&(name.len() as u16).to_be_bytes());
            list.extend_from_slice(name);
        }
        let mut data = (list.len() as u16).to_be_bytes().to_vec();
        data.extend_from_slice(&list);
        (EXT_SERVER_NAME, data)
    }

    fn ext_versions(versions: &[u16]) -> (u16, Vec<u8>) {
        let mut data = vec![(versions.len() * 2) as u8];
        for v in versions {
            data.extend_from_slice(&v.to_be_bytes());
        }
        (EXT_SUPPORTED_VERSIONS, data)
    }

    /// An SSL 2.0-compatible ClientHello ([RFC 5246 appendix E.2]) offering
    /// `version`, with two cipher specs and a 16-byte challenge.
    fn ssl2_hello(version: u16, challenge_len: u16) -> Vec<u8> {
        let cipher_specs = [0x00, 0x00, 0x2f, 0x01, 0x00, 0x80];
        let msg_len = 9 + cipher_specs.len() as u16 + challenge_len;
        let mut out = (0x8000 | msg_len).to_be_bytes().to_vec();
        out.push(1);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&(cipher_specs.len() as u16).to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&challenge_len.to_be_bytes());
        out.extend_from_slice(&cipher_specs);
        out.extend(std::iter::repeat_n(0x5a, challenge_len as usize));
        out
    }

    #[test]
    fn real_tls13_hello() {
        let h = hello(&TLS13_HELLO);
        assert_eq!(h.record_version, TlsVersion::TLS10);
        assert_eq!(h.legacy_version, TlsVersion::TLS12);
        assert_eq!(h.version, TlsVersion::TLS13);
        assert_eq!(h.sni, Some("audit.example.com"));
        assert_eq!(h.alpn_first, Some(&b"h2"[..]));
        assert!(!h.version.is_obsolete());
        assert!(looks_like_tls(&TLS13_HELLO));
    }

    #[test]
    fn real_tls12_hello() {
        let h = hello(&TLS12_HELLO);
        assert_eq!(h.record_version, TlsVersion::TLS10);
        assert_eq!(h.legacy_version, TlsVersion::TLS12);
        assert_eq!(h.version, TlsVersion::TLS12);
        assert_eq!(h.sni, Some("audit.example.com"));
        assert_eq!(h.alpn_first, None);
        assert!(!h.version.is_obsolete());
    }

    #[test]
    fn real_tls10_hello() {
        let h = hello(&TLS10_HELLO);
        assert_eq!(h.record_version, TlsVersion::TLS10);
        assert_eq!(h.legacy_version, TlsVersion::TLS10);
        assert_eq!(h.version, TlsVersion::TLS10);
        assert_eq!(h.sni, Some("audit.example.com"));
        assert!(h.version.is_obsolete());
    }

    #[test]
    fn real_fragmented_hello() {
        // Two records: 5 + 512 bytes, then 5 + 112 bytes.
        assert_eq!(TLS13_FRAGMENTED_HELLO[3..5], [0x02, 0x00]);
        assert_eq!(TLS13_FRAGMENTED_HELLO[517..522], [22, 3, 1, 0, 112]);
        let h = hello(&TLS13_FRAGMENTED_HELLO);
        assert_eq!(h.version, TlsVersion::TLS13);
        assert_eq!(h.legacy_version, TlsVersion::TLS12);
        assert_eq!(h.sni, Some("audit.example.com"));
        assert_eq!(h.alpn_first, Some(&b"h2"[..]));
        // The first record alone is only the beginning.
        assert_eq!(inspect_client_hello(&TLS13_FRAGMENTED_HELLO[..517]), Inspect::NeedMore);
    }

    /// All the valid hellos the tests know, real and hand-built.
    fn valid_samples() -> Vec<Vec<u8>> {
        let grease = client_hello(
            0x0303,
            Some(&[
                (0x0a0a, vec![]),
                ext_sni(&[(0, b"ksc.example.org")]),
                ext_versions(&[0x3a3a, 0x0304, 0x0303]),
                (0xfafa, vec![0]),
            ]),
        );
        vec![
            TLS13_HELLO.to_vec(),
            TLS12_HELLO.to_vec(),
            TLS10_HELLO.to_vec(),
            TLS13_FRAGMENTED_HELLO.to_vec(),
            records(&grease, &[]),
            records_of(&TLS13_HELLO[5..], 1),
            records_of(&TLS13_HELLO[5..], 7),
            records(&client_hello(0x0300, None), &[]),
            ssl2_hello(0x0301, 16),
            ssl2_hello(0x0002, 32),
        ]
    }

    #[test]
    fn every_prefix_needs_more() {
        for sample in valid_samples() {
            assert!(matches!(inspect_client_hello(&sample), Inspect::Hello(_)));
            for k in 0..sample.len() {
                let prefix = &sample[..k];
                assert_eq!(inspect_client_hello(prefix), Inspect::NeedMore, "prefix of {k} bytes of {sample:02x?}");
                if k >= 5 {
                    assert!(looks_like_tls(prefix));
                }
            }
        }
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        let mut buf = TLS13_HELLO.to_vec();
        buf.extend_from_slice(&[20, 3, 3, 0, 1, 1]); // change_cipher_spec
        buf.extend_from_slice(b"garbage");
        assert_eq!(hello(&buf), hello(&TLS13_HELLO));
    }

    #[test]
    fn plaintext_is_not_tls() {
        let plaintexts: [&[u8]; 6] = [
            b"GET / HTTP/1.1\r\nHost: ksc.example.org\r\n\r\n",
            b"POST /api HTTP/1.1\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"\x00\x00\x00\x2c\x01\x00\x00\x00", // length-prefixed binary
            b"\x17\x03\x03\x00\x20",             // TLS application data
            b"\x16\x02\x00\x00\x20",             // type 22, not version 3.x
        ];
        for p in plaintexts {
            assert_eq!(inspect_client_hello(p), Inspect::NotTls, "{p:02x?}");
            assert!(!looks_like_tls(p), "{p:02x?}");
        }
        assert_eq!(inspect_client_hello(b"G"), Inspect::NotTls);
        // Too short to tell, but might still become TLS.
        assert_eq!(inspect_client_hello(b""), Inspect::NeedMore);
        assert_eq!(inspect_client_hello(b"\x16\x03"), Inspect::NeedMore);
        assert!(!looks_like_tls(b"\x16\x03"));
        assert!(looks_like_tls(b"\x16\x03\x01"));
    }

    #[test]
    fn hello_split_across_two_records_at_every_point() {
        let handshake = &TLS13_HELLO[5..];
        let whole = hello(&TLS13_HELLO);
        let host = b"audit.example.com";
        let host_at = handshake.windows(host.len()).position(|w| w == host).unwrap();
        let alpn_at = handshake.windows(3).position(|w| w == b"\x02h2").unwrap() + 1;
        for split in 1..handshake.len() {
            let buf = records(handshake, &[split]);
            let h = hello(&buf);
            assert_eq!(h.record_version, whole.record_version);
            assert_eq!(h.legacy_version, whole.legacy_version);
            assert_eq!(h.version, TlsVersion::TLS13, "split at {split}");
            // A name cut in two by the record boundary cannot be borrowed.
            let host_cut = split > host_at && split < host_at + host.len();
            assert_eq!(h.sni.is_none(), host_cut, "split at {split}");
            let alpn_cut = split == alpn_at + 1;
            assert_eq!(h.alpn_first.is_none(), alpn_cut, "split at {split}");
        }
    }

    #[test]
    fn hello_in_one_byte_records() {
        // Extreme fragmentation: every length field spans record headers.
        let buf = records_of(&TLS13_HELLO[5..], 1);
        let h = hello(&buf);
        assert_eq!(h.version, TlsVersion::TLS13);
        assert_eq!(h.legacy_version, TlsVersion::TLS12);
        assert_eq!(h.sni, None); // 17 bytes over 17 records
        assert_eq!(h.alpn_first, None);
    }

    #[test]
    fn grease_in_supported_versions_is_ignored() {
        let greases: Vec<u16> = (0..16).map(|i| 0x0a0a | (i << 12) | (i << 4)).collect();
        assert_eq!(greases[0], 0x0a0a);
        assert_eq!(greases[15], 0xfafa);
        for &g in &greases {
            assert!(TlsVersion(g).is_grease());
            let cases = [([g, 0x0304, 0x0303], TlsVersion::TLS13), ([0x0303, g, 0x0302], TlsVersion::TLS12)];
            for (versions, expected) in cases {
                // A GREASE extension type rides along, as browsers send it.
                let ext = [(g, vec![]), ext_versions(&versions)];
                let buf = records(&client_hello(0x0303, Some(&ext)), &[]);
                assert_eq!(hello(&buf).version, expected, "{versions:04x?}");
            }
            // Nothing but GREASE: fall back to legacy_version.
            let buf = records(&client_hello(0x0303, Some(&[ext_versions(&[g])])), &[]);
            assert_eq!(hello(&buf).version, TlsVersion::TLS12);
        }
        for not_grease in [0x0a1a, 0x0a0b, 0x0303, 0x1a0a] {
            assert!(!TlsVersion(not_grease).is_grease());
        }
    }

    #[test]
    fn tls13_drafts_rank_below_final() {
        let pick = |versions: &[u16]| {
            let buf = records(&client_hello(0x0303, Some(&[ext_versions(versions)])), &[]);
            hello(&buf).version
        };
        assert_eq!(pick(&[0x7f1c, 0x0304, 0x0303]), TlsVersion::TLS13);
        assert_eq!(pick(&[0x0303, 0x7f17, 0x7f1c]), TlsVersion(0x7f1c));
        assert_eq!(pick(&[0x0302, 0x0301]), TlsVersion::TLS11);
    }

    #[test]
    fn hello_without_extensions() {
        let buf = records(&client_hello(0x0300, None), &[]);
        let h = hello(&buf);
        assert_eq!(h.version, TlsVersion::SSL3);
        assert_eq!(h.sni, None);
        assert_eq!(h.alpn_first, None);
        // An empty extension block is fine too (TLS 1.2 allows it).
        let buf = records(&client_hello(0x0303, Some(&[])), &[]);
        let h = hello(&buf);
        assert_eq!(h.version, TlsVersion::TLS12);
    }

    #[test]
    fn sni_first_host_name_and_invalid_utf8() {
        let buf = |names: &[(u8, &[u8])]| records(&client_hello(0x0303, Some(&[ext_sni(names)])), &[]);
        let b = buf(&[(7, b"other"), (0, b"first.example"), (0, b"second.example")]);
        assert_eq!(hello(&b).sni, Some("first.example"));
        let b = buf(&[(0, b"\xff\xfebad"), (0, b"ok.example")]);
        assert_eq!(hello(&b).sni, None);
        let b = buf(&[(0, "bücher.example".as_bytes())]);
        assert_eq!(hello(&b).sni, Some("bücher.example"));
        // HostName<1..2^16-1>: an empty host name is a framing error.
        assert_eq!(inspect_client_hello(&buf(&[(0, b"")])), Inspect::Malformed);
    }

    #[test]
    fn ssl2_compatible_hello() {
        let b = ssl2_hello(0x0301, 16);
        assert!(looks_like_tls(&b));
        let h = hello(&b);
        assert_eq!(h.record_version, TlsVersion::SSL2);
        assert_eq!(h.legacy_version, TlsVersion::TLS10);
        assert_eq!(h.version, TlsVersion::TLS10);
        assert_eq!(h.sni, None);
        assert_eq!(hello(&ssl2_hello(0x0002, 32)).version, TlsVersion::SSL2);
        // Challenge shorter than 16 bytes is not allowed.
        assert_eq!(inspect_client_hello(&ssl2_hello(0x0301, 8)), Inspect::Malformed);
        // Wrong message type or version: not an SSL 2.0 hello at all.
        let mut b = ssl2_hello(0x0301, 16);
        b[2] = 4;
        assert_eq!(inspect_client_hello(&b), Inspect::NotTls);
        let mut b = ssl2_hello(0x0301, 16);
        b[3] = 7;
        assert_eq!(inspect_client_hello(&b), Inspect::NotTls);
    }

    #[test]
    fn malformed_hellos() {
        let handshake = &TLS13_HELLO[5..];
        let mutate = |at: usize, value: u8| {
            let mut b = TLS13_HELLO.to_vec();
            b[at] = value;
            verdict(&b)
        };
        // ServerHello (type 2) from the client.
        assert_eq!(mutate(5, 2), Inspect::Malformed);
        // Record length 18433 > 2^14 + 2048; 18432 is still acceptable
        // (and the rest of that record is not needed once the hello ends).
        let mut b = TLS13_HELLO.to_vec();
        b[3..5].copy_from_slice(&18433u16.to_be_bytes());
        assert_eq!(verdict(&b), Inspect::Malformed);
        b[3..5].copy_from_slice(&18432u16.to_be_bytes());
        assert_eq!(hello(&b).version, TlsVersion::TLS13);
        // Empty handshake record.
        assert_eq!(inspect_client_hello(&[22, 3, 1, 0, 0]), Inspect::Malformed);
        // Handshake length beyond any possible ClientHello, or below.
        assert_eq!(mutate(6, 0xff), Inspect::Malformed);
        assert_eq!(inspect_client_hello(&records(&[1, 0, 0, 40], &[])), Inspect::Malformed);
        // Session id longer than 32 bytes (offset 5 + 4 + 2 + 32).
        assert_eq!(mutate(43, 33), Inspect::Malformed);
        // Odd cipher suite length (high byte at 76, low byte at 77).
        assert_eq!(mutate(77, 0x3f), Inspect::Malformed);
        // Extension block longer than the message.
        let ext_len_at = 5 + 4 + 2 + 32 + 1 + 32 + 2 + 0x3e + 2;
        assert_eq!(TLS13_HELLO[ext_len_at..ext_len_at + 2], [0x00, 0xc5]);
        assert_eq!(mutate(ext_len_at + 1, 0xc6), Inspect::Malformed);
        assert_eq!(mutate(ext_len_at + 1, 0xc4), Inspect::Malformed);
        // An alert record in the middle of a fragmented hello.
        let mut b = records(handshake, &[100]);
        b[105] = 21;
        assert_eq!(inspect_client_hello(&b), Inspect::Malformed);
        // Duplicate extension, odd supported_versions length.
        let dup = [ext_sni(&[(0, b"a")]), ext_sni(&[(0, b"b")])];
        let b = records(&client_hello(0x0303, Some(&dup)), &[]);
        assert_eq!(inspect_client_hello(&b), Inspect::Malformed);
        let odd = [(EXT_SUPPORTED_VERSIONS, vec![3, 3, 4, 3])];
        let b = records(&client_hello(0x0303, Some(&odd)), &[]);
        assert_eq!(inspect_client_hello(&b), Inspect::Malformed);
    }

    #[test]
    fn version_names() {
        let names = [
            (TlsVersion::SSL2, "SSLv2", true),
            (TlsVersion::SSL3, "SSLv3", true),
            (TlsVersion::TLS10, "TLS 1.0", true),
            (TlsVersion::TLS11, "TLS 1.1", true),
            (TlsVersion::TLS12, "TLS 1.2", false),
            (TlsVersion::TLS13, "TLS 1.3", false),
        ];
        for (v, name, obsolete) in names {
            assert_eq!(v.name(), name);
            assert_eq!(v.to_string(), name);
            assert_eq!(v.is_obsolete(), obsolete);
        }
        assert_eq!(TlsVersion(0x7f1c).name(), "unknown");
        assert_eq!(TlsVersion(0x7f1c).to_string(), "unknown (0x7f1c)");
        assert_eq!(format!("{:>8}", TlsVersion::TLS12), " TLS 1.2");
        assert!(TlsVersion::SSL2 < TlsVersion::SSL3 && TlsVersion::TLS12 < TlsVersion::TLS13);
    }

    #[test]
    fn garbage_never_panics() {
        // xorshift64: deterministic, no dependency.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let samples = valid_samples();
        let (mut hellos, mut malformed, mut more, mut not_tls) = (0, 0, 0, 0);
        for i in 0..10_000 {
            let mut buf = samples[next() as usize % samples.len()].clone();
            if i % 50 == 0 {
                // Pure noise of random length.
                let len = next() as usize % 600;
                buf = (0..len).map(|_| next() as u8).collect();
            }
            for _ in 0..1 + next() % 4 {
                let r = next() as usize;
                let at = r % buf.len().max(1);
                match (r >> 32) % 5 {
                    0 if !buf.is_empty() => buf[at] = (r >> 16) as u8,
                    1 if !buf.is_empty() => buf[at] ^= 1 << ((r >> 24) % 8),
                    2 => buf.truncate(at),
                    3 => buf.insert(at.min(buf.len()), (r >> 16) as u8),
                    _ if !buf.is_empty() => {
                        buf.remove(at);
                    }
                    _ => {}
                }
            }
            let result = inspect_client_hello(&buf);
            match result {
                Inspect::Hello(h) => {
                    hellos += 1;
                    let range = buf.as_ptr_range();
                    if let Some(sni) = h.sni {
                        assert!(range.contains(&sni.as_ptr()));
                    }
                    let _ = h.version.to_string();
                }
                Inspect::Malformed => malformed += 1,
                Inspect::NeedMore => more += 1,
                Inspect::NotTls => not_tls += 1,
            }
            // A prefix either needs more or already gives the final answer:
            // every decision only looks at bytes it has.
            let prefix = inspect_client_hello(&buf[..next() as usize % (buf.len() + 1)]);
            assert!(prefix == Inspect::NeedMore || prefix == result, "{buf:02x?}");
            // NotTls and looks_like_tls agree once the header is there.
            if buf.len() >= 5 {
                assert_eq!(result == Inspect::NotTls, !looks_like_tls(&buf), "{buf:02x?}");
            } else if result == Inspect::NotTls {
                assert!(!looks_like_tls(&buf));
            }
        }
        // The mutations reach every outcome, so the parser was exercised deeply.
        assert!(hellos > 100 && malformed > 100 && more > 100 && not_tls > 10);
    }
}
