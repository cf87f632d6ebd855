//! Test inputs: a 256 KiB HTML page with internal links, a link table of
//! N published apps, the claims and RSA tokens a bearer check verifies,
//! and typical request and response heads.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use postern_control::jwt::KeySet;
use postern_control::url::parse_app_url;
use postern_dataplane::auth::assertion::Signer;
use postern_dataplane::translate::Table;
use ring::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256, RSA_PSS_SHA256};

pub const PAGE: usize = 256 * 1024;

/// About 256 KiB of HTML; with `internal`, one link to it per ~1 KiB.
pub fn page(internal: Option<&str>) -> Vec<u8> {
    let mut out = String::with_capacity(PAGE + 4096);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Quarterly report</title>\n");
    out.push_str("<link rel=\"stylesheet\" href=\"https://cdn.example.net/css/site.min.css\">\n</head><body>\n");
    let mut i = 0;
    while out.len() < PAGE - 1200 {
        out.push_str(&format!(
            "<div class=\"row\" id=\"r{i}\"><h2>Section {i}</h2>\n<p>Expenses for cost centre {i} rose by {}% against the \
             previous quarter; see the <a href=\"https://docs.example.net/policy/{i}\">travel policy</a> and the \
             attached statement. Totals include value added tax where it applies and exclude items still under \
             review by the finance team. Claims submitted after the closing date are carried over to the next \
             period and appear there with their original submission date, so that the audit trail stays intact \
             for the regional controllers who sign off each cost centre before the books are closed. Questions \
             about a line go to the cost centre's owner first; disputes that stay open for more than thirty days \
             are escalated to the finance business partner of the region.</p>\n\
             <ul class=\"meta\"><li>Owner: finance operations</li><li>Status: reviewed</li><li>Region: EMEA</li></ul>\n\
             <table><tr><td>{i}</td><td>{}.00</td><td>EUR</td></tr></table>\n",
            i % 17,
            i * 31 % 1000
        ));
        match internal {
            Some(base) => out.push_str(&format!(
                "<p><a href=\"{base}reports/{i}\">Report {i}</a></p></div>\n"
            )),
            None => out.push_str(&format!(
                "<p><a href=\"/reports/{i}\">Report {i}</a></p></div>\n"
            )),
        }
        i += 1;
    }
    out.push_str("</body></html>\n");
    out.into_bytes()
}

/// `n` apps: the first at `first`, the rest at http://app<N>.corp/.
pub fn table(n: usize, first: &str) -> Table {
    let mut pairs = Vec::new();
    for k in 0..n {
        let int = if k == 0 {
            first.to_string()
        } else {
            format!("http://app{k}.corp/")
        };
        let ext = format!("https://app{k}.example.com/");
        pairs.push((
            parse_app_url(&int, false).expect("valid internal URL"),
            parse_app_url(&ext, false).expect("valid external URL"),
        ));
    }
    Table::from_urls(&pairs)
}

/// The 2,048-bit RSA key the verifier's own tests use.
pub const TEST_RSA: &[u8] = include_bytes!("../../control/src/jwt/test-rsa-2048.der");
pub const ISSUER: &str = "https://login.example.com";
pub const NOW: u64 = 1_800_000_000;

pub fn claims() -> serde_json::Value {
    serde_json::json!({
        "iss": ISSUER, "aud": "postern-edge", "sub": "alice", "iat": NOW - 10,
        "nbf": NOW - 10, "exp": NOW + 3600, "email": "alice@example.com",
        "name": "Alice Example", "groups": ["staff", "finance", "vpn-users"], "amr": ["pwd", "mfa"],
    })
}

pub fn rsa_token(key: &RsaKeyPair, alg: &str) -> String {
    let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": alg});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    let padding: &'static dyn ring::signature::RsaEncoding = if alg == "PS256" {
        &RSA_PSS_SHA256
    } else {
        &RSA_PKCS1_SHA256
    };
    key.sign(
        padding,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("RSA signing");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The key set a verifier trusts: `es`'s ES256 key, and the test RSA key
/// under each of `rsa_algs` (as kid and alg).
pub fn key_set(rsa: &RsaKeyPair, es: &Signer, rsa_algs: &[&str]) -> KeySet {
    let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(rsa.public_key());
    let mut jwks: serde_json::Value = serde_json::from_str(&es.jwks()).expect("JSON");
    let list = jwks["keys"].as_array_mut().expect("keys");
    for alg in rsa_algs {
        list.push(serde_json::json!({"kty": "RSA", "kid": alg, "alg": alg,
            "n": URL_SAFE_NO_PAD.encode(&c.n), "e": URL_SAFE_NO_PAD.encode(&c.e)}));
    }
    KeySet::from_jwks(jwks.to_string().as_bytes()).expect("a key set")
}

/// A browser's request head (about 600 bytes, 11 fields).
pub const REQUEST_HEAD: &[u8] = b"GET /expenses/reports/2026/q3?view=summary&sort=date HTTP/1.1\r\n\
Host: expenses.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
Accept-Language: en-GB,en;q=0.9\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Referer: https://expenses.example.com/expenses/reports/\r\n\
Cookie: theme=dark; postern-expenses=AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-P0BBQkNERUZHSElKS0xNTk9QUVJTVFVWV1hZWltcXV5fYGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6e3x9fn8\r\n\
Sec-Fetch-Dest: document\r\n\
Sec-Fetch-Mode: navigate\r\n\
Upgrade-Insecure-Requests: 1\r\n\
\r\n";

/// A backend's response head, as nginx sends it (about 250 bytes).
pub const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\n\
Server: nginx/1.22.1\r\n\
Date: Tue, 01 Dec 2026 21:30:00 GMT\r\n\
Content-Type: text/html\r\n\
Content-Length: 1024\r\n\
Last-Modified: Tue, 01 Dec 2026 20:00:00 GMT\r\n\
Connection: keep-alive\r\n\
ETag: \"674d8c80-400\"\r\n\
Accept-Ranges: bytes\r\n\
\r\n";
