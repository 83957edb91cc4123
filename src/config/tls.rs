//! TLS material prepared at load time: the certificate chain and key parsed, checked to match,
//! and the leaf certificate's expiry read, before a reload may swap them in.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A ready-to-serve certificate with its expiry.
#[derive(Debug, Clone)]
pub struct TlsMaterial {
    pub certified_key: Arc<CertifiedKey>,
    /// The leaf certificate's `notAfter` as Unix seconds, when it could be read.
    pub not_after: Option<i64>,
}

impl TlsMaterial {
    /// Parses PEM `cert_pem` (chain, leaf first) and `key_pem` (PKCS#8, PKCS#1 or SEC1) and
    /// checks that the key belongs to the leaf certificate. Errors are for people: they say
    /// which of the two files is wrong.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Self, TlsMaterialError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsMaterialError::Certificate(e.to_string()))?;
        let Some(leaf) = chain.first() else {
            return Err(TlsMaterialError::Certificate(
                "no PEM CERTIFICATE block found".to_owned(),
            ));
        };
        let not_after = certificate_not_after(leaf);
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| TlsMaterialError::Key(format!("no usable PEM private key ({e})")))?;
        let provider = rustls::crypto::ring::default_provider();
        let signing_key = provider
            .key_provider
            .load_private_key(key)
            .map_err(|e| TlsMaterialError::Key(e.to_string()))?;
        let certified = CertifiedKey::new(chain, signing_key);
        match certified.keys_match() {
            Ok(()) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
            Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
                return Err(TlsMaterialError::Mismatch)
            }
            Err(e) => return Err(TlsMaterialError::Certificate(e.to_string())),
        }
        Ok(Self {
            certified_key: Arc::new(certified),
            not_after,
        })
    }
}

/// What is wrong with a certificate/key pair.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsMaterialError {
    #[error("certificate: {0}")]
    Certificate(String),
    #[error("private key: {0}")]
    Key(String),
    #[error("the private key does not belong to the certificate")]
    Mismatch,
}

/// Reads `tbsCertificate.validity.notAfter` from a DER certificate, as Unix seconds.
///
/// A dozen lines of DER walking instead of a full X.509 parser dependency: the structure up to
/// `validity` is fixed by RFC 5280 §4.1.
pub fn certificate_not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = der_element(der, 0x30)?;
    let (tbs, _) = der_element(cert, 0x30)?;
    let mut rest = tbs;
    // Optional `[0] EXPLICIT Version`.
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest, 0xa0)?.1;
    }
    rest = der_element(rest, 0x02)?.1; // serialNumber
    rest = der_element(rest, 0x30)?.1; // signature AlgorithmIdentifier
    rest = der_element(rest, 0x30)?.1; // issuer
    let (validity, _) = der_element(rest, 0x30)?;
    let tag = *validity.first()?;
    let (_, after) = der_element(validity, tag)?; // notBefore
    let tag = *after.first()?;
    let (not_after, _) = der_element(after, tag)?;
    parse_der_time(tag, not_after)
}

/// Splits one DER element with the expected `tag` off the front: (contents, rest).
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    if *input.first()? != tag {
        return None;
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    Some((input.get(header..end)?, input.get(end..)?))
}

/// UTCTime (tag 0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
fn parse_der_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_suffix('Z')?;
    let full = match (tag, text.len()) {
        (0x17, 12) => {
            let yy: i32 = text[..2].parse().ok()?;
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{text}")
        }
        (0x18, 14) => text.to_owned(),
        _ => return None,
    };
    let t = chrono::NaiveDateTime::parse_from_str(&full, "%Y%m%d%H%M%S").ok()?;
    Some(t.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed() -> rcgen::CertifiedKey<rcgen::KeyPair> {
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap()
    }

    #[test]
    fn matching_pair_is_accepted_with_expiry() {
        let ck = self_signed();
        let m = TlsMaterial::from_pem(
            ck.cert.pem().as_bytes(),
            ck.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap();
        // rcgen's default validity ends in 4096.
        let expected = chrono::NaiveDate::from_ymd_opt(4096, 1, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        assert_eq!(m.not_after, Some(expected));
    }

    #[test]
    fn expiry_is_read_from_utc_time() {
        let mut params = rcgen::CertificateParams::new(vec!["a.test".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 3, 4);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let expected = chrono::NaiveDate::from_ymd_opt(2031, 3, 4)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp();
        assert_eq!(certificate_not_after(cert.der()), Some(expected));
    }

    #[test]
    fn mismatched_key_is_refused() {
        let a = self_signed();
        let b = self_signed();
        let err = TlsMaterial::from_pem(
            a.cert.pem().as_bytes(),
            b.signing_key.serialize_pem().as_bytes(),
        )
        .unwrap_err();
        assert_eq!(err, TlsMaterialError::Mismatch);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        assert!(matches!(
            TlsMaterial::from_pem(b"nope", b"nope"),
            Err(TlsMaterialError::Certificate(_))
        ));
        assert_eq!(certificate_not_after(&[0x30, 0x82, 0xff]), None);
        assert_eq!(certificate_not_after(&[]), None);
    }
}
