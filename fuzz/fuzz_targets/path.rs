//! Path normalisation: a normal form is a fixed point, starts with `/`,
//! and holds no dot segment, backslash or NUL.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use postern_dataplane::edge::path::normalize;

fuzz_target!(|data: &[u8]| {
    let mut target = b"/".to_vec();
    target.extend_from_slice(data);
    let Ok(n) = normalize(&Bytes::from(target)) else {
        return;
    };
    let t = &n.target[..];
    let path = &t[..memchr_q(t)];
    assert_eq!(path.first(), Some(&b'/'));
    assert!(!path.contains(&b'\\') && !path.contains(&0));
    for seg in path.split(|&b| b == b'/') {
        assert!(
            seg != b"." && seg != b"..",
            "dot segment in {:?}",
            String::from_utf8_lossy(t)
        );
    }
    let again = normalize(&n.target).expect("a normal form normalises");
    assert_eq!(again.target, n.target, "not a fixed point");
    assert_eq!(again.encoded_slash, n.encoded_slash);
});

fn memchr_q(t: &[u8]) -> usize {
    t.iter().position(|&b| b == b'?').unwrap_or(t.len())
}
