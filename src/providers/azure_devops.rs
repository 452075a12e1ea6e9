//! Azure DevOps: Services (`https://dev.azure.com/ORG`, `https://ORG.visualstudio.com`) and
//! Server / TFS (`https://host/tfs/COLLECTION`, or any collection URL).
//!
//! Documentation followed:
//! - PAT authentication: <https://learn.microsoft.com/en-us/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate>
//!   — HTTP Basic with an empty user name and the PAT as password (`base64(":" + PAT)`).
//! - Connection data: <https://learn.microsoft.com/en-us/javascript/api/azure-devops-extension-api/connectiondata>
//!   — `GET {collection}/_apis/connectionData` answers `authenticatedUser` (an identity:
//!   `id`, `providerDisplayName`, `properties.Account.$value` = the sign-in name), `instanceId`
//!   and `deploymentType` (`hosted` for Services, `onPremises` for Server).
//! - Projects: <https://learn.microsoft.com/en-us/rest/api/azure/devops/core/projects/list>
//!   — `GET {collection}/_apis/projects?$top=1&api-version=...` needs the "Project and Team
//!   (Read)" scope (`vso.project`); a PAT without it is refused with 401/403 although it
//!   authenticates, which is how InsufficientScope is told apart.
//! - API versions: <https://learn.microsoft.com/en-us/azure/devops/integrate/concepts/rest-api-versioning>
//!   — 5.0 is served by Services and Server 2019+, older TFS answers 400 for it; the projects
//!   call then falls back to 2.0 (TFS 2015+).
//! - Quirks, from Microsoft's own issue trackers: an invalid PAT on Services can answer
//!   **HTTP 203 with an HTML sign-in page** instead of 401
//!   (<https://github.com/MicrosoftDocs/vsts-rest-api-specs/issues/97>,
//!   <https://github.com/microsoft/azure-devops-auth-samples/issues/52>) or a 302 to a
//!   `_signin` page on another host; both are Unauthorized, and HTML where JSON was expected is
//!   never success. An expired PAT answers 401 with
//!   `X-TFS-ServiceError: Access%20Denied%3A%20The%20Personal%20Access%20Token%20used%20has%20expired.`
//!   and the same message in a JSON body
//!   (<https://github.com/microsoft/azure-pipelines-agent/issues/1559>,
//!   <https://github.com/microsoft/azure-pipelines-tasks/issues/18732>): TokenExpired.
//!
//! # Requests per verification: 2, in one round trip
//!
//! `GET _apis/connectionData` (who, and hosted or on-premises) and `GET _apis/projects?$top=1`
//! (the scope check: connection data answers any PAT) do not depend on each other and go out
//! together. Which API version the projects call uses is an instance fact: an instance that
//! refused 5.0 with 400 is remembered as one that serves 2.0 (for
//! [`super::memory::INSTANCE_FACTS_TTL`]), so only its first verification per interval needs a
//! second round trip.
//!
//! Not revealed, so left out: the PAT's scopes and expiry (the token lifecycle API needs an
//! Entra ID token, not a PAT) and the server version (no documented response header or API
//! carries it).

use super::http::{Auth, HttpClient, HttpResponse};
use super::memory::InstanceFacts;
use super::request::{Api, message, remembered};
use super::{Facts, Provider, Target, Verification, non_empty};
use crate::api::{AuthenticatedUser, Deployment, ProviderKind, ReadyReason};
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

pub struct AzureDevOps;

const KIND: ProviderKind = ProviderKind::AzureDevOps;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConnectionData {
    #[serde(default)]
    authenticated_user: Option<Identity>,
    #[serde(default)]
    deployment_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Identity {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    provider_display_name: Option<String>,
    #[serde(default)]
    properties: Option<serde_json::Value>,
}

impl Identity {
    /// `properties.Account.$value`: the sign-in name (an e-mail on Services, often
    /// `DOMAIN\user` on Server).
    fn account(&self) -> Option<String> {
        let value = self.properties.as_ref()?.get("Account")?.get("$value")?.as_str()?;
        non_empty(Some(value.to_owned()))
    }
}

fn is_services_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "dev.azure.com" || host.ends_with(".visualstudio.com")
}

/// Decodes `%XX` escapes (as in `X-TFS-ServiceError`); anything malformed stays as it is.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    (byte as char).to_digit(16).map(|d| d as u8)
}

