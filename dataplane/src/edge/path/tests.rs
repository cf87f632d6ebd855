use bytes::Bytes;

use super::{normalize, ENCODED_SLASH};

/// The normal form for an app that takes encoded slashes.
fn norm_allowing(s: &str) -> Result<String, &'static str> {
    normalize(&Bytes::copy_from_slice(s.as_bytes()))
        .map(|n| String::from_utf8_lossy(&n.target).into_owned())
}

/// The normal form for any other app (the proxy refuses encoded slashes
/// once it knows the app).
fn norm(s: &str) -> Result<String, &'static str> {
    let n = normalize(&Bytes::copy_from_slice(s.as_bytes()))?;
    if n.encoded_slash {
        return Err(ENCODED_SLASH);
    }
    Ok(String::from_utf8_lossy(&n.target).into_owned())
}

#[test]
fn normal_paths_are_kept_without_a_copy() {
    for p in [
        "/",
        "/a/b",
        "/a/b/?x=1",
        "/a%20b",
        "/a;b/c",
        "/%C3%A9t%C3%A9",
        "/a.b/..c/.d",
    ] {
        let b = Bytes::copy_from_slice(p.as_bytes());
        let n = normalize(&b).unwrap().target;
        assert_eq!(n, b, "{p}");
        assert_eq!(n.as_ptr(), b.as_ptr(), "{p} is not copied");
    }
}

#[test]
fn unreserved_escapes_are_decoded_and_slashes_merged() {
    assert_eq!(norm("/%61dmin/x").unwrap(), "/admin/x");
    assert_eq!(norm("/%41%2D%2e%5F%7e").unwrap(), "/A-._~");
    assert_eq!(norm("//admin/x").unwrap(), "/admin/x");
    assert_eq!(norm("/a///b//").unwrap(), "/a/b/");
    assert_eq!(norm("/a%20b%3f").unwrap(), "/a%20b%3F");
    assert_eq!(norm("/a%c3%a9").unwrap(), "/a%C3%A9");
    // The query is left as sent.
    assert_eq!(norm("//a?x=//%61&y=%2f..").unwrap(), "/a?x=//%61&y=%2f..");
}

#[test]
fn escapes_out_of_the_prefix_are_refused() {
    for p in [
        "/a/..",
        "/a/../b",
        "/./a",
        "/a/.",
        "/a/..%2f..%2fsecret",
        "/a/%2e%2e/secret",
        "/a/%2E./secret",
        "/a/.%2e/secret",
        "/a/..;/secret",
        "/a/..;x=1/secret",
        "/a/.;/b",
        "/a/..\\secret",
        "/a/%5c../secret",
        "/a/%5C..%5Csecret",
        "/admin%2fx",
        "/x/..%2fadmin/x",
        "/a/%252e%252e/secret",
        "/a/%252F",
        "/a/%255c",
        "/a/%2500",
        "/a/%00",
        "/a/%c0%ae%c0%ae/secret",
        "/a/%c0%af",
        "/a/%C1%9C",
        "/a/%e0%80%ae",
        "/a/%f0%80%80%ae",
        "/a/%2",
        "/a/%zz",
        "/a/%",
        "a/b",
    ] {
        assert!(norm(p).is_err(), "{p} must be refused, got {:?}", norm(p));
    }
}

#[test]
fn raw_overlong_bytes_are_refused() {
    let b = Bytes::from_static(b"/a/\xc0\xae\xc0\xae/x");
    assert!(normalize(&b).is_err());
    let b = Bytes::from_static(b"/a/\xe0\x80\xae/x");
    assert!(normalize(&b).is_err());
    // Proper UTF-8 is fine.
    let b = Bytes::from_static("/caf\u{e9}/\u{20ac}".as_bytes());
    assert!(normalize(&b).is_ok());
}

/// The normal form is a fixed point, and the normalised path never holds a
/// dot segment, an encoded separator or `//`, whatever the input.
#[test]
fn normal_form_is_stable_on_random_paths() {
    let alphabet: &[&str] = &[
        "/", "//", ".", "..", "a", "B", "%2e", "%2E", "%2f", "%5c", "%61", "%25", "%c0", "%ae",
        ";", "~", "%20", "\\", "?", "%00", "%7E", "-",
    ];
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..20_000 {
        let mut p = String::from("/");
        for _ in 0..rnd(10) {
            p.push_str(alphabet[rnd(alphabet.len())]);
        }
        if let Ok(n) = norm(&p) {
            assert_eq!(
                norm(&n).as_deref(),
                Ok(n.as_str()),
                "{p} → {n} is not stable"
            );
            let path = n.split('?').next().unwrap();
            assert!(!path.contains("//"), "{p} → {n}");
            let lower = path.to_ascii_lowercase();
            for bad in ["%2f", "%5c", "%00", "\\"] {
                assert!(!lower.contains(bad), "{p} → {n}");
            }
            for seg in path.split('/') {
                let name = seg.split(';').next().unwrap();
                assert!(name != "." && name != "..", "{p} → {n}");
            }
        }
    }
}

#[test]
fn an_app_that_takes_encoded_slashes_gets_them_encoded_and_never_a_climb() {
    assert_eq!(
        norm_allowing("/api/projects/group%2fproject/x").unwrap(),
        "/api/projects/group%2Fproject/x"
    );
    assert!(
        normalize(&Bytes::from_static(b"/a%2Fb"))
            .unwrap()
            .encoded_slash
    );
    assert!(
        !normalize(&Bytes::from_static(b"/a/b"))
            .unwrap()
            .encoded_slash
    );
    for p in [
        "/a/..%2f..%2fsecret",
        "/x/..%2fadmin/x",
        "/a/%2e%2e%2fsecret",
        "/a/b%2f.%2fc",
        "/a/%2f..",
        "/a/..;%2fb",
        "/a/%5c",
        "/a/%252f",
    ] {
        assert!(
            norm_allowing(p).is_err(),
            "{p} must be refused even where encoded slashes are allowed, got {:?}",
            norm_allowing(p)
        );
    }
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let alphabet: &[&str] = &["/", "%2f", "%2F", ".", "..", "a", "%2e", ";", "%252f"];
    for _ in 0..20_000 {
        let mut p = String::from("/");
        for _ in 0..(seed % 9) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            p.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if let Ok(n) = norm_allowing(&p) {
            assert_eq!(norm_allowing(&n).as_deref(), Ok(n.as_str()), "{p} → {n}");
            for piece in n.split('/').flat_map(|s| s.split("%2F")) {
                let name = piece.split(';').next().unwrap();
                assert!(name != "." && name != "..", "{p} → {n}");
            }
        }
    }
}

/// Found by the fuzzer: decoding `%65` to `e` right after `%252` made
/// `%252e`, a double-encoded `.`, which the first pass let through and a
/// second refused. The path is refused, and normal forms are fixed points.
#[test]
fn decoding_never_builds_a_double_encoding() {
    assert!(normalize(&Bytes::from_static(b"/%252%658")).is_err());
    assert!(normalize(&Bytes::from_static(b"/a%252%6545")).is_err());
    let n = normalize(&Bytes::from_static(b"/%25%658")).unwrap();
    assert_eq!(&n.target[..], b"/%25e8");
    assert_eq!(&normalize(&n.target).unwrap().target[..], b"/%25e8");
}
