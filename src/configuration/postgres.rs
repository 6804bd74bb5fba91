//! `database.url` read as libpq reads it: the server, and the TLS that
//! `sslmode` and `sslrootcert` ask for. Read when the settings are loaded,
//! so that a URL PostgreSQL would refuse is a configuration error; the
//! database shell opens its sessions with the [`Target`] it gives.
//!
//! | `sslmode` | TLS | the server's certificate |
//! | --- | --- | --- |
//! | `disable` | never | – |
//! | `prefer` (default) | if the server offers it | not checked |
//! | `require` | always | not checked, unless `sslrootcert` is given (then as `verify-ca`) |
//! | `verify-ca` | always | signed by `sslrootcert` (default: the system's roots) |
//! | `verify-full` | always | as `verify-ca`, and issued to the URL's host |

use std::{path::PathBuf, str::FromStr, sync::Arc, time::Duration};

use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::WebPkiSupportedAlgorithms,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SecretUrl;

/// How far to trust the connection, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
                ));
            }
        })
    }
}

/// An idle connection is probed after this long without traffic…
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
/// …then at this interval, and dropped after this many unanswered probes:
/// a silent idle connection is found within about 11 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// A PostgreSQL server to connect to, and how.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    mode: SslMode,
}

impl Target {
    /// Reads `sslmode` and `sslrootcert` from `url` and loads the roots the
    /// server's certificate must chain to. Errors never repeat the URL.
    pub fn new(url: &SecretUrl) -> Result<Self, String> {
        let mut mode = SslMode::Prefer;
        let mut root_cert: Option<String> = None;
        let mut others: Vec<(String, String)> = Vec::new();
        for (key, value) in url.url().query_pairs() {
            match key.as_ref() {
                "sslmode" => mode = value.parse()?,
                "sslrootcert" => {
                    root_cert = Some(value.into_owned()).filter(|path| !path.is_empty())
                }
                _ => others.push((key.into_owned(), value.into_owned())),
            }
        }
        let text = url.edited(|rest| set_query(rest, &others)).expose();
        let mut config: tokio_postgres::Config = text
            .parse()
            .map_err(|error| format!("not a PostgreSQL URL: {error}"))?;
        if root_cert.is_some() && mode == SslMode::Require {
            mode = SslMode::VerifyCa;
        }
        config.ssl_mode(match mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        let tls = client_config(mode, root_cert)?;
        Ok(Self {
            config,
            tls: MakeRustlsConnect::new(tls),
            mode,
        })
    }

    /// The same server, each connection opened within `connect_timeout`,
    /// watched by TCP keepalives while idle, and given up by the kernel
    /// when what it sent goes unacknowledged for `call_timeout`: a link gone
    /// silent (no FIN, no RST) is found even with no call waiting on it.
    pub fn bounded(mut self, connect_timeout: Duration, call_timeout: Duration) -> Self {
        self.config
            .connect_timeout(connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(call_timeout);
        self
    }

    pub fn mode(&self) -> SslMode {
        self.mode
    }

    /// What tokio-postgres connects with: the server and the TLS.
    pub fn connector(&self) -> (&tokio_postgres::Config, &MakeRustlsConnect) {
        (&self.config, &self.tls)
    }
}

/// Replaces the query of `url` with `pairs`. PostgreSQL percent-decodes its
/// URL parameters and nothing more: a space must travel as `%20`, never as
/// the `+` of form encoding (a literal `+` is `%2B` already).
pub fn set_query(url: &mut url::Url, pairs: &[(String, String)]) {
    url.set_query(None);
    if pairs.is_empty() {
        return;
    }
    url.query_pairs_mut().extend_pairs(pairs);
    if let Some(query) = url.query().map(|query| query.replace('+', "%20")) {
        url.set_query(Some(&query));
    }
}

fn client_config(mode: SslMode, root_cert: Option<String>) -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("TLS: {error}"))?;
    let config = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth(),
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(roots(root_cert)?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|error| format!("TLS: {error}"))?;
            let verifier: Arc<dyn ServerCertVerifier> = if mode == SslMode::VerifyCa {
                Arc::new(AnyName(webpki))
            } else {
                webpki
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// The certificates of `sslrootcert`, or the system's roots without one
/// (or with `sslrootcert=system`, as in libpq).
fn roots(root_cert: Option<String>) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match root_cert.as_deref() {
        None | Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err("no system root certificates found: name them with sslrootcert".into());
            }
            store.add_parsable_certificates(found.certs);
        }
        Some(path) => {
            let path = PathBuf::from(path);
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&path)
                .and_then(Iterator::collect)
                .map_err(|error| format!("sslrootcert {}: {error}", path.display()))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert {}: no certificate in it",
                    path.display()
                ));
            }
        }
    }
    Ok(store)
}

/// `sslmode=prefer` or `require`: encrypted, but to whoever answers, as in
/// libpq. The handshake's own signatures are still checked.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must verify, whatever host it names.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
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

    fn target(url: &str) -> Result<Target, String> {
        let settings = crate::configuration::Settings::load(&crate::configuration::Sources {
            file: None,
            environment: vec![("PAYWAIT_DATABASE__URL".into(), url.into())],
        });
        match settings {
            Ok(settings) => Target::new(&settings.database.url),
            Err(error) => Err(error.to_string()),
        }
    }

    #[test]
    fn sslmode_is_read_as_libpq_reads_it() {
        let base = "postgres://u:p@localhost:5432/paywait";
        assert_eq!(target(base).unwrap().mode(), SslMode::Prefer);
        for (mode, expected) in [
            ("disable", SslMode::Disable),
            ("prefer", SslMode::Prefer),
            ("require", SslMode::Require),
            ("verify-ca", SslMode::VerifyCa),
            ("verify-full", SslMode::VerifyFull),
        ] {
            let with = format!("{base}?sslmode={mode}&options=-c%20enable_seqscan%3Doff");
            assert_eq!(target(&with).unwrap().mode(), expected, "{mode}");
        }
        // A root certificate makes `require` check the chain, as in libpq.
        let pem = "/etc/ssl/certs/ssl-cert-snakeoil.pem";
        let checked = target(&format!("{base}?sslmode=require&sslrootcert={pem}")).unwrap();
        assert_eq!(checked.mode(), SslMode::VerifyCa);
    }

    #[test]
    fn only_the_query_is_rewritten_for_postgresql() {
        let plain =
            target("postgres://u:a+b@h/db?options=-c%20work_mem%3D4MB&sslmode=disable").unwrap();
        assert_eq!(plain.config.get_password(), Some(&b"a+b"[..]));
        assert_eq!(plain.config.get_options(), Some("-c work_mem=4MB"));
        // An empty root certificate is none, as in libpq.
        let unchecked = target("postgres://u@h/db?sslmode=require&sslrootcert=").unwrap();
        assert_eq!(unchecked.mode(), SslMode::Require);
    }

    #[test]
    fn an_unknown_sslmode_or_unreadable_root_is_refused_without_the_url() {
        let error = target("postgres://u:hunter2@h/db?sslmode=allow")
            .err()
            .unwrap();
        assert!(error.contains("sslmode \"allow\""), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
        let error =
            target("postgres://u:hunter2@h/db?sslmode=verify-full&sslrootcert=/nonexistent.pem")
                .err()
                .unwrap();
        assert!(error.contains("sslrootcert /nonexistent.pem"), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}
