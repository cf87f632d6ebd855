//! Body translation for one response: which responses are translated, and
//! the decode → translate → encode pipeline that streams them.
//!
//! Translated: text types (HTML, CSS, JavaScript, JSON, XML, SVG, plain
//! text) in an ASCII-compatible charset, identity or compressed with one of
//! gzip, deflate or br. Left alone, each for a counted reason: HEAD, 204,
//! 206, 304 and other bodiless answers, `Cache-Control: no-transform`, other
//! types, other charsets (UTF-16 would hide every URL; Shift_JIS and Big5
//! trail bytes can look like ASCII), and stacked or unknown encodings.
//!
//! A compressed body is decoded as it streams, translated, and encoded
//! again in the same coding when the client accepts it (identity
//! otherwise), flushed at each piece so a streaming response keeps
//! streaming. Decoding stops at a configurable size (the bomb guard): a
//! response that grows past it fails instead of costing unbounded CPU.

use std::io::{self, Write};

use super::{Stream, Table};

pub use postern_control::counters::TranslateSkip as Skip;

/// A content coding the pipeline can decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Identity,
    Gzip,
    Deflate,
    Br,
}

impl Coding {
    fn parse(v: &[u8]) -> Option<Coding> {
        let v = trim(v);
        Some(if v.is_empty() || v.eq_ignore_ascii_case(b"identity") {
            Coding::Identity
        } else if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") {
            Coding::Gzip
        } else if v.eq_ignore_ascii_case(b"deflate") {
            Coding::Deflate
        } else if v.eq_ignore_ascii_case(b"br") {
            Coding::Br
        } else {
            return None;
        })
    }

    pub fn token(self) -> &'static str {
        match self {
            Coding::Identity => "identity",
            Coding::Gzip => "gzip",
            Coding::Deflate => "deflate",
            Coding::Br => "br",
        }
    }
}

/// How a response is translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The coding of the backend's body.
    pub from: Coding,
    /// The coding of the body sent to the client.
    pub to: Coding,
}

/// What [`plan`] looks at in a response.
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts<'a> {
    pub status: u16,
    pub head_request: bool,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: Option<&'a [u8]>,
    /// Whether any Cache-Control value holds `no-transform`.
    pub no_transform: bool,
    /// The request's Accept-Encoding.
    pub accept_encoding: Option<&'a [u8]>,
}

/// Decides whether, and how, a response body is translated.
pub fn plan(r: &ResponseFacts<'_>) -> Result<Plan, Skip> {
    if r.head_request || r.status < 200 || r.status == 204 || r.status == 304 {
        return Err(Skip::NoBody);
    }
    if r.status == 206 {
        return Err(Skip::Partial);
    }
    if r.no_transform {
        return Err(Skip::NoTransform);
    }
    let ct = r.content_type.ok_or(Skip::ContentType)?;
    let mut params = ct.split(|&b| b == b';');
    let mime = trim(params.next().unwrap_or_default());
    if !is_text_type(mime) {
        return Err(Skip::ContentType);
    }
    for p in params {
        let p = trim(p);
        if p.len() > 8 && p[..8].eq_ignore_ascii_case(b"charset=") {
            let cs = trim_quotes(trim(&p[8..]));
            if !ascii_compatible(cs) {
                return Err(Skip::Charset);
            }
        }
    }
    let from = match r.content_encoding {
        None => Coding::Identity,
        Some(v) => Coding::parse(v).ok_or(Skip::Encoding)?,
    };
    let to = if from == Coding::Identity || accepts(r.accept_encoding, from) {
        from
    } else {
        Coding::Identity
    };
    Ok(Plan { from, to })
}

fn trim(v: &[u8]) -> &[u8] {
    let s = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let e = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(s, |i| i + 1);
    &v[s..e.max(s)]
}

fn trim_quotes(v: &[u8]) -> &[u8] {
    v.strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(v)
}

fn is_text_type(mime: &[u8]) -> bool {
    let m = mime.to_ascii_lowercase();
    let m = m.as_slice();
    matches!(
        m,
        b"text/html"
            | b"text/css"
            | b"text/javascript"
            | b"text/ecmascript"
            | b"text/plain"
            | b"text/xml"
            | b"application/javascript"
            | b"application/x-javascript"
            | b"application/ecmascript"
            | b"application/json"
            | b"application/xml"
            | b"application/xhtml+xml"
            | b"image/svg+xml"
    ) || m.ends_with(b"+json")
        || m.ends_with(b"+xml")
}

