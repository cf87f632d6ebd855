//! Message bodies: how long they are, decoding them as they stream in, and
//! framing them for the other side.
//!
//! Bodies are never collected: [`BodyReader::next`] yields each piece as it
//! arrives (zero-copy `Bytes` split from the connection's read buffer), and
//! the caller writes it onwards before asking for the next, so memory per
//! connection stays at a few buffers however large the body. The chunked
//! decoder is strict (attack cases 5 and 6, docs/attacks.md): hex digits only, no sign, prefix or
//! leading space, bounded size and extensions, CRLF line ends only.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::io::Io;

/// How a body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    Length(u64),
    Chunked,
    /// Response only: everything until the backend closes.
    UntilClose,
}

impl Framing {
    /// Whether any body bytes can follow the head.
    pub fn has_body(self) -> bool {
        !matches!(self, Framing::Empty | Framing::Length(0))
    }
}

/// Longest chunk-size line we accept, extensions included.
const MAX_CHUNK_LINE: usize = 4096;
/// Longest trailer section we read (and drop).
const MAX_TRAILERS: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// The peer's framing is invalid: 400 (client) or 502 (backend).
    Malformed(&'static str),
    /// The peer closed before the body was complete.
    Truncated,
    /// The peer sent nothing for the read timeout.
    Timeout,
    /// A socket error.
    Io(io::ErrorKind),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    Size,
    Data(u64),
    DataEnd,
    Trailers(usize),
    Done,
}

/// Incremental strict chunked decoder over a read buffer.
#[derive(Debug)]
pub struct ChunkedDecoder {
    state: ChunkState,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: ChunkState::Size,
        }
    }
}

/// One step of decoding.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    Data(Bytes),
    NeedMore,
    End,
}

impl ChunkedDecoder {
    /// Consumes what it can from `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, &'static str> {
        loop {
            match self.state {
                ChunkState::Done => return Ok(Decoded::End),
                ChunkState::Size => {
                    let Some(line_end) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Err("chunk size line too long");
                        }
                        if memchr::memchr(b'\r', buf).is_some_and(|i| i + 1 < buf.len()) {
                            return Err("bare CR in chunk size line");
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if line_end > MAX_CHUNK_LINE {
                        return Err("chunk size line too long");
                    }
                    if line_end == 0 || buf[line_end - 1] != b'\r' {
                        return Err("chunk size line must end in CRLF");
                    }
                    let line = &buf[..line_end - 1];
                    let (size_part, ext) = match memchr::memchr(b';', line) {
                        Some(i) => (&line[..i], &line[i..]),
                        None => (line, &b""[..]),
                    };
                    // RFC 9112 §7.1.1 allows BWS before `;`; nothing else.
                    let size_part = trim_trailing_ws(size_part);
                    if size_part.is_empty() || size_part.len() > 15 {
                        return Err("chunk size is empty or too long");
                    }
                    if !size_part.iter().all(u8::is_ascii_hexdigit) {
                        return Err("chunk size is not hexadecimal");
                    }
                    if ext
                        .iter()
                        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f || b == b'\r')
                    {
                        return Err("invalid character in chunk extension");
                    }
                    let size =
                        u64::from_str_radix(std::str::from_utf8(size_part).unwrap_or("x"), 16)
                            .map_err(|_| "chunk size is not hexadecimal")?;
                    let _ = buf.split_to(line_end + 1);
                    self.state = if size == 0 {
                        ChunkState::Trailers(0)
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = (buf.len() as u64).min(left) as usize;
                    let data = buf.split_to(n).freeze();
                    self.state = if left == n as u64 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left - n as u64)
                    };
                    return Ok(Decoded::Data(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        if buf.first().is_some_and(|&b| b != b'\r') {
                            return Err("chunk data not followed by CRLF");
                        }
                        return Ok(Decoded::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk data not followed by CRLF");
                    }
                    let _ = buf.split_to(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers(seen) => {
                    let Some(line_end) = memchr::memchr(b'\n', buf) else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Err("trailer section too large");
                        }
                        return Ok(Decoded::NeedMore);
                    };
                    if line_end == 0 || buf[line_end - 1] != b'\r' {
                        return Err("trailer line must end in CRLF");
                    }
                    let line = &buf[..line_end - 1];
                    if !line.is_empty() {
                        check_trailer_line(line)?;
                    }
                    let empty = line.is_empty();
                    let _ = buf.split_to(line_end + 1);
                    if empty {
                        self.state = ChunkState::Done;
                        return Ok(Decoded::End);
                    }
                    if seen + line_end > MAX_TRAILERS {
                        return Err("trailer section too large");
                    }
                    self.state = ChunkState::Trailers(seen + line_end + 1);
                }
            }
        }
    }
}

