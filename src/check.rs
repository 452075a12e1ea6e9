//! `gitprovider-operator check PATH...`: what the admission webhook would deny, without a
//! cluster.
//!
//! Reads YAML files, and folders of them recursively (`*.yaml`, `*.yml`; hidden entries are
//! skipped), splits them into documents, keeps the `gitprovider.dev` GitProviderConnections (also
//! inside a `List`), and applies the same rules as the webhook ([`crate::admission::rules`]):
//! the spec rules, and the uniqueness rule across all the files. Offline there is no
//! creationTimestamp, so the first occurrence (files in sorted path order, then document order)
//! is taken as the holder and the later ones are reported, naming the holder and its file.
//!
//! Output: one line per problem on stdout, `PATH: NAMESPACE/NAME: message` (or
//! `PATH: document N: message` for a document without a usable identity); warnings and a summary
//! on stderr. Exit code 0 without problems, 1 with problems, 2 for a usage error.

use crate::admission::rules::{Claim, check_unique, parse_spec, validate_spec};
use crate::api::GROUP;
use crate::index::{InstanceKey, ObjectKey, UniquenessScope};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The namespace of documents without `metadata.namespace` when `--namespace` is not given.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Arguments of `check`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckArgs {
    /// Namespace of the connections that do not name one in metadata.namespace [default: default]
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Where instance names must be unique, as the operator's --uniqueness-scope
    #[arg(long, value_enum, default_value_t = UniquenessScope::Namespace)]
    pub uniqueness_scope: UniquenessScope,
    /// YAML files, or folders searched recursively for *.yaml and *.yml
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file, as reached from the given path.
    pub path: String,
    /// `NAMESPACE/NAME`, or `document N` when the document has no usable identity.
    pub subject: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.subject, self.message)
    }
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub files: usize,
    pub connections: usize,
}

impl CheckReport {
    /// 0 without problems, 1 with.
    pub fn exit_code(&self) -> u8 {
        u8::from(!self.problems.is_empty())
    }
}

/// A usage error: exit code 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{path}: {message}")]
    Unreadable { path: String, message: String },
}

/// Runs `check` and prints its report: problems on stdout, warnings and the summary on stderr.
pub fn run_check(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok(report) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for problem in &report.problems {
                let _ = writeln!(out, "{problem}");
            }
            let _ = out.flush();
            for warning in &report.warnings {
                eprintln!("{}: {}: warning: {}", warning.path, warning.subject, warning.message);
            }
            let outcome = match report.problems.len() {
                0 => "no problems".to_owned(),
                1 => "1 problem".to_owned(),
                n => format!("{n} problems"),
            };
            eprintln!(
                "checked {} GitProviderConnection{} in {} file{}: {outcome}",
                report.connections,
                if report.connections == 1 { "" } else { "s" },
                report.files,
                if report.files == 1 { "" } else { "s" },
            );
            ExitCode::from(report.exit_code())
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Checks the files and folders of `args` and returns the report.
pub fn check(args: &CheckArgs) -> Result<CheckReport, UsageError> {
    let mut report = CheckReport::default();
    let files = collect_files(&args.paths, &mut report)?;
    report.files = files.len();
    let namespace = args
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let mut checker = Checker {
        scope: args.uniqueness_scope,
        default_namespace: namespace,
        holders: HashMap::new(),
        defined: HashMap::new(),
        report,
    };
    for file in &files {
        checker.file(file);
    }
    Ok(checker.report)
}

/// Largest manifest file read; a larger one is reported, not read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// The YAML files under `paths`, deduplicated and in sorted path order, with what was skipped
/// or could not be read on the way (problems: unreadable folders; warnings: what is not followed
/// or not a regular file).
///
/// The tree may be untrusted (CI runs `check` on pull requests): inside the given folders,
/// symbolic links are never followed (so nothing outside them is read) and only regular files
/// are read; the walk is one pass over the entries, whatever the depth.
fn collect_files(paths: &[PathBuf], report: &mut CheckReport) -> Result<Vec<PathBuf>, UsageError> {
    let mut files = Vec::new();
    for path in paths {
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
    Ok(files)
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
    report.warnings.push(Finding {
        path: path.display().to_string(),
        subject: "file".to_owned(),
        message: message.to_owned(),
    });
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
            report.problems.push(Finding {
                path: dir.display().to_string(),
                subject: "folder".to_owned(),
                message: format!("cannot be read ({e}); the rest was checked"),
            });
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

/// The file's bytes, or `None` when it holds more than [`MAX_FILE_BYTES`] (read no further).
fn read_capped(file: &Path) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= MAX_FILE_BYTES).then_some(bytes))
}