/// What the service said about a refusal: `X-TFS-ServiceError` or the JSON body's `message`.
pub fn service_error(response: &HttpResponse) -> String {
    match response.header("x-tfs-serviceerror") {
        Some(header) => super::excerpt(&percent_decode(header)),
        None => message(response),
    }
}

fn looks_like_sign_in(location: &str) -> bool {
    let location = location.to_ascii_lowercase();
    ["signin", "sign-in", "login", "oauth2/authorize", "_signedin"]
        .iter()
        .any(|needle| location.contains(needle))
}

/// The answers that mean "the token was not accepted", whatever the call.
fn not_accepted(what: &str, response: &HttpResponse) -> Option<Verification> {
    let status = response.status;
    if status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
        return Some(Verification::failed(
            ReadyReason::Unauthorized,
            format!(
                "Azure DevOps answered {what} with HTTP 203 and a sign-in page: the personal access token was not accepted (invalid, revoked, or for another organization); create a new one and update the Secret"
            ),
        ));
    }
    if status.is_redirection() && response.location().is_some_and(looks_like_sign_in) {
        return Some(Verification::failed(
            ReadyReason::Unauthorized,
            format!(
                "Azure DevOps redirected {what} to a sign-in page (HTTP {}): the personal access token was not accepted; create a new one and update the Secret",
                status.as_u16()
            ),
        ));
    }
    if status == StatusCode::UNAUTHORIZED {
        let said = service_error(response);
        if said.to_ascii_lowercase().contains("expired") {
            return Some(Verification::failed(
                ReadyReason::TokenExpired,
                format!("Azure DevOps says: {said} Create a new personal access token and update the Secret"),
            ));
        }
        let said = super::said(&said);
        return Some(Verification::failed(
            ReadyReason::Unauthorized,
            format!(
                "Azure DevOps rejected the personal access token on {what} (HTTP 401{said}); check that the Secret holds a valid PAT for this organization or collection"
            ),
        ));
    }
    None
}

/// The organization's or collection's API at `spec.url`, the PAT sent as HTTP Basic with an
/// empty user name.
pub fn api<'a>(http: &'a HttpClient, target: &'a Target) -> Api<'a> {
    let auth = Auth::Basic {
        user: "",
        token: &target.token,
    };
    Api::new(KIND, http, target, auth)
}

const PROJECTS_5_0: &str = "/_apis/projects?$top=1&api-version=5.0";
const PROJECTS_2_0: &str = "/_apis/projects?$top=1&api-version=2.0";

