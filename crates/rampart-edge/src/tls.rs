//! TLS: server certificates chosen by SNI, and client configurations for origins.
//!
//! Certificates are loaded when a configuration generation is built; a file that cannot
//! be read or parsed is reported as a [`Diagnostic`] at the key that named it, and the
//! generation is refused (the running one keeps serving). One crypto provider: *ring*.

use std::collections::HashMap;
use std::sync::Arc;

use rampart_core::config::{
    Certificate, Config, Diagnostic, Diagnostics, SourceFile, Span, UpstreamProtocol, UpstreamTls,
};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A path from the configuration: relative paths are relative to the configuration
/// file's directory, so a configuration and its certificates move together.
pub fn resolve(src: &SourceFile, path: &str) -> std::path::PathBuf {
    let p = std::path::Path::new(path);
    if p.is_absolute() {
        return p.to_owned();
    }
    std::path::Path::new(src.name())
        .parent()
        .map_or_else(|| p.to_owned(), |dir| dir.join(p))
}

/// The crypto provider used everywhere.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn file_error(src: &SourceFile, span: Span, what: String, hint: &str) -> Box<Diagnostic> {
    Box::new(src.diagnostic(span, what, None, Some(hint.to_owned())))
}

fn load_key(
    src: &SourceFile,
    cert: &Certificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, Box<Diagnostic>> {
    let (cert_path, cert_span) = &cert.cert;
    let (key_path, key_span) = &cert.key;
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(resolve(src, cert_path))
            .map_err(|e| {
                file_error(
                    src,
                    *cert_span,
                    format!(
                        "cannot read certificate file `{cert_path}`: {}",
                        pem_error(&e)
                    ),
                    "the file must exist, be readable and hold PEM \"CERTIFICATE\" blocks",
                )
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| {
                file_error(
                    src,
                    *cert_span,
                    format!(
                        "certificate file `{cert_path}` is not valid PEM: {}",
                        pem_error(&e)
                    ),
                    "expected PEM \"CERTIFICATE\" blocks, leaf first",
                )
            })?;
    if chain.is_empty() {
        return Err(file_error(
            src,
            *cert_span,
            format!("certificate file `{cert_path}` holds no certificate"),
            "expected PEM \"CERTIFICATE\" blocks, leaf first",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(resolve(src, key_path)).map_err(|e| {
        file_error(
            src,
            *key_span,
            format!("cannot load private key `{key_path}`: {}", pem_error(&e)),
            "expected one PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    let signing = provider.key_provider.load_private_key(key).map_err(|e| {
        file_error(
            src,
            *key_span,
            format!("unsupported private key `{key_path}`: {e}"),
            "RSA, ECDSA P-256/P-384 and Ed25519 keys are supported",
        )
    })?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|e| {
        file_error(
            src,
            *key_span,
            format!("private key `{key_path}` does not match certificate `{cert_path}`: {e}"),
            "pair each certificate with its own key",
        )
    })?;
    Ok(Arc::new(ck))
}

fn pem_error(e: &rustls_pki_types::pem::Error) -> String {
    match e {
        rustls_pki_types::pem::Error::Io(io) => io.to_string(),
        rustls_pki_types::pem::Error::NoItemsFound => "no PEM item found".into(),
        other => format!("{other:?}"),
    }
}

/// Picks a certificate by SNI: exact name, then `*.suffix` (one label), then the default.
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Option<Arc<CertifiedKey>>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = sni {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if let Some(k) = self.exact.get(&name) {
                return Some(k.clone());
            }
            if let Some((_, parent)) = name.split_once('.') {
                if let Some(k) = self.wildcard.get(parent) {
                    return Some(k.clone());
                }
            }
        }
        self.default.clone()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// Builds the server TLS configuration for all TLS listeners, or `None` if there is none.
pub fn server_config(
    src: &SourceFile,
    cfg: &Config,
) -> Result<Option<Arc<rustls::ServerConfig>>, Diagnostics> {
    // Every certificate is loaded, so a broken file is refused even before a TLS
    // listener uses it.
    if cfg.certificates.is_empty() {
        return Ok(None);
    }
    let provider = provider();
    let mut diags = Diagnostics::default();
    let mut resolver = SniResolver {
        exact: HashMap::new(),
        wildcard: HashMap::new(),
        default: None,
    };
    for cert in &cfg.certificates {
        match load_key(src, cert, &provider) {
            Ok(key) => {
                for host in &cert.hosts {
                    match host.strip_prefix("*.") {
                        Some(parent) => resolver.wildcard.insert(parent.to_owned(), key.clone()),
                        None => resolver.exact.insert(host.clone(), key.clone()),
                    };
                }
                if cert.default
                    || resolver.default.is_none() && cfg.certificates.iter().all(|c| !c.default)
                {
                    resolver.default = Some(key);
                }
            }
            Err(d) => diags.push(*d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let mut sc = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            Diagnostics::one(src.diagnostic(
                Span::default(),
                format!("TLS setup failed: {e}"),
                None,
                None,
            ))
        })?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    sc.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    sc.ignore_client_order = false;
    Ok(Some(Arc::new(sc)))
}

/// Builds the client TLS configuration for one origin pool.
pub fn client_config(
    src: &SourceFile,
    tls: &UpstreamTls,
    protocol: UpstreamProtocol,
) -> Result<Arc<rustls::ClientConfig>, Box<Diagnostic>> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            src.diagnostic(
                Span::default(),
                format!("TLS setup failed: {e}"),
                None,
                None,
            )
        })?;
    let mut cc = if !tls.verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some((path, span)) => {
                let certs: Vec<CertificateDer<'static>> =
                    CertificateDer::pem_file_iter(resolve(src, path))
                        .map_err(|e| {
                            file_error(
                                src,
                                *span,
                                format!("cannot read CA file `{path}`: {}", pem_error(&e)),
                                "a PEM bundle of CA certificates",
                            )
                        })?
                        .collect::<Result<_, _>>()
                        .map_err(|e| {
                            file_error(
                                src,
                                *span,
                                format!("CA file `{path}` is not valid PEM: {}", pem_error(&e)),
                                "a PEM bundle of CA certificates",
                            )
                        })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(file_error(
                        src,
                        *span,
                        format!("CA file `{path}` holds no usable certificate"),
                        "a PEM bundle of CA certificates",
                    ));
                }
            }
            None => {
                let loaded = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(loaded.certs);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cc.alpn_protocols = match protocol {
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
    };
    Ok(Arc::new(cc))
}

/// Accepts any origin certificate (handshake signatures are still checked). Only used
/// when a pool says `verify = false`.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
