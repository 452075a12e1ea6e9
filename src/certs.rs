//! Self-managed webhook certificates, the default when cert-manager is not used (the way
//! cert-manager's cainjector or External Secrets' cert controller do it, without either).
//!
//! A long-lived CA (10 years) and a serving certificate (1 year) for the webhook Service are
//! generated with rcgen and stored in one Secret; the CA goes into the `caBundle` of the
//! ValidatingWebhookConfiguration. Every replica runs [`CertManager::run`]: the first to find no
//! usable certificate creates the Secret, the others lose the create (409) and adopt the winner's,
//! so all replicas agree on one certificate. The serving certificate is renewed 30 days before it
//! expires, signed by the same CA, so the `caBundle` does not change and no replica is ever
//! trusted less than the others. The CA itself is replaced a year before its own expiry.

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use rcgen::{BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::collections::BTreeMap;
use std::time::Duration;

const CA_VALIDITY_DAYS: i64 = 3650;
const CERT_VALIDITY_DAYS: i64 = 365;
const RENEW_CERT_BEFORE_DAYS: i64 = 30;
const RENEW_CA_BEFORE_DAYS: i64 = 365;
const ANNOTATION_CA_NOT_AFTER: &str = "gitprovider.dev/ca-not-after";
const ANNOTATION_CERT_NOT_AFTER: &str = "gitprovider.dev/cert-not-after";
const ANNOTATION_DNS_NAMES: &str = "gitprovider.dev/dns-names";

/// The webhook's serving certificate, key and the CA that signed it (PEM).
#[derive(Clone, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServingCert { key: <redacted>, .. }")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("cannot generate a certificate: {0}")]
    Generate(rcgen::Error),
    #[error("{what}: {cause}")]
    Api { what: String, cause: kube::Error },
    #[error("the webhook certificate Secret was replaced by another replica too often; retrying later")]
    Contended,
}

// By hand rather than #[from], which would also make the cause the error's source: the message
// prints it already.
impl From<rcgen::Error> for IssueError {
    fn from(error: rcgen::Error) -> IssueError {
        IssueError::Generate(error)
    }
}

/// Where the certificate lives and whom it is for.
#[derive(Debug, Clone)]
pub struct CertSettings {
    pub namespace: String,
    pub secret_name: String,
    /// The ValidatingWebhookConfiguration whose caBundle is kept current (cluster-scoped).
    pub webhook_configuration: Option<String>,
    pub service_name: String,
    /// How often the Secret is checked (renewals by another replica are picked up then).
    pub check_interval: Duration,
}

impl CertSettings {
    /// DNS names the API server uses to reach the Service.
    pub fn dns_names(&self) -> Vec<String> {
        let (svc, ns) = (&self.service_name, &self.namespace);
        vec![
            svc.clone(),
            format!("{svc}.{ns}"),
            format!("{svc}.{ns}.svc"),
            format!("{svc}.{ns}.svc.cluster.local"),
        ]
    }
}

fn to_rcgen_time(ts: jiff::Timestamp) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(ts.as_second()).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn days(n: i64) -> jiff::SignedDuration {
    jiff::SignedDuration::from_hours(24 * n)
}

/// The CA's parameters are fixed, so the issuer can be rebuilt from the stored key alone.
fn ca_params() -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "gitprovider-operator webhook CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// Everything stored in the Secret.
#[derive(Debug, Clone)]
struct Material {
    serving: ServingCert,
    ca_key_pem: String,
    ca_not_after: jiff::Timestamp,
    cert_not_after: jiff::Timestamp,
    dns_names: Vec<String>,
}

