//! TLS to PostgreSQL, with `sslmode` meaning what it means to libpq (and so
//! to `psql` with the same URL):
//!
//! | `sslmode`            | TLS                     | certificate checked                 |
//! |----------------------|-------------------------|-------------------------------------|
//! | `disable`            | no                      |                                     |
//! | `prefer` (default)   | if the server offers it | no (encryption only)                |
//! | `require`            | yes                     | no (encryption only)                |
//! | `verify-ca`          | yes                     | chain, against the roots            |
//! | `verify-full`        | yes                     | chain and host name                 |
//!
//! The roots are `sslrootcert=<PEM file>` when given, else the Mozilla roots.
//! tokio-postgres knows neither the `verify-*` modes nor `sslrootcert`, so
//! [`split`] takes them out of the URL it is given.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_postgres::config::SslMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(v: &str) -> Result<Mode, String> {
        Ok(match v {
            "disable" => Mode::Disable,
            "allow" | "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            // The value is not repeated: the URL's query values are masked wherever it is shown.
            _ => {
                return Err(
                    "`sslmode` is not one of disable, allow, prefer, require, verify-ca, verify-full".to_string(),
                );
            }
        })
    }

    /// What tokio-postgres is told: whether to ask for TLS and insist on it.
    pub fn ssl_mode(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// The TLS settings a database URL carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: Mode,
    pub root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://…?…`) or a
/// `key=value` connection string: the rest, for tokio-postgres, and the
/// settings. Errors are sentences without the URL (it may hold a password).
pub fn split(url: &str) -> Result<(String, Settings), String> {
    let mut settings = Settings {
        mode: Mode::Prefer,
        root_cert: None,
    };
    let mut take = |key: &str, value: String| -> Result<bool, String> {
        match key {
            "sslmode" => settings.mode = Mode::parse(&value)?,
            "sslrootcert" => settings.root_cert = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        // The driver takes the text up to the first `@` as the user and
        // password, and the rest, `@` and all, as the host: a password with
        // an `@` of its own would be shown cut where the driver does not cut
        // it, and the rest of it looked up as a host name.
        if url.matches('@').count() > 1 {
            return Err(
                "the database URL holds more than one `@`: write an `@` in the user name or password as `%40`".into(),
            );
        }
        // The query begins after the userinfo: a password may hold a `?`.
        let after_userinfo = url.find('@').map_or(0, |at| at + 1);
        let query_at = url[after_userinfo..].find('?').map(|i| after_userinfo + i);
        match query_at.map(|i| (&url[..i], &url[i + 1..])) {
            None => url.to_string(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    // The driver's error would name the option, and where the
                    // URL is shown such a name is masked (it may be a secret).
                    if k.is_empty() || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                        return Err(
                            "the database URL has a query parameter whose name is not a plain word (letters, digits, `_`); it is not repeated here, as it may hold a secret".into(),
                        );
                    }
                    let v = percent_decode(v).ok_or("the database URL has a malformed %-escape")?;
                    if !take(k, v)? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = Vec::new();
        for word in url.split_whitespace() {
            match word.split_once('=') {
                Some((k, v)) if take(k.trim(), v.trim_matches('\'').to_string())? => {}
                _ => kept.push(word),
            }
        }
        kept.join(" ")
    };
    Ok((rest, settings))
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The rustls connector for `settings`.
pub fn connector(settings: &Settings) -> Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let config = match settings.mode {
        Mode::Disable | Mode::Prefer | Mode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth(),
        Mode::VerifyCa | Mode::VerifyFull => {
            let roots = Arc::new(roots(settings)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| format!("TLS: {e}"))?;
            let verifier: Arc<dyn ServerCertVerifier> = if settings.mode == Mode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

fn roots(settings: &Settings) -> Result<rustls::RootCertStore, String> {
    let Some(path) = &settings.root_cert else {
        return Ok(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        });
    };
    let shown = path.display();
    let mut store = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: {e}"))?;
        store.add(cert).map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    }
    if store.is_empty() {
        return Err(format!("sslrootcert {shown}: no certificate in the file"));
    }
    Ok(store)
}

/// `prefer` and `require`: the connection is encrypted, the certificate
/// not checked (as libpq); the handshake's signatures still are.
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_settings_leave_the_url() {
        let (rest, s) =
            split("postgres://u:p@h:5432/db?sslmode=verify-full&application_name=x&sslrootcert=%2Fca.pem").unwrap();
        assert_eq!(rest, "postgres://u:p@h:5432/db?application_name=x");
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let (rest, s) = split("postgres://h/db?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("postgres://h/db", Mode::Disable));
        let (rest, s) = split("postgres://h/db").unwrap();
        assert_eq!(
            (rest.as_str(), s.mode, s.root_cert),
            ("postgres://h/db", Mode::Prefer, None)
        );
        let (rest, s) = split("host=h dbname=db sslmode=verify-ca").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("host=h dbname=db", Mode::VerifyCa));
        // Query values are masked wherever the URL is shown: errors do not repeat them.
        let bad_mode = split("postgres://u:secret@h/db?sslmode=bogus").unwrap_err();
        assert!(bad_mode.starts_with("`sslmode` is not one of"), "{bad_mode}");
        assert!(
            !bad_mode.contains("bogus") && !bad_mode.contains("secret"),
            "{bad_mode}"
        );
        // A `?` in the password does not start the query.
        let (rest, s) = split("postgres://u:Top?S3cret@h/db?sslmode=disable").unwrap();
        assert_eq!((rest.as_str(), s.mode), ("postgres://u:Top?S3cret@h/db", Mode::Disable));
        let odd_name = split("postgres://h/db?ENC%3DSECRET88=1").unwrap_err();
        assert!(odd_name.contains("not a plain word"), "{odd_name}");
        assert!(!odd_name.contains("SECRET88"), "{odd_name}");
    }
}
