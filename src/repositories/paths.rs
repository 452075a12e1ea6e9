//! The path forms of `spec.repositories`, per provider, for admission and `check` (the CRD
//! itself only bounds the list, refuses exact duplicates and leading or trailing slashes).
//!
//! - GitLab `group/subgroup/project`: two or more segments of letters, digits, `_`, `-`, `.`,
//!   not starting with `-` or `.`, not ending in `.git` or `.atom`
//!   (<https://docs.gitlab.com/user/reserved_names/>, <https://docs.gitlab.com/user/group/#group-names-and-paths>).
//! - GitHub `owner/repo`: an owner of letters, digits and single inner hyphens (at most 39), a
//!   repository of letters, digits, `_`, `-`, `.` (at most 100, not `.` or `..`).
//! - Gitea / Forgejo `owner/repo`: letters, digits, `_`, `-`, `.`.
//! - Bitbucket `PROJECTKEY/repo-slug` (Server / Data Center; a personal project is `~user`) or
//!   `workspace/repo-slug` (Cloud): letters, digits, `_`, `-`, `.`, and `~` to open the first.
//! - Azure DevOps `project/repo`: names may hold spaces, not the characters Azure DevOps
//!   refuses (`\ / : * ? " < > | ; # $ { } , + = [ ]`, control characters), not starting with
//!   `_` or `.`, not ending with `.`
//!   (<https://learn.microsoft.com/en-us/azure/devops/organizations/settings/naming-restrictions>).
//!
//! Duplicates are compared ignoring ASCII case: every provider resolves paths that way.

use crate::api::{MAX_REPOSITORIES, MAX_REPOSITORY_PATH, ProviderKind};

/// Every problem of a `spec.repositories` list, each message naming its entry.
pub fn problems(provider: ProviderKind, paths: &[String]) -> Vec<String> {
    let mut problems = Vec::new();
    if paths.len() > MAX_REPOSITORIES {
        problems.push(format!(
            "spec.repositories has {} entries; at most {MAX_REPOSITORIES} are allowed",
            paths.len()
        ));
    }
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, path) in paths.iter().enumerate() {
        if let Err(why) = check(provider, path) {
            problems.push(format!("spec.repositories[{i}] {path:?}: {why}"));
        }
        if let Some(first) = seen.insert(path.to_ascii_lowercase(), i) {
            problems.push(format!(
                "spec.repositories[{i}] {path:?} duplicates spec.repositories[{first}] {:?}",
                paths[first]
            ));
            seen.insert(path.to_ascii_lowercase(), first);
        }
    }
    problems
}

/// Whether `path` has the provider's form; the error says what is wrong.
pub fn check(provider: ProviderKind, path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("a repository path must not be empty".into());
    }
    if path.len() > MAX_REPOSITORY_PATH {
        return Err(format!("longer than {MAX_REPOSITORY_PATH} characters"));
    }
    if path.starts_with('/') || path.ends_with('/') {
        return Err("no leading or trailing / (paths are relative to the instance)".into());
    }
    let segments: Vec<&str> = path.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err("empty segment (//)".into());
    }
    match provider {
        ProviderKind::GitLab => gitlab(&segments),
        ProviderKind::GitHub => github(&segments),
        ProviderKind::Gitea => owner_repo(&segments, "owner/repo").and_then(|_| gitea(&segments)),
        ProviderKind::Bitbucket => bitbucket(&segments),
        ProviderKind::AzureDevOps => azure_devops(&segments),
    }
}

fn owner_repo(segments: &[&str], form: &str) -> Result<(), String> {
    if segments.len() != 2 {
        return Err(format!("expected {form} (two segments), got {}", segments.len()));
    }
    Ok(())
}

