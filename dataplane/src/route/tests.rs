use super::*;

fn apps(spec: &[(&str, &str)]) -> Vec<App> {
    let mut toml = String::from(
        "[[listener]]\naddress = \"127.0.0.1:443\"\nscheme = \"https\"\n[[listener]]\naddress = \"127.0.0.1:80\"\nscheme = \"http\"\n[[certificate]]\ncert_file = \"c\"\nkey_file = \"k\"\n",
    );
    for (i, (ext, int)) in spec.iter().enumerate() {
        toml.push_str(&format!(
            "[[app]]\nname = \"a{i}\"\nexternal_url = \"{ext}\"\ninternal_url = \"{int}\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}\n"
        ));
    }
    postern_control::parse_str(&toml, "t", std::path::Path::new("/"))
        .unwrap()
        .apps
}

#[test]
fn longest_prefix_and_exact_before_wildcard() {
    let a = apps(&[
        ("https://x.example.com/", "http://x.corp/"),
        ("https://x.example.com/api/", "http://api.corp/"),
        ("https://*.example.com/", "http://*.corp/"),
        ("https://*.hr.example.com/", "http://*.hr.corp/"),
        ("http://x.example.com/", "http://plain.corp/"),
    ]);
    let r = Router::new(&a);
    use Scheme::*;
    assert_eq!(r.lookup(Https, "x.example.com", b"/"), Route::App(0));
    assert_eq!(
        r.lookup(Https, "x.example.com", b"/api/v1?q"),
        Route::App(1)
    );
    assert_eq!(
        r.lookup(Https, "x.example.com", b"/api"),
        Route::AddSlash(1)
    );
    assert_eq!(r.lookup(Https, "y.example.com", b"/api/"), Route::App(2));
    assert_eq!(r.lookup(Https, "a.hr.example.com", b"/"), Route::App(3));
    assert_eq!(r.lookup(Https, "example.com", b"/"), Route::NotFound);
    assert_eq!(r.lookup(Https, "x.example.org", b"/"), Route::NotFound);
    assert_eq!(r.lookup(Http, "x.example.com", b"/"), Route::App(4));
    assert_eq!(r.lookup(Http, "y.example.com", b"/"), Route::NotFound);
    assert_eq!(internal_host(&a[2], "y.example.com"), "y.corp");
}
