//! Peer certificate verification as Envoy does it: the chain against the trusted CAs (no CA:
//! no verification at all), then the subject alternative names against the matchers. The
//! host name is never checked against SNI (Envoy checks only what the matchers say), which is
//! what SPIFFE identities need.

use super::san::{self, San};
use crate::config::matcher::StrMatch;
use crate::config::tls::{SanKind, SanMatcher, Validation};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, SignatureScheme,
};
use std::sync::Arc;

/// The error a SAN mismatch fails the handshake with (counted as `ssl.fail_verify_san`).
#[derive(Debug)]
pub struct SanMismatch;

impl std::fmt::Display for SanMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("certificate subject alternative names do not match")
    }
}

impl std::error::Error for SanMismatch {}

fn matches(m: &SanMatcher, n: &San) -> bool {
    let any = m.kind == SanKind::Any;
    match n {
        San::Dns(d) if any || m.kind == SanKind::Dns => match &m.matcher.kind {
            StrMatch::Exact(want) => san::dns_matches(d, want),
            _ => m.matcher.matches(d),
        },
        San::Uri(u) if any || m.kind == SanKind::Uri => m.matcher.matches(u),
        San::Email(e) if any || m.kind == SanKind::Email => m.matcher.matches(e),
        San::Ip(ip) if any || m.kind == SanKind::Ip => m.matcher.matches(&ip.to_string()),
        _ => false,
    }
}

/// Whether the leaf certificate's names satisfy the matchers (none: any name will do).
pub fn san_ok(v: &Validation, leaf: &CertificateDer<'_>) -> bool {
    if v.san.is_empty() {
        return true;
    }
    let names = san::names(leaf);
    v.san.iter().any(|m| names.iter().any(|n| matches(m, n)))
}

/// The trust anchors of a validation context.
fn anchors(v: &Validation) -> Vec<rustls::pki_types::TrustAnchor<'static>> {
    v.trusted_ca
        .iter()
        .filter_map(|c| {
            webpki::anchor_from_trusted_cert(c)
                .ok()
                .map(|a| a.to_owned())
        })
        .collect()
}

/// Chain and names, for either side.
#[derive(Debug)]
struct Checker {
    validation: Arc<Validation>,
    anchors: Vec<rustls::pki_types::TrustAnchor<'static>>,
    crls: Vec<webpki::CertRevocationList<'static>>,
    provider: Arc<CryptoProvider>,
}

impl Checker {
    fn new(validation: Arc<Validation>, provider: Arc<CryptoProvider>) -> Checker {
        let crls = validation
            .crls
            .iter()
            .filter_map(|c| webpki::OwnedCertRevocationList::from_der(c).ok())
            .map(webpki::CertRevocationList::from)
            .collect();
        Checker {
            anchors: anchors(&validation),
            crls,
            validation,
            provider,
        }
    }

    fn check(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        usage: webpki::KeyUsage,
    ) -> Result<(), Error> {
        if self.validation.trusted_ca.is_empty() {
            return Ok(());
        }
        let cert = webpki::EndEntityCert::try_from(leaf)
            .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
        // Envoy's CRL rule: with CRLs, every CA of the chain needs one (unknown status fails),
        // unless only the leaf is checked.
        let crl_refs: Vec<&webpki::CertRevocationList<'_>> = self.crls.iter().collect();
        let revocation = webpki::RevocationOptionsBuilder::new(&crl_refs)
            .ok()
            .map(|b| {
                if self.validation.crl_leaf_only {
                    b.with_depth(webpki::RevocationCheckDepth::EndEntity)
                        .with_status_policy(webpki::UnknownStatusPolicy::Allow)
                } else {
                    b.with_depth(webpki::RevocationCheckDepth::Chain)
                        .with_status_policy(webpki::UnknownStatusPolicy::Deny)
                }
                .build()
            });
        cert.verify_for_usage(
            self.provider.signature_verification_algorithms.all,
            &self.anchors,
            intermediates,
            now,
            usage,
            revocation,
            None,
        )
        .map_err(|e| Error::InvalidCertificate(webpki_error(e)))?;
        if !san_ok(&self.validation, leaf) {
            return Err(Error::InvalidCertificate(CertificateError::Other(
                OtherError(Arc::new(SanMismatch)),
            )));
        }
        Ok(())
    }

    fn tls12(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn webpki_error(e: webpki::Error) -> CertificateError {
    match e {
        webpki::Error::CertExpired { .. } => CertificateError::Expired,
        webpki::Error::CertNotValidYet { .. } => CertificateError::NotValidYet,
        webpki::Error::UnknownIssuer => CertificateError::UnknownIssuer,
        webpki::Error::CertRevoked => CertificateError::Revoked,
        webpki::Error::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        _ => CertificateError::BadEncoding,
    }
}

/// The handshake-signature methods both verifier traits have, delegated to the checker.
macro_rules! signatures {
    ($f:tt) => {
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.$f.tls12(m, c, d)
        }

        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            self.$f.tls13(m, c, d)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.$f.schemes()
        }
    };
}

/// Verifies an upstream's certificate.
#[derive(Debug)]
pub struct UpstreamVerifier(Checker);

impl UpstreamVerifier {
    pub fn new(validation: Arc<Validation>, provider: Arc<CryptoProvider>) -> UpstreamVerifier {
        UpstreamVerifier(Checker::new(validation, provider))
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.0
            .check(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::server_auth(),
            )
            .map(|()| ServerCertVerified::assertion())
    }

    signatures!(0);
}

/// Verifies a downstream client's certificate (requested when the context has trusted CAs;
/// required with `require_client_certificate`).
#[derive(Debug)]
pub struct DownstreamVerifier {
    checker: Checker,
    required: bool,
}

impl DownstreamVerifier {
    pub fn new(
        validation: Arc<Validation>,
        provider: Arc<CryptoProvider>,
        required: bool,
    ) -> DownstreamVerifier {
        DownstreamVerifier {
            checker: Checker::new(validation, provider),
            required,
        }
    }
}

impl ClientCertVerifier for DownstreamVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.checker
            .check(
                end_entity,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
            )
            .map(|()| ClientCertVerified::assertion())
    }

    signatures!(checker);
}

/// Which `ssl.fail_verify_*` counter a handshake error belongs to, if any.
pub fn failure_stat(e: &Error) -> Option<&'static str> {
    match e {
        Error::NoCertificatesPresented => Some("fail_verify_no_cert"),
        Error::InvalidCertificate(CertificateError::Other(o))
            if o.0.downcast_ref::<SanMismatch>().is_some() =>
        {
            Some("fail_verify_san")
        }
        Error::InvalidCertificate(_) => Some("fail_verify_error"),
        _ => None,
    }
}
