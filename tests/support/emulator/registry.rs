//! What the emulator serves: a few built-in resource types plus the ones
//! `CustomResourceDefinition` objects define, each in one version. Routing and storage consult
//! this.

use std::sync::Arc;

use serde_json::Value;

use super::error::GroupResource;

/// Where a resource's objects live: its group and plural.
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
    BuiltIn,
    CustomResourceDefinition,
    /// A resource defined by a CRD.
    Custom,
}

#[derive(Clone, Debug)]
pub struct ResourceDef {
    pub group: String,
    /// The one version served.
    pub version: String,
    pub plural: String,
    pub kind: String,
    pub namespaced: bool,
    pub status_subresource: bool,
    pub behaviour: Kind,
    pub storage: StorageKey,
}

impl ResourceDef {
    pub fn group_resource(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.plural)
    }

    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `metadata.generation` is maintained (for custom resources only: the real server does for
    /// CRDs and webhook configurations too), and bumped when anything outside `metadata` (and
    /// `status`, with a status subresource) changes.
    pub fn tracks_generation(&self) -> bool {
        self.behaviour == Kind::Custom
    }
}

fn builtin(group: &str, plural: &str, kind: &str, namespaced: bool, behaviour: Kind) -> ResourceDef {
    ResourceDef {
        group: group.into(),
        version: "v1".into(),
        plural: plural.into(),
        kind: kind.into(),
        namespaced,
        status_subresource: false,
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
    /// What the operator reads and writes besides its own resource, without leader election
    /// and with its webhook certificate from files (as the benchmark runs it): Secrets and
    /// ConfigMaps and `events.k8s.io` Events; and CRDs, which define its resource.
    pub fn with_builtins() -> Self {
        Self {
            defs: [
                builtin("", "secrets", "Secret", true, Kind::BuiltIn),
                builtin("", "configmaps", "ConfigMap", true, Kind::BuiltIn),
                builtin("events.k8s.io", "events", "Event", true, Kind::BuiltIn),
                builtin(
                    "apiextensions.k8s.io",
                    "customresourcedefinitions",
                    "CustomResourceDefinition",
                    false,
                    Kind::CustomResourceDefinition,
                ),
            ]
            .into_iter()
            .map(Arc::new)
            .collect(),
        }
    }

    /// The resource served at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&Arc<ResourceDef>> {
        self.defs
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
    }

    /// The resource defined by the CRD object `crd` (in its storage version), or why it
    /// defines none.
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
        let versions = spec.get("versions").and_then(Value::as_array);
        let version = versions
            .into_iter()
            .flatten()
            .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .ok_or("spec.versions: must have exactly one version marked as storage version")?;
        Ok(ResourceDef {
            storage: StorageKey::new(&group, &plural),
            group,
            version: s(version.get("name")),
            plural,
            kind,
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            status_subresource: version.pointer("/subresources/status").is_some(),
            behaviour: Kind::Custom,
        })
    }

    /// Adds or replaces the resource a CRD defines.
    pub fn upsert_custom(&mut self, def: ResourceDef) {
        self.defs
            .retain(|d| !(d.behaviour == Kind::Custom && d.group == def.group && d.plural == def.plural));
        self.defs.push(Arc::new(def));
    }
}