/// Charsets in which every byte below 0x80 is the ASCII character, and no
/// multi-byte sequence contains one.
fn ascii_compatible(cs: &[u8]) -> bool {
    let cs = cs.to_ascii_lowercase();
    let cs = cs.as_slice();
    matches!(
        cs,
        b"utf-8"
            | b"utf8"
            | b"us-ascii"
            | b"ascii"
            | b"latin1"
            | b"koi8-r"
            | b"koi8-u"
            | b"euc-jp"
            | b"euc-kr"
    ) || cs.starts_with(b"iso-8859-")
        || cs.starts_with(b"windows-125")
        || cs.starts_with(b"cp125")
}

/// Whether the Accept-Encoding value admits `c` (listed, or `*`, with a
/// non-zero q).
fn accepts(accept: Option<&[u8]>, c: Coding) -> bool {
    let Some(v) = accept else { return false };
    let mut star = false;
    for item in v.split(|&b| b == b',') {
        let mut parts = item.split(|&b| b == b';');
        let token = trim(parts.next().unwrap_or_default());
        let zero = parts.any(|p| {
            let p = trim(p);
            p.len() >= 2
                && p[..2].eq_ignore_ascii_case(b"q=")
                && trim(&p[2..]).iter().all(|&b| b == b'0' || b == b'.')
        });
        if token.eq_ignore_ascii_case(c.token().as_bytes())
            || (c == Coding::Gzip && token.eq_ignore_ascii_case(b"x-gzip"))
        {
            return !zero;
        }
        if token == b"*" {
            star = !zero;
        }
    }
    star
}

/// The Accept-Encoding to send a backend whose bodies are translated: only
/// the codings the edge can decode (`*` would let a backend pick zstd and
/// send its internal URLs through untranslated). `None` when the client's
/// value already qualifies; an empty value means identity.
pub fn accept_encoding_for_backend(v: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(v.len());
    let mut changed = false;
    for item in v.split(|&b| b == b',') {
        let token = trim(item.split(|&b| b == b';').next().unwrap_or_default());
        if token.is_empty() {
            continue;
        }
        if Coding::parse(token).is_none() {
            changed = true;
            continue;
        }
        if !out.is_empty() {
            out.extend_from_slice(b", ");
        }
        out.extend_from_slice(trim(item));
    }
    changed.then_some(out)
}

/// Why a translation failed mid-body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// The decoded body grew past the configured limit.
    TooLarge(u64),
    /// The backend's compressed body is corrupt.
    Corrupt(String),
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failed::TooLarge(n) => write!(
                f,
                "the decoded response body grew past edge.translate_max_decoded_mib ({} MiB)",
                n >> 20
            ),
            Failed::Corrupt(e) => write!(f, "the response body cannot be decoded: {e}"),
        }
    }
}

