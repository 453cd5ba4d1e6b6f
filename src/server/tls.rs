//! TLS with rustls: the certificate chain and key from `[server]`, HTTP/2
//! offered by ALPN.

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A rustls server configuration from PEM files.
pub(crate) fn server_config(cert: &Path, key: &Path) -> io::Result<ServerConfig> {
    let invalid = |path: &Path, err: &dyn std::fmt::Display| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {err}", path.display()),
        )
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|err| invalid(cert, &err))?
        .collect::<Result<_, _>>()
        .map_err(|err| invalid(cert, &err))?;
    if certs.is_empty() {
        return Err(invalid(cert, &"no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|err| invalid(key, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| invalid(cert, &err))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map(|mut config| {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            config
        })
        .map_err(|err| invalid(key, &err))
}
