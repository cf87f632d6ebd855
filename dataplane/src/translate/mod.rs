//! Link translation: internal URLs of every published app become the
//! external URLs users can follow.
//!
//! A [`Table`] is built once per app-table snapshot. Scanning looks for the
//! six spellings of a URL's start that a browser can follow — `http://`,
//! `https://`, their JavaScript/JSON-escaped forms (`http:\/\/`) and their
//! percent-encoded forms (`http%3A%2F%2F`), case-insensitively — by a SIMD
//! search for the rare pair of bytes each spelling has right after its
//! scheme (`:/`, `:\`, `%3`), fused with copying the text to the output,
//! then reads the host that follows and looks it up in a hash table: exact
//! hosts first, then a wildcard app's suffix. The search cost therefore
//! does not grow with the number of published apps; only URLs pay for a
//! lookup.
//!
//! A match needs, in the spelling of its form:
//! * a left boundary: the byte before the scheme is not a scheme character
//!   (`xhttp://` is not a URL start);
//! * the host, compared case-insensitively, and followed by the port the
//!   app uses (written or the scheme's default) — never by more host
//!   characters, another port or `@` (so `app.corp.evil`, `app.corp:81`
//!   and `http://app.corp@evil/` stay as they are);
//! * the internal path prefix (case-sensitive), or the prefix without its
//!   last `/` followed by the end of the URL (`http://app.corp"` and
//!   `http://app.corp/app?x` when the app is `http://app.corp/app/`).
//!
//! [`Stream`] applies the table to a body that arrives in pieces. It holds
//! back only the bytes that may begin a match not yet decided — at most
//! [`Table::window`] bytes — so memory is bounded, a match split across
//! pieces is found, and the output is identical for every chunking of the
//! same input (the property tests compare it with a naive whole-body
//! reference).

use postern_control::url::AppUrl;
use postern_control::{App, HostPattern, Scheme};

pub mod body;
pub mod headers;
mod hosts;
mod scan;

use hosts::{HostMap, HOST_CHAR};
use scan::{copy_to_pair, trigger_at, Trigger, MAX_TRIGGER};

#[cfg(any(test, feature = "fuzzing"))]
pub mod reference;
#[cfg(test)]
mod tests;

/// How a URL is spelled in the text around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `http://host/path/`
    Plain,
    /// `http:\/\/host\/path\/` (JavaScript and JSON string escapes).
    Escaped,
    /// `http%3A%2F%2Fhost%2Fpath%2F` (a URL inside a query string).
    Percent,
}

const FORMS: [Form; 3] = [Form::Plain, Form::Escaped, Form::Percent];

impl Form {
    /// `s` (an ASCII URL piece) as this form writes it.
    fn encode(self, s: &str, out: &mut Vec<u8>) {
        for &b in s.as_bytes() {
            match (self, b) {
                (Form::Escaped, b'/') => out.extend_from_slice(b"\\/"),
                (Form::Percent, _) if !is_unreserved(b) => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
                _ => out.push(b),
            }
        }
    }

