//! `postern-auth-cost`: what the policy phase's checks cost, in ns per
//! request, measured on the code the edge runs (postern-control):
//!   - opening a session cookie (AES-256-GCM, app-bound), as on a worker's
//!     first sight of the cookie; later requests find it in the worker's
//!     cache;
//!   - verifying a bearer JWT (RS256, PS256, ES256: signature and claims),
//!     as on a token's first use;
//!   - finding an already verified token in the token cache (by SHA-256),
//!     as on every later request.
//!
//! Each figure is the median of 9 batches.
//!
//! Usage: postern-auth-cost [ITERATIONS_PER_BATCH]

use postern_control::jwt::{verify, Expect, TokenCache};
use postern_control::policy::Identity;
use postern_control::session::{CookieKeys, Session};
use postern_dataplane::auth::assertion::Signer;
use postern_perf::fixtures::{claims, key_set, rsa_token, ISSUER, NOW, TEST_RSA};
use postern_perf::ns_per_op;
use ring::signature::RsaKeyPair;

fn main() {
    let iterations: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);

    // A session cookie as the edge seals it after a sign-in.
    let keys = CookieKeys::generate();
    let who = Identity {
        user: "alice".into(),
        email: Some("alice@example.com".into()),
        groups: vec!["staff".into(), "finance".into(), "vpn-users".into()],
        methods: vec!["pwd".into(), "mfa".into()],
        claims: Vec::new(),
    };
    let session = Session::new("alice", Some("Alice Example".into()), who, NOW + 3600);
    let cookie = keys.seal("hr", &session).expect("a small session seals");
    let cookie_ns = ns_per_op(iterations, || {
        assert!(keys.open("hr", &cookie, NOW).is_ok());
    });

    // Bearer tokens under each algorithm, and the key set that verifies them.
    let rsa = RsaKeyPair::from_der(TEST_RSA).expect("the test RSA key");
    let es = Signer::generate(None);
    let set = key_set(&rsa, &es, &["RS256", "PS256"]);
    let expect = Expect {
        issuer: ISSUER,
        audiences: &["postern-edge"],
        skew: 60,
        now: NOW,
    };
    let tokens = [
        ("RS256", rsa_token(&rsa, "RS256")),
        ("PS256", rsa_token(&rsa, "PS256")),
        ("ES256", es.sign(&claims())),
    ];
    println!("policy-phase checks, ns per request (median of 9 batches of {iterations})");
    println!(
        "  session cookie, opened (first sight on a worker)  {cookie_ns:>9.0}  ({} bytes)",
        cookie.len()
    );
    for (alg, token) in &tokens {
        let ns = ns_per_op((iterations / 10).max(10), || {
            assert!(verify(token, &set, &expect).is_ok());
        });
        println!(
            "  bearer {alg}, verified (first use)                 {ns:>9.0}  ({} bytes)",
            token.len()
        );
    }
    let mut cache = TokenCache::new(8192);
    let (_, es_token) = &tokens[2];
    let v = verify(es_token, &set, &expect).expect("verifies");
    cache.insert(es_token, v, NOW);
    let hit_ns = ns_per_op(iterations * 10, || {
        assert!(cache.get(es_token, NOW, 60).is_some());
    });
    println!("  bearer token, found in the token cache (SHA-256)   {hit_ns:>9.0}");
}