/// One document of a YAML stream: its text and the line it starts on (1-based).
#[derive(Debug, PartialEq, Eq)]
struct Document<'a> {
    text: &'a str,
    first_line: usize,
}

/// Splits a YAML stream at its `---` document markers (and `...` end markers), keeping each
/// document's first line so that errors can point into the file.
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let content = line.trim_end_matches(['\n', '\r']);
        let marker =
            |m: &str| content.starts_with(m) && content[3..].chars().next().is_none_or(|c| c == ' ' || c == '\t');
        if marker("---") {
            documents.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            // the marker line may carry content (`--- {a: 1}`): it belongs to the new document
            start = offset + 3;
            start_line = index + 1;
        } else if marker("...") && content[3..].trim().is_empty() {
            documents.push(Document {
                text: &text[start..offset],
                first_line: start_line,
            });
            start = offset + line.len();
            start_line = index + 2;
        }
        offset += line.len();
    }
    documents.push(Document {
        text: &text[start..],
        first_line: start_line,
    });
    documents
}

struct Checker {
    scope: UniquenessScope,
    default_namespace: String,
    /// Who holds each instance name so far, and in which file.
    holders: HashMap<InstanceKey, (ObjectKey, String)>,
    /// Where each object was first defined.
    defined: HashMap<ObjectKey, String>,
    report: CheckReport,
}

impl Checker {
    fn problem(&mut self, path: &str, subject: impl Into<String>, message: impl Into<String>) {
        self.report.problems.push(Finding {
            path: path.to_owned(),
            subject: subject.into(),
            message: message.into(),
        });
    }