    /// The port separator and the user-info separator in this form.
    fn colon(self) -> &'static [u8] {
        if self == Form::Percent {
            b"%3a"
        } else {
            b":"
        }
    }

    fn at_sign(self) -> &'static [u8] {
        if self == Form::Percent {
            b"%40"
        } else {
            b"@"
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Whether the URL ends at `buf[i]`: `None` when that cannot be told yet.
/// A URL goes on through unreserved characters, `:` and `@` (a port or
/// user-info would make it another URL) and, outside the percent form, `%`
/// (an escaped character of a longer path segment). In the percent form
/// `%3A` and `%40` go on; any other escape ends the URL.
fn url_ends(buf: &[u8], i: usize, form: Form, last: bool) -> Option<bool> {
    let Some(&b) = buf.get(i) else {
        return last.then_some(true);
    };
    if is_unreserved(b) || b == b':' || b == b'@' {
        return Some(false);
    }
    if b != b'%' {
        return Some(true);
    }
    if form != Form::Percent {
        return Some(false);
    }
    match buf.get(i + 1..i + 3) {
        Some(esc) => Some(!(esc.eq_ignore_ascii_case(b"3a") || esc.eq_ignore_ascii_case(b"40"))),
        None if last => Some(true),
        None => None,
    }
}

/// The longest host name a match reads (RFC 1035).
const MAX_HOST: usize = 253;

/// One internal URL prefix and the external URL it becomes. Its strings,
/// in the three forms, share one allocation, so a match touches one or two
/// cache lines rather than one per string.
#[derive(Debug)]
struct Entry {
    /// The internal port (written or the scheme's default).
    port: u16,
    wildcard: bool,
    strs: Box<[u8]>,
    /// Per form, the (start, end) in `strs` of: the internal path prefix,
    /// the same without its last `/`, and the external URL — `head`, then
    /// (for a wildcard app) the captured label, then `tail` whole or
    /// without its last `/`. For an exact app `head` is empty.
    at: [[(u32, u32); 5]; 3],
}

const PATH: usize = 0;
const PATH_TRIMMED: usize = 1;
const HEAD: usize = 2;
const TAIL: usize = 3;
const TAIL_TRIMMED: usize = 4;

impl Entry {
    fn new(int: &AppUrl, ext: &AppUrl) -> Entry {
        let (head, host) = match &ext.host {
            HostPattern::Exact(h) => (String::new(), format!("{}://{}", ext.scheme, h)),
            HostPattern::Wildcard(suffix) => (format!("{}://", ext.scheme), suffix.clone()),
        };
        let port = if ext.port == ext.scheme.default_port() {
            String::new()
        } else {
            format!(":{}", ext.port)
        };
        let tail = format!("{host}{port}{}", ext.path);
        let pieces = [
            int.path.as_str(),
            &int.path[..int.path.len() - 1],
            head.as_str(),
            tail.as_str(),
            &tail[..tail.len() - 1],
        ];
        let mut strs = Vec::new();
        let mut at = [[(0, 0); 5]; 3];
        for form in FORMS {
            for (k, piece) in pieces.iter().enumerate() {
                let start = strs.len() as u32;
                form.encode(piece, &mut strs);
                at[form as usize][k] = (start, strs.len() as u32);
            }
        }
        Entry {
            port: int.port,
            wildcard: ext.host.is_wildcard(),
            strs: strs.into_boxed_slice(),
            at,
        }
    }

    #[inline]
    fn get(&self, form: Form, k: usize) -> &[u8] {
        let (a, b) = self.at[form as usize][k];
        &self.strs[a as usize..b as usize]
    }

    /// Writes the external URL; `full` is false when the internal prefix
    /// matched without its last `/`, which is then left out here too.
    fn write(&self, form: Form, label: &[u8], full: bool, out: &mut Vec<u8>) {
        if self.wildcard {
            out.extend_from_slice(self.get(form, HEAD));
            out.extend_from_slice(label);
        }
        out.extend_from_slice(self.get(form, if full { TAIL } else { TAIL_TRIMMED }));
    }
}

#[derive(Debug, Default)]
struct SchemeEntries {
    /// Lower-case host → prefixes, longest path first.
    exact: HostMap,
    /// Wildcard suffix (".corp") → prefixes, longest path first.
    wildcard: HostMap,
}

/// Counts of one scan.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub links: u64,
}

/// The translation table of one snapshot.
pub struct Table {
    http: SchemeEntries,
    https: SchemeEntries,
    /// Bytes from a URL's start that always suffice to decide it.
    window: usize,
    /// No internal URL to look for.
    empty: bool,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("http", &self.http)
            .field("https", &self.https)
            .finish_non_exhaustive()
    }
}

/// What a URL start turned out to be.
enum Verdict<'a> {
    /// Not an internal URL: search on from the next byte.
    No,
    /// Cannot tell before more bytes arrive.
    NeedMore,
    /// Replace `start..end`.
    Yes {
        end: usize,
        entry: &'a Entry,
        label: (usize, usize),
        full: bool,
    },
}

impl Table {
    /// The forward table: internal URLs → external URLs, for every app.
    pub fn new(apps: &[App]) -> Table {
        Table::build(apps.iter().map(|a| (&a.internal_url, &a.external_url)))
    }