impl Material {
    fn from_secret(secret: &Secret) -> Option<Material> {
        let data = secret.data.as_ref()?;
        let text = |key: &str| data.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok());
        let annotations = secret.metadata.annotations.as_ref()?;
        let time = |key: &str| annotations.get(key).and_then(|t| t.parse::<jiff::Timestamp>().ok());
        Some(Material {
            serving: ServingCert {
                cert_pem: text("tls.crt")?,
                key_pem: text("tls.key")?,
                ca_pem: text("ca.crt")?,
            },
            ca_key_pem: text("ca.key")?,
            ca_not_after: time(ANNOTATION_CA_NOT_AFTER)?,
            cert_not_after: time(ANNOTATION_CERT_NOT_AFTER)?,
            dns_names: annotations
                .get(ANNOTATION_DNS_NAMES)
                .map(|names| names.split(',').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    }

    fn to_secret(&self, settings: &CertSettings, base: Option<&Secret>) -> Secret {
        let mut secret = base.cloned().unwrap_or_else(|| Secret {
            metadata: ObjectMeta {
                name: Some(settings.secret_name.clone()),
                namespace: Some(settings.namespace.clone()),
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_owned()),
            ..Secret::default()
        });
        let annotations = secret.metadata.annotations.get_or_insert_with(BTreeMap::new);
        annotations.insert(ANNOTATION_CA_NOT_AFTER.into(), self.ca_not_after.to_string());
        annotations.insert(ANNOTATION_CERT_NOT_AFTER.into(), self.cert_not_after.to_string());
        annotations.insert(ANNOTATION_DNS_NAMES.into(), self.dns_names.join(","));
        let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
        secret.string_data = None;
        secret.data = Some(BTreeMap::from([
            ("tls.crt".to_owned(), bytes(&self.serving.cert_pem)),
            ("tls.key".to_owned(), bytes(&self.serving.key_pem)),
            ("ca.crt".to_owned(), bytes(&self.serving.ca_pem)),
            ("ca.key".to_owned(), bytes(&self.ca_key_pem)),
        ]));
        secret
    }

    /// What needs doing, if anything, at `now`.
    fn renewal(&self, now: jiff::Timestamp, dns_names: &[String]) -> Renewal {
        if self.ca_not_after - days(RENEW_CA_BEFORE_DAYS) <= now {
            Renewal::Everything
        } else if self.cert_not_after - days(RENEW_CERT_BEFORE_DAYS) <= now || self.dns_names != dns_names {
            Renewal::ServingCert
        } else {
            Renewal::None
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Renewal {
    None,
    ServingCert,
    Everything,
}

/// Issues a serving certificate for `dns_names`, with a new CA unless one is given.
fn issue(
    dns_names: &[String],
    ca: Option<(&str, &str, jiff::Timestamp)>,
    now: jiff::Timestamp,
) -> Result<Material, rcgen::Error> {
    let (ca_pem, ca_key, ca_not_after) = match ca {
        Some((pem, key_pem, not_after)) => (pem.to_owned(), KeyPair::from_pem(key_pem)?, not_after),
        None => {
            let key = KeyPair::generate()?;
            let not_after = now + days(CA_VALIDITY_DAYS);
            let mut params = ca_params()?;
            params.not_before = to_rcgen_time(now - jiff::SignedDuration::from_hours(1));
            params.not_after = to_rcgen_time(not_after);
            let cert = params.self_signed(&key)?;
            (cert.pem(), key, not_after)
        }
    };
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params()?, ca_key);
    let leaf_key = KeyPair::generate()?;
    let cert_not_after = (now + days(CERT_VALIDITY_DAYS)).min(ca_not_after);
    let mut params = CertificateParams::new(dns_names.to_vec())?;
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, dns_names.get(2).cloned().unwrap_or_default());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = to_rcgen_time(now - jiff::SignedDuration::from_hours(1));
    params.not_after = to_rcgen_time(cert_not_after);
    let cert = params.signed_by(&leaf_key, &issuer)?;
    Ok(Material {
        serving: ServingCert {
            cert_pem: cert.pem(),
            key_pem: leaf_key.serialize_pem(),
            ca_pem,
        },
        ca_key_pem,
        ca_not_after,
        cert_not_after,
        dns_names: dns_names.to_vec(),
    })
}

/// Keeps the webhook certificate Secret and the webhook configuration's caBundle current.
pub struct CertManager {
    secrets: Api<Secret>,
    webhooks: Api<ValidatingWebhookConfiguration>,
    settings: CertSettings,
}

impl CertManager {
    pub fn new(client: Client, settings: CertSettings) -> CertManager {
        CertManager {
            secrets: Api::namespaced(client.clone(), &settings.namespace),
            webhooks: Api::all(client),
            settings,
        }
    }

    fn api_error(&self, what: &str, source: kube::Error) -> IssueError {
        IssueError::Api {
            what: format!("{what} {}", self.settings.secret_name),
            cause: source,
        }
    }

    /// Returns a current certificate, creating or renewing the Secret when needed. Conflicting
    /// writes by other replicas are resolved by adopting what they wrote.
    pub async fn ensure(&self) -> Result<ServingCert, IssueError> {
        let dns_names = self.settings.dns_names();
        for _ in 0..5 {
            let now = jiff::Timestamp::now();
            let existing = self
                .secrets
                .get_opt(&self.settings.secret_name)
                .await
                .map_err(|e| self.api_error("cannot read Secret", e))?;
            let current = existing.as_ref().and_then(Material::from_secret);
            let renewal = current
                .as_ref()
                .map_or(Renewal::Everything, |m| m.renewal(now, &dns_names));
            if renewal == Renewal::None
                && let Some(material) = current
            {
                return Ok(material.serving);
            }
            let ca = match (&renewal, &current) {
                (Renewal::ServingCert, Some(m)) => {
                    Some((m.serving.ca_pem.as_str(), m.ca_key_pem.as_str(), m.ca_not_after))
                }
                _ => None,
            };
            let material = issue(&dns_names, ca, now)?;
            let result = match &existing {
                None => {
                    self.secrets
                        .create(&PostParams::default(), &material.to_secret(&self.settings, None))
                        .await
                }
                // `replace` carries the resourceVersion read above: a concurrent writer wins.
                Some(secret) => {
                    self.secrets
                        .replace(
                            &self.settings.secret_name,
                            &PostParams::default(),
                            &material.to_secret(&self.settings, Some(secret)),
                        )
                        .await
                }
            };
            match result {
                Ok(_) => {
                    tracing::info!(secret = %self.settings.secret_name, ?renewal, "issued the webhook certificate");
                    return Ok(material.serving);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {
                    tracing::debug!("another replica wrote the webhook certificate first; adopting it");
                }
                Err(e) => return Err(self.api_error("cannot write Secret", e)),
            }
        }
        Err(IssueError::Contended)
    }

    /// Writes the CA into every webhook of the configuration, when it differs.
    pub async fn inject_ca(&self, ca_pem: &str) -> Result<(), IssueError> {
        let Some(name) = &self.settings.webhook_configuration else {
            return Ok(());
        };
        let bundle = ByteString(ca_pem.as_bytes().to_vec());
        for _ in 0..5 {
            let Some(mut config) = self.webhooks.get_opt(name).await.map_err(|e| IssueError::Api {
                what: format!("cannot read ValidatingWebhookConfiguration {name}"),
                cause: e,
            })?
            else {
                tracing::warn!(configuration = %name, "ValidatingWebhookConfiguration not found; cannot inject the CA");
                return Ok(());
            };
            let webhooks = config.webhooks.get_or_insert_with(Vec::new);
            let stale = webhooks
                .iter()
                .any(|w| w.client_config.ca_bundle.as_ref() != Some(&bundle));
            if !stale {
                return Ok(());
            }
            for webhook in webhooks.iter_mut() {
                webhook.client_config.ca_bundle = Some(bundle.clone());
            }
            match self.webhooks.replace(name, &PostParams::default(), &config).await {
                Ok(_) => {
                    tracing::info!(configuration = %name, "injected the webhook CA into caBundle");
                    return Ok(());
                }
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(e) => {
                    return Err(IssueError::Api {
                        what: format!("cannot update ValidatingWebhookConfiguration {name}"),
                        cause: e,
                    });
                }
            }
        }
        Err(IssueError::Contended)
    }

    /// Keeps the certificate current until `shutdown` flips, handing every new one to `on_cert`.
    pub async fn run(self, on_cert: impl Fn(&ServingCert) + Send, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut current: Option<ServingCert> = None;
        loop {
            let wait = match self.ensure().await {
                Ok(cert) => {
                    if current.as_ref() != Some(&cert) {
                        on_cert(&cert);
                        current = Some(cert.clone());
                    }
                    if let Err(error) = self.inject_ca(&cert.ca_pem).await {
                        tracing::warn!(
                            error = crate::api_server::describe(&error),
                            "cannot inject the webhook CA; retrying"
                        );
                    }
                    self.settings.check_interval
                }
                Err(error) => {
                    tracing::warn!(
                        error = crate::api_server::describe(&error),
                        "cannot provide the webhook certificate; retrying"
                    );
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }
}

/// The base64 form Kubernetes shows for a caBundle (for messages and tests).
pub fn ca_bundle_base64(ca_pem: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(ca_pem)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    fn settings() -> CertSettings {
        CertSettings {
            namespace: "gitprovider-system".into(),
            secret_name: "gpo-webhook-tls".into(),
            webhook_configuration: Some("gpo".into()),
            service_name: "gpo-webhook".into(),
            check_interval: Duration::from_secs(60),
        }
    }

    fn verify_chain(serving: &ServingCert, dns: &str, at: jiff::Timestamp) {
        let mut roots = rustls::RootCertStore::empty();
        for ca in rustls::pki_types::CertificateDer::pem_slice_iter(serving.ca_pem.as_bytes()) {
            roots.add(ca.unwrap()).unwrap();
        }
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                .build()
                .unwrap();
        let leaf = rustls::pki_types::CertificateDer::from_pem_slice(serving.cert_pem.as_bytes()).unwrap();
        let name = rustls::pki_types::ServerName::try_from(dns.to_owned()).unwrap();
        verifier
            .verify_server_cert(
                &leaf,
                &[],
                &name,
                &[],
                rustls::pki_types::UnixTime::since_unix_epoch(Duration::from_secs(at.as_second() as u64)),
            )
            .expect("the serving certificate chains to the CA for the service name");
    }

    use rustls::client::danger::ServerCertVerifier;

    #[test]
    fn issues_a_chain_for_the_service_names() {
        let names = settings().dns_names();
        assert!(names.contains(&"gpo-webhook.gitprovider-system.svc".to_owned()));
        let material = issue(&names, None, jiff::Timestamp::now()).unwrap();
        verify_chain(
            &material.serving,
            "gpo-webhook.gitprovider-system.svc",
            jiff::Timestamp::now(),
        );
        assert!(material.serving.key_pem.contains("PRIVATE KEY"));
    }

    #[test]
    fn renews_the_serving_cert_with_the_same_ca() {
        let names = settings().dns_names();
        let now = jiff::Timestamp::now();
        let first = issue(&names, None, now).unwrap();
        assert_eq!(first.renewal(now, &names), Renewal::None);
        let later = now + days(CERT_VALIDITY_DAYS - RENEW_CERT_BEFORE_DAYS + 1);
        assert_eq!(first.renewal(later, &names), Renewal::ServingCert);
        let renewed = issue(
            &names,
            Some((&first.serving.ca_pem, &first.ca_key_pem, first.ca_not_after)),
            later,
        )
        .unwrap();
        assert_eq!(
            renewed.serving.ca_pem, first.serving.ca_pem,
            "the caBundle stays the same"
        );
        assert_ne!(renewed.serving.cert_pem, first.serving.cert_pem);
        verify_chain(&renewed.serving, "gpo-webhook.gitprovider-system.svc", later);
        let ca_end = now + days(CA_VALIDITY_DAYS - RENEW_CA_BEFORE_DAYS + 1);
        assert_eq!(first.renewal(ca_end, &names), Renewal::Everything);
        assert_eq!(first.renewal(now, &["other".to_owned()]), Renewal::ServingCert);
    }

    #[test]
    fn secret_round_trip() {
        let names = settings().dns_names();
        let material = issue(&names, None, jiff::Timestamp::now()).unwrap();
        let secret = material.to_secret(&settings(), None);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        let back = Material::from_secret(&secret).unwrap();
        assert_eq!(back.serving, material.serving);
        assert_eq!(back.dns_names, names);
        assert!(!format!("{:?}", material.serving).contains("PRIVATE"));
    }
}
