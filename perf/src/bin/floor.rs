//! `postern-floor`: the least a proxy built from Postern's own layers can
//! cost per request.
//!
//! One monoio (io_uring) runtime, on the calling thread. Each client
//! connection (plain TCP, or TLS with the same rustls provider, versions
//! and handshake code as the edge) gets one connection to the backend,
//! kept for the client connection's life. Each direction is its own task
//! doing completion reads and writes (one io_uring operation per read or
//! write, nothing polled for readiness), TLS records decrypted and
//! encrypted in place with rustls. No HTTP is parsed, nothing is routed,
//! counted or logged: whatever Postern costs above this is the price of
//! being a proxy rather than a pipe.
//!
//! Usage: `postern-floor BACKEND_ADDR HTTP_ADDR [HTTPS_ADDR CERT_PEM KEY_PEM]`

#![forbid(unsafe_code)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use postern_dataplane::io::Stream;
use postern_dataplane::tls::stream::TlsStream;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 2 && args.len() != 5 {
        eprintln!("usage: postern-floor BACKEND_ADDR HTTP_ADDR [HTTPS_ADDR CERT_PEM KEY_PEM]");
        std::process::exit(2);
    }
    let parse = |s: &str| -> SocketAddr {
        s.parse().unwrap_or_else(|e| {
            eprintln!("postern-floor: `{s}`: {e}");
            std::process::exit(2)
        })
    };
    let backend = parse(&args[0]);
    let http = parse(&args[1]);
    let https = (args.len() == 5).then(|| (parse(&args[2]), tls_config(&args[3], &args[4])));
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(1024)
        .enable_timer()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let plain = TcpListener::bind(http).expect("bind http");
        let mut tasks = vec![monoio::spawn(accept(plain, None, backend))];
        if let Some((addr, cfg)) = https {
            let l = TcpListener::bind(addr).expect("bind https");
            tasks.push(monoio::spawn(accept(l, Some(cfg), backend)));
        }
        println!("postern-floor ready");
        for t in tasks {
            t.await;
        }
    });
}

fn tls_config(cert: &str, key: &str) -> Arc<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .expect("certificate file")
        .collect::<Result<_, _>>()
        .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(key).expect("key file");
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("certificate and key");
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(cfg)
}

async fn accept(l: TcpListener, tls: Option<Arc<rustls::ServerConfig>>, backend: SocketAddr) {
    loop {
        let Ok((tcp, _)) = l.accept().await else {
            monoio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let tls = tls.clone();
        monoio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let client = match tls {
                None => Stream::Tcp(tcp),
                Some(cfg) => {
                    let Ok(conn) = rustls::ServerConnection::new(cfg) else {
                        return;
                    };
                    let mut s = Box::new(TlsStream::new(tcp, conn));
                    if s.handshake().await.is_err() {
                        return;
                    }
                    Stream::ServerTls(s)
                }
            };
            let Ok(up) = TcpStream::connect_addr(backend).await else {
                return;
            };
            let _ = up.set_nodelay(true);
            let (up_rd, up_wr) = up.into_split();
            match client {
                Stream::Tcp(tcp) => {
                    let (rd, wr) = tcp.into_split();
                    monoio::spawn(plain(rd, up_wr));
                    plain(up_rd, wr).await;
                }
                Stream::ServerTls(s) => {
                    let s = *s;
                    let conn = Rc::new(RefCell::new(s.conn));
                    let (rd, wr) = s.tcp.into_split();
                    monoio::spawn(decrypt(rd, conn.clone(), up_wr));
                    encrypt(up_rd, conn, wr).await;
                }
                Stream::ClientTls(_) | Stream::Moved => {}
            }
        });
    }
}

type Rd = monoio::net::tcp::TcpOwnedReadHalf;
type Wr = monoio::net::tcp::TcpOwnedWriteHalf;
const BUF: usize = 64 * 1024;

/// Bytes from `rd` to `wr` until either ends.
async fn plain(mut rd: Rd, mut wr: Wr) {
    let mut buf = Vec::with_capacity(BUF);
    loop {
        // A read leaves the buffer holding exactly what arrived.
        let (res, b) = rd.read(buf).await;
        if matches!(res, Ok(0) | Err(_)) {
            break;
        }
        let (res, b) = wr.write_all(b).await;
        buf = b;
        if res.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Client ciphertext in, plaintext to the backend.
async fn decrypt(mut rd: Rd, conn: Rc<RefCell<rustls::ServerConnection>>, mut wr: Wr) {
    let mut buf = Vec::with_capacity(BUF);
    let mut plain = Vec::with_capacity(BUF);
    loop {
        let (res, b) = rd.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        plain.clear();
        {
            let mut c = conn.borrow_mut();
            let mut input = &buf[..n];
            while !input.is_empty() {
                if c.read_tls(&mut input).is_err() || c.process_new_packets().is_err() {
                    return;
                }
                let _ = std::io::Read::read_to_end(&mut c.reader(), &mut plain);
            }
        }
        if plain.is_empty() {
            continue;
        }
        let (res, p) = wr.write_all(std::mem::take(&mut plain)).await;
        plain = p;
        if res.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Backend plaintext in, ciphertext to the client.
async fn encrypt(mut rd: Rd, conn: Rc<RefCell<rustls::ServerConnection>>, mut wr: Wr) {
    let mut buf = Vec::with_capacity(BUF);
    let mut out = Vec::with_capacity(BUF + 1024);
    loop {
        let (res, b) = rd.read(buf).await;
        buf = b;
        let n = match res {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        out.clear();
        {
            let mut c = conn.borrow_mut();
            if std::io::Write::write_all(&mut c.writer(), &buf[..n]).is_err() {
                return;
            }
            while c.wants_write() {
                if c.write_tls(&mut out).is_err() {
                    return;
                }
            }
        }
        let (res, o) = wr.write_all(std::mem::take(&mut out)).await;
        out = o;
        if res.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}