    /// The reverse table, for request headers: external URLs → internal.
    pub fn reverse(apps: &[App]) -> Table {
        Table::build(apps.iter().map(|a| (&a.external_url, &a.internal_url)))
    }

    /// A table from (internal, external) URL pairs.
    pub fn from_urls(pairs: &[(AppUrl, AppUrl)]) -> Table {
        Table::build(pairs.iter().map(|(i, e)| (i, e)))
    }

    fn build<'a>(pairs: impl Iterator<Item = (&'a AppUrl, &'a AppUrl)>) -> Table {
        let mut http = SchemeEntries::default();
        let mut https = SchemeEntries::default();
        let mut longest_path = 0;
        let mut empty = true;
        for (from, to) in pairs {
            let side = match from.scheme {
                Scheme::Http => &mut http,
                Scheme::Https => &mut https,
            };
            let list = match (&from.host, &to.host) {
                (HostPattern::Exact(h), HostPattern::Exact(_)) => side.exact.list_mut(h.as_bytes()),
                (HostPattern::Wildcard(s), HostPattern::Wildcard(_)) => {
                    side.wildcard.list_mut(s.as_bytes())
                }
                // One host for every label, or a label from nowhere:
                // there is no single URL to translate to.
                _ => continue,
            };
            // Two apps with the same internal prefix: the first keeps it.
            if list
                .iter()
                .any(|e| e.port == from.port && e.get(Form::Plain, PATH) == from.path.as_bytes())
            {
                continue;
            }
            let e = Entry::new(from, to);
            longest_path = longest_path.max(e.get(Form::Percent, PATH).len());
            list.push(e);
            empty = false;
        }
        for side in [&mut http, &mut https] {
            for list in side.exact.lists_mut().chain(side.wildcard.lists_mut()) {
                list.sort_by_key(|e| std::cmp::Reverse(e.get(Form::Plain, PATH).len()));
            }
        }
        Table {
            http,
            https,
            // trigger + host + one stop byte + "%3A" + 5 digits + one stop
            // byte + "%40" + path + 3 bytes to see where the URL ends.
            window: MAX_TRIGGER + MAX_HOST + 1 + 3 + 5 + 1 + 3 + longest_path + 3,
            empty,
        }
    }

    /// Whether no app has an internal URL this table could find.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// The most bytes a [`Stream`] holds back.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Translates a whole value (a header, a test body).
    pub fn rewrite(&self, input: &[u8], out: &mut Vec<u8>) -> Tally {
        let mut tally = Tally::default();
        self.scan(input, 0, input.len(), true, None, out, &mut tally);
        tally
    }

    /// Translates a whole value, or says there was nothing to translate.
    pub fn rewrite_value(&self, input: &[u8]) -> Option<Vec<u8>> {
        let mut out = Vec::new();
        let t = self.rewrite(input, &mut out);
        (t.links > 0).then_some(out)
    }

    /// Scans `buf[from..]` for URL starts before `limit`, writing the
    /// translated bytes to `out`, and returns how far `buf` was written.
    /// With `last` every byte is decided; otherwise the scan stops at a URL
    /// start whose verdict needs bytes past `buf`'s end (and at `limit`,
    /// or the end of the last replacement if that is further).
    #[allow(clippy::too_many_arguments)]
    fn scan(
        &self,
        buf: &[u8],
        from: usize,
        limit: usize,
        last: bool,
        prev: Option<u8>,
        out: &mut Vec<u8>,
        tally: &mut Tally,
    ) -> usize {
        // `out` holds the output for `buf[from..pos]`; bytes from `floor`
        // on are verbatim copies (nothing was replaced there), so a URL
        // start found behind `pos` is taken back by truncating.
        let mut pos = from;
        let mut floor = from;
        out.reserve(buf.len() - from);
        loop {
            let Some(q) = copy_to_pair(buf, pos, out) else {
                pos = buf.len();
                break;
            };
            pos = q;
            let Some((p, trig)) = trigger_at(buf, q, floor) else {
                out.push(buf[q]);
                pos = q + 1;
                continue;
            };
            if p >= limit {
                break;
            }
            let before = if p == 0 { prev } else { Some(buf[p - 1]) };
            if before.is_some_and(is_scheme_char) {
                out.push(buf[q]);
                pos = q + 1;
                continue;
            }
            match self.verdict(buf, p, trig, last) {
                Verdict::No => {
                    out.push(buf[q]);
                    pos = q + 1;
                }
                Verdict::NeedMore => {
                    out.truncate(out.len() - (q - p));
                    return p;
                }
                Verdict::Yes {
                    end,
                    entry,
                    label,
                    full,
                } => {
                    out.truncate(out.len() - (q - p));
                    entry.write(trig.form, &buf[label.0..label.1], full, out);
                    tally.links += 1;
                    pos = end;
                    floor = end;
                }
            }
        }
        let stop = if last { buf.len() } else { limit.max(floor) };
        if pos > stop {
            out.truncate(out.len() - (pos - stop));
        } else if pos < stop {
            out.extend_from_slice(&buf[pos..stop]);
        }
        stop
    }

    fn verdict(&self, buf: &[u8], p: usize, t: Trigger, last: bool) -> Verdict<'_> {
        let form = t.form;
        let h0 = p + t.len;
        let side = match t.scheme {
            Scheme::Http => &self.http,
            Scheme::Https => &self.https,
        };
        // Most URLs in a page are not internal: an https link where only
        // http apps are published costs nothing more.
        if side.exact.is_empty() && side.wildcard.is_empty() {
            return Verdict::No;
        }
        let mut i = h0;
        let end = buf.len().min(h0 + MAX_HOST + 1);
        while i < end && HOST_CHAR[buf[i] as usize] {
            i += 1;
        }
        if i - h0 > MAX_HOST {
            return Verdict::No;
        }
        if i == buf.len() && !last {
            return Verdict::NeedMore;
        }
        if i == h0 {
            return Verdict::No;
        }
        let host = &buf[h0..i];
        let (list, label) = match side.exact.get(host) {
            Some(l) => (l, (0, 0)),
            None => {
                if side.wildcard.is_empty() {
                    return Verdict::No;
                }
                let Some(dot) = memchr::memchr(b'.', host) else {
                    return Verdict::No;
                };
                let suffix = &host[dot..];
                match side.wildcard.get(suffix) {
                    Some(l) if dot > 0 => (l, (h0, h0 + dot)),
                    _ => return Verdict::No,
                }
            }
        };
        // Port, written or implied.
        let colon = form.colon();
        let port = match starts_with_ci(buf, i, colon, last) {
            None => return Verdict::NeedMore,
            Some(true) => {
                let d0 = i + colon.len();
                let mut d = d0;
                while d < buf.len() && d - d0 < 6 && buf[d].is_ascii_digit() {
                    d += 1;
                }
                if d == buf.len() && !last {
                    return Verdict::NeedMore;
                }
                // A leading zero is another spelling, not another port:
                // leave it alone rather than guess.
                if d == d0 || d - d0 > 5 || (buf[d0] == b'0' && d - d0 > 1) {
                    return Verdict::No;
                }
                let n: u32 = buf[d0..d]
                    .iter()
                    .fold(0, |n, &c| n * 10 + u32::from(c - b'0'));
                i = d;
                n
            }
            Some(false) => u32::from(t.scheme.default_port()),
        };
        match starts_with_ci(buf, i, form.at_sign(), last) {
            None => return Verdict::NeedMore,
            Some(true) => return Verdict::No,
            Some(false) => {}
        }
        for e in list.iter().filter(|e| u32::from(e.port) == port) {
            let path = e.get(form, PATH);
            match path_at(buf, i, path, form, last) {
                None => return Verdict::NeedMore,
                Some(true) => {
                    return Verdict::Yes {
                        end: i + path.len(),
                        entry: e,
                        label,
                        full: true,
                    }
                }
                Some(false) => {}
            }
            let trimmed = e.get(form, PATH_TRIMMED);
            match path_at(buf, i, trimmed, form, last) {
                None => return Verdict::NeedMore,
                Some(false) => continue,
                Some(true) => {}
            }
            match url_ends(buf, i + trimmed.len(), form, last) {
                None => return Verdict::NeedMore,
                Some(true) => {
                    return Verdict::Yes {
                        end: i + trimmed.len(),
                        entry: e,
                        label,
                        full: false,
                    }
                }
                Some(false) => {}
            }
        }
        Verdict::No
    }
}

