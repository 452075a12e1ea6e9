//! The admission webhook: its ValidatingWebhookConfiguration (present, a current PEM caBundle,
//! the Service it calls), and whether it answers — a server-side dry-run create of a
//! GitProviderConnection goes through admission webhooks and stores nothing: a verdict of the
//! webhook (allowed with its warning, or a denial by its rules) means it answers.

use super::certificate::validity;
use super::cluster::api_failure;
use super::report::{Line, WEBHOOK_ANSWERS, WEBHOOK_CONFIGURATION};
use super::{DoctorArgs, WebhookCerts};
use k8s_openapi::api::admissionregistration::v1::{ValidatingWebhook, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Service;
use kube::{Api, Client};
use serde_json::{Value, json};

/// cert-manager's CA injector fills caBundle of configurations with this annotation.
const CERT_MANAGER_INJECT: &str = "cert-manager.io/inject-ca-from";
/// The webhook's warning for an http:// URL: its voice in an allowed dry run.
const HTTP_WARNING: &str = "spec.url uses http://";

/// The configuration, when it exists.
pub struct Found {
    pub config: ValidatingWebhookConfiguration,
    pub cert_manager: bool,
}

pub struct ConfigurationCheck {
    pub line: Line,
    pub found: Option<Found>,
}

pub async fn configuration(client: &Client, args: &DoctorArgs) -> ConfigurationCheck {
    let name = &args.webhook_configuration;
    let what = format!("ValidatingWebhookConfiguration {name}");
    let config = match Api::<ValidatingWebhookConfiguration>::all(client.clone())
        .get_opt(name)
        .await
    {
        Ok(Some(config)) => config,
        Ok(None) => {
            return ConfigurationCheck {
                line: Line::fail(
                    WEBHOOK_CONFIGURATION,
                    format!("{what} not found: nothing checks connections before they are stored"),
                    "install the chart (helm upgrade --install) or kubectl apply -k deploy/; \
                     pass --webhook-configuration if yours has another name",
                ),
                found: None,
            };
        }
        Err(error) => {
            return ConfigurationCheck {
                line: api_failure(WEBHOOK_CONFIGURATION, &format!("cannot read {what}"), &error),
                found: None,
            };
        }
    };
    let cert_manager = config
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CERT_MANAGER_INJECT));
    let certs = if cert_manager {
        WebhookCerts::External
    } else {
        args.webhook_certs
    };
    let line = match inspect(client, &what, &config, certs, args).await {
        Ok(summary) => Line::ok(WEBHOOK_CONFIGURATION, format!("{what}: {summary}")),
        Err(line) => line,
    };
    ConfigurationCheck {
        line,
        found: Some(Found { config, cert_manager }),
    }
}

