//! What `check` reads: the YAML files under the given paths, and standard input for `-`.
//!
//! The tree may be untrusted (CI runs `check` on pull requests): inside the given folders,
//! symbolic links are never followed (so nothing outside them is read) and only regular files
//! are read; the walk is one pass over the entries, whatever the depth. Every input, standard
//! input included, is read up to [`MAX_FILE_BYTES`].

use super::{CheckReport, Finding, Rule, UsageError};
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Largest manifest file read; a larger one is reported, not read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The path argument that means standard input.
pub const STDIN_ARG: &str = "-";
/// How standard input is named in the report.
pub const STDIN_NAME: &str = "<stdin>";

/// One input of `check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// The name the report gives it.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => STDIN_NAME.to_owned(),
            Source::File(path) => path.display().to_string(),
        }
    }

    /// The text, `Ok(None)` when larger than [`MAX_FILE_BYTES`] (read no further).
    pub fn read(&self) -> std::io::Result<Option<Vec<u8>>> {
        match self {
            Source::Stdin => read_capped(std::io::stdin().lock()),
            Source::File(path) => read_capped(std::fs::File::open(path)?),
        }
    }
}

/// The inputs under `paths` in the order they are checked: standard input first (once, however
/// often `-` is given), then the files, deduplicated and in sorted path order; with what was
/// skipped or could not be read on the way (problems: unreadable folders; warnings: what is not
/// followed or not a regular file).
pub fn collect(paths: &[PathBuf], report: &mut CheckReport) -> Result<Vec<Source>, UsageError> {
    let mut files = Vec::new();
    let mut stdin = false;
    for path in paths {
        if path.as_os_str() == STDIN_ARG {
            stdin = true;
            continue;
        }
        // a path given by name is followed: the user chose it
        let metadata = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => UsageError::NotFound(path.display().to_string()),
            _ => UsageError::Unreadable {
                path: path.display().to_string(),
                message: e.to_string(),
            },
        })?;
        if metadata.is_dir() {
            walk(path, &mut files, report);
        } else if metadata.is_file() {
            files.push(path.clone());
        } else {
            skipped(report, path, "is not a regular file: not read");
        }
    }
    files.sort();
    let mut seen = HashSet::new();
    files.retain(|f| seen.insert(identity(f)));
    let stdin = stdin.then_some(Source::Stdin);
    Ok(stdin.into_iter().chain(files.into_iter().map(Source::File)).collect())
}

/// What makes two paths the same file, without resolving every folder on the way.
fn identity(path: &Path) -> (u64, u64, Option<PathBuf>) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(metadata) = std::fs::metadata(path) {
            return (metadata.dev(), metadata.ino(), None);
        }
    }
    (0, 0, Some(path.to_owned()))
}

fn skipped(report: &mut CheckReport, path: &Path, message: &str) {
    report.warnings.push(Finding::about(
        path.display().to_string(),
        "file",
        Rule::Skipped,
        message,
    ));
}

fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

fn walk(root: &Path, files: &mut Vec<PathBuf>, report: &mut CheckReport) {
    let mut folders = vec![root.to_owned()];
    while let Some(dir) = folders.pop() {
        let unreadable = |report: &mut CheckReport, e: std::io::Error| {
            report.problems.push(Finding::about(
                dir.display().to_string(),
                "folder",
                Rule::Unreadable,
                format!("cannot be read ({e}); the rest was checked"),
            ));
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => {
                unreadable(report, e);
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    unreadable(report, e);
                    break;
                }
            };
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            // the entry itself, never what a link points at
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                folders.push(path);
            } else if kind.is_symlink() {
                if is_yaml(&path) || std::fs::metadata(&path).is_ok_and(|m| m.is_dir()) {
                    skipped(report, &path, "is a symbolic link: not followed");
                }
            } else if is_yaml(&path) {
                if kind.is_file() {
                    files.push(path);
                } else {
                    skipped(report, &path, "is not a regular file: not read");
                }
            }
        }
    }
}

/// The bytes, or `None` when there are more than [`MAX_FILE_BYTES`] (read no further).
fn read_capped(input: impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    input.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}