/// Whether `buf[i..]` starts with `pat` (ASCII case-insensitive);
/// `None` when `buf` ends first and more may come.
fn starts_with_ci(buf: &[u8], i: usize, pat: &[u8], last: bool) -> Option<bool> {
    let have = buf.len().saturating_sub(i).min(pat.len());
    if !buf[i.min(buf.len())..i.min(buf.len()) + have].eq_ignore_ascii_case(&pat[..have]) {
        return Some(false);
    }
    if have < pat.len() {
        return if last { Some(false) } else { None };
    }
    Some(true)
}

/// Whether the path `want` (as the form spells it) is at `buf[i..]`.
/// Paths are case-sensitive; the hex digits of an escape are not.
fn path_at(buf: &[u8], i: usize, want: &[u8], form: Form, last: bool) -> Option<bool> {
    let rest = &buf[i.min(buf.len())..];
    let n = rest.len().min(want.len());
    let same = if form == Form::Percent {
        pct_eq(&rest[..n], &want[..n])
    } else {
        rest[..n] == want[..n]
    };
    if !same {
        return Some(false);
    }
    if n < want.len() {
        return if last { Some(false) } else { None };
    }
    Some(true)
}

/// Byte equality, except that the two hex digits after each `%` of
/// `want` compare case-insensitively.
fn pct_eq(have: &[u8], want: &[u8]) -> bool {
    let mut hex = 0;
    for (a, b) in have.iter().zip(want) {
        let same = if hex > 0 {
            hex -= 1;
            a.eq_ignore_ascii_case(b)
        } else {
            if *b == b'%' {
                hex = 2;
            }
            a == b
        };
        if !same {
            return false;
        }
    }
    true
}

