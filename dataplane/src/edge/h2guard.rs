//! A frame check in front of the HTTP/2 server, on the bytes the client
//! sends.
//!
//! The h2 crate refuses every protocol violation, but answers most of them
//! with a generic `PROTOCOL_ERROR`. RFC 9113 names the error for each, and
//! clients and conformance suites go by the name. This layer walks the
//! client's frames (headers only; payloads only where a rule needs them)
//! and stops the connection with the right code before h2 sees the frame:
//!
//! * a frame of a fixed size with another size (`PRIORITY`, `RST_STREAM`,
//!   `PING`, `WINDOW_UPDATE`, `SETTINGS`), or a `SETTINGS` ACK with a
//!   payload: `FRAME_SIZE_ERROR`;
//! * `SETTINGS_INITIAL_WINDOW_SIZE` above 2^31-1: `FLOW_CONTROL_ERROR`;
//! * `DATA` or `HEADERS` on a stream the client already ended or reset:
//!   `STREAM_CLOSED`;
//! * a header block that is not well-formed HPACK (cut short, a zero
//!   index, an integer that overflows): `COMPRESSION_ERROR`;
//! * pseudo-header fields in trailers, or any `PUSH_PROMISE` (a client
//!   cannot push): `PROTOCOL_ERROR`;
//! * a header block held across more than [`MAX_BLOCK`] bytes
//!   (CONTINUATION floods): `ENHANCE_YOUR_CALM`.
//!
//! Header blocks are held until their last frame arrives, so a block is
//! checked whole and h2 gets it in one piece; everything else passes on
//! as it arrives. The connection task learns of a violation through
//! [`Violation`] and closes with GOAWAY.

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const HEADER_LEN: usize = 9;
/// The largest frame the edge accepts (the protocol's default, which the
/// edge does not raise).
const MAX_FRAME: usize = 16_384;
/// The most a header block may take on the wire, across its frames.
pub const MAX_BLOCK: usize = 256 * 1024;
/// Client streams remembered as ended, for `STREAM_CLOSED`.
const REMEMBERED: usize = 1024;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Set when the client broke a rule; the connection task closes with it.
///
/// It also tells since when the client has not taken the edge's writes:
/// h2 stops reading while its writes wait, so a client that floods
/// frames and never reads would otherwise hold the connection forever.
#[derive(Default)]
pub struct Violation {
    reason: Cell<Option<Reason>>,
    waker: RefCell<Option<Waker>>,
    write_stalled: Cell<Option<std::time::Instant>>,
}

