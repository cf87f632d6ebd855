use super::*;

#[test]
fn san_names_come_out_of_real_certificates() {
    let (cert, _) = self_signed(&["App.Example.com", "*.hr.example.com", "localhost"]).unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    assert_eq!(
        der::dns_names(&der).unwrap(),
        vec!["app.example.com", "*.hr.example.com", "localhost"]
    );
}

#[test]
fn malformed_der_is_an_error_not_a_panic() {
    let (cert, _) = self_signed(&["a.example.com"]).unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    for cut in 0..der.len() {
        let _ = der::dns_names(&der[..cut]);
    }
    let mut flipped = der.to_vec();
    for i in 0..flipped.len() {
        flipped[i] ^= 0xff;
        let _ = der::dns_names(&flipped);
        flipped[i] ^= 0xff;
    }
}

#[test]
fn exact_names_beat_wildcards() {
    let dir = std::env::temp_dir().join(format!("postern-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut loaded = Vec::new();
    for (i, names) in [vec!["*.example.com"], vec!["app.example.com"]]
        .iter()
        .enumerate()
    {
        let (cert, key) = self_signed(names).unwrap();
        let files = CertificateFiles {
            cert_file: dir.join(format!("c{i}.pem")),
            key_file: dir.join(format!("k{i}.pem")),
            names: vec![],
        };
        std::fs::write(&files.cert_file, cert).unwrap();
        std::fs::write(&files.key_file, key).unwrap();
        loaded.push(load_certificate(&files).unwrap());
    }
    let r = SniResolver::new(&loaded).unwrap();
    assert!(Arc::ptr_eq(r.lookup("app.example.com"), &loaded[1].key));
    assert!(Arc::ptr_eq(r.lookup("other.example.com"), &loaded[0].key));
    assert!(
        Arc::ptr_eq(r.lookup("a.b.example.com"), &loaded[0].key),
        "falls back to default"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