/// A body being translated as it streams through.
#[derive(Debug, Default)]
pub struct Stream {
    /// Bytes received but not yet written: the start of a URL whose
    /// verdict needs what comes next. Never more than the table's window.
    held: Vec<u8>,
    /// The last byte written, for the left boundary of a match at the
    /// start of the next piece.
    prev: Option<u8>,
    pub tally: Tally,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    /// Bytes held back now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Translates the next piece of the body into `out`.
    pub fn feed(&mut self, table: &Table, piece: &[u8], out: &mut Vec<u8>) {
        // A URL start this close to the end may be cut short: its
        // separator cannot be seen yet.
        let keep = MAX_TRIGGER - 1;
        let mut from = 0;
        if !self.held.is_empty() {
            // The seam: what was held, and enough of this piece to decide
            // every URL start in it.
            let take = piece.len().min(table.window);
            let held = self.held.len();
            let mut seam = std::mem::take(&mut self.held);
            seam.extend_from_slice(&piece[..take]);
            let whole = take == piece.len();
            let limit = if whole {
                seam.len().saturating_sub(keep)
            } else {
                held
            };
            let done = table.scan(&seam, 0, limit, false, self.prev, out, &mut self.tally);
            if done > 0 {
                self.prev = Some(seam[done - 1]);
            }
            if whole || done < held {
                // (Not reached for a partial piece: the window decides
                // every start in what was held.)
                seam.drain(..done);
                seam.extend_from_slice(&piece[take..]);
                self.held = seam;
                return;
            }
            from = done - held;
            seam.clear();
            self.held = seam;
        }
        let limit = piece.len().saturating_sub(keep).max(from);
        let done = table.scan(piece, from, limit, false, self.prev, out, &mut self.tally);
        if done > from {
            self.prev = Some(piece[done - 1]);
        }
        self.held.extend_from_slice(&piece[done..]);
    }

    /// Writes what was held back; the body is complete.
    pub fn finish(&mut self, table: &Table, out: &mut Vec<u8>) {
        let held = std::mem::take(&mut self.held);
        let n = held.len();
        table.scan(&held, 0, n, true, self.prev, out, &mut self.tally);
        if let Some(&b) = held.last() {
            self.prev = Some(b);
        }
    }
}