impl Violation {
    fn set(&self, r: Reason) {
        if self.reason.get().is_none() {
            self.reason.set(Some(r));
        }
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Since when a write has waited for the client, if one is waiting.
    pub fn write_stalled_since(&self) -> Option<std::time::Instant> {
        self.write_stalled.get()
    }

    fn wrote(&self, pending: bool) {
        match (pending, self.write_stalled.get()) {
            (true, None) => self.write_stalled.set(Some(std::time::Instant::now())),
            (false, Some(_)) => self.write_stalled.set(None),
            _ => {}
        }
    }

    /// Resolves with the reason once there is one.
    pub fn poll_reason(&self, cx: &mut Context<'_>) -> Poll<Reason> {
        match self.reason.get() {
            Some(r) => Poll::Ready(r),
            None => {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A client stream and the frames checked on it.
pub struct Guarded<T> {
    inner: T,
    check: Check,
    /// Checked bytes not yet taken by h2.
    ready: Vec<u8>,
    ready_pos: usize,
    scratch: Box<[u8]>,
    violation: Rc<Violation>,
}

impl<T> Guarded<T> {
    pub fn new(inner: T) -> (Guarded<T>, Rc<Violation>) {
        let violation = Rc::new(Violation::default());
        (
            Guarded {
                inner,
                check: Check::default(),
                ready: Vec::new(),
                ready_pos: 0,
                scratch: vec![0u8; 16 * 1024].into_boxed_slice(),
                violation: violation.clone(),
            },
            violation,
        )
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Guarded<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.violation.reason.get().is_some() {
                // Nothing more reaches h2; the connection is closing.
                return Poll::Pending;
            }
            if this.ready_pos < this.ready.len() {
                let n = (this.ready.len() - this.ready_pos).min(buf.remaining());
                buf.put_slice(&this.ready[this.ready_pos..this.ready_pos + n]);
                this.ready_pos += n;
                if this.ready_pos == this.ready.len() {
                    this.ready.clear();
                    this.ready_pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            let mut rb = ReadBuf::new(&mut this.scratch);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {}
            }
            let got = rb.filled().len();
            if got == 0 {
                // End of stream, with a frame possibly cut short: h2
                // reports it.
                return Poll::Ready(Ok(()));
            }
            if let Err(r) = this.check.feed(&this.scratch[..got], &mut this.ready) {
                this.violation.set(r);
                return Poll::Pending;
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Guarded<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.violation.wrote(r.is_pending());
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.violation.wrote(r.is_pending());
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The frame walk.
struct Check {
    preface_left: usize,
    /// The frame header being collected.
    head: Vec<u8>,
    /// Payload bytes of the current frame still to pass through.
    pass_left: usize,
    /// Payload bytes of the current frame to drop.
    skip_left: usize,
    /// A frame whose payload is needed whole: its header and payload.
    whole: Option<(Head, Vec<u8>)>,
    /// A header block in progress: its frames, as they will go to h2.
    block: Option<Block>,
    max_stream: u32,
    /// Client streams open on the client's side.
    open: HashSet<u32>,
    /// Client streams the client ended or reset, most recent last.
    ended: VecDeque<u32>,
    ended_set: HashSet<u32>,
}

impl Default for Check {
    fn default() -> Check {
        Check {
            preface_left: crate::edge::h2::PREFACE.len(),
            head: Vec::with_capacity(HEADER_LEN),
            pass_left: 0,
            skip_left: 0,
            whole: None,
            block: None,
            max_stream: 0,
            open: HashSet::new(),
            ended: VecDeque::new(),
            ended_set: HashSet::new(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Head {
    len: usize,
    ty: u8,
    flags: u8,
    stream: u32,
}

struct Block {
    stream: u32,
    trailers: bool,
    /// The frames as received (headers included), for h2.
    frames: Vec<u8>,
    /// The HPACK fragments joined, for the check.
    hpack: Vec<u8>,
}

impl Check {
    /// Walks `input`, appending what h2 may have to `ready`.
    fn feed(&mut self, mut input: &[u8], ready: &mut Vec<u8>) -> Result<(), Reason> {
        while !input.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(input.len());
                ready.extend_from_slice(&input[..n]);
                self.preface_left -= n;
                input = &input[n..];
                continue;
            }
            if self.skip_left > 0 {
                let n = self.skip_left.min(input.len());
                self.skip_left -= n;
                input = &input[n..];
                continue;
            }
            if self.pass_left > 0 {
                let n = self.pass_left.min(input.len());
                ready.extend_from_slice(&input[..n]);
                self.pass_left -= n;
                input = &input[n..];
                continue;
            }
            if let Some((head, payload)) = &mut self.whole {
                let n = (head.len - payload.len()).min(input.len());
                payload.extend_from_slice(&input[..n]);
                input = &input[n..];
                let complete = payload.len() == head.len;
                if complete {
                    if let Some((head, payload)) = self.whole.take() {
                        self.whole_frame(head, payload, ready)?;
                    }
                }
                continue;
            }
            let n = (HEADER_LEN - self.head.len()).min(input.len());
            self.head.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.head.len() < HEADER_LEN {
                continue;
            }
            let h = &self.head;
            let head = Head {
                len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
                ty: h[3],
                flags: h[4],
                stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
            };
            self.frame_head(head, ready)?;
        }
        Ok(())
    }

    /// A frame header: checked, then either passed on (its payload
    /// following as it arrives) or held for its payload.
    fn frame_head(&mut self, head: Head, ready: &mut Vec<u8>) -> Result<(), Reason> {
        let raw: [u8; HEADER_LEN] = self.head[..].try_into().unwrap_or([0; HEADER_LEN]);
        self.head.clear();
        if self.block.is_some() && head.ty != CONTINUATION {
            // h2 refuses a header block interrupted by another frame.
            return self.release_block(ready).map(|()| {
                ready.extend_from_slice(&raw);
                self.pass_left = head.len;
            });
        }
        let fixed = match head.ty {
            PRIORITY => Some(5),
            RST_STREAM | WINDOW_UPDATE => Some(4),
            PING => Some(8),
            _ => None,
        };
        if fixed.is_some_and(|n| n != head.len) {
            return Err(Reason::FRAME_SIZE_ERROR);
        }
        if head.ty == GOAWAY && head.stream == 0 && head.len >= 8 {
            // The client will open no more streams. h2 would end the
            // connection at once, leaving frames the client sent after it
            // (a PING) unanswered; the edge keeps serving instead, and
            // the connection ends when the client closes it or sits idle.
            self.skip_left = head.len;
            return Ok(());
        }
        match head.ty {
            // A client cannot push (RFC 9113 §8.4). Refused at its header:
            // h2 would first wait for the rest of its header block.
            PUSH_PROMISE => return Err(Reason::PROTOCOL_ERROR),
            SETTINGS => {
                if (head.flags & ACK != 0 && head.len != 0) || head.len % 6 != 0 {
                    return Err(Reason::FRAME_SIZE_ERROR);
                }
                if head.len > MAX_FRAME {
                    return Err(Reason::FRAME_SIZE_ERROR);
                }
            }
            HEADERS | CONTINUATION if head.len > MAX_FRAME => {
                return Err(Reason::FRAME_SIZE_ERROR);
            }
            DATA if head.stream % 2 == 1 => {
                if self.open.contains(&head.stream) {
                    if head.flags & END_STREAM != 0 {
                        self.end(head.stream);
                    }
                } else if self.ended_set.contains(&head.stream) {
                    return Err(Reason::STREAM_CLOSED);
                }
            }
            RST_STREAM if head.stream % 2 == 1 && self.open.contains(&head.stream) => {
                self.end(head.stream);
            }
            _ => {}
        }
        if matches!(head.ty, SETTINGS | HEADERS | CONTINUATION) {
            self.whole = Some((head, Vec::with_capacity(head.len)));
            if head.len == 0 {
                let (head, payload) = self.whole.take().unwrap_or((head, Vec::new()));
                return self.whole_frame_with(head, payload, raw, ready);
            }
            return Ok(());
        }
        ready.extend_from_slice(&raw);
        self.pass_left = head.len;
        Ok(())
    }

    fn whole_frame(
        &mut self,
        head: Head,
        payload: Vec<u8>,
        ready: &mut Vec<u8>,
    ) -> Result<(), Reason> {
        let raw = encode_head(head);
        self.whole_frame_with(head, payload, raw, ready)
    }

    fn whole_frame_with(
        &mut self,
        head: Head,
        payload: Vec<u8>,
        raw: [u8; HEADER_LEN],
        ready: &mut Vec<u8>,
    ) -> Result<(), Reason> {
        match head.ty {
            SETTINGS => {
                for s in payload.chunks_exact(6) {
                    let id = u16::from_be_bytes([s[0], s[1]]);
                    let value = u32::from_be_bytes([s[2], s[3], s[4], s[5]]);
                    // SETTINGS_INITIAL_WINDOW_SIZE.
                    if id == 4 && value > 0x7fff_ffff {
                        return Err(Reason::FLOW_CONTROL_ERROR);
                    }
                }
                ready.extend_from_slice(&raw);
                ready.extend_from_slice(&payload);
                Ok(())
            }
            HEADERS => self.headers(head, payload, raw, ready),
            _ => {
                // CONTINUATION.
                let Some(block) = &mut self.block else {
                    // Without a block in progress h2 refuses it.
                    ready.extend_from_slice(&raw);
                    ready.extend_from_slice(&payload);
                    return Ok(());
                };
                if head.stream != block.stream {
                    return self.release_block(ready).map(|()| {
                        ready.extend_from_slice(&raw);
                        ready.extend_from_slice(&payload);
                    });
                }
                block.frames.extend_from_slice(&raw);
                block.frames.extend_from_slice(&payload);
                block.hpack.extend_from_slice(&payload);
                if block.frames.len() > MAX_BLOCK {
                    return Err(Reason::ENHANCE_YOUR_CALM);
                }
                if head.flags & END_HEADERS != 0 {
                    let trailers = block.trailers;
                    hpack_check(&block.hpack, trailers)?;
                    return self.release_block(ready);
                }
                Ok(())
            }
        }
    }

    /// A HEADERS frame: stream state, then the block (held until its end).
    fn headers(
        &mut self,
        head: Head,
        payload: Vec<u8>,
        raw: [u8; HEADER_LEN],
        ready: &mut Vec<u8>,
    ) -> Result<(), Reason> {
        let id = head.stream;
        let mut trailers = false;
        if id % 2 == 1 {
            if id > self.max_stream {
                self.max_stream = id;
                if head.flags & END_STREAM == 0 {
                    self.open(id);
                } else {
                    self.remember_ended(id);
                }
            } else if self.open.contains(&id) {
                trailers = true;
                if head.flags & END_STREAM != 0 {
                    self.end(id);
                }
            } else if self.ended_set.contains(&id) {
                return Err(Reason::STREAM_CLOSED);
            }
        }
        // The HPACK fragment: without padding and priority fields.
        let mut frag = &payload[..];
        let mut pad = 0;
        if head.flags & PADDED != 0 {
            let Some((&p, rest)) = frag.split_first() else {
                return pass(raw, &payload, ready);
            };
            pad = usize::from(p);
            frag = rest;
        }
        if head.flags & PRIORITY_FLAG != 0 {
            if frag.len() < 5 {
                return pass(raw, &payload, ready);
            }
            frag = &frag[5..];
        }
        if pad > frag.len() {
            // h2 refuses the padding.
            return pass(raw, &payload, ready);
        }
        let frag = frag[..frag.len() - pad].to_vec();
        if head.flags & END_HEADERS != 0 {
            hpack_check(&frag, trailers)?;
            return pass(raw, &payload, ready);
        }
        let mut frames = Vec::with_capacity(HEADER_LEN + payload.len());
        frames.extend_from_slice(&raw);
        frames.extend_from_slice(&payload);
        self.block = Some(Block {
            stream: id,
            trailers,
            frames,
            hpack: frag,
        });
        Ok(())
    }

    fn release_block(&mut self, ready: &mut Vec<u8>) -> Result<(), Reason> {
        if let Some(b) = self.block.take() {
            ready.extend_from_slice(&b.frames);
        }
        Ok(())
    }

    fn open(&mut self, id: u32) {
        // Streams the client leaves open without end are refused or reset
        // by h2; past a bound the oldest are no longer tracked.
        if self.open.len() >= 4 * REMEMBERED {
            if let Some(&old) = self.open.iter().min() {
                self.open.remove(&old);
            }
        }
        self.open.insert(id);
    }

    fn end(&mut self, id: u32) {
        self.open.remove(&id);
        self.remember_ended(id);
    }

    fn remember_ended(&mut self, id: u32) {
        if self.ended.len() >= REMEMBERED {
            if let Some(old) = self.ended.pop_front() {
                self.ended_set.remove(&old);
            }
        }
        self.ended.push_back(id);
        self.ended_set.insert(id);
    }
}

fn pass(raw: [u8; HEADER_LEN], payload: &[u8], ready: &mut Vec<u8>) -> Result<(), Reason> {
    ready.extend_from_slice(&raw);
    ready.extend_from_slice(payload);
    Ok(())
}

fn encode_head(h: Head) -> [u8; HEADER_LEN] {
    let s = h.stream.to_be_bytes();
    [
        (h.len >> 16) as u8,
        (h.len >> 8) as u8,
        h.len as u8,
        h.ty,
        h.flags,
        s[0],
        s[1],
        s[2],
        s[3],
    ]
}

/// Static-table indices of pseudo-header fields (RFC 7541 Appendix A).
const LAST_PSEUDO_INDEX: u64 = 14;

/// Checks that a header block is well-formed HPACK without decoding it,
/// and, for trailers, that it names no pseudo-header field.
pub fn hpack_check(block: &[u8], trailers: bool) -> Result<(), Reason> {
    let bad = Reason::COMPRESSION_ERROR;
    let mut i = 0;
    while i < block.len() {
        let b = block[i];
        if b & 0x80 != 0 {
            let idx = int(block, &mut i, 7)?;
            if idx == 0 {
                return Err(bad);
            }
            if trailers && idx <= LAST_PSEUDO_INDEX {
                return Err(Reason::PROTOCOL_ERROR);
            }
        } else if b & 0xe0 == 0x20 {
            int(block, &mut i, 5)?;
        } else {
            let prefix = if b & 0xc0 == 0x40 { 6 } else { 4 };
            let idx = int(block, &mut i, prefix)?;
            if idx == 0 {
                let name = string(block, &mut i)?;
                if trailers && starts_with_colon(name) {
                    return Err(Reason::PROTOCOL_ERROR);
                }
            } else if trailers && idx <= LAST_PSEUDO_INDEX {
                return Err(Reason::PROTOCOL_ERROR);
            }
            string(block, &mut i)?;
        }
    }
    Ok(())
}

/// Whether a name string (its first byte, with the Huffman flag)
/// starts with ':'; in Huffman code ':' is `1011100`.
fn starts_with_colon((huffman, s): (bool, &[u8])) -> bool {
    match s.first() {
        None => false,
        Some(&c) if huffman => c & 0xfe == 0xb8,
        Some(&c) => c == b':',
    }
}

/// An HPACK integer with an `n`-bit prefix at `block[*i]`.
fn int(block: &[u8], i: &mut usize, n: u32) -> Result<u64, Reason> {
    let bad = Reason::COMPRESSION_ERROR;
    let mask = (1u16 << n) - 1;
    let first = u64::from(u16::from(*block.get(*i).ok_or(bad)?) & mask);
    *i += 1;
    if first < u64::from(mask) {
        return Ok(first);
    }
    let mut value = first;
    let mut shift = 0;
    loop {
        let b = *block.get(*i).ok_or(bad)?;
        *i += 1;
        value += u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
        shift += 7;
        // Past 2^28 no field of ours makes sense (RFC 7541 §5.1).
        if shift > 28 {
            return Err(bad);
        }
    }
}

/// An HPACK string literal: (Huffman-coded, its bytes).
fn string<'b>(block: &'b [u8], i: &mut usize) -> Result<(bool, &'b [u8]), Reason> {
    let huffman = block.get(*i).ok_or(Reason::COMPRESSION_ERROR)? & 0x80 != 0;
    let len = int(block, i, 7)? as usize;
    let s = block
        .get(*i..i.saturating_add(len))
        .ok_or(Reason::COMPRESSION_ERROR)?;
    *i += len;
    Ok((huffman, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = encode_head(Head {
            len: payload.len(),
            ty,
            flags,
            stream,
        })
        .to_vec();
        f.extend_from_slice(payload);
        f
    }

    fn run(frames: &[Vec<u8>]) -> (Result<(), Reason>, Vec<u8>) {
        let mut c = Check::default();
        let mut ready = Vec::new();
        let mut input = crate::edge::h2::PREFACE.to_vec();
        for f in frames {
            input.extend_from_slice(f);
        }
        // Fed a byte at a time: frame boundaries must not matter.
        for b in input.chunks(1) {
            if let Err(r) = c.feed(b, &mut ready) {
                return (Err(r), ready);
            }
        }
        (Ok(()), ready)
    }

    /// `:method GET` (static index 2), `:path /` (4), `:scheme http` (6),
    /// `:authority a` as a literal with indexed name 1.
    const REQUEST: &[u8] = &[0x82, 0x84, 0x86, 0x41, 0x01, b'a'];

    #[test]
    fn well_formed_frames_pass_unchanged() {
        let frames = vec![
            frame(SETTINGS, 0, 0, &[0, 4, 0, 1, 0, 0]),
            frame(HEADERS, END_HEADERS, 1, REQUEST),
            frame(DATA, END_STREAM, 1, b"body"),
            frame(HEADERS, 0, 3, &REQUEST[..3]),
            frame(CONTINUATION, END_HEADERS, 3, &REQUEST[3..]),
            frame(PING, 0, 0, &[0; 8]),
        ];
        let (r, ready) = run(&frames);
        assert_eq!(r, Ok(()));
        let mut all = crate::edge::h2::PREFACE.to_vec();
        frames.iter().for_each(|f| all.extend_from_slice(f));
        assert_eq!(ready, all);
    }

    #[test]
    fn violations_get_their_own_codes() {
        let cases: Vec<(Vec<Vec<u8>>, Reason)> = vec![
            (
                vec![frame(PRIORITY, 0, 1, &[0; 4])],
                Reason::FRAME_SIZE_ERROR,
            ),
            (
                vec![frame(WINDOW_UPDATE, 0, 0, &[0; 3])],
                Reason::FRAME_SIZE_ERROR,
            ),
            (vec![frame(PING, 0, 0, &[0; 7])], Reason::FRAME_SIZE_ERROR),
            (
                vec![frame(RST_STREAM, 0, 1, &[0; 5])],
                Reason::FRAME_SIZE_ERROR,
            ),
            (
                vec![frame(SETTINGS, 0, 0, &[0; 5])],
                Reason::FRAME_SIZE_ERROR,
            ),
            (
                vec![frame(SETTINGS, ACK, 0, &[0; 6])],
                Reason::FRAME_SIZE_ERROR,
            ),
            (
                vec![frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0])],
                Reason::FLOW_CONTROL_ERROR,
            ),
            (
                vec![frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x40])],
                Reason::COMPRESSION_ERROR,
            ),
            (
                vec![
                    frame(HEADERS, END_HEADERS | END_STREAM, 1, REQUEST),
                    frame(DATA, 0, 1, b"late"),
                ],
                Reason::STREAM_CLOSED,
            ),
            (
                vec![
                    frame(HEADERS, END_HEADERS, 1, REQUEST),
                    frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]),
                    frame(HEADERS, END_HEADERS, 1, REQUEST),
                ],
                Reason::STREAM_CLOSED,
            ),
            (
                vec![
                    frame(HEADERS, END_HEADERS, 1, REQUEST),
                    frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x84]),
                ],
                Reason::PROTOCOL_ERROR,
            ),
            (
                vec![
                    frame(HEADERS, END_HEADERS, 1, REQUEST),
                    frame(PUSH_PROMISE, 0, 1, &[0, 0, 0, 2, 0x88]),
                ],
                Reason::PROTOCOL_ERROR,
            ),
        ];
        for (frames, want) in cases {
            assert_eq!(run(&frames).0, Err(want), "{frames:?}");
        }
    }

    #[test]
    fn a_continuation_flood_is_cut_off() {
        let mut frames = vec![frame(HEADERS, 0, 1, REQUEST)];
        for _ in 0..MAX_BLOCK / HEADER_LEN + 1 {
            frames.push(frame(CONTINUATION, 0, 1, &[]));
        }
        assert_eq!(run(&frames).0, Err(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn hpack_integers_and_strings_are_bounded() {
        assert_eq!(
            hpack_check(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], false),
            Err(Reason::COMPRESSION_ERROR)
        );
        assert_eq!(
            hpack_check(&[0x00, 0x05, b'a'], false),
            Err(Reason::COMPRESSION_ERROR)
        );
        assert_eq!(hpack_check(&[0x80], false), Err(Reason::COMPRESSION_ERROR));
        assert_eq!(hpack_check(&[0x00, 0x01, b'x', 0x01, b'y'], true), Ok(()));
        assert_eq!(
            hpack_check(&[0x00, 0x01, b':', 0x01, b'y'], true),
            Err(Reason::PROTOCOL_ERROR)
        );
    }
}