/// What is fine about the configuration, or the line saying what is not.
async fn inspect(
    client: &Client,
    what: &str,
    config: &ValidatingWebhookConfiguration,
    certs: WebhookCerts,
    args: &DoctorArgs,
) -> Result<String, Line> {
    let webhooks = config.webhooks.as_deref().unwrap_or_default();
    if webhooks.is_empty() {
        return Err(Line::fail(
            WEBHOOK_CONFIGURATION,
            format!("{what} has no webhooks"),
            "reinstall the chart (helm upgrade --install) or kubectl apply -k deploy/",
        ));
    }
    let renew = match certs {
        WebhookCerts::SelfManaged => format!(
            "the operator fills caBundle from Secret {ns}/{secret}: delete that Secret and a replica \
             issues a new CA within 15 seconds (kubectl -n {ns} delete secret {secret})",
            ns = args.namespace,
            secret = args.webhook_cert_secret
        ),
        WebhookCerts::External => format!(
            "cert-manager's cainjector (or whoever provides the certificate) fills caBundle: \
             kubectl -n {} get certificate (Ready?), cmctl renew, kubectl -n cert-manager logs deploy/cert-manager-cainjector",
            args.namespace
        ),
    };
    let now = jiff::Timestamp::now();
    let mut summary = Vec::new();
    for webhook in webhooks {
        let bundle = webhook
            .client_config
            .ca_bundle
            .as_ref()
            .map(|b| b.0.as_slice())
            .unwrap_or_default();
        let problem = |message: String| Line::fail(WEBHOOK_CONFIGURATION, message, renew.clone());
        if bundle.is_empty() {
            let fill = match certs {
                WebhookCerts::SelfManaged => format!(
                    "the operator fills caBundle when it starts: is it running? \
                     (kubectl -n {ns} get pods -l app.kubernetes.io/name=gitprovider-operator; \
                     kubectl -n {ns} logs deploy/gitprovider-operator)",
                    ns = args.namespace
                ),
                WebhookCerts::External => renew.clone(),
            };
            return Err(Line::fail(
                WEBHOOK_CONFIGURATION,
                format!("{what}: webhook {} has no caBundle yet", webhook.name),
                fill,
            ));
        }
        let ders = crate::pki::certificates(bundle)
            .map_err(|e| problem(format!("{what}: caBundle of {}: {e}", webhook.name)))?;
        let mut until = None;
        for der in &ders {
            let Some((not_before, not_after)) = validity(der) else {
                return Err(problem(format!(
                    "{what}: caBundle of {} holds something that is not an X.509 certificate",
                    webhook.name
                )));
            };
            if not_after < now {
                return Err(problem(format!(
                    "{what}: caBundle of {} expired at {not_after}",
                    webhook.name
                )));
            }
            if not_before > now {
                return Err(problem(format!(
                    "{what}: caBundle of {} is not valid before {not_before} (a clock ahead where it was issued?)",
                    webhook.name
                )));
            }
            until = until.min(Some(not_after)).or(Some(not_after));
        }
        let target = target(client, what, webhook).await?;
        let until = until.map(|t| t.to_string()).unwrap_or_default();
        summary.push(format!("{} calls {target}, caBundle valid until {until}", webhook.name));
    }
    Ok(summary.join("; "))
}

/// Where the webhook is called: its URL, or its Service (which must exist).
async fn target(client: &Client, what: &str, webhook: &ValidatingWebhook) -> Result<String, Line> {
    let config = &webhook.client_config;
    if let Some(url) = &config.url {
        return Ok(url.clone());
    }
    let Some(service) = &config.service else {
        return Err(Line::fail(
            WEBHOOK_CONFIGURATION,
            format!("{what}: webhook {} names neither a url nor a service", webhook.name),
            "reinstall the chart (helm upgrade --install) or kubectl apply -k deploy/",
        ));
    };
    let port = service.port.unwrap_or(443);
    let path = service.path.clone().unwrap_or_default();
    let named = format!("Service {}/{}:{port}{path}", service.namespace, service.name);
    match Api::<Service>::namespaced(client.clone(), &service.namespace)
        .get_opt(&service.name)
        .await
    {
        Ok(Some(_)) => Ok(named),
        Ok(None) => Err(Line::fail(
            WEBHOOK_CONFIGURATION,
            format!("{what}: webhook {} calls {named}, which does not exist", webhook.name),
            format!(
                "install the chart (or kubectl apply -k deploy/) in {}; kubectl -n {} get services",
                service.namespace, service.namespace
            ),
        )),
        Err(error) => Err(api_failure(
            WEBHOOK_CONFIGURATION,
            &format!("cannot read {named}"),
            &error,
        )),
    }
}

/// The namespace of the probe: the flag, else one the webhook's namespaceSelector names.
fn probe_namespace(args: &DoctorArgs, config: &ValidatingWebhookConfiguration) -> String {
    if let Some(namespace) = &args.probe_namespace {
        return namespace.clone();
    }
    let named = config.webhooks.iter().flatten().find_map(|w| {
        w.namespace_selector
            .as_ref()?
            .match_expressions
            .iter()
            .flatten()
            .find(|e| e.key == "kubernetes.io/metadata.name" && e.operator == "In")?
            .values
            .as_ref()?
            .first()
            .cloned()
    });
    named.unwrap_or_else(|| "default".to_owned())
}

