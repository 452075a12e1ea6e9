//! Where a verification becomes a status: the Ready and TokenExpiringSoon conditions, what the
//! provider revealed, and whether anything changed enough to be written.

use crate::api::{Deployment, GitProviderConnectionStatus, READY, ReadyReason, RepositoryStatus, TOKEN_EXPIRING_SOON};
use crate::providers::{Facts, Verification};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use serde::Serialize;
use std::time::Duration;

/// Reasons of the TokenExpiringSoon condition.
pub const TOKEN_VALID: &str = "TokenValid";

/// The inputs of one status computation besides the verification.
#[derive(Debug, Clone, Copy)]
pub struct StatusContext<'a> {
    pub previous: Option<&'a GitProviderConnectionStatus>,
    pub generation: Option<i64>,
    pub now: jiff::Timestamp,
    /// TokenExpiringSoon turns True when the token expires within this long.
    pub expiry_warning: Duration,
    /// Whether the instance was asked (false for spec, Secret, duplicate and suspend outcomes).
    pub contacted_provider: bool,
    /// What the look-ups of spec.repositories found (`None`: none listed, or not looked up
    /// because the token itself failed).
    pub repositories: Option<&'a [RepositoryStatus]>,
}

/// Seconds precision, as Kubernetes serialises times.
pub fn truncate_to_seconds(ts: jiff::Timestamp) -> jiff::Timestamp {
    jiff::Timestamp::from_second(ts.as_second()).unwrap_or(ts)
}

/// Computes the next status.
pub fn next_status(ctx: StatusContext<'_>, verification: &Verification) -> GitProviderConnectionStatus {
    let now = truncate_to_seconds(ctx.now);
    let previous = ctx.previous.cloned().unwrap_or_default();
    let mut status = GitProviderConnectionStatus {
        observed_generation: ctx.generation,
        last_verified_time: if ctx.contacted_provider {
            Some(Time(now))
        } else {
            previous.last_verified_time.clone()
        },
        ..GitProviderConnectionStatus::default()
    };
    // Suspended: nothing was asked, so what was learned before still describes the token best.
    let facts = if verification.reason == ReadyReason::Suspended {
        Facts {
            user: previous.authenticated_user.clone(),
            server_version: previous.server_version.clone(),
            deployment: previous.deployment,
            scopes: previous.token_scopes.clone(),
            expires_at: previous.token_expires_at.as_ref().map(|t| t.0),
        }
    } else {
        verification.facts.clone()
    };
    status.authenticated_user = facts.user.filter(|u| u.username.is_some() || u.email.is_some());
    status.server_version = facts.server_version;
    status.deployment = facts.deployment;
    status.token_scopes = facts.scopes;
    status.token_expires_at = facts.expires_at.map(|t| Time(truncate_to_seconds(t)));
    // Suspended: the last look-ups still say best what the token could read.
    status.repositories = if verification.reason == ReadyReason::Suspended {
        previous.repositories.clone()
    } else {
        ctx.repositories.map(<[RepositoryStatus]>::to_vec)
    };
    status.repository_summary = status.repositories.as_deref().map(crate::repositories::summary);

    let ready = Condition {
        type_: READY.to_owned(),
        status: verification.reason.condition_status().to_owned(),
        reason: verification.reason.as_str().to_owned(),
        message: verification.message.clone(),
        observed_generation: ctx.generation,
        last_transition_time: Time(now),
    };
    status
        .conditions
        .push(keep_transition_time(ready, &previous.conditions));

    if let Some(expires_at) = &status.token_expires_at {
        let warning = jiff::SignedDuration::try_from(ctx.expiry_warning).unwrap_or(jiff::SignedDuration::MAX);
        let remaining = expires_at.0.duration_since(now);
        let expiring = remaining < warning;
        let threshold = humanize(ctx.expiry_warning);
        let (cond_status, reason, message) = if remaining <= jiff::SignedDuration::ZERO {
            (
                "True",
                TOKEN_EXPIRING_SOON,
                format!("the token expired at {}", expires_at.0),
            )
        } else if expiring {
            (
                "True",
                TOKEN_EXPIRING_SOON,
                format!(
                    "the token expires at {}, within the {threshold} warning period; rotate it",
                    expires_at.0
                ),
            )
        } else {
            ("False", TOKEN_VALID, format!("the token expires at {}", expires_at.0))
        };
        let condition = Condition {
            type_: TOKEN_EXPIRING_SOON.to_owned(),
            status: cond_status.to_owned(),
            reason: reason.to_owned(),
            message,
            observed_generation: ctx.generation,
            last_transition_time: Time(now),
        };
        status
            .conditions
            .push(keep_transition_time(condition, &previous.conditions));
    }
    status
}

