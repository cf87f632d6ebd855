//! Finding URL starts: a SIMD search for the byte pair each spelling has
//! right after its scheme, fused with copying the text to the output.

use super::*;

/// Where a URL start was found: its scheme and form.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trigger {
    pub(super) scheme: Scheme,
    pub(super) form: Form,
    pub(super) len: usize,
}

pub(super) const MAX_TRIGGER: usize = 14;

/// The URL start whose separator is at `q`, if there is one that starts
/// at or after `floor`: the separator in full, and `http` or `https` in
/// any case before it. URL starts cannot overlap (none holds an `h` after
/// its first byte), so separators come in the order of the starts.
#[inline]
pub(super) fn trigger_at(buf: &[u8], q: usize, floor: usize) -> Option<(usize, Trigger)> {
    let (form, sep) = match &buf[q..] {
        [b':', b'/', b'/', ..] => (Form::Plain, 3),
        [b':', b'\\', b'/', b'\\', b'/', ..] => (Form::Escaped, 5),
        [b'%', b'3', a, b'%', b'2', f, b'%', b'2', g, ..]
            if *a | 0x20 == b'a' && *f | 0x20 == b'f' && *g | 0x20 == b'f' =>
        {
            (Form::Percent, 9)
        }
        _ => return None,
    };
    // "http" folded to lower case, four bytes at a time.
    let http = |i: usize| {
        let w = u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        w | 0x2020_2020 == u32::from_le_bytes(*b"http")
    };
    let (scheme, p) = if q >= floor + 4 && http(q - 4) {
        (Scheme::Http, q - 4)
    } else if q >= floor + 5 && buf[q - 1] | 0x20 == b's' && http(q - 5) {
        (Scheme::Https, q - 5)
    } else {
        return None;
    };
    Some((
        p,
        Trigger {
            scheme,
            form,
            len: q + sep - p,
        },
    ))
}

/// Whether `a, b` may start a separator: `:/`, `:\\` or `%3`.
#[inline]
pub(super) fn is_pair(a: u8, b: u8) -> bool {
    (a == b':' && (b == b'/' || b == b'\\')) || (a == b'%' && b == b'3')
}

/// Copies `buf[from..]` to `out` up to the first separator pair — `:/`
/// (`://`), `:\\` (`:\\/\\/`) or `%3` (`%3A%2F%2F`) — and returns where
/// it is; with none, copies everything and returns `None`.
///
/// Searching and copying are one pass. On x86-64 the search compares 32
/// positions at once with AVX2 where the CPU has it (16 with SSE2, the
/// architecture's baseline, where not): the bytes at `i` and at `i + 1` are
/// loaded as two overlapping vectors, so a hit needs both bytes of a pair,
/// and the prose colons and percent signs of a page cost nothing. (A
/// single-byte search, `memchr2` on `:` and `%`, measured at less than
/// half this speed on ordinary pages.)
pub(super) fn copy_to_pair(buf: &[u8], from: usize, out: &mut Vec<u8>) -> Option<usize> {
    let mut i = from;
    #[cfg(target_arch = "x86_64")]
    {
        let (hit, next) = if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { simd::copy_avx2(buf, i, out) }
        } else {
            simd::copy_sse2(buf, i, out)
        };
        if hit {
            return Some(next);
        }
        i = next;
    }
    let start = i;
    while i + 1 < buf.len() {
        if is_pair(buf[i], buf[i + 1]) {
            out.extend_from_slice(&buf[start..i]);
            return Some(i);
        }
        i += 1;
    }
    out.extend_from_slice(&buf[start..]);
    None
}

#[cfg(target_arch = "x86_64")]
pub(super) mod simd {
    use std::arch::x86_64::*;

