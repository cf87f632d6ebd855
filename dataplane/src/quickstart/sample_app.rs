//! The bundled sample internal app: a few pages full of hard-coded internal
//! links, the way real intranet apps are written, so link translation has
//! something to show. Deliberately plain blocking code on its own threads:
//! it stands in for a backend, it is not part of the data plane.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};

/// Starts the sample on `addr`. The `signed_in` variant sits behind
/// pre-authentication: its home page shows the identity the edge sends
/// (`X-Postern-User`, `-Email`, `-Groups`) and a sign-out link.
pub fn start(addr: SocketAddr, signed_in: bool) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    std::thread::Builder::new()
        .name("sample-app".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                let _ = std::thread::Builder::new()
                    .name("sample-conn".into())
                    .spawn(move || serve(stream, addr, signed_in));
            }
        })?;
    Ok(())
}

fn serve(stream: TcpStream, addr: SocketAddr, signed_in: bool) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(60)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let mut length = 0usize;
        let mut close = false;
        let mut identity = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    length = v.trim().parse().unwrap_or(0);
                } else if k == "connection" && v.trim().eq_ignore_ascii_case("close") {
                    close = true;
                } else if signed_in && k.starts_with("x-postern-") && k != "x-postern-jwt-assertion"
                {
                    identity.push((k, v.trim().to_string()));
                }
            }
        }
        let mut body = vec![0u8; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let (status, ctype, extra, mut content) = page(&method, &path, addr);
        if signed_in && (path == "/" || path == "/index.html") {
            content = content.replacen("<h1>Contoso Expenses</h1>", &who(&identity), 1);
        }
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n{extra}{}\r\n",
            content.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let mut resp = head.into_bytes();
        if method != "HEAD" {
            resp.extend_from_slice(content.as_bytes());
        }
        if writer.write_all(&resp).is_err() || close {
            return;
        }
    }
}

/// The signed-in variant's heading: who the edge says the user is.
fn who(identity: &[(String, String)]) -> String {
    let mut rows = String::new();
    for (k, v) in identity {
        rows.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            crate::pages::escape(k),
            crate::pages::escape(v)
        ));
    }
    if rows.is_empty() {
        rows.push_str("<tr><td>(the edge sent no identity headers)</td></tr>");
    }
    format!(
        "<h1>Contoso Expenses (signed in)</h1>\n<p>Postern signed you in before this request reached the app, and told the app who you are:</p>\n\
         <table>{rows}</table>\n<p><a href=\"/.postern/logout\">Sign out</a></p>"
    )
}

fn page(
    method: &str,
    path: &str,
    addr: SocketAddr,
) -> (&'static str, &'static str, String, String) {
    let port = addr.port();
    let base = format!("http://localhost:{port}");
    let escaped = base.replace('/', "\\/");
    let encoded = base.replace(':', "%3A").replace('/', "%2F");
    let route = path.split('?').next().unwrap_or(path);
    match route {
        "/" | "/index.html" => (
            "200 OK",
            "text/html; charset=utf-8",
            String::new(),
            format!(
                r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Contoso Expenses (sample internal app)</title>
<link rel="stylesheet" href="{base}/style.css">
<style>.logo {{ background: url('{base}/logo.svg') no-repeat; }}</style></head>
<body>
<h1>Contoso Expenses</h1>
<p>This page is served by the sample internal app, on port {port} of this machine, and reaches
you through Postern. Its links are hard-coded to the internal address, as intranet apps often
are; Postern rewrites every one of them (attributes, CSS, scripts, JSON, escaped and
percent-encoded forms) to the external address. View the source to see.</p>
<img class="logo" src="{base}/logo.svg" srcset="{base}/logo.svg 2x" alt="logo">
<ul>
<li><a href="{base}/reports/">Expense reports</a></li>
<li><a href="{base}/api/summary.json">Summary (JSON)</a></li>
<li><a href="{base}/old-home">An old link that redirects</a></li>
<li><a href="/login?next={encoded}%2Freports%2F">Sign in, then go to the reports</a></li>
</ul>
<script type="application/json" id="boot">{{"links": {{"reports": "{escaped}\/reports\/"}}}}</script>
<script>
  var config = {{"api": "{escaped}\/api\/summary.json", "home": "{base}/"}};
  fetch("{base}/api/summary.json").then(r => r.json()).then(j => console.log(j));
</script>
</body></html>
"#
            ),
        ),
        "/style.css" => (
            "200 OK",
            "text/css",
            String::new(),
            format!("body {{ font-family: sans-serif; }}\nh1 {{ background: url(\"{base}/logo.svg\") right no-repeat; }}\n"),
        ),
        "/logo.svg" => (
            "200 OK",
            "image/svg+xml",
            String::new(),
            format!("<svg xmlns=\"http://www.w3.org/2000/svg\" xmlns:xlink=\"http://www.w3.org/1999/xlink\" width=\"40\" height=\"40\"><a xlink:href=\"{base}/\"><circle cx=\"20\" cy=\"20\" r=\"18\" fill=\"#36c\"/></a></svg>\n"),
        ),
        "/reports/" => (
            "200 OK",
            "text/html; charset=utf-8",
            String::new(),
            format!("<!DOCTYPE html><html><body><h1>Reports</h1><a href=\"{base}/\">Back</a></body></html>\n"),
        ),
        "/login" => (
            "200 OK",
            "text/html; charset=utf-8",
            String::new(),
            "<!DOCTYPE html><html><body><h1>Signed in</h1></body></html>\n".into(),
        ),
        "/api/summary.json" => (
            "200 OK",
            "application/json",
            String::new(),
            format!("{{\"total\": 1234.5, \"self\": \"{escaped}\\/api\\/summary.json\", \"method\": \"{method}\"}}\n"),
        ),
        "/old-home" => (
            "302 Found",
            "text/plain",
            format!("Location: {base}/reports/\r\n"),
            "moved\n".into(),
        ),
        _ => ("404 Not Found", "text/plain", String::new(), "not found\n".into()),
    }
}
