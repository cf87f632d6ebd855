//! An app as the admin API receives it (JSON): parsed, then validated
//! against a table, as `POST /v1/apps` does. Refusals say why.
#![no_main]

use libfuzzer_sys::fuzz_target;
use postern_control::AppSpec;

const BASE: &str =
    "[[listener]]\naddress = \"127.0.0.1:8080\"\nscheme = \"http\"\npublic_port = 80\n";

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = serde_json::from_slice::<AppSpec>(data) else {
        return;
    };
    let base = postern_control::parse_str(BASE, "base.toml", std::path::Path::new("/nonexistent"))
        .expect("the base configuration is valid");
    if let Err(problems) = base.with_apps(vec![spec]) {
        assert!(!problems.is_empty() && problems.iter().all(|p| !p.is_empty()));
    }
});
