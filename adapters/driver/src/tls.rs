//! TLS under HTTP/2, with rustls, for every backend (cargo feature `tls`).
//!
//! This module owns the two TLS configurations a transport takes —
//! [`TlsServer`] (certificate chain and key, optionally the roots that
//! client certificates must chain to: mutual TLS) and [`TlsClient`] (the
//! roots that server certificates must chain to, optionally a client
//! certificate and a server name to verify instead of the peer's host) —
//! and the handshakes on the driver's byte streams. ALPN `h2` is offered
//! and required on both sides (grpc-go refuses TLS connections without
//! it), and a transport with a `TlsClient` says `:scheme https`.
//!
//! The crypto provider is rustls' `ring` backend, named explicitly (so a
//! process-wide default, or another provider in the dependency graph,
//! changes nothing): it builds from a few C and assembly files in seconds,
//! where `aws-lc-rs` compiles a large C library with CMake.
//!
//! TLS runs above the runtime's stream and below h2, so it is the same on
//! smol, tokio and plain threads; the core knows nothing of it.

use std::io;
use std::sync::Arc;

use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::runtime::BoxIo;
use raft_grpc_transport::server::PeerInfo;

/// The ALPN protocol ID of HTTP/2.
const ALPN_H2: &[u8] = b"h2";

/// A TLS configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM input holds no certificate.
    #[error("no certificate in the {0} PEM")]
    NoCertificate(&'static str),
    /// A PEM input could not be read.
    #[error("the {what} PEM cannot be read: {detail}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// The server name to verify is not a DNS name or an IP address.
    #[error("invalid TLS server name {0:?}")]
    InvalidServerName(String),
    /// rustls refused the configuration (a key that does not match its
    /// certificate, an unusable root, …).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client-certificate verifier could not be built from the roots.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
    /// A PEM client certificate was given to a client built from a rustls
    /// configuration of your own: put it in that configuration instead.
    #[error("a client certificate goes into the rustls configuration given to from_rustls")]
    ClientCertOnCustomConfig,
}

/// The crypto provider every configuration of this module uses.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certificates(pem: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what));
    }
    Ok(certs)
}

fn private_key(pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Pem {
        what: "private key",
        detail: e.to_string(),
    })
}

fn root_store(pem: &[u8], what: &'static str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(pem, what)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// The server side of TLS: what a transport presents to peers that call
/// it, and whom it lets in.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use raft_grpc_transport_driver::tls::TlsServer;
/// # let cert = rcgen::generate_simple_self_signed(vec!["node-1".into()])?;
/// # let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
/// let tls = TlsServer::from_pem(cert_pem.as_bytes(), key_pem.as_bytes())?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer").finish_non_exhaustive()
    }
}

impl TlsServer {
    /// Presents `cert_chain` (PEM, leaf first) with its private `key`
    /// (PEM: PKCS#8, PKCS#1 or SEC1); no client certificate is asked for.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsServer, TlsError> {
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                certificates(cert_chain, "certificate chain")?,
                private_key(key)?,
            )?;
        Ok(TlsServer::from_rustls(config))
    }

    /// Mutual TLS: as [`from_pem`](Self::from_pem), and every client must
    /// present a certificate that chains to one of `client_roots` (PEM);
    /// a client without one fails its handshake.
    pub fn mutual_from_pem(
        cert_chain: &[u8],
        key: &[u8],
        client_roots: &[u8],
    ) -> Result<TlsServer, TlsError> {
        let roots = Arc::new(root_store(client_roots, "client roots")?);
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                certificates(cert_chain, "certificate chain")?,
                private_key(key)?,
            )?;
        Ok(TlsServer::from_rustls(config))
    }

    /// A rustls configuration of your own (another verifier, resumption,
    /// key logging, …). Its ALPN list is replaced by `h2`.
    pub fn from_rustls(mut config: rustls::ServerConfig) -> TlsServer {
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        TlsServer {
            config: Arc::new(config),
        }
    }

    /// The TLS handshake on an accepted stream: the TLS stream, ready for
    /// HTTP/2, and the certificate chain the client presented (empty
    /// without mutual TLS). A client that does not negotiate ALPN `h2`
    /// fails it.
    pub(crate) async fn accept(&self, io: BoxIo) -> io::Result<(BoxIo, Vec<bytes::Bytes>)> {
        let stream = TlsAcceptor::from(self.config.clone()).accept(io).await?;
        let (_, connection) = stream.get_ref();
        if connection.alpn_protocol() != Some(ALPN_H2) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client did not negotiate ALPN h2",
            ));
        }
        let chain = connection
            .peer_certificates()
            .map(|chain| {
                chain
                    .iter()
                    .map(|c| bytes::Bytes::copy_from_slice(c.as_ref()))
                    .collect()
            })
            .unwrap_or_default();
        Ok((Box::new(stream), chain))
    }
}