/// Decoded bytes, counted against the limit.
struct Sink {
    buf: Vec<u8>,
    total: u64,
    limit: u64,
}

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.total += b.len() as u64;
        if self.total > self.limit {
            return Err(io::Error::other(TOO_LARGE));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

const TOO_LARGE: &str = "decoded size limit";

enum Decoder {
    Gzip(flate2::write::GzDecoder<Sink>),
    Zlib(flate2::write::ZlibDecoder<Sink>),
    Raw(flate2::write::DeflateDecoder<Sink>),
    /// `deflate` before its first two bytes told zlib from raw.
    Undecided(Sink, Vec<u8>),
    Br(Box<brotli::DecompressorWriter<Sink>>),
}

impl Decoder {
    fn new(c: Coding, limit: u64) -> Option<Decoder> {
        let sink = Sink {
            buf: Vec::new(),
            total: 0,
            limit,
        };
        Some(match c {
            Coding::Identity => return None,
            Coding::Gzip => Decoder::Gzip(flate2::write::GzDecoder::new(sink)),
            Coding::Deflate => Decoder::Undecided(sink, Vec::new()),
            Coding::Br => Decoder::Br(Box::new(brotli::DecompressorWriter::new(sink, 16 * 1024))),
        })
    }

    fn sink(&mut self) -> &mut Sink {
        match self {
            Decoder::Gzip(d) => d.get_mut(),
            Decoder::Zlib(d) => d.get_mut(),
            Decoder::Raw(d) => d.get_mut(),
            Decoder::Undecided(s, _) => s,
            Decoder::Br(d) => d.get_mut(),
        }
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        if let Decoder::Undecided(sink, early) = self {
            early.extend_from_slice(data);
            if early.len() < 2 {
                return Ok(());
            }
            // Servers send "deflate" both zlib-wrapped (as the RFC says)
            // and raw; a zlib header is CM 8 and a multiple of 31.
            let zlib =
                early[0] & 0x0f == 8 && (u16::from(early[0]) << 8 | u16::from(early[1])) % 31 == 0;
            let sink = std::mem::replace(
                sink,
                Sink {
                    buf: Vec::new(),
                    total: 0,
                    limit: 0,
                },
            );
            let early = std::mem::take(early);
            *self = if zlib {
                Decoder::Zlib(flate2::write::ZlibDecoder::new(sink))
            } else {
                Decoder::Raw(flate2::write::DeflateDecoder::new(sink))
            };
            return self.write(&early);
        }
        match self {
            Decoder::Gzip(d) => d.write_all(data),
            Decoder::Zlib(d) => d.write_all(data),
            Decoder::Raw(d) => d.write_all(data),
            Decoder::Br(d) => d.write_all(data),
            Decoder::Undecided(..) => unreachable!("handled above"),
        }
    }

    fn finish(&mut self) -> io::Result<()> {
        match self {
            Decoder::Gzip(d) => d.try_finish(),
            Decoder::Zlib(d) => d.try_finish(),
            Decoder::Raw(d) => d.try_finish(),
            Decoder::Undecided(_, early) if early.is_empty() => Ok(()),
            Decoder::Undecided(..) => Err(io::Error::other("a one-byte deflate body")),
            Decoder::Br(d) => d.close(),
        }
    }
}

enum Encoder {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Deflate(flate2::write::ZlibEncoder<Vec<u8>>),
    Br(Box<brotli::CompressorWriter<Vec<u8>>>),
}

/// Compression levels for re-encoding: fast, because the body crosses the
/// edge once and the backend already chose to compress it. (gzip 4 and
/// brotli 4 keep well over 100 MB/s a core.)
const GZIP_LEVEL: u32 = 4;
const BROTLI_QUALITY: u32 = 4;
const BROTLI_WINDOW: u32 = 20;

impl Encoder {
    fn new(c: Coding) -> Option<Encoder> {
        let level = flate2::Compression::new(GZIP_LEVEL);
        Some(match c {
            Coding::Identity => return None,
            Coding::Gzip => Encoder::Gzip(flate2::write::GzEncoder::new(Vec::new(), level)),
            Coding::Deflate => Encoder::Deflate(flate2::write::ZlibEncoder::new(Vec::new(), level)),
            Coding::Br => Encoder::Br(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 * 1024,
                BROTLI_QUALITY,
                BROTLI_WINDOW,
            ))),
        })
    }

    /// Compresses `data` and flushes, moving what came out to `out`.
    fn write(&mut self, data: &[u8], flush: bool, out: &mut Vec<u8>) -> io::Result<()> {
        let w: &mut dyn Write = match self {
            Encoder::Gzip(e) => e,
            Encoder::Deflate(e) => e,
            Encoder::Br(e) => &mut **e,
        };
        w.write_all(data)?;
        if flush {
            w.flush()?;
        }
        out.append(match self {
            Encoder::Gzip(e) => e.get_mut(),
            Encoder::Deflate(e) => e.get_mut(),
            Encoder::Br(e) => e.get_mut(),
        });
        Ok(())
    }

    fn finish(self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Deflate(e) => e.finish()?,
            Encoder::Br(e) => e.into_inner(),
        };
        out.append(&mut rest);
        Ok(())
    }
}

/// One response body on its way through translation.
pub struct Translator {
    stream: Stream,
    decoder: Option<Decoder>,
    encoder: Option<Encoder>,
    /// Translated bytes waiting for the encoder.
    scratch: Vec<u8>,
    /// Bytes scanned so far (decoded).
    pub scanned: u64,
}

impl Translator {
    pub fn new(plan: Plan, max_decoded: u64) -> Translator {
        Translator {
            stream: Stream::new(),
            decoder: Decoder::new(plan.from, max_decoded),
            encoder: Encoder::new(plan.to),
            scratch: Vec::new(),
            scanned: 0,
        }
    }