async fn verify(api: Api<'_>) -> Result<Verification, Verification> {
    let (http, target) = (api.http, api.target);
    let key = api.instance_key();
    let mut facts = Facts::on(deployment(&target.base_url));

    // One round trip: who the token is, and a read that needs a scope, together; the projects
    // call in the API version the instance is known to serve.
    let legacy = http.memory().known_facts(key).is_some_and(|facts| facts.legacy_api);
    let (connection, projects) = futures::join!(
        api.get("/_apis/connectionData?connectOptions=none"),
        api.get(if legacy { PROJECTS_2_0 } else { PROJECTS_5_0 }),
    );

    // 1. Who the token is, and which product answers.
    const CONNECTION: &str = "GET _apis/connectionData";
    let response = api.answered(connection)?;
    if let Some(rejected) = not_accepted(CONNECTION, &response) {
        return Err(rejected.with_facts(facts));
    }
    if response.status != StatusCode::OK {
        return Err(api.unexpected(CONNECTION, &response));
    }
    let data: ConnectionData = api.json(CONNECTION, &response)?;
    match data.deployment_type.as_deref().map(str::to_ascii_lowercase).as_deref() {
        Some("hosted") => facts.deployment = Some(Deployment::Cloud),
        Some("onpremises") => facts.deployment = Some(Deployment::SelfHosted),
        _ => {}
    }
    let Some(identity) = data
        .authenticated_user
        .filter(|u| u.id.as_deref().is_some_and(|id| !id.is_empty()))
    else {
        return Err(api.unexpected(CONNECTION, &response));
    };
    let account = identity.account();
    let display_name = non_empty(identity.provider_display_name.clone());
    facts.user = Some(AuthenticatedUser {
        username: account.clone(),
        display_name: display_name.clone(),
        email: account.clone().filter(|a| a.contains('@') && !a.contains('\\')),
    });
    let who = account
        .or(display_name)
        .unwrap_or_else(|| "an unnamed identity".to_owned());

    // 2. A read that needs a scope: the first project.
    const PROJECTS: &str = "GET _apis/projects";
    let failed = |verification: Verification| verification.with_facts(facts.clone());
    let mut response = api.answered(projects).map_err(failed)?;
    if response.status == StatusCode::BAD_REQUEST && !legacy {
        // TFS older than 2019 does not serve api-version 5.0: remembered for the instance.
        response = api.answered(api.get(PROJECTS_2_0).await).map_err(failed)?;
        if response.status == StatusCode::OK {
            http.memory().remember_facts(
                key,
                InstanceFacts {
                    legacy_api: true,
                    ..InstanceFacts::default()
                },
            );
        }
    } else if response.status == StatusCode::BAD_REQUEST {
        // Upgraded since: the current version next time.
        http.memory().forget_instance(key);
    }
    let status = response.status;
    if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || status == StatusCode::NON_AUTHORITATIVE_INFORMATION
    {
        let said = service_error(&response);
        if status == StatusCode::UNAUTHORIZED && said.to_ascii_lowercase().contains("expired") {
            return Err(not_accepted(PROJECTS, &response)
                .unwrap_or_else(|| Verification::failed(ReadyReason::TokenExpired, said))
                .with_facts(facts));
        }
        return Err(Verification::refused(
            format_args!("the token authenticates as {who} but may not list projects"),
            status,
            &said,
            "give the PAT the Project and Team (Read) scope, or create a new one with it",
        )
        .with_facts(facts));
    }
    if let Some(rejected) = not_accepted(PROJECTS, &response) {
        return Err(rejected.with_facts(facts));
    }
    if status != StatusCode::OK || response.json::<serde_json::Value>().is_err() {
        return Err(api.unexpected(PROJECTS, &response).with_facts(facts));
    }

    let on = match facts.deployment {
        Some(Deployment::Cloud) => format!("Azure DevOps Services ({})", target.base_url),
        _ => format!("Azure DevOps Server ({})", target.base_url),
    };
    Ok(Verification::authenticated(who, on, facts))
}

/// Whether `base_url` is the provider's cloud service or a self-hosted server.
pub fn deployment(base_url: &Url) -> Deployment {
    Deployment::cloud_if(base_url.host_str().is_some_and(is_services_host))
}

impl Provider for AzureDevOps {
    fn check_spec(&self, base_url: &Url, _username: Option<&str>) -> Result<(), String> {
        let host = base_url.host_str().unwrap_or_default().to_ascii_lowercase();
        if host == "dev.azure.com" {
            let segments = base_url.path().split('/').filter(|s| !s.is_empty()).count();
            if segments == 0 {
                return Err(
                    "an Azure DevOps Services url names the organization: use https://dev.azure.com/ORGANIZATION"
                        .to_owned(),
                );
            }
            if segments > 1 {
                return Err(format!(
                    "url {base_url} goes beyond the organization: use https://dev.azure.com/ORGANIZATION, without the project"
                ));
            }
        }
        Ok(())
    }

    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification> {
        Box::pin(remembered(api(http, target), verify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::url;

    #[test]
    fn dev_azure_com_needs_the_organization() {
        assert!(AzureDevOps.check_spec(&url("https://dev.azure.com"), None).is_err());
        assert!(AzureDevOps.check_spec(&url("https://dev.azure.com/org"), None).is_ok());
        let err = AzureDevOps
            .check_spec(&url("https://dev.azure.com/org/project"), None)
            .unwrap_err();
        assert!(err.contains("without the project"), "{err}");
        assert!(AzureDevOps.check_spec(&url("https://tfs.example.com"), None).is_ok());
    }

    #[test]
    fn service_error_header_is_decoded() {
        assert_eq!(
            percent_decode("Access%20Denied%3A%20The%20Personal%20Access%20Token%20used%20has%20expired."),
            "Access Denied: The Personal Access Token used has expired."
        );
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }

    #[test]
    fn sign_in_locations() {
        assert!(looks_like_sign_in(
            "https://spsprodweu5.vssps.visualstudio.com/_signin?realm=dev.azure.com"
        ));
        assert!(!looks_like_sign_in("https://dev.azure.com/org/_apis/connectionData"));
    }
}
