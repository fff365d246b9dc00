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
