//! Backend response heads: refused with a 502, or parsed with a framing
//! that never contradicts the status.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use postern_dataplane::http1::body::Framing;
use postern_dataplane::http1::parse_response;

fuzz_target!(|data: &[u8]| {
    for head_request in [false, true] {
        let mut buf = BytesMut::from(data);
        match parse_response(&mut buf, head_request) {
            Ok(Some(r)) => {
                if head_request || r.status == 204 || r.status == 304 {
                    assert_eq!(r.framing, Framing::Empty);
                }
                if r.framing == Framing::UntilClose {
                    assert!(!r.keep_alive);
                }
            }
            Ok(None) => assert_eq!(buf.len(), data.len()),
            Err(e) => assert_eq!(e.status, 502),
        }
    }
});