/// The client side of TLS: whom a transport trusts when it calls peers,
/// and what it presents to them.
///
/// The name verified in a server's certificate is the host part of the
/// peer address called (`node-2.raft:7000` → `node-2.raft`; an IP address
/// must be in the certificate as an IP SAN), unless
/// [`with_server_name`](Self::with_server_name) names one for every peer.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use raft_grpc_transport_driver::tls::TlsClient;
/// # let ca = rcgen::generate_simple_self_signed(vec!["raft-ca".into()])?;
/// # let ca_pem = ca.cert.pem();
/// let tls = TlsClient::from_pem_roots(ca_pem.as_bytes())?.with_server_name("raft.internal")?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClient {
    /// The PEM roots it was built from, to rebuild the configuration with
    /// a client certificate (`None`: built `from_rustls`).
    roots: Option<Arc<rustls::RootCertStore>>,
    config: Arc<rustls::ClientConfig>,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field(
                "client_certificate",
                &self.config.client_auth_cert_resolver.has_certs(),
            )
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    /// Trusts server certificates that chain to one of `roots` (PEM).
    pub fn from_pem_roots(roots: &[u8]) -> Result<TlsClient, TlsError> {
        let roots = Arc::new(root_store(roots, "roots")?);
        let config = TlsClient::config(&roots, None)?;
        Ok(TlsClient {
            roots: Some(roots),
            config,
            server_name: None,
        })
    }

    /// Presents `cert_chain` (PEM, leaf first) with its private `key` to
    /// servers that ask for a client certificate (mutual TLS). Not for a
    /// client built [`from_rustls`](Self::from_rustls)
    /// ([`TlsError::ClientCertOnCustomConfig`]).
    pub fn with_client_cert_pem(
        self,
        cert_chain: &[u8],
        key: &[u8],
    ) -> Result<TlsClient, TlsError> {
        let roots = self
            .roots
            .as_ref()
            .ok_or(TlsError::ClientCertOnCustomConfig)?;
        let identity = (
            certificates(cert_chain, "client certificate chain")?,
            private_key(key)?,
        );
        let config = TlsClient::config(roots, Some(identity))?;
        Ok(TlsClient { config, ..self })
    }

    /// Verifies `name` in every server's certificate instead of the host
    /// of the address called (certificates issued for a service name while
    /// peers are called by IP address, say).
    pub fn with_server_name(self, name: &str) -> Result<TlsClient, TlsError> {
        let server_name = ServerName::try_from(name.to_owned())
            .map_err(|_| TlsError::InvalidServerName(name.to_owned()))?;
        Ok(TlsClient {
            server_name: Some(server_name),
            ..self
        })
    }

    /// A rustls configuration of your own. Its ALPN list is replaced by
    /// `h2`.
    pub fn from_rustls(mut config: rustls::ClientConfig) -> TlsClient {
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        TlsClient {
            roots: None,
            config: Arc::new(config),
            server_name: None,
        }
    }

    fn config(
        roots: &Arc<rustls::RootCertStore>,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots.clone());
        let mut config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// The name to verify for a call to `peer` (`host:port`).
    fn server_name_for(&self, peer: &str) -> io::Result<ServerName<'static>> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let host = match peer.rsplit_once(':') {
            Some((host, port)) if port.parse::<u16>().is_ok() => host,
            _ => peer,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(host.to_owned()).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("no TLS server name in peer address {peer:?}"),
            )
        })
    }

    /// The TLS handshake on a stream to `peer`: the TLS stream, ready for
    /// HTTP/2. A server that does not negotiate ALPN `h2` fails it.
    pub(crate) async fn connect(&self, peer: &str, io: BoxIo) -> io::Result<BoxIo> {
        let name = self.server_name_for(peer)?;
        let stream = TlsConnector::from(self.config.clone())
            .connect(name, io)
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("TLS handshake: {e}")))?;
        if stream.get_ref().1.alpn_protocol() != Some(ALPN_H2) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS handshake: the server did not negotiate ALPN h2",
            ));
        }
        Ok(Box::new(stream))
    }
}

/// The names a certificate is issued for: its subject's common names and
/// its subject alternative names, as an authorizer checks them.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use raft_grpc_transport_driver::tls::CertificateNames;
/// # let cert = rcgen::generate_simple_self_signed(vec!["node-2.raft".into(), "10.0.0.2".into()])?;
/// # let der = cert.cert.der().to_vec();
/// let names = CertificateNames::from_der(&der)?;
/// assert_eq!(names.dns_names, ["node-2.raft"]);
/// assert_eq!(names.ip_addresses, ["10.0.0.2".parse::<std::net::IpAddr>()?]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateNames {
    /// The subject's common names (CN).
    pub common_names: Vec<String>,
    /// DNS names among the subject alternative names.
    pub dns_names: Vec<String>,
    /// IP addresses among the subject alternative names.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// URIs among the subject alternative names (SPIFFE IDs, say).
    pub uris: Vec<String>,
}