/// `lastTransitionTime` changes only when the condition's status changes.
fn keep_transition_time(mut condition: Condition, previous: &[Condition]) -> Condition {
    if let Some(old) = previous.iter().find(|c| c.type_ == condition.type_)
        && old.status == condition.status
    {
        condition.last_transition_time = old.last_transition_time.clone();
    }
    condition
}

fn humanize(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs.is_multiple_of(86_400) && secs > 0 {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3600) && secs > 0 {
        format!("{}h", secs / 3600)
    } else {
        format!("{secs}s")
    }
}

/// Whether `next` says something `previous` does not, ignoring `lastVerifiedTime`.
pub fn materially_changed(previous: Option<&GitProviderConnectionStatus>, next: &GitProviderConnectionStatus) -> bool {
    let Some(previous) = previous else {
        return true;
    };
    let strip = |s: &GitProviderConnectionStatus| GitProviderConnectionStatus {
        last_verified_time: None,
        ..s.clone()
    };
    strip(previous) != strip(next)
}

/// Whether the Ready condition changed status or reason (worth an Event).
pub fn ready_transition(previous: Option<&GitProviderConnectionStatus>, next: &GitProviderConnectionStatus) -> bool {
    let find = |s: &GitProviderConnectionStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone()))
    };
    previous.and_then(find) != find(next)
}

/// A JSON merge patch that sets the status to exactly `status`: fields it lacks are nulled, so
/// facts a new verification did not reveal disappear instead of lingering. Typed (every field
/// written, `None` as `null`) so that the patch is serialised once, straight from the status.
pub fn status_merge_patch(status: &GitProviderConnectionStatus) -> StatusPatch<'_> {
    StatusPatch {
        status: StatusFields {
            observed_generation: status.observed_generation,
            last_verified_time: status.last_verified_time.as_ref(),
            authenticated_user: status.authenticated_user.as_ref().map(|user| UserFields {
                username: user.username.as_deref(),
                display_name: user.display_name.as_deref(),
                email: user.email.as_deref(),
            }),
            server_version: status.server_version.as_deref(),
            deployment: status.deployment,
            token_scopes: status.token_scopes.as_deref(),
            token_expires_at: status.token_expires_at.as_ref(),
            repositories: status.repositories.as_deref(),
            repository_summary: status.repository_summary.as_deref(),
            conditions: (!status.conditions.is_empty()).then_some(status.conditions.as_slice()),
        },
    }
}