fn plain(segment: &str) -> bool {
    segment
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn gitlab(segments: &[&str]) -> Result<(), String> {
    if segments.len() < 2 {
        return Err("expected group/project or group/subgroup/project".into());
    }
    for segment in segments {
        if !plain(segment) {
            return Err(format!("segment {segment:?} may hold only letters, digits, _, - and ."));
        }
        if segment.starts_with(['-', '.']) {
            return Err(format!("segment {segment:?} must not start with - or ."));
        }
    }
    let last = segments[segments.len() - 1].to_ascii_lowercase();
    if last.ends_with(".git") || last.ends_with(".atom") {
        return Err("the project must not end in .git or .atom (give the path, not the clone URL)".into());
    }
    Ok(())
}

fn github(segments: &[&str]) -> Result<(), String> {
    owner_repo(segments, "owner/repo")?;
    let (owner, repo) = (segments[0], segments[1]);
    let owner_ok = owner.len() <= 39
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--");
    if !owner_ok {
        return Err(format!(
            "owner {owner:?} may hold only letters, digits and single inner hyphens (at most 39)"
        ));
    }
    repo_name(repo, 100)
}

fn repo_name(repo: &str, max: usize) -> Result<(), String> {
    if repo.len() > max || !plain(repo) || repo == "." || repo == ".." {
        return Err(format!(
            "repository {repo:?} may hold only letters, digits, _, - and . (at most {max})"
        ));
    }
    if repo.to_ascii_lowercase().ends_with(".git") {
        return Err("the repository must not end in .git (give the path, not the clone URL)".into());
    }
    Ok(())
}

fn gitea(segments: &[&str]) -> Result<(), String> {
    let owner = segments[0];
    if !plain(owner) || owner.starts_with(['-', '.']) {
        return Err(format!(
            "owner {owner:?} may hold only letters, digits, _, - and . (not first)"
        ));
    }
    repo_name(segments[1], 100)
}

fn bitbucket(segments: &[&str]) -> Result<(), String> {
    owner_repo(segments, "PROJECTKEY/repo-slug (Server) or workspace/repo-slug (Cloud)")?;
    let owner = segments[0];
    let bare = owner.strip_prefix('~').unwrap_or(owner);
    if bare.is_empty() || !plain(bare) {
        return Err(format!(
            "project key or workspace {owner:?} may hold only letters, digits, _, - and . (~ first for a personal project)"
        ));
    }
    repo_name(segments[1], 128)
}

const AZURE_FORBIDDEN: &[char] = &[
    '\\', ':', '*', '?', '"', '<', '>', '|', ';', '#', '$', '{', '}', ',', '+', '=', '[', ']',
];

fn azure_devops(segments: &[&str]) -> Result<(), String> {
    owner_repo(segments, "project/repo")?;
    for (what, name) in [("project", segments[0]), ("repository", segments[1])] {
        if name.trim() != name {
            return Err(format!("{what} {name:?} must not start or end with a space"));
        }
        if let Some(c) = name.chars().find(|c| AZURE_FORBIDDEN.contains(c) || c.is_control()) {
            return Err(format!("{what} {name:?} must not contain {c:?}"));
        }
        if name.starts_with(['_', '.']) || name.ends_with('.') {
            return Err(format!("{what} {name:?} must not start with _ or . nor end with ."));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_provider_has_its_form() {
        use ProviderKind::*;
        for (provider, good) in [
            (GitLab, "app-team/web"),
            (GitLab, "a/b/c/d.e_f"),
            (GitHub, "octo-cat/Hello-World.js"),
            (Gitea, "org_1/repo.x"),
            (Bitbucket, "PROJ/repo-slug"),
            (Bitbucket, "~jdoe/personal"),
            (AzureDevOps, "Fabrikam Fiber/My Repo (1)"),
        ] {
            assert_eq!(check(provider, good), Ok(()), "{provider} {good}");
        }
        for (provider, bad, needle) in [
            (GitLab, "web", "group/project"),
            (GitLab, "a/b.git", ".git"),
            (GitLab, "a/-b", "start"),
            (GitLab, "a b/c", "letters"),
            (GitHub, "a/b/c", "two segments"),
            (GitHub, "-a/b", "owner"),
            (GitHub, "a--b/c", "owner"),
            (GitHub, "a/..", "repository"),
            (Gitea, "a", "two segments"),
            (Bitbucket, "P K/x", "project key"),
            (AzureDevOps, "p/r:x", "':'"),
            (AzureDevOps, "_p/r", "start with _"),
            (AzureDevOps, " p/r", "space"),
            (GitLab, "/a/b", "leading"),
            (GitLab, "a//b", "empty segment"),
        ] {
            let err = check(provider, bad).unwrap_err();
            assert!(err.contains(needle), "{provider} {bad}: {err}");
        }
    }

    #[test]
    fn list_problems_name_the_entry() {
        let list: Vec<String> = ["a/b", "A/B", "x"].iter().map(|s| s.to_string()).collect();
        let found = problems(ProviderKind::GitHub, &list);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found
                .iter()
                .any(|p| p.starts_with("spec.repositories[1] \"A/B\" duplicates spec.repositories[0] \"a/b\""))
        );
        assert!(found.iter().any(|p| p.starts_with("spec.repositories[2] \"x\":")));
        let many: Vec<String> = (0..101).map(|i| format!("o/r{i}")).collect();
        assert!(problems(ProviderKind::GitHub, &many)[0].contains("101 entries; at most 100"));
        let hundred: Vec<String> = (0..100).map(|i| format!("o/r{i}")).collect();
        assert!(problems(ProviderKind::GitHub, &hundred).is_empty());
    }
}
