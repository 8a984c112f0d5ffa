//! Certificates for TLS tests (made with rcgen: a root CA, an intermediate, SPIFFE workload
//! certificates, a rogue CA, an expired certificate) written as PEM files, and a TLS client.

use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::rustls;

pub const TRUST_DOMAIN: &str = "spiffe://cluster.local";

pub fn spiffe(ns: &str, sa: &str) -> String {
    format!("{TRUST_DOMAIN}/ns/{ns}/sa/{sa}")
}

/// A PEM certificate chain and key.
#[derive(Clone)]
pub struct Pem {
    pub chain: String,
    pub key: String,
    /// The leaf's serial number (for CRLs).
    pub serial: u64,
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

fn leaf_params(uri: &str, dns: &[&str]) -> CertificateParams {
    let mut p = CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>())
        .expect("params");
    p.subject_alt_names
        .push(SanType::URI(uri.try_into().expect("uri")));
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    p
}

/// A certificate authority that issues workload certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// The PEM chain above a leaf (the intermediate's own certificate when this is one).
    above: String,
    pub root_pem: String,
}

impl Ca {
    pub fn root(cn: &str) -> Ca {
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().expect("key"))
            .expect("root CA");
        let root_pem = issuer.pem();
        Ca {
            issuer,
            above: String::new(),
            root_pem,
        }
    }

    pub fn intermediate(&self, cn: &str) -> Ca {
        let issuer = CertifiedIssuer::signed_by(
            ca_params(cn),
            KeyPair::generate().expect("key"),
            &self.issuer,
        )
        .expect("intermediate CA");
        let above = format!("{}{}", issuer.pem(), self.above);
        Ca {
            issuer,
            above,
            root_pem: self.root_pem.clone(),
        }
    }

    /// A workload certificate with a SPIFFE URI SAN (and DNS SANs), with its chain.
    pub fn issue(&self, uri: &str, dns: &[&str]) -> Pem {
        self.issue_with(leaf_params(uri, dns))
    }

    /// One that expired in 2001.
    pub fn issue_expired(&self, uri: &str) -> Pem {
        let mut p = leaf_params(uri, &[]);
        p.not_before = date_time_ymd(2000, 1, 1);
        p.not_after = date_time_ymd(2001, 1, 1);
        self.issue_with(p)
    }

    fn issue_with(&self, mut p: CertificateParams) -> Pem {
        static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
        let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        p.serial_number = Some(rcgen::SerialNumber::from(serial));
        let key = KeyPair::generate().expect("key");
        let cert = p.signed_by(&key, &self.issuer).expect("leaf");
        Pem {
            chain: format!("{}{}", cert.pem(), self.above),
            key: key.serialize_pem(),
            serial,
        }
    }

    /// This CA's certificate revocation list, revoking `revoked`.
    pub fn crl(&self, revoked: &[&Pem]) -> String {
        let params = rcgen::CertificateRevocationListParams {
            this_update: date_time_ymd(2024, 1, 1),
            next_update: date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|p| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(p.serial),
                    revocation_time: date_time_ymd(2024, 6, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.issuer)
            .expect("CRL")
            .pem()
            .expect("CRL PEM")
    }
}

/// Writes PEM files into `dir` and returns placeholder values (`NAME_CERT`, `NAME_KEY`,
/// `NAME_CA` paths) for bootstrap templates.
pub fn write_files(
    dir: &Path,
    certs: &[(&str, &Pem)],
    cas: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (name, pem) in certs {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, &pem.chain).expect("write cert");
        std::fs::write(&key, &pem.key).expect("write key");
        out.insert(
            format!("{}_CERT", name.to_uppercase()),
            cert.display().to_string(),
        );
        out.insert(
            format!("{}_KEY", name.to_uppercase()),
            key.display().to_string(),
        );
    }
    for (name, pem) in cas {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, pem).expect("write CA");
        out.insert(
            format!("{}_CA", name.to_uppercase()),
            path.display().to_string(),
        );
    }
    out
}

fn certs(pem: &str) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("PEM certificates")
}

/// A TLS client: trusts `ca` (checking the server's names against nothing: SPIFFE style),
/// presents `client` when given, offers `alpn`.
pub fn client_config(ca: &str, client: Option<&Pem>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in certs(ca) {
        roots.add(c).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NoNameCheck(verifier)));
    let mut cfg = match client {
        Some(p) => builder
            .with_client_auth_cert(
                certs(&p.chain),
                rustls::pki_types::PrivateKeyDer::from_pem_slice(p.key.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Arc::new(cfg)
}

/// Chain verification without the host-name check (workload certificates carry SPIFFE URIs).
#[derive(Debug)]
struct NoNameCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for NoNameCheck {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        intermediates: &[rustls::pki_types::CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls::pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// What a TLS connection attempt ended in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handshake done: the negotiated ALPN (empty: none), the response status and body of one
    /// GET, and the server's leaf certificate (DER).
    Ok {
        alpn: String,
        status: u16,
        body: String,
        peer: Vec<u8>,
    },
    /// The handshake (or the first exchange) failed.
    Refused,
}

/// Connects with TLS to 127.0.0.1:`port`, sends one HTTP/1.1 GET (or h2 when negotiated) and
/// reads the answer.
pub async fn get(port: u16, cfg: Arc<rustls::ClientConfig>, sni: &str, path: &str) -> Outcome {
    let run = async {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).ok()?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .ok()?;
        let peer = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .unwrap_or_default();
        let alpn = tls
            .get_ref()
            .1
            .alpn_protocol()
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .unwrap_or_default();
        let io = hyper_util::rt::TokioIo::new(tls);
        let req = http::Request::get(format!("https://{sni}{path}"))
            .header("host", sni)
            .header("x-forwarded-client-cert", "By=forged")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let resp = if alpn == "h2" {
            let (mut send, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                    .await
                    .ok()?;
            tokio::spawn(conn);
            send.send_request(req).await.ok()?
        } else {
            let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.ok()?;
            tokio::spawn(conn);
            let (mut parts, body) = req.into_parts();
            parts.uri = path.parse().ok()?;
            send.send_request(http::Request::from_parts(parts, body))
                .await
                .ok()?
        };
        let status = resp.status().as_u16();
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .ok()?
            .to_bytes();
        Some(Outcome::Ok {
            alpn,
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            peer,
        })
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), run)
        .await
        .ok()
        .flatten()
        .unwrap_or(Outcome::Refused)
}

/// The DER of the first certificate of a PEM chain.
pub fn leaf_der(chain: &str) -> Vec<u8> {
    certs(chain).first().map(|c| c.to_vec()).unwrap_or_default()
}

/// A kept-alive HTTP/1.1 connection over TLS.
pub struct KeptAlive(hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>);

impl KeptAlive {
    pub async fn open(port: u16, cfg: Arc<rustls::ClientConfig>, sni: &str) -> Option<KeptAlive> {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        let name = rustls::pki_types::ServerName::try_from(sni.to_string()).ok()?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .ok()?;
        let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .ok()?;
        tokio::spawn(conn);
        Some(KeptAlive(send))
    }

    /// One GET on the connection: its status, or 0 when the connection failed.
    pub async fn get(&mut self, path: &str) -> u16 {
        let Ok(req) = http::Request::get(path)
            .header("host", "server.example.com")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
        else {
            return 0;
        };
        match self.0.send_request(req).await {
            Ok(r) => {
                let status = r.status().as_u16();
                let _ = http_body_util::BodyExt::collect(r.into_body()).await;
                status
            }
            Err(_) => 0,
        }
    }
}