    /// Copies whole 32-byte blocks from `i` to `out` while looking for a
    /// separator pair: `(true, position)` of the first one (`out` then
    /// ends just before it), or `(false, where the blocks ended)`.
    ///
    /// # Safety
    /// The CPU must support AVX2.
    #[target_feature(enable = "avx2")]
    pub unsafe fn copy_avx2(buf: &[u8], mut i: usize, out: &mut Vec<u8>) -> (bool, usize) {
        let colon = _mm256_set1_epi8(b':' as i8);
        let slash = _mm256_set1_epi8(b'/' as i8);
        let back = _mm256_set1_epi8(b'\\' as i8);
        let pct = _mm256_set1_epi8(b'%' as i8);
        let three = _mm256_set1_epi8(b'3' as i8);
        // Room for every block this call can copy, so the loop only
        // stores; the length is set once, when the call ends.
        out.reserve(buf.len().saturating_sub(i));
        let start = out.len();
        let dst = out.as_mut_ptr();
        let mut n = 0;
        let mut hit = None;
        let pairs = |v0, v1| {
            let a = _mm256_and_si256(
                _mm256_cmpeq_epi8(v0, colon),
                _mm256_or_si256(_mm256_cmpeq_epi8(v1, slash), _mm256_cmpeq_epi8(v1, back)),
            );
            let b = _mm256_and_si256(_mm256_cmpeq_epi8(v0, pct), _mm256_cmpeq_epi8(v1, three));
            _mm256_or_si256(a, b)
        };
        // 64 bytes a turn, one branch for both halves.
        while i + 65 <= buf.len() {
            // SAFETY: `i + 65 <= buf.len()`: the four unaligned 32-byte
            // loads (at `i`, `i + 1`, `i + 32`, `i + 33`) read inside `buf`.
            let (v0, v1, w0, w1) = unsafe {
                let p = buf.as_ptr().add(i);
                (
                    _mm256_loadu_si256(p.cast::<__m256i>()),
                    _mm256_loadu_si256(p.add(1).cast::<__m256i>()),
                    _mm256_loadu_si256(p.add(32).cast::<__m256i>()),
                    _mm256_loadu_si256(p.add(33).cast::<__m256i>()),
                )
            };
            let (m0, m1) = (pairs(v0, v1), pairs(w0, w1));
            // SAFETY: the spare capacity holds the rest of `buf` from where
            // this call started (reserved above), and `n` counts the bytes
            // stored since, so 64 more fit.
            unsafe {
                _mm256_storeu_si256(dst.add(start + n).cast::<__m256i>(), v0);
                _mm256_storeu_si256(dst.add(start + n + 32).cast::<__m256i>(), w0);
            }
            if _mm256_testz_si256(_mm256_or_si256(m0, m1), _mm256_or_si256(m0, m1)) == 0 {
                let mask = (_mm256_movemask_epi8(m0) as u32 as u64)
                    | ((_mm256_movemask_epi8(m1) as u32 as u64) << 32);
                let k = mask.trailing_zeros() as usize;
                n += k;
                hit = Some(i + k);
                break;
            }
            n += 64;
            i += 64;
        }
        while hit.is_none() && i + 33 <= buf.len() {
            // SAFETY: `i + 33 <= buf.len()`: both unaligned 32-byte loads
            // (at `i` and `i + 1`) read inside `buf`.
            let (v0, v1) = unsafe {
                let p = buf.as_ptr().add(i);
                (
                    _mm256_loadu_si256(p.cast::<__m256i>()),
                    _mm256_loadu_si256(p.add(1).cast::<__m256i>()),
                )
            };
            let mask = _mm256_movemask_epi8(pairs(v0, v1)) as u32;
            // SAFETY: as above, 32 more bytes fit.
            unsafe { _mm256_storeu_si256(dst.add(start + n).cast::<__m256i>(), v0) };
            if mask != 0 {
                let k = mask.trailing_zeros() as usize;
                n += k;
                hit = Some(i + k);
                break;
            }
            n += 32;
            i += 32;
        }
        // SAFETY: the first `n` bytes after `start` were stored above, each
        // a copy of an initialised byte of `buf`.
        unsafe { out.set_len(start + n) };
        match hit {
            Some(q) => (true, q),
            None => (false, i),
        }
    }

    /// The same over 16-byte blocks with SSE2, which every x86-64 CPU has.
    pub fn copy_sse2(buf: &[u8], mut i: usize, out: &mut Vec<u8>) -> (bool, usize) {
        // Room for every block this call can copy, so the loop only stores.
        out.reserve(buf.len().saturating_sub(i));
        while i + 17 <= buf.len() {
            // SAFETY: `i + 17 <= buf.len()`: both unaligned 16-byte loads
            // (at `i` and `i + 1`) read inside `buf`; SSE2 is part of the
            // x86-64 baseline.
            let mask = unsafe {
                let p = buf.as_ptr().add(i);
                let v0 = _mm_loadu_si128(p.cast::<__m128i>());
                let v1 = _mm_loadu_si128(p.add(1).cast::<__m128i>());
                let eq = |v, b: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(b as i8));
                let a = _mm_and_si128(eq(v0, b':'), _mm_or_si128(eq(v1, b'/'), eq(v1, b'\\')));
                let b = _mm_and_si128(eq(v0, b'%'), eq(v1, b'3'));
                (v0, _mm_movemask_epi8(_mm_or_si128(a, b)))
            };
            let (v0, mask) = mask;
            // SAFETY: the spare capacity holds the rest of `buf` (reserved
            // above), so 16 more bytes; the new length covers only bytes
            // copied from `buf`, which are initialised.
            unsafe {
                let len = out.len();
                _mm_storeu_si128(out.as_mut_ptr().add(len).cast::<__m128i>(), v0);
                if mask != 0 {
                    let n = mask.trailing_zeros() as usize;
                    out.set_len(len + n);
                    return (true, i + n);
                }
                out.set_len(len + 16);
            }
            i += 16;
        }
        (false, i)
    }
}