impl CertificateNames {
    /// The names in a DER certificate.
    pub fn from_der(der: &[u8]) -> Result<CertificateNames, TlsError> {
        use x509_parser::extensions::GeneralName;
        let bad = |detail: String| TlsError::Pem {
            what: "peer certificate",
            detail,
        };
        let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| bad(e.to_string()))?;
        let mut names = CertificateNames {
            common_names: cert
                .subject()
                .iter_common_name()
                .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
                .collect(),
            ..CertificateNames::default()
        };
        let san = cert
            .subject_alternative_name()
            .map_err(|e| bad(e.to_string()))?;
        for name in san.iter().flat_map(|san| san.value.general_names.iter()) {
            match name {
                GeneralName::DNSName(dns) => names.dns_names.push((*dns).to_owned()),
                GeneralName::URI(uri) => names.uris.push((*uri).to_owned()),
                GeneralName::IPAddress(ip) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*ip) {
                        names.ip_addresses.push(v4.into());
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*ip) {
                        names.ip_addresses.push(v6.into());
                    }
                }
                _ => {}
            }
        }
        Ok(names)
    }

    /// The names in the leaf certificate a peer presented; `None` when it
    /// presented none (no mutual TLS).
    pub fn of_peer(peer: &PeerInfo) -> Option<Result<CertificateNames, TlsError>> {
        peer.certificates
            .first()
            .map(|leaf| CertificateNames::from_der(leaf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> TlsClient {
        let ca = rcgen::generate_simple_self_signed(vec!["ca".into()]).unwrap();
        TlsClient::from_pem_roots(ca.cert.pem().as_bytes()).unwrap()
    }

    #[test]
    fn the_server_name_is_the_host_of_the_peer_address() {
        let tls = client();
        let name = |peer: &str| tls.server_name_for(peer).map(|n| n.to_str().into_owned());
        assert_eq!(name("node-2.raft:7000").unwrap(), "node-2.raft");
        assert_eq!(name("10.0.0.2:7000").unwrap(), "10.0.0.2");
        assert_eq!(name("[::1]:7000").unwrap(), "::1");
        assert_eq!(name("node-2").unwrap(), "node-2");
        assert!(name("bad name:7000").is_err());
        let named = tls.with_server_name("raft.internal").unwrap();
        assert_eq!(
            named.server_name_for("10.0.0.2:7000").unwrap().to_str(),
            "raft.internal"
        );
    }

    #[test]
    fn bad_pem_inputs_are_typed_errors() {
        assert!(matches!(
            TlsClient::from_pem_roots(b"not a certificate"),
            Err(TlsError::NoCertificate("roots"))
        ));
        let cert = rcgen::generate_simple_self_signed(vec!["node".into()]).unwrap();
        let cert_pem = cert.cert.pem();
        assert!(matches!(
            TlsServer::from_pem(cert_pem.as_bytes(), b"no key here"),
            Err(TlsError::Pem {
                what: "private key",
                ..
            })
        ));
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let wrong_key = other.signing_key.serialize_pem();
        assert!(matches!(
            TlsServer::from_pem(cert_pem.as_bytes(), wrong_key.as_bytes()),
            Err(TlsError::Rustls(_))
        ));
        assert!(matches!(
            client().with_server_name("not a name"),
            Err(TlsError::InvalidServerName(_))
        ));
        // A client certificate in PEM cannot replace a rustls configuration
        // of the caller's own (it would drop its verifier).
        let own = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let key = cert.signing_key.serialize_pem();
        assert!(matches!(
            TlsClient::from_rustls(own).with_client_cert_pem(cert_pem.as_bytes(), key.as_bytes()),
            Err(TlsError::ClientCertOnCustomConfig)
        ));
        let with_cert = client()
            .with_client_cert_pem(cert_pem.as_bytes(), key.as_bytes())
            .unwrap();
        assert!(format!("{with_cert:?}").contains("client_certificate: true"));
    }

    #[test]
    fn certificate_names_has_every_kind_of_name() {
        let mut params = rcgen::CertificateParams::new(vec![
            "node-2.raft".to_owned(),
            "10.0.0.2".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node-2");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://raft/node-2".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let names = CertificateNames::from_der(cert.der()).unwrap();
        assert_eq!(names.common_names, ["node-2"]);
        assert_eq!(names.dns_names, ["node-2.raft"]);
        let ips: Vec<std::net::IpAddr> = vec!["10.0.0.2".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(names.ip_addresses, ips);
        assert_eq!(names.uris, ["spiffe://raft/node-2"]);
        assert!(CertificateNames::of_peer(&PeerInfo::default()).is_none());
        assert!(CertificateNames::from_der(b"not DER").is_err());
    }
}
