//! What the emulator serves: built-in resource types plus the ones `CustomResourceDefinition`
//! objects define. Routing, validation and storage all consult this.

use std::sync::Arc;

use serde_json::Value;

use super::error::GroupResource;

/// Where a resource's objects live. Usually the resource itself; `events.k8s.io/v1` events are
/// stored as core `v1` events (one storage, two API views), as in the real apiserver.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageKey {
    pub group: String,
    pub resource: String,
}

impl StorageKey {
    pub fn new(group: &str, resource: &str) -> Self {
        Self {
            group: group.to_owned(),
            resource: resource.to_owned(),
        }
    }
}

/// Behaviour that differs between resource types (upstream: the registry "strategy").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Secret,
    ConfigMap,
    CoreEvent,
    EventsV1Event,
    Lease,
    CustomResourceDefinition,
    ValidatingWebhookConfiguration,
    /// A resource defined by a CRD.
    Custom,
}

/// One served version of a resource.
#[derive(Clone, Debug)]
pub struct VersionDef {
    pub name: String,
    pub status_subresource: bool,
}

#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub versions: Vec<VersionDef>,
    pub behaviour: Kind,
    pub storage: StorageKey,
}

impl ResourceDef {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn version(&self, v: &str) -> Option<&VersionDef> {
        self.versions.iter().find(|x| x.name == v)
    }

    pub fn api_version(&self, version: &str) -> String {
        if self.group.is_empty() {
            version.to_owned()
        } else {
            format!("{}/{version}", self.group)
        }
    }

    /// `metadata.generation` is maintained (CRs, CRDs, webhook configurations), and bumped
    /// when anything outside `metadata` (and `status`, with a status subresource) changes.
    pub fn tracks_generation(&self) -> bool {
        matches!(
            self.behaviour,
            Kind::Custom | Kind::CustomResourceDefinition | Kind::ValidatingWebhookConfiguration
        )
    }
}

// One positional row per built-in type reads best in `with_builtins`.
#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    status: bool,
    behaviour: Kind,
) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
        versions: vec![VersionDef {
            name: version.into(),
            status_subresource: status,
        }],
        behaviour,
        storage: StorageKey::new(group, plural),
    }
}

/// All served resource types (shared: every request holds the definition it addresses).
#[derive(Clone, Debug)]
pub struct Registry {
    defs: Vec<Arc<ResourceDef>>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut events_v1 = builtin(
            "events.k8s.io",
            "v1",
            "events",
            "Event",
            true,
            false,
            Kind::EventsV1Event,
        );
        events_v1.storage = StorageKey::new("", "events");
        Self {
            defs: vec![
                builtin("", "v1", "secrets", "Secret", true, false, Kind::Secret),
                builtin("", "v1", "configmaps", "ConfigMap", true, false, Kind::ConfigMap),
                builtin("", "v1", "events", "Event", true, false, Kind::CoreEvent),
                events_v1,
                builtin("coordination.k8s.io", "v1", "leases", "Lease", true, false, Kind::Lease),
                builtin(
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                    true,
                    Kind::CustomResourceDefinition,
                ),
                builtin(
                    "admissionregistration.k8s.io",
                    "v1",
                    "validatingwebhookconfigurations",
                    "ValidatingWebhookConfiguration",
                    false,
                    false,
                    Kind::ValidatingWebhookConfiguration,
                ),
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
        }
    }

    pub fn defs(&self) -> &[Arc<ResourceDef>] {
        &self.defs
    }

    /// The resource served at `group/version/plural`, with that version.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<(&Arc<ResourceDef>, &VersionDef)> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.plural == plural)
            .and_then(|d| d.version(version).map(|v| (d, v)))
    }

    /// The resource of an `apiVersion` + `kind` pair (for manifests).
    pub fn find_kind(&self, api_version: &str, kind: &str) -> Option<(&ResourceDef, &VersionDef)> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        self.defs
            .iter()
            .find(|d| d.group == group && d.kind == kind)
            .and_then(|d| d.version(version).map(|v| (&**d, v)))
    }

    /// The resource defined by the CRD object `crd`, or why it defines none.
    pub fn def_from_crd(crd: &Value) -> Result<ResourceDef, String> {
        let spec = crd.get("spec").ok_or("spec is missing")?;
        let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
        let group = s(spec.get("group"));
        let names = spec.get("names").ok_or("spec.names is missing")?;
        let plural = s(names.get("plural"));
        let kind = s(names.get("kind"));
        if group.is_empty() || plural.is_empty() || kind.is_empty() {
            return Err("spec.group, spec.names.plural and spec.names.kind are required".into());
        }
        let mut versions = Vec::new();
        for v in spec.get("versions").and_then(Value::as_array).into_iter().flatten() {
            if v.get("served").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let name = s(v.get("name"));
            if name.is_empty() {
                continue;
            }
            versions.push(VersionDef {
                name,
                status_subresource: v.pointer("/subresources/status").is_some(),
            });
        }
        if versions.is_empty() {
            return Err("spec.versions: must have exactly one version marked as storage version".into());
        }
        versions.sort_by_key(|a| version_priority(&a.name));
        Ok(ResourceDef {
            storage: StorageKey::new(&group, &plural),
            group,
            plural,
            kind,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            versions,
            behaviour: Kind::Custom,
        })
    }

    /// Adds or replaces the resource a CRD defines.
    pub fn upsert_custom(&mut self, def: ResourceDef) {
        self.defs
            .retain(|d| !(d.behaviour == Kind::Custom && d.group == def.group && d.plural == def.plural));
        self.defs.push(Arc::new(def));
    }

    pub fn remove_custom(&mut self, group: &str, plural: &str) {
        self.defs
            .retain(|d| !(d.behaviour == Kind::Custom && d.group == group && d.plural == plural));
    }
}

/// Kubernetes version ordering, as a sort key (smaller sorts first): GA before beta before
/// alpha, higher numbers first, anything not version-shaped last, alphabetically.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(i64, u8, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((major, 0, 0));
        }
        let (class, num) = if let Some(n) = tail.strip_prefix("beta") {
            (1, n)
        } else if let Some(n) = tail.strip_prefix("alpha") {
            (2, n)
        } else {
            return None;
        };
        Some((major, class, num.parse().ok()?))
    };
    match parse(v) {
        Some((major, class, minor)) => (class, -major, -minor, String::new()),
        None => (3, 0, 0, v.to_owned()),
    }
}