    fn file(&mut self, file: &Path) {
        let path = file.display().to_string();
        let text = match read_capped(file) {
            Ok(None) => {
                self.problem(
                    &path,
                    "file",
                    format!("is larger than {MAX_FILE_BYTES} bytes: not read (a manifest is far smaller)"),
                );
                return;
            }
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => {
                    self.problem(&path, "file", "is not UTF-8 text");
                    return;
                }
            },
            Err(e) => {
                self.problem(&path, "file", format!("cannot be read: {e}"));
                return;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let options = serde_saphyr::options! { with_snippet: false };
        let mut number = 0usize;
        for document in split_documents(text) {
            if is_blank(document.text) {
                continue;
            }
            number += 1;
            let subject = format!("document {number}");
            let parsed: Result<Option<Value>, _> = serde_saphyr::from_str_with_options(document.text, options.clone());
            match parsed {
                Ok(Some(value)) => self.value(&path, &subject, &value),
                Ok(None) => {}
                Err(error) => {
                    let mut message = error.to_string();
                    let location = error.location().map(|l| (l.line() as usize, l.column() as usize));
                    if let Some((line, column)) = location {
                        if let Some(stripped) = message.strip_suffix(&format!(" at line {line}, column {column}")) {
                            message = stripped.to_owned();
                        }
                        let file_line = document.first_line + line.saturating_sub(1);
                        self.problem(
                            &path,
                            subject,
                            format!("invalid YAML at line {file_line}, column {column}: {message}"),
                        );
                    } else {
                        self.problem(&path, subject, format!("invalid YAML: {message}"));
                    }
                }
            }
        }
    }

    fn value(&mut self, path: &str, subject: &str, value: &Value) {
        let Some(object) = value.as_object() else {
            return; // not a Kubernetes object
        };
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let group = api_version.split_once('/').map_or("", |(group, _)| group);
        if group == GROUP {
            if kind == "GitProviderConnection" {
                self.connection(path, subject, value);
            } else {
                self.problem(
                    path,
                    subject,
                    format!("kind {kind:?} is not a kind of {GROUP}; did you mean GitProviderConnection?"),
                );
            }
        } else if (kind == "List" || (kind.ends_with("List") && api_version == "v1"))
            && let Some(items) = object.get("items").and_then(Value::as_array)
        {
            for (i, item) in items.iter().enumerate() {
                self.value(path, &format!("{subject} item {}", i + 1), item);
            }
        }
    }

    fn connection(&mut self, path: &str, subject: &str, value: &Value) {
        self.report.connections += 1;
        let metadata = value.get("metadata");
        let text_of = |field: &str| {
            metadata
                .and_then(|m| m.get(field))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let namespace = text_of("namespace").unwrap_or_else(|| self.default_namespace.clone());
        let (name, named) = match (text_of("name"), text_of("generateName")) {
            (Some(name), _) => (name, true),
            (None, Some(prefix)) => (format!("{prefix}*"), true),
            (None, None) => (format!("<no name, {subject}>"), false),
        };
        let key = ObjectKey::new(namespace, name);
        let who = key.to_string();
        if !named {
            self.problem(path, &who, "metadata.name is missing");
        }
        if named && let Some(first) = self.defined.get(&key).cloned() {
            self.problem(
                path,
                &who,
                format!("is defined again (first in {first}); applying both keeps only one of them"),
            );
        } else if named {
            self.defined.insert(key.clone(), path.to_owned());
        }
        let spec = match parse_spec(value.get("spec")) {
            Ok(spec) => spec,
            Err(problem) => {
                self.problem(path, &who, problem);
                return;
            }
        };
        let review = validate_spec(&spec);
        for problem in review.problems {
            self.problem(path, &who, problem);
        }
        for warning in review.warnings {
            self.report.warnings.push(Finding {
                path: path.to_owned(),
                subject: who.clone(),
                message: warning,
            });
        }
        if !named {
            return; // it cannot be applied, so it holds no name
        }
        let claim = Claim::of(&spec);
        let holders = &self.holders;
        let view = |instance: &InstanceKey, candidate: &ObjectKey| {
            holders
                .get(instance)
                .filter(|(holder, _)| holder != candidate)
                .map(|(holder, _)| holder.clone())
        };
        match check_unique(&view, self.scope, &key, claim, None) {
            Ok(()) => {
                self.holders
                    .entry(claim.instance_key(self.scope, &key.namespace))
                    .or_insert_with(|| (key.clone(), path.to_owned()));
            }
            Err(duplicate) => {
                let origin = self
                    .holders
                    .get(&claim.instance_key(self.scope, &key.namespace))
                    .map(|(_, file)| file.clone());
                self.problem(path, &who, duplicate.message_with_origin(origin.as_deref()));
            }
        }
    }
}

/// True when a document holds nothing but white space and comments.
fn is_blank(text: &str) -> bool {
    text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_keeps_line_numbers() {
        let text = "a: 1\n---\nb: 2\n--- # comment\nc: 3\n...\n# trailer\n---\n--- {d: 4}\n";
        let docs = split_documents(text);
        let summary: Vec<(&str, usize)> = docs.iter().map(|d| (d.text, d.first_line)).collect();
        assert_eq!(
            summary,
            vec![
                ("a: 1\n", 1),
                ("\nb: 2\n", 2),
                (" # comment\nc: 3\n", 4),
                ("# trailer\n", 7),
                ("\n", 8),
                (" {d: 4}\n", 9),
            ]
        );
        assert_eq!(
            split_documents("---\n"),
            vec![
                Document {
                    text: "",
                    first_line: 1
                },
                Document {
                    text: "\n",
                    first_line: 1
                }
            ]
        );
        // `----` and `---x` are not markers
        assert_eq!(split_documents("a: |\n  ---\nb: ---x\n").len(), 1);
    }

    #[test]
    fn blank_documents() {
        assert!(is_blank(""));
        assert!(is_blank("  \n# c\n   # d\n"));
        assert!(!is_blank("a: 1"));
    }
}
