use super::*;

#[test]
fn parses_plain_and_wildcard_urls() {
    let u = parse_app_url("https://App.Example.com/", true).unwrap();
    assert_eq!(u.scheme, Scheme::Https);
    assert_eq!(u.host, HostPattern::Exact("app.example.com".into()));
    assert_eq!(u.port, 443);
    assert_eq!(u.path, "/");
    let w = parse_app_url("http://*.corp:8080/x/", true).unwrap();
    assert_eq!(w.host, HostPattern::Wildcard(".corp".into()));
    assert_eq!(w.port, 8080);
    assert_eq!(w.to_string(), "http://*.corp:8080/x/");
}

#[test]
fn refuses_what_it_cannot_route() {
    use UrlError::*;
    let cases = [
        ("ftp://a/", Scheme),
        ("https://a", NoTrailingSlash),
        ("https://a/b", NoTrailingSlash),
        ("https://u@a/", UserInfo),
        ("https://a/?q=1", Query),
        ("https://a/#f", Fragment),
        ("https://a:0/", BadPort("0".into())),
        ("https://a:70000/", BadPort("70000".into())),
        ("https://a:+80/", BadPort("+80".into())),
        ("https://a.*.com/", BadWildcard),
        ("https://*a.com/", BadWildcard),
        ("https:///", EmptyHost),
    ];
    for (input, want) in cases {
        assert_eq!(parse_app_url(input, true), Err(want), "{input}");
    }
    assert_eq!(
        parse_app_url("https://*.a.com/", false),
        Err(WildcardNotAllowed)
    );
}

#[test]
fn wildcard_covers_exactly_one_label() {
    let p = HostPattern::Wildcard(".example.com".into());
    assert!(p.matches("a.example.com"));
    assert!(!p.matches("example.com"));
    assert!(!p.matches("a.b.example.com"));
    assert!(!p.matches("aexample.com"));
    assert_eq!(p.captured_label("hr.example.com"), Some("hr"));
}

#[test]
fn unbalanced_brackets_are_errors_not_panics() {
    for h in ["[", "[::1", "[]", "[x]"] {
        assert!(parse_host(h, false).is_err(), "{h}");
    }
    for u in ["http://[/", "http://[:80/", "http://[]/"] {
        assert!(parse_app_url(u, true).is_err(), "{u}");
    }
}