    /// Links translated so far.
    pub fn links(&self) -> u64 {
        self.stream.tally.links
    }

    /// Translates the next piece of the backend's body, appending what is
    /// ready for the client to `out`.
    pub fn push(&mut self, table: &Table, data: &[u8], out: &mut Vec<u8>) -> Result<(), Failed> {
        self.step(table, Some(data), out)
    }

    /// The body ended: writes everything still held.
    pub fn finish(&mut self, table: &Table, out: &mut Vec<u8>) -> Result<(), Failed> {
        self.step(table, None, out)
    }

    fn step(
        &mut self,
        table: &Table,
        data: Option<&[u8]>,
        out: &mut Vec<u8>,
    ) -> Result<(), Failed> {
        let last = data.is_none();
        let decoded = match &mut self.decoder {
            None => None,
            Some(d) => {
                let r = match data {
                    Some(data) => d.write(data),
                    None => d.finish(),
                };
                if let Err(e) = r {
                    let sink = d.sink();
                    return Err(if sink.total > sink.limit {
                        Failed::TooLarge(sink.limit)
                    } else {
                        Failed::Corrupt(e.to_string())
                    });
                }
                Some(std::mem::take(&mut d.sink().buf))
            }
        };
        let input: &[u8] = match (&decoded, data) {
            (Some(d), _) => d,
            (None, Some(data)) => data,
            (None, None) => &[],
        };
        self.scanned += input.len() as u64;
        match &mut self.encoder {
            None => {
                self.stream.feed(table, input, out);
                if last {
                    self.stream.finish(table, out);
                }
            }
            Some(_) => {
                self.scratch.clear();
                self.stream.feed(table, input, &mut self.scratch);
                if last {
                    self.stream.finish(table, &mut self.scratch);
                }
                let enc = self.encoder.as_mut().expect("checked above");
                let r = if last {
                    enc.write(&self.scratch, false, out)
                        .and_then(|()| self.encoder.take().expect("checked above").finish(out))
                } else {
                    enc.write(&self.scratch, true, out)
                };
                r.map_err(|e| Failed::Corrupt(e.to_string()))?;
            }
        }
        // Hand the decoder its buffer back: one allocation per response.
        if let (Some(mut buf), Some(d)) = (decoded, &mut self.decoder) {
            buf.clear();
            d.sink().buf = buf;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_control::url::parse_app_url;

    fn table() -> Table {
        Table::from_urls(&[(
            parse_app_url("http://app.corp/", false).unwrap(),
            parse_app_url("https://app.example.com/", false).unwrap(),
        )])
    }

    fn facts<'a>(ct: &'a str, ce: Option<&'a str>, ae: Option<&'a str>) -> ResponseFacts<'a> {
        ResponseFacts {
            status: 200,
            head_request: false,
            content_type: Some(ct.as_bytes()),
            content_encoding: ce.map(str::as_bytes),
            no_transform: false,
            accept_encoding: ae.map(str::as_bytes),
        }
    }

    #[test]
    fn what_is_translated() {
        let ok = |ct| plan(&facts(ct, None, None)).is_ok();
        assert!(ok("text/html; charset=UTF-8"));
        assert!(ok("application/ld+json"));
        assert!(ok("image/svg+xml"));
        assert!(ok("TEXT/CSS"));
        assert!(ok("text/plain; charset=\"iso-8859-1\""));
        assert_eq!(
            plan(&facts("image/png", None, None)),
            Err(Skip::ContentType)
        );
        assert_eq!(
            plan(&facts("text/html; charset=utf-16", None, None)),
            Err(Skip::Charset)
        );
        assert_eq!(
            plan(&facts("text/html; charset=Shift_JIS", None, None)),
            Err(Skip::Charset)
        );
        assert_eq!(
            plan(&facts("text/html", Some("gzip, br"), None)),
            Err(Skip::Encoding)
        );
        let mut f = facts("text/html", None, None);
        f.status = 206;
        assert_eq!(plan(&f), Err(Skip::Partial));
        f.status = 304;
        assert_eq!(plan(&f), Err(Skip::NoBody));
        f.status = 200;
        f.head_request = true;
        assert_eq!(plan(&f), Err(Skip::NoBody));
        f.head_request = false;
        f.no_transform = true;
        assert_eq!(plan(&f), Err(Skip::NoTransform));
        f.no_transform = false;
        f.content_type = None;
        assert_eq!(plan(&f), Err(Skip::ContentType));
    }

