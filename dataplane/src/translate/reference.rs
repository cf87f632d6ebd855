//! The specification of link translation, as a naive whole-body
//! rewriter: at each position it tries every spelling of every app's
//! internal prefix literally. The streaming rewriter must give the same
//! output for any input cut into any pieces; the property tests and the
//! fuzz target hold it to that.

use super::{url_ends, FORMS};

/// An exact app, as the reference sees it.
pub struct RefApp {
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
    /// The internal path prefix, ending in `/`.
    pub path: String,
    /// The external URL prefix, ending in `/`.
    pub ext: String,
}

/// The reference: at each position, try every spelling of every app's
/// prefix literally, longest first, and take the first that fits.
pub fn rewrite(apps: &[RefApp], input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    'outer: while i < input.len() {
        let boundary =
            i == 0 || !(input[i - 1].is_ascii_alphanumeric() || b"+-.".contains(&input[i - 1]));
        if boundary {
            let mut best: Option<(usize, Vec<u8>)> = None;
            for a in apps {
                let default = if a.scheme == "http" { 80 } else { 443 };
                let mut ports = vec![format!(":{}", a.port)];
                if a.port == default {
                    ports.push(String::new());
                }
                for form in FORMS {
                    for port in &ports {
                        for trimmed in [false, true] {
                            let path = if trimmed {
                                &a.path[..a.path.len() - 1]
                            } else {
                                &a.path[..]
                            };
                            let mut ci = Vec::new();
                            form.encode(&format!("{}://{}{}", a.scheme, a.host, port), &mut ci);
                            let mut exact = Vec::new();
                            form.encode(path, &mut exact);
                            let n = ci.len() + exact.len();
                            if input.len() - i < n
                                || !input[i..i + ci.len()].eq_ignore_ascii_case(&ci)
                                || !super::pct_eq(&input[i + ci.len()..i + n], &exact)
                            {
                                continue;
                            }
                            if trimmed && url_ends(input, i + n, form, true) != Some(true) {
                                continue;
                            }
                            let mut rep = Vec::new();
                            let ext = if trimmed {
                                &a.ext[..a.ext.len() - 1]
                            } else {
                                &a.ext[..]
                            };
                            form.encode(ext, &mut rep);
                            // Longest internal prefix first (path length
                            // decides between apps of one host).
                            let better = match &best {
                                None => true,
                                Some((m, _)) => n > *m,
                            };
                            if better {
                                best = Some((n, rep));
                            }
                        }
                    }
                }
            }
            if let Some((n, rep)) = best {
                out.extend_from_slice(&rep);
                i += n;
                continue 'outer;
            }
        }
        out.push(input[i]);
        i += 1;
    }
    out
}