/// See [`status_merge_patch`].
#[derive(Debug, Serialize)]
pub struct StatusPatch<'a> {
    status: StatusFields<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusFields<'a> {
    observed_generation: Option<i64>,
    last_verified_time: Option<&'a Time>,
    authenticated_user: Option<UserFields<'a>>,
    server_version: Option<&'a str>,
    deployment: Option<Deployment>,
    token_scopes: Option<&'a [String]>,
    token_expires_at: Option<&'a Time>,
    // A merge patch replaces a list whole, so the entries need no nulling of their own.
    repositories: Option<&'a [RepositoryStatus]>,
    repository_summary: Option<&'a str>,
    conditions: Option<&'a [Condition]>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UserFields<'a> {
    username: Option<&'a str>,
    display_name: Option<&'a str>,
    email: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{AuthenticatedUser, Deployment};
    use serde_json::Value;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn ctx<'a>(previous: Option<&'a GitProviderConnectionStatus>, now: &str) -> StatusContext<'a> {
        StatusContext {
            previous,
            generation: Some(4),
            now: at(now),
            expiry_warning: Duration::from_secs(14 * 86_400),
            contacted_provider: true,
            repositories: None,
        }
    }

    fn verified(expires: Option<&str>) -> Verification {
        Verification::verified(
            "authenticated as jdoe on GitLab 17.5.1",
            Facts {
                user: Some(AuthenticatedUser {
                    username: Some("jdoe".into()),
                    display_name: Some("Jane Doe".into()),
                    email: Some("jdoe@example.com".into()),
                }),
                server_version: Some("17.5.1".into()),
                deployment: Some(Deployment::SelfHosted),
                scopes: Some(vec!["read_api".into()]),
                expires_at: expires.map(at),
            },
        )
    }

    fn condition<'a>(status: &'a GitProviderConnectionStatus, type_: &str) -> &'a Condition {
        status.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn verified_status_carries_facts_and_generation() {
        let status = next_status(
            ctx(None, "2026-11-25T10:00:00.5Z"),
            &verified(Some("2027-01-31T00:00:00Z")),
        );
        assert_eq!(status.observed_generation, Some(4));
        assert_eq!(status.last_verified_time, Some(Time(at("2026-11-25T10:00:00Z"))));
        assert_eq!(status.server_version.as_deref(), Some("17.5.1"));
        assert_eq!(status.token_scopes, Some(vec!["read_api".to_owned()]));
        let ready = condition(&status, READY);
        assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Verified"));
        assert_eq!(ready.observed_generation, Some(4));
        let expiring = condition(&status, TOKEN_EXPIRING_SOON);
        assert_eq!(
            (expiring.status.as_str(), expiring.reason.as_str()),
            ("False", TOKEN_VALID)
        );
    }

    #[test]
    fn expiry_threshold() {
        let soon = next_status(
            ctx(None, "2027-01-20T00:00:00Z"),
            &verified(Some("2027-01-31T00:00:00Z")),
        );
        let c = condition(&soon, TOKEN_EXPIRING_SOON);
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", TOKEN_EXPIRING_SOON));
        assert!(c.message.contains("14d"), "{}", c.message);
        // exactly 14 days left is not yet "within" 14 days
        let edge = next_status(
            ctx(None, "2027-01-17T00:00:00Z"),
            &verified(Some("2027-01-31T00:00:00Z")),
        );
        assert_eq!(condition(&edge, TOKEN_EXPIRING_SOON).status, "False");
        let unknown = next_status(ctx(None, "2027-01-20T00:00:00Z"), &verified(None));
        assert!(unknown.conditions.iter().all(|c| c.type_ != TOKEN_EXPIRING_SOON));
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let first = next_status(ctx(None, "2026-11-25T10:00:00Z"), &verified(None));
        let again = next_status(ctx(Some(&first), "2026-11-25T11:00:00Z"), &verified(None));
        assert_eq!(
            condition(&again, READY).last_transition_time,
            Time(at("2026-11-25T10:00:00Z"))
        );
        assert!(!materially_changed(Some(&first), &again));
        assert!(!ready_transition(Some(&first), &again));

        let rejected = Verification::failed(ReadyReason::Unauthorized, "GitLab rejected the token");
        let failed = next_status(ctx(Some(&again), "2026-11-25T12:00:00Z"), &rejected);
        assert_eq!(
            condition(&failed, READY).last_transition_time,
            Time(at("2026-11-25T12:00:00Z"))
        );
        assert_eq!(condition(&failed, READY).status, "False");
        assert!(
            failed.authenticated_user.is_none(),
            "facts of a failed verification are not kept"
        );
        assert!(materially_changed(Some(&again), &failed));
        assert!(ready_transition(Some(&again), &failed));

        // False -> False with another reason: same status, so the time stays, but it is a transition worth an event
        let gone = Verification::failed(ReadyReason::SecretNotFound, "Secret x not found");
        let mut gone_ctx = ctx(Some(&failed), "2026-11-25T13:00:00Z");
        gone_ctx.contacted_provider = false;
        let missing = next_status(gone_ctx, &gone);
        assert_eq!(
            condition(&missing, READY).last_transition_time,
            Time(at("2026-11-25T12:00:00Z"))
        );
        assert_eq!(missing.last_verified_time, failed.last_verified_time);
        assert!(ready_transition(Some(&failed), &missing));
    }

    #[test]
    fn observed_generation_follows_spec() {
        let first = next_status(ctx(None, "2026-11-25T10:00:00Z"), &verified(None));
        let mut next_ctx = ctx(Some(&first), "2026-11-25T10:05:00Z");
        next_ctx.generation = Some(5);
        let second = next_status(next_ctx, &verified(None));
        assert_eq!(second.observed_generation, Some(5));
        assert_eq!(condition(&second, READY).observed_generation, Some(5));
        assert!(materially_changed(Some(&first), &second));
    }

    #[test]
    fn suspended_keeps_what_was_learned() {
        let first = next_status(
            ctx(None, "2026-11-25T10:00:00Z"),
            &verified(Some("2027-01-31T00:00:00Z")),
        );
        let mut suspend_ctx = ctx(Some(&first), "2026-11-25T11:00:00Z");
        suspend_ctx.contacted_provider = false;
        let suspended = next_status(
            suspend_ctx,
            &Verification::failed(ReadyReason::Suspended, "verification is suspended"),
        );
        assert_eq!(condition(&suspended, READY).status, "Unknown");
        assert_eq!(condition(&suspended, READY).reason, "Suspended");
        assert_eq!(suspended.authenticated_user, first.authenticated_user);
        assert_eq!(suspended.last_verified_time, first.last_verified_time);
        assert_eq!(suspended.token_expires_at, first.token_expires_at);
    }

    #[test]
    fn merge_patch_nulls_what_is_gone() {
        let failed = next_status(
            ctx(None, "2026-11-25T10:00:00Z"),
            &Verification::failed(ReadyReason::Unauthorized, "no"),
        );
        let patch = serde_json::to_value(status_merge_patch(&failed)).unwrap();
        let fields = patch["status"].as_object().unwrap();
        let mut names: Vec<&str> = fields.keys().map(String::as_str).collect();
        names.sort_unstable();
        // What a failure clears, and the fields every patch sets.
        let cleared = [
            "authenticatedUser",
            "serverVersion",
            "deployment",
            "tokenScopes",
            "tokenExpiresAt",
            "repositories",
            "repositorySummary",
        ];
        let mut all = [
            &["observedGeneration", "lastVerifiedTime", "conditions"][..],
            &cleared[..],
        ]
        .concat();
        all.sort_unstable();
        assert_eq!(names, all, "every field is in the patch");
        for gone in cleared {
            assert_eq!(patch["status"][gone], Value::Null, "{gone}");
        }
        assert_eq!(patch["status"]["conditions"][0]["reason"], "Unauthorized");
        let ok = next_status(ctx(None, "2026-11-25T10:00:00Z"), &verified(None));
        let patch = serde_json::to_value(status_merge_patch(&ok)).unwrap();
        assert_eq!(patch["status"]["authenticatedUser"]["username"], "jdoe");
        assert_eq!(patch["status"]["lastVerifiedTime"], "2026-11-25T10:00:00Z");
        // what the patch says, merged into any previous status, is the status itself
        let user = patch["status"]["authenticatedUser"].as_object().unwrap();
        assert!(user.contains_key("displayName") && user.contains_key("email"));
        let mut merged = serde_json::to_value(&failed).unwrap();
        json_patch::merge(&mut merged, &patch["status"]);
        assert_eq!(
            serde_json::from_value::<GitProviderConnectionStatus>(merged).unwrap(),
            ok
        );
        let empty = serde_json::to_value(status_merge_patch(&GitProviderConnectionStatus::default())).unwrap();
        assert_eq!(empty["status"]["conditions"], Value::Null);
    }
}