pub async fn answers(client: &Client, args: &DoctorArgs, found: &Found) -> Line {
    let namespace = probe_namespace(args, &found.config);
    let probe = json!({
        "apiVersion": "gitprovider.dev/v1alpha1",
        "kind": "GitProviderConnection",
        "metadata": {"name": "gitprovider-operator-doctor-probe", "namespace": namespace},
        "spec": {
            "provider": "GitLab",
            "instanceName": format!("doctor-probe-{:08x}", fastrand::u32(..)),
            "url": "http://doctor-probe.invalid",
            "tokenSecretRef": {"name": "doctor-probe"},
        },
    });
    let path = format!("/apis/gitprovider.dev/v1alpha1/namespaces/{namespace}/gitproviderconnections?dryRun=All");
    let (status, warnings, body) = match request_with_warnings(client, "POST", &path, &probe).await {
        Ok(answer) => answer,
        Err(error) => return api_failure(WEBHOOK_ANSWERS, "the dry-run probe was not answered", &error),
    };
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    let consequence = match found
        .config
        .webhooks
        .iter()
        .flatten()
        .any(|w| w.failure_policy.as_deref() != Some("Ignore"))
    {
        true => {
            "with failurePolicy Fail, every create and update of a GitProviderConnection is refused until it answers"
        }
        false => "with failurePolicy Ignore, connections are stored unchecked until it answers",
    };
    let service = found
        .config
        .webhooks
        .iter()
        .flatten()
        .find_map(|w| w.client_config.service.as_ref())
        .map(|s| (s.namespace.clone(), s.name.clone()))
        .unwrap_or_else(|| (args.namespace.clone(), "gitprovider-operator-webhook".to_owned()));
    if (200..300).contains(&status) {
        return if warnings.iter().any(|w| w.contains(HTTP_WARNING)) {
            Line::ok(
                WEBHOOK_ANSWERS,
                format!("the webhook answers: a dry-run create in {namespace} was allowed with its warning"),
            )
        } else {
            Line::fail(
                WEBHOOK_ANSWERS,
                format!("the API server admitted a dry-run create in {namespace} without calling the webhook"),
                "the webhook's namespaceSelector or objectSelector leaves it out: pass --probe-namespace with a \
                 namespace it covers (or the configuration is seconds old: run doctor again)",
            )
        };
    }
    if message.contains("admission webhook") && message.contains("denied the request") {
        return Line::ok(
            WEBHOOK_ANSWERS,
            format!("the webhook answers: it denied the dry-run probe in {namespace} ({message})"),
        );
    }
    if message.contains("failed calling webhook") {
        let check = if message.contains("x509") || message.contains("certificate") {
            "caBundle is not the CA of the certificate the webhook serves; see the webhook-configuration line's fix"
                .to_owned()
        } else {
            let (ns, svc) = service;
            format!(
                "check the operator's pods (kubectl -n {ns} get pods -l app.kubernetes.io/name=gitprovider-operator), \
                 the Service's endpoints (kubectl -n {ns} get endpointslices -l kubernetes.io/service-name={svc}) \
                 and NetworkPolicies between the API server and the webhook port"
            )
        };
        return Line::fail(
            WEBHOOK_ANSWERS,
            format!("the API server cannot call the webhook: {message}"),
            format!("{check}; {consequence}"),
        );
    }
    match status {
        404 => Line::fail(
            WEBHOOK_ANSWERS,
            format!("the probe's namespace {namespace} does not exist"),
            "pass --probe-namespace with an existing namespace the webhook covers",
        ),
        403 => Line::fail(
            WEBHOOK_ANSWERS,
            format!("you may not create GitProviderConnections in {namespace}, even as a dry run: {message}"),
            "run doctor as a cluster admin, or pass --probe-namespace with a namespace where you may",
        ),
        _ => Line::fail(
            WEBHOOK_ANSWERS,
            format!("the API server refused the dry-run probe in {namespace} before the webhook ({status}): {message}"),
            "see the crd line: the installed CRD may not be the one this binary writes",
        ),
    }
}

/// A JSON request through `client`: its status, Warning headers (what the API server and the
/// admission webhooks said beside the verdict) and JSON body (null when it is not JSON).
pub async fn request_with_warnings(
    client: &Client,
    method: &str,
    path: &str,
    body: &Value,
) -> Result<(u16, Vec<String>, Value), kube::Error> {
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body.to_string().into_bytes()))
        .map_err(kube::Error::HttpError)?;
    let response = client.send(request).await?;
    let status = response.status().as_u16();
    let warnings = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let bytes = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20)
        .await
        .unwrap_or_default();
    Ok((status, warnings, serde_json::from_slice(&bytes).unwrap_or(Value::Null)))
}
