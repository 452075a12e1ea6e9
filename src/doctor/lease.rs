//! The operator's leader-election Lease: present, held, and renewed within its duration (the
//! rule src/leader.rs follows: anyone may take it once renewTime + leaseDurationSeconds passed).

use super::cluster::api_failure;
use super::report::{LEASE, Line};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};

pub async fn check(client: &Client, namespace: &str, name: &str) -> Line {
    let what = format!("Lease {namespace}/{name}");
    let logs = format!(
        "kubectl -n {namespace} get pods -l app.kubernetes.io/name=gitprovider-operator; \
         kubectl -n {namespace} logs deploy/gitprovider-operator"
    );
    let lease = match Api::<Lease>::namespaced(client.clone(), namespace).get_opt(name).await {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            return Line::fail(
                LEASE,
                format!("{what} does not exist: no operator has run with --leader-elect here"),
                format!("start the operator (is it in {namespace}? pass --namespace/--leader-election-id); {logs}"),
            );
        }
        Err(error) => return api_failure(LEASE, &format!("cannot read {what}"), &error),
    };
    judge(&what, lease.spec.unwrap_or_default(), jiff::Timestamp::now(), &logs)
}

fn judge(what: &str, spec: k8s_openapi::api::coordination::v1::LeaseSpec, now: jiff::Timestamp, logs: &str) -> Line {
    let holder = spec.holder_identity.filter(|h| !h.is_empty());
    let Some(holder) = holder else {
        return Line::fail(
            LEASE,
            format!("{what} has no holder: no replica leads, so no connection is verified"),
            logs.to_owned(),
        );
    };
    let Some(renewed) = spec.renew_time.map(|t| t.0) else {
        return Line::fail(
            LEASE,
            format!("{what} held by {holder} was never renewed"),
            logs.to_owned(),
        );
    };
    let duration = jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15).max(1)));
    let age = now.duration_since(renewed);
    let ago = format!("{}s ago", age.as_secs().max(0));
    if renewed + duration < now {
        Line::fail(
            LEASE,
            format!(
                "{what} is stale: {holder} last renewed it {ago} (it lasts {}s), so no replica leads",
                duration.as_secs()
            ),
            format!("the holder stopped or cannot reach the API server: {logs}"),
        )
    } else {
        Line::ok(LEASE, format!("{what} held by {holder}, renewed {ago}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn spec(holder: Option<&str>, renewed_ago_secs: i64, now: jiff::Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - jiff::SignedDuration::from_secs(renewed_ago_secs))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn fresh_held_leases_pass_and_stale_or_empty_ones_fail() {
        let now = jiff::Timestamp::now();
        let ok = judge("Lease a/b", spec(Some("pod-1"), 3, now), now, "logs");
        assert_eq!(ok.text(), "OK   lease: Lease a/b held by pod-1, renewed 3s ago");
        let stale = judge("Lease a/b", spec(Some("pod-1"), 60, now), now, "logs");
        assert!(
            stale.text().contains("is stale: pod-1 last renewed it 60s ago"),
            "{}",
            stale.text()
        );
        let empty = judge("Lease a/b", spec(Some(""), 1, now), now, "logs");
        assert!(empty.text().contains("has no holder"), "{}", empty.text());
    }
}
