//! TLS for the listeners (`server.listen[].tls`): a certificate chain and its
//! key read from PEM files, and a certificate resolver whose pair can be
//! swapped while connections are open (a reload reads the files again; a
//! handshake after it gets the new pair, a connection already open keeps the
//! one it was made with).
//!
//! rustls with the ring provider; TLS 1.2 and 1.3.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)")]
    NoCertificate { path: PathBuf },
    #[error("`{path}` is not a valid PEM certificate chain: {reason}")]
    BadCertificate { path: PathBuf, reason: String },
    #[error("`{path}` holds no PEM private key (PKCS#8, RSA or EC)")]
    NoKey { path: PathBuf },
    #[error("the key in `{key}` cannot be used: {reason}")]
    BadKey { key: PathBuf, reason: String },
    #[error("the key in `{key}` does not belong to the first certificate in `{cert}`")]
    Mismatch { cert: PathBuf, key: PathBuf },
}

/// The most read of a certificate or key file: the limit of the config and
/// of the files it names (`config::MAX_FILE_SIZE`, which this leaf module
/// cannot name), so that `cert: /dev/zero` is refused, not read for ever.
const MAX_FILE_SIZE: usize = 16 << 20;

/// The bytes of the file at `path`, if it holds at most [`MAX_FILE_SIZE`].
fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > MAX_FILE_SIZE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            "it holds more than 16 MiB, the most hookrunner reads of a config or of a file it names",
        ));
    }
    Ok(bytes)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain with its key, checked to belong together.
#[derive(Clone)]
pub struct CertPair(Arc<CertifiedKey>);

impl std::fmt::Debug for CertPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("CertPair")
            .field("certificates", &self.0.cert.len())
            .finish_non_exhaustive()
    }
}

impl CertPair {
    /// Reads the chain (end-entity certificate first) from `cert` and its
    /// private key from `key`, both PEM.
    pub fn load(cert: &Path, key: &Path) -> Result<CertPair, TlsError> {
        let read = |path: &Path| {
            read_limited(path).map_err(|source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::BadCertificate {
                path: cert.to_path_buf(),
                reason: e.to_string(),
            })?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate {
                path: cert.to_path_buf(),
            });
        }
        let key_pem = read(key)?;
        let der = match PrivateKeyDer::from_pem_slice(&key_pem) {
            Ok(der) => der,
            Err(rustls::pki_types::pem::Error::NoItemsFound) => {
                return Err(TlsError::NoKey {
                    path: key.to_path_buf(),
                })
            }
            Err(e) => {
                return Err(TlsError::BadKey {
                    key: key.to_path_buf(),
                    reason: e.to_string(),
                })
            }
        };
        let certified = CertifiedKey::from_der(chain, der, &provider()).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::Mismatch {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            },
            rustls::Error::InvalidCertificate(reason) => TlsError::BadCertificate {
                path: cert.to_path_buf(),
                reason: format!("{reason:?}"),
            },
            other => TlsError::BadKey {
                key: key.to_path_buf(),
                reason: other.to_string(),
            },
        })?;
        Ok(CertPair(Arc::new(certified)))
    }

    /// The end-entity certificate, DER.
    fn leaf(&self) -> &[u8] {
        self.0.cert.first().map_or(&[], |c| c.as_ref())
    }
}

/// The pair a listener presents, swapped whole by a reload; each handshake
/// takes the pair in force when it starts.
#[derive(Debug)]
pub struct Resolver(arc_swap::ArcSwap<CertifiedKey>);

impl Resolver {
    pub fn new(pair: &CertPair) -> Arc<Resolver> {
        Arc::new(Resolver(arc_swap::ArcSwap::new(pair.0.clone())))
    }

    /// Puts `pair` in force for the handshakes from now on; says whether the
    /// certificate differs from the one it replaces.
    pub fn swap(&self, pair: &CertPair) -> bool {
        let old = self.0.swap(pair.0.clone());
        old.cert.first().map(|c| c.as_ref()) != Some(pair.leaf())
    }

    /// The rustls server config of a listener presenting this resolver's pair.
    pub fn server_config(self: &Arc<Self>) -> rustls::ServerConfig {
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone())
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}

/// The resolvers of the listeners that have TLS, by their place in
/// `server.listen`: what a reload swaps.
#[derive(Debug, Default)]
pub struct Certs(pub Vec<Option<Arc<Resolver>>>);