    #[test]
    fn backends_are_asked_only_for_codings_the_edge_decodes() {
        let f = |v: &str| {
            accept_encoding_for_backend(v.as_bytes()).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(f("gzip, deflate, br"), None);
        assert_eq!(
            f("gzip, deflate, br, zstd").as_deref(),
            Some("gzip, deflate, br")
        );
        assert_eq!(
            f("zstd;q=1.0, br;q=0.9, *;q=0.1").as_deref(),
            Some("br;q=0.9")
        );
        assert_eq!(f("zstd").as_deref(), Some(""));
    }

    #[test]
    fn reencodes_only_what_the_client_accepts() {
        let p = |ae| plan(&facts("text/html", Some("br"), ae)).unwrap().to;
        assert_eq!(p(Some("gzip, deflate, br")), Coding::Br);
        assert_eq!(p(Some("gzip, br;q=0")), Coding::Identity);
        assert_eq!(p(Some("*")), Coding::Br);
        assert_eq!(p(None), Coding::Identity);
        assert_eq!(
            plan(&facts("text/html", Some("x-gzip"), Some("gzip"))).unwrap(),
            Plan {
                from: Coding::Gzip,
                to: Coding::Gzip
            }
        );
    }

    fn compress(c: Coding, data: &[u8]) -> Vec<u8> {
        let mut e = Encoder::new(c).unwrap();
        let mut out = Vec::new();
        e.write(data, false, &mut out).unwrap();
        e.finish(&mut out).unwrap();
        out
    }

    fn decompress(c: Coding, data: &[u8]) -> Vec<u8> {
        let mut d = Decoder::new(c, u64::MAX).unwrap();
        d.write(data).unwrap();
        d.finish().unwrap();
        std::mem::take(&mut d.sink().buf)
    }

    fn run(plan: Plan, body: &[u8], piece: usize, limit: u64) -> Result<Vec<u8>, Failed> {
        let t = table();
        let mut tr = Translator::new(plan, limit);
        let mut out = Vec::new();
        for c in body.chunks(piece.max(1)) {
            tr.push(&t, c, &mut out)?;
        }
        tr.finish(&t, &mut out)?;
        Ok(out)
    }

    #[test]
    fn every_coding_round_trips_translated() {
        let page: Vec<u8> = (0..2000)
            .flat_map(|i| format!("<a href=\"http://app.corp/p{i}\">link {i}</a>\n").into_bytes())
            .collect();
        let mut want = Vec::new();
        table().rewrite(&page, &mut want);
        assert!(!want.windows(9).any(|w| w == b"app.corp/"));
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br] {
            let z = compress(c, &page);
            for piece in [1, 7, 4096, 1 << 20] {
                let same = run(Plan { from: c, to: c }, &z, piece, 1 << 30).unwrap();
                assert_eq!(decompress(c, &same), want, "{c:?} piece {piece}");
                let plain = run(
                    Plan {
                        from: c,
                        to: Coding::Identity,
                    },
                    &z,
                    piece,
                    1 << 30,
                )
                .unwrap();
                assert_eq!(plain, want, "{c:?} to identity, piece {piece}");
            }
        }
        // Raw deflate, as some servers send it.
        let mut raw = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        raw.write_all(&page).unwrap();
        let raw = raw.finish().unwrap();
        let plain = run(
            Plan {
                from: Coding::Deflate,
                to: Coding::Identity,
            },
            &raw,
            100,
            1 << 30,
        )
        .unwrap();
        assert_eq!(plain, want);
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let zeros = vec![b'a'; 64 << 20];
        for c in [Coding::Gzip, Coding::Deflate, Coding::Br] {
            let z = compress(c, &zeros);
            assert!(z.len() < 1 << 20, "{c:?} {}", z.len());
            let r = run(
                Plan {
                    from: c,
                    to: Coding::Identity,
                },
                &z,
                16 * 1024,
                1 << 20,
            );
            assert_eq!(r, Err(Failed::TooLarge(1 << 20)), "{c:?}");
        }
    }

    #[test]
    fn a_corrupt_body_fails() {
        let r = run(
            Plan {
                from: Coding::Gzip,
                to: Coding::Gzip,
            },
            b"this is not gzip at all",
            5,
            1 << 20,
        );
        assert!(matches!(r, Err(Failed::Corrupt(_))), "{r:?}");
    }
}
