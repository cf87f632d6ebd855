//! What a connector (or anyone reaching the tunnel port) sends before it
//! is trusted: the enrollment and renewal messages, and the certificate
//! request inside them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_dataplane::tunnel::{EnrollRequest, RenewRequest, Reply};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<EnrollRequest>(data) {
        let _ = postern_control::ca::Ca::check_request(&r.csr);
    }
    if let Ok(r) = serde_json::from_slice::<RenewRequest>(data) {
        let _ = postern_control::ca::Ca::check_request(&r.csr);
    }
    let _ = serde_json::from_slice::<Reply>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = postern_control::ca::Ca::check_request(text);
    }
});
