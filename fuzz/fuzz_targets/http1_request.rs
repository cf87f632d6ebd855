//! Request heads, pipelined: parse until the bytes run out or are refused.
//! A parsed head is well formed (a host to route on, a path or an
//! absolute URL reduced to one) and never takes more bytes than it had.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern_dataplane::http1::parse_request_or_refuse;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    for _ in 0..64 {
        let before = buf.len();
        match parse_request_or_refuse(&mut buf) {
            Ok(Some(head)) => {
                assert!(buf.len() < before, "a head consumed no bytes");
                assert!(!head.host.is_empty());
                assert!(head.path.first() == Some(&b'/'));
                assert!(head.host.bytes().all(|b| !b.is_ascii_uppercase()));
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "an incomplete head consumed bytes");
                break;
            }
            Err(r) => {
                assert!((400..=599).contains(&r.error.status));
                break;
            }
        }
    }
});