/// A trailer line must be a well-formed field line, as a header would be:
/// a token name, a colon, and a value without control characters. No
/// folding, no whitespace before the colon. Trailers are dropped, but a
/// line another parser would read differently is refused all the same.
fn check_trailer_line(line: &[u8]) -> Result<(), &'static str> {
    let colon = memchr::memchr(b':', line).ok_or("trailer line has no colon")?;
    let name = &line[..colon];
    if name.is_empty() || !super::is_token(name) {
        return Err("trailer field name is not a token");
    }
    if line[colon + 1..]
        .iter()
        .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
    {
        return Err("invalid character in trailer");
    }
    Ok(())
}

fn trim_trailing_ws(mut s: &[u8]) -> &[u8] {
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Reads one body off a connection, piece by piece.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    remaining: u64,
    chunked: ChunkedDecoder,
    done: bool,
}

impl BodyReader {
    pub fn new(framing: Framing) -> Self {
        let (remaining, done) = match framing {
            Framing::Empty => (0, true),
            Framing::Length(n) => (n, n == 0),
            _ => (0, false),
        };
        BodyReader {
            framing,
            remaining,
            chunked: ChunkedDecoder::default(),
            done,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The next piece of the body, or `None` once it is complete. Bytes after
    /// the body stay in `buf` (the next pipelined message).
    pub async fn next(
        &mut self,
        io: &mut Io,
        buf: &mut BytesMut,
        read_timeout: Duration,
    ) -> Result<Option<Bytes>, BodyError> {
        loop {
            if self.done {
                return Ok(None);
            }
            match self.framing {
                Framing::Empty => {
                    self.done = true;
                    return Ok(None);
                }
                Framing::Length(_) => {
                    if !buf.is_empty() {
                        let n = (buf.len() as u64).min(self.remaining) as usize;
                        self.remaining -= n as u64;
                        self.done = self.remaining == 0;
                        return Ok(Some(buf.split_to(n).freeze()));
                    }
                }
                Framing::Chunked => match self.chunked.decode(buf).map_err(BodyError::Malformed)? {
                    Decoded::Data(d) => return Ok(Some(d)),
                    Decoded::End => {
                        self.done = true;
                        return Ok(None);
                    }
                    Decoded::NeedMore => {}
                },
                Framing::UntilClose => {
                    if !buf.is_empty() {
                        return Ok(Some(buf.split().freeze()));
                    }
                }
            }
            let n = read_with_timeout(io, buf, read_timeout).await?;
            if n == 0 {
                if self.framing == Framing::UntilClose {
                    self.done = true;
                    return Ok(None);
                }
                return Err(BodyError::Truncated);
            }
        }
    }
}

pub async fn read_with_timeout(
    io: &mut Io,
    buf: &mut BytesMut,
    timeout: Duration,
) -> Result<usize, BodyError> {
    match crate::timer::timeout(timeout, io.read_buf(buf)).await {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(e)) => Err(BodyError::Io(e.kind())),
        Err(_) => Err(BodyError::Timeout),
    }
}

/// Frames body pieces for the receiving side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// Bytes go out as they are (Content-Length, or close-delimited).
    Identity,
    Chunked,
}

impl Encoder {
    /// Appends `data`, framed, to `out`.
    pub fn encode(self, data: &[u8], out: &mut Vec<u8>) {
        if data.is_empty() {
            return;
        }
        match self {
            Encoder::Identity => out.extend_from_slice(data),
            Encoder::Chunked => {
                super::push_hex(out, data.len() as u64);
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(data);
                out.extend_from_slice(b"\r\n");
            }
        }
    }

    /// Appends what `fill` writes to `out`, framed. For chunked framing
    /// the size goes afterwards into a fixed-width field (leading zeros are
    /// valid chunk-size syntax), so `fill` writes straight into `out`.
    pub fn encode_with<E>(
        self,
        out: &mut Vec<u8>,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self == Encoder::Identity {
            return fill(out);
        }
        let at = out.len();
        out.extend_from_slice(b"00000000\r\n");
        let r = fill(out);
        let n = out.len() - at - 10;
        if n == 0 {
            out.truncate(at);
        } else {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            for (i, b) in out[at..at + 8].iter_mut().enumerate() {
                *b = HEX[(n >> (28 - 4 * i)) & 15];
            }
            out.extend_from_slice(b"\r\n");
        }
        r
    }

    /// Appends the end of the body to `out`.
    pub fn finish(self, out: &mut Vec<u8>) {
        if self == Encoder::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}
