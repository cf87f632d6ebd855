//! The chunked decoder gives the same answer however the bytes arrive:
//! whole, or cut at points the input itself chooses.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern_dataplane::http1::body::{ChunkedDecoder, Decoded};

/// Decodes `input` fed in pieces ending at `cuts`: the body, whether it
/// ended, or the error.
fn decode(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), &'static str> {
    let mut d = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut points = cuts.iter().copied().chain(std::iter::once(input.len()));
    loop {
        match d.decode(&mut buf)? {
            Decoded::Data(x) => out.extend_from_slice(&x),
            Decoded::End => return Ok((out, true)),
            Decoded::NeedMore => match points.next() {
                Some(c) => {
                    let c = c.clamp(at, input.len());
                    buf.extend_from_slice(&input[at..c]);
                    at = c;
                }
                None => return Ok((out, false)),
            },
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    // The first byte seeds the cut points.
    let mut cuts: Vec<usize> = (0..(n % 8) as usize)
        .map(|i| (usize::from(n).wrapping_mul(31 + i * 17)) % (rest.len() + 1))
        .collect();
    cuts.sort_unstable();
    let whole = decode(rest, &[]);
    let pieces = decode(rest, &cuts);
    match (&whole, &pieces) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        // An error seen only with more bytes at hand is fine when the
        // piecewise run stopped early; otherwise the two must agree.
        (Ok((_, true)), Err(e)) | (Err(e), Ok((_, true))) => {
            panic!("whole {whole:?} vs pieces {pieces:?}: {e}")
        }
        _ => {}
    }
});
