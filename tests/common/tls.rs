//! Certificates for TLS tests: a CA of their own and a server
//! certificate for 127.0.0.1 and localhost signed by it.

/// A CA and a certificate for 127.0.0.1/localhost signed by it, as PEM.
pub(crate) struct TestCertificates {
    pub ca_der: Vec<u8>,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub(crate) fn certificates() -> TestCertificates {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    TestCertificates {
        ca_der: ca.der().to_vec(),
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
