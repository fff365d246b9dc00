//! PEM certificate bundles as the payload's `CertificateAuthority` gives them.

/// Parses PEM text into DER certificates, checking each is an X.509 certificate.
///
/// # Errors
/// A message saying what is wrong with the PEM.
pub fn parse_certificates(pem: &str) -> Result<Vec<Vec<u8>>, String> {
    use rustls_pki_types::pem::PemObject;
    use x509_cert::der::Decode;
    let mut out = Vec::new();
    for item in rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = item.map_err(|e| format!("is not valid PEM: {e}"))?;
        x509_cert::Certificate::from_der(der.as_ref())
            .map_err(|e| format!("holds a PEM block that is not an X.509 certificate: {e}"))?;
        out.push(der.as_ref().to_vec());
    }
    Ok(out)
}

/// A self-signed EC certificate for the crate's unit tests (a cluster's CA).
#[cfg(test)]
pub(crate) const TEST_CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBQTCB6KADAgECAgEBMAoGCCqGSM49BAMCMB8xHTAbBgNVBAMMFHVuaXQtdGVz\ndCBjbHVzdGVyIENBMCAXDTI2MDEwMTAwMDAwMFoYDzIxMjUxMjA4MDAwMDAwWjAf\nMR0wGwYDVQQDDBR1bml0LXRlc3QgY2x1c3RlciBDQTBZMBMGByqGSM49AgEGCCqG\nSM49AwEHA0IABF8z7/vpTqlnvJGu+Y29bPNZ4sTb6lP1WCSHHTEUkguSJUgWYadZ\n9dOuoBOmZ2cjRbed8AcUWYdWu1LAtuYTJHqjEzARMA8GA1UdEwEB/wQFMAMBAf8w\nCgYIKoZIzj0EAwIDSAAwRQIhAJBELmMznSylDLvatdX+PAM2hS4mq6UvAAh0gvle\n06tiAiBMRLXFNJ2Svaiv379T5JfEjzGnTzmBh1Dza39D+nC9HQ==\n-----END CERTIFICATE-----\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_gives_each_certificate_and_refuses_what_is_not_one() {
        let one = parse_certificates(TEST_CA).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].first(), Some(&0x30), "DER: a SEQUENCE");
        let two =
            parse_certificates(&format!("{TEST_CA}{TEST_CA}")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(two, [one[0].clone(), one[0].clone()]);
        assert_eq!(parse_certificates("no PEM here"), Ok(vec![]));
        let not_x509 = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(parse_certificates(not_x509).is_err());
    }
}
