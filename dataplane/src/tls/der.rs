//! Just enough DER to list the DNS names a certificate is issued for.
//!
//! SNI selection and `check-config` need a certificate's subjectAltName
//! dNSName entries. A full X.509 parser is a large dependency for one list
//! of strings, so this walks the fixed path Certificate → TBSCertificate →
//! [3] extensions → subjectAltName and stops. Malformed input yields an
//! error, never a panic: every length is checked against what remains.

/// subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

#[derive(Debug, PartialEq, Eq)]
pub struct DerError(pub &'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads one TLV, returning (tag, contents).
    fn tlv(&mut self) -> Result<(u8, &'a [u8]), DerError> {
        let (&tag, rest) = self.0.split_first().ok_or(DerError("truncated tag"))?;
        let (&first, mut rest) = rest.split_first().ok_or(DerError("truncated length"))?;
        let len = if first < 0x80 {
            first as usize
        } else {
            let n = (first & 0x7f) as usize;
            if n == 0 || n > 4 || rest.len() < n {
                return Err(DerError("bad length"));
            }
            let mut len = 0usize;
            for &b in &rest[..n] {
                len = (len << 8) | b as usize;
            }
            rest = &rest[n..];
            len
        };
        if rest.len() < len {
            return Err(DerError("length beyond end of data"));
        }
        let (body, after) = rest.split_at(len);
        self.0 = after;
        Ok((tag, body))
    }

    fn expect(&mut self, tag: u8) -> Result<&'a [u8], DerError> {
        match self.tlv()? {
            (t, body) if t == tag => Ok(body),
            _ => Err(DerError("unexpected element")),
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The dNSName entries of the certificate's subjectAltName, lower-cased.
pub fn dns_names(cert_der: &[u8]) -> Result<Vec<String>, DerError> {
    let cert = Reader(cert_der).expect(0x30)?;
    let mut tbs = Reader(Reader(cert).expect(0x30)?);
    let mut names = Vec::new();
    while !tbs.is_empty() {
        let (tag, body) = tbs.tlv()?;
        // [3] EXPLICIT Extensions
        if tag != 0xa3 {
            continue;
        }
        let mut exts = Reader(Reader(body).expect(0x30)?);
        while !exts.is_empty() {
            let mut ext = Reader(exts.expect(0x30)?);
            let oid = ext.expect(0x06)?;
            let (mut tag, mut value) = ext.tlv()?;
            if tag == 0x01 {
                // critical BOOLEAN
                (tag, value) = ext.tlv()?;
            }
            if oid != OID_SAN || tag != 0x04 {
                continue;
            }
            let mut general_names = Reader(Reader(value).expect(0x30)?);
            while !general_names.is_empty() {
                let (tag, name) = general_names.tlv()?;
                if tag == 0x82 {
                    let name =
                        std::str::from_utf8(name).map_err(|_| DerError("dNSName not ASCII"))?;
                    names.push(name.to_ascii_lowercase());
                }
            }
        }
    }
    Ok(names)
}
