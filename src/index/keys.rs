//! How the index names things: a connection ([`ObjectKey`]), an instance name within the
//! uniqueness scope ([`InstanceKey`]), who holds it ([`Holder`]) and what a connection references
//! ([`RefKind`]).

use crate::api::{GitProviderConnection, ProviderKind};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;

/// Where instance names must be unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum UniquenessScope {
    /// Unique within each namespace.
    #[default]
    Namespace,
    /// Unique in the whole cluster.
    Cluster,
}

/// The uniqueness rule's normal form of an instance name: trimmed, ASCII lower case.
pub fn normalize_instance_name(name: &str) -> String {
    name.trim().to_ascii_lowercase()
}

/// A connection by namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> ObjectKey {
        ObjectKey {
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    pub fn of(conn: &GitProviderConnection) -> ObjectKey {
        ObjectKey::new(conn.namespace().unwrap_or_default(), conn.name_any())
    }

    /// The reference kube's reflector store and applier know the connection by.
    pub fn object_ref(&self) -> ObjectRef<GitProviderConnection> {
        ObjectRef::new(&self.name).within(&self.namespace)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// The identity of an instance name within the uniqueness scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InstanceKey {
    /// The namespace, or `None` when the scope is the cluster.
    pub scope: Option<String>,
    pub provider: ProviderKind,
    pub name: String,
}

impl InstanceKey {
    pub fn new(scope: UniquenessScope, namespace: &str, provider: ProviderKind, instance_name: &str) -> InstanceKey {
        InstanceKey {
            scope: match scope {
                UniquenessScope::Namespace => Some(namespace.to_owned()),
                UniquenessScope::Cluster => None,
            },
            provider,
            name: normalize_instance_name(instance_name),
        }
    }
}

/// A connection holding an instance name. Ordered by age: the older one keeps the name
/// (earlier creationTimestamp, then smaller uid).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    /// Seconds since the epoch; `i64::MAX` when unknown so unknown sorts last.
    pub created: i64,
    pub uid: String,
    pub key: ObjectKey,
}

impl Holder {
    pub fn of(conn: &GitProviderConnection) -> Holder {
        Holder {
            created: conn
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(i64::MAX, |t| t.0.as_second()),
            uid: conn.uid().unwrap_or_default(),
            key: ObjectKey::of(conn),
        }
    }
}

/// Which kind of object a connection reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefKind {
    Secret,
    ConfigMap,
}
