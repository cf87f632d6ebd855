//! Request paths in one normal form, computed once before routing.
//!
//! The edge routes on a path and forwards the *same* path, so an app's
//! backend only ever sees paths under the prefix the edge matched. Any
//! spelling a backend could read as something else is refused rather than
//! repaired, because backends disagree on how to repair it (`%2f` is a
//! separator to some, `\` is one to IIS, `..;/` climbs on Tomcat):
//!
//! * percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are
//!   decoded (`/%61dmin` is `/admin`); other escapes keep their bytes, with
//!   upper-case hex digits;
//! * runs of `/` are merged (`//admin` is `/admin`);
//! * refused with 400: `.` and `..` segments in any spelling (plain,
//!   `%2e`, with `;` parameters as in `..;x`), encoded `\` (`%5c`), a raw
//!   `\`, NUL, double-encoded `.`, `/`, `\` or NUL (`%252e`), overlong
//!   UTF-8 (`%c0%ae`), and malformed escapes;
//! * an encoded `/` (`%2f`) is kept, as `%2F`, and reported: only an app
//!   with `allow_encoded_slash` takes it (the proxy refuses it for any
//!   other app, once routing has said which app the path is for). It is
//!   never a separator to the router, and a `.` or `..` segment between
//!   encoded slashes (`..%2F..%2Fsecret`) is refused like any other.
//!
//! The query (from the first `?`) is left exactly as sent. A path that is
//! already normal comes back as the same `Bytes` without a copy.

use bytes::Bytes;

/// Why a path was refused; the text is shown to the client.
pub type PathError = &'static str;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The byte a `%XY` escape at `p[i..]` stands for.
fn escape_at(p: &[u8], i: usize) -> Result<u8, PathError> {
    match (
        p.get(i + 1).copied().and_then(hex),
        p.get(i + 2).copied().and_then(hex),
    ) {
        (Some(h), Some(l)) => Ok(h << 4 | l),
        _ => Err("the request path has a malformed percent-escape"),
    }
}

/// Whether a byte (raw or escaped) starts an overlong UTF-8 sequence:
/// `C0`/`C1` always; `E0` and `F0` when the next byte, raw or escaped, is
/// too small. Overlong forms spell `.` and `/` past naive filters.
fn overlong(lead: u8, next: Option<u8>) -> bool {
    match lead {
        0xc0 | 0xc1 => true,
        0xe0 => next.is_some_and(|n| (0x80..0xa0).contains(&n)),
        0xf0 => next.is_some_and(|n| (0x80..0x90).contains(&n)),
        _ => false,
    }
}

/// The byte after position `i` (which holds a character `len` bytes long),
/// decoding an escape.
fn next_byte(p: &[u8], i: usize, len: usize) -> Option<u8> {
    let j = i + len;
    match p.get(j)? {
        b'%' => escape_at(p, j).ok(),
        &b => Some(b),
    }
}

/// A normalised target, and whether its path holds an encoded `/`.
pub struct Normal {
    pub target: Bytes,
    pub encoded_slash: bool,
}

/// What the proxy answers when an app does not take encoded slashes.
pub const ENCODED_SLASH: PathError = "the request path contains an encoded `/` or `\\`";

/// Normalises an origin-form target (`/path?query`).
pub fn normalize(target: &Bytes) -> Result<Normal, PathError> {
    let end = memchr::memchr(b'?', target).unwrap_or(target.len());
    let p = &target[..end];
    if p.first() != Some(&b'/') {
        return Err("the request path must start with `/`");
    }
    // Built only once the path turns out to need a change.
    let mut out: Option<Vec<u8>> = None;
    let mut encoded_slash = false;
    let mut i = 0;
    while i < p.len() {
        let b = p[i];
        match b {
            b'%' => {
                let v = escape_at(p, i)?;
                match v {
                    0 => return Err("the request path contains an encoded NUL"),
                    b'\\' => return Err(ENCODED_SLASH),
                    b'/' => encoded_slash = true,
                    b'%' => {
                        let inner = escape_at(p, i + 2).ok();
                        if matches!(inner, Some(0 | b'.' | b'/' | b'\\')) {
                            return Err("the request path contains a double-encoded character");
                        }
                    }
                    _ => {}
                }
                if v >= 0x80 && overlong(v, next_byte(p, i, 3)) {
                    return Err("the request path contains an overlong UTF-8 sequence");
                }
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                let canonical = [b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]];
                if unreserved(v) {
                    out.get_or_insert_with(|| p[..i].to_vec()).push(v);
                } else if p[i..i + 3] != canonical {
                    out.get_or_insert_with(|| p[..i].to_vec())
                        .extend_from_slice(&canonical);
                } else if let Some(o) = &mut out {
                    o.extend_from_slice(&canonical);
                }
                i += 3;
                continue;
            }
            b'\\' => return Err("the request path contains `\\`"),
            0 => return Err("the request path contains NUL"),
            b'/' if i > 0 && p[i - 1] == b'/' => {
                out.get_or_insert_with(|| p[..i].to_vec());
                i += 1;
                continue;
            }
            _ if b >= 0x80 && overlong(b, next_byte(p, i, 1)) => {
                return Err("the request path contains an overlong UTF-8 sequence")
            }
            _ => {}
        }
        if let Some(o) = &mut out {
            o.push(b);
        }
        i += 1;
    }
    let path: &[u8] = out.as_deref().unwrap_or(p);
    if path.split(|&b| b == b'/').any(is_dot_segment)
        || (encoded_slash
            && path
                .split(|&b| b == b'/')
                .flat_map(split_encoded_slash)
                .any(is_dot_segment))
    {
        return Err("the request path contains a `.` or `..` segment");
    }
    let Some(mut o) = out else {
        return Ok(Normal {
            target: target.clone(),
            encoded_slash,
        });
    };
    o.extend_from_slice(&target[end..]);
    let changed = Bytes::from(o);
    // Decoding can make what it refuses: in `%252%65` the `%65` becomes
    // `e`, and `%252e` is a double-encoded `.`. So a changed path is
    // checked again; each pass only shortens it or changes the case of
    // escapes, so this ends (it is rare: most paths need no change).
    let again = normalize(&changed)?;
    Ok(Normal {
        target: again.target,
        encoded_slash: encoded_slash || again.encoded_slash,
    })
}

/// The pieces of a segment between encoded slashes (`%2F`, canonical by
/// now).
fn split_encoded_slash(segment: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(segment);
    std::iter::from_fn(move || {
        let s = rest?;
        match memchr::memmem::find(s, b"%2F") {
            Some(i) => {
                rest = Some(&s[i + 3..]);
                Some(&s[..i])
            }
            None => {
                rest = None;
                Some(s)
            }
        }
    })
}

/// `.` or `..`, also with `;` parameters (`..;jsessionid=x`).
fn is_dot_segment(seg: &[u8]) -> bool {
    let name = seg.split(|&b| b == b';').next().unwrap_or(seg);
    name == b"." || name == b".."
}

#[cfg(test)]
mod tests;
