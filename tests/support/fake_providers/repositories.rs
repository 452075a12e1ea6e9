//! Repositories the fakes hold, and which of them a token may read: shared by every fake, each
//! of which answers its own repository endpoint the way its vendor documents it (see the
//! provider files under `src/repositories/`).
//!
//! ```ignore
//! gitlab.add_repository("app-team/web");
//! gitlab.add_token("t", TokenSpec::jane_doe().reads(["app-team/web"]).forbidden_on("app-team/ops"));
//! ```

use super::TokenSpec;
use axum::extract::Request;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// A repository on a fake instance.
#[derive(Clone, Debug)]
pub struct FakeRepo {
    /// As created (case kept); look-ups ignore ASCII case, as the providers do.
    pub path: String,
    /// `None`: an empty repository (no branch yet).
    pub default_branch: Option<String>,
    pub private: bool,
    /// Azure DevOps: a disabled repository.
    pub disabled: bool,
}

impl FakeRepo {
    pub fn new(path: &str) -> FakeRepo {
        FakeRepo {
            path: path.to_owned(),
            default_branch: Some("main".to_owned()),
            private: true,
            disabled: false,
        }
    }
}

/// Repositories by lower-cased path.
pub type Repos = Arc<Mutex<BTreeMap<String, FakeRepo>>>;

/// What one token may do with one repository, when the token lists any.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Read,
    /// The token sees the repository but may not read it (a removed permission, a missing scope).
    Forbidden,
    /// GitHub: an organisation enforcing SAML SSO for which the token is not authorised.
    SsoRequired,
}

/// What a fake should answer for one repository and one token.
#[derive(Clone, Debug)]
pub enum Seen {
    /// Does not exist, or the token cannot see it: the vendor's 404.
    Missing,
    Read(FakeRepo),
    Forbidden(FakeRepo),
    SsoRequired(FakeRepo),
}

impl TokenSpec {
    /// The token reads these repositories (and, once any access is listed, sees no others).
    pub fn reads<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, paths: I) -> TokenSpec {
        let access = self.repositories.get_or_insert_with(HashMap::new);
        for path in paths {
            access.insert(path.as_ref().to_ascii_lowercase(), Access::Read);
        }
        self
    }

    /// The token sees `path` but may not read it.
    pub fn forbidden_on(mut self, path: &str) -> TokenSpec {
        self.repositories
            .get_or_insert_with(HashMap::new)
            .insert(path.to_ascii_lowercase(), Access::Forbidden);
        self
    }

    /// GitHub: `path`'s organisation wants this token authorised for SAML SSO.
    pub fn sso_required_on(mut self, path: &str) -> TokenSpec {
        self.repositories
            .get_or_insert_with(HashMap::new)
            .insert(path.to_ascii_lowercase(), Access::SsoRequired);
        self
    }

    /// No repository access at all (a token that lost it).
    pub fn reads_nothing(mut self) -> TokenSpec {
        self.repositories = Some(HashMap::new());
        self
    }
}

/// Resolves `path` on the fake that received `request` for the token `spec`.
pub fn resolve(request: &Request, spec: &TokenSpec, path: &str) -> Seen {
    let Some(repos) = request.extensions().get::<Repos>() else {
        return Seen::Missing;
    };
    let key = path.to_ascii_lowercase();
    let Some(repo) = repos.lock().unwrap().get(&key).cloned() else {
        return Seen::Missing;
    };
    match &spec.repositories {
        None => Seen::Read(repo),
        Some(access) => match access.get(&key) {
            None => Seen::Missing,
            Some(Access::Read) => Seen::Read(repo),
            Some(Access::Forbidden) => Seen::Forbidden(repo),
            Some(Access::SsoRequired) => Seen::SsoRequired(repo),
        },
    }
}

/// A percent-decoded path segment.
pub fn decode(segment: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}
