//! The configuration file: any text is accepted or refused with problems
//! that say where, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) =
        postern_control::parse_str(text, "fuzz.toml", std::path::Path::new("/nonexistent"))
    {
        assert!(!e.to_string().is_empty());
    }
});
