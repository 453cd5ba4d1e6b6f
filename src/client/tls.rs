//! TLS for `https://` targets: rustls (ring, as the server), the system's
//! CA bundle plus `loadtest.ca_file`, and ALPN offering what
//! `loadtest.protocol` allows. The system bundle is read from the files
//! distributions keep it in (Go's list), which spares a crate for it.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ClientError;
use crate::config::LoadProtocol;

/// Where distributions keep the CA bundle, the first one found is read.
const SYSTEM_BUNDLES: [&str; 6] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// Which certificates the client accepts.
pub(crate) enum Trust<'a> {
    /// Chains to the system's CAs or those of `ca_file`.
    Verified { ca_file: Option<&'a Path> },
    /// Any certificate: `loadtest.insecure`, or the server kiln started
    /// itself in this process.
    Anything,
}

/// A TLS client for one server name.
pub(crate) struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    pub(crate) fn new(host: &str, trust: Trust, protocol: LoadProtocol) -> Result<Tls, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| format!("{host:?} is not a name a certificate can be for"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|err| err.to_string())?;
        let mut config = match trust {
            Trust::Verified { ca_file } => builder
                .with_root_certificates(roots(ca_file)?)
                .with_no_client_auth(),
            Trust::Anything => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = match protocol {
            LoadProtocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            LoadProtocol::Http1 => vec![b"http/1.1".to_vec()],
            LoadProtocol::Http2 => vec![b"h2".to_vec()],
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }

    pub(super) async fn connect(
        &self,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ClientError> {
        self.connector
            .connect(self.name.clone(), tcp)
            .await
            .map_err(|err| ClientError::Tls(err.to_string()))
    }
}

/// The system's CAs and those of `ca_file`.
fn roots(ca_file: Option<&Path>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(std::path::PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|path| path.is_file());
    if let Some(bundle) = system
        && let Ok(certs) = CertificateDer::pem_file_iter(&bundle)
    {
        // A distribution's bundle may hold a certificate rustls cannot
        // use; the others still count.
        roots.add_parsable_certificates(certs.flatten());
    }
    if let Some(path) = ca_file {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|err| format!("loadtest.ca_file {}: {err}", path.display()))?
            .collect::<Result<_, _>>()
            .map_err(|err| format!("loadtest.ca_file {}: {err}", path.display()))?;
        if certs.is_empty() {
            return Err(format!(
                "loadtest.ca_file {}: no certificate found",
                path.display()
            ));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|err| format!("loadtest.ca_file {}: {err}", path.display()))?;
        }
    }
    if roots.is_empty() {
        return Err(
            "no CA certificates: none in the system bundle and no loadtest.ca_file".to_string(),
        );
    }
    Ok(roots)
}

/// Accepts any certificate; signatures are still checked, so the
/// handshake is a real one.
#[derive(Debug)]
struct AcceptAnything(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
