//! `gitprovider-operator check PATH...`: what the API server and the admission webhook would
//! refuse, without a cluster.
//!
//! Reads YAML files, folders of them recursively, and standard input for `-` ([`walk`]), splits
//! them into documents ([`yaml`]), keeps the `gitprovider.dev` objects (also inside a `List`),
//! validates each against the CRD's schema as the API server's strict field validation does
//! ([`schema`]: the schema the binary generates, so it cannot drift), then applies the same
//! rules as the webhook ([`crate::admission::rules`]): the spec rules, and the uniqueness rule
//! across all the inputs. Offline there is no creationTimestamp, so the first occurrence (inputs
//! in the order of [`walk::collect`], then document order) is taken as the holder and the later
//! ones are reported, naming the holder and its file.
//!
//! Output ([`output`]): text (one line per problem on stdout, `PATH: NAMESPACE/NAME: message`,
//! or `PATH: document N: message` for a document without a usable identity; warnings and a
//! summary on stderr), JSON, SARIF or JUnit XML. Exit code 0 without problems, 1 with
//! problems, 2 for a usage error, in every format.

mod cel;
mod finding;
mod metadata;
pub mod output;
pub mod schema;
pub mod walk;
pub mod yaml;

use crate::admission::rules::{Claim, check_unique, parse_spec, validate_spec};
use crate::api::GROUP;
use crate::index::{InstanceKey, ObjectKey, UniquenessScope};
pub use finding::{Checked, Finding, Rule};
use output::Format;
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use walk::{MAX_FILE_BYTES, Source};
use yaml::Parsed;

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
    /// Output format: text (problems on stdout, summary on stderr), json, sarif (GitHub code
    /// scanning) or junit (GitLab and most CI test reports); the exit code is the same in each
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
    /// YAML files, or folders searched recursively for *.yaml and *.yml; - reads standard input
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
}

/// What `check` found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub problems: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// The inputs read, in order.
    pub files: Vec<String>,
    pub connections: Vec<Checked>,
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

/// Runs `check` and prints its report in the chosen format.
pub fn run_check(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok(report) => {
            output::print(&report, args.output);
            ExitCode::from(report.exit_code())
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

/// Checks the inputs of `args` and returns the report.
pub fn check(args: &CheckArgs) -> Result<CheckReport, UsageError> {
    let mut report = CheckReport::default();
    let sources = walk::collect(&args.paths, &mut report)?;
    report.files = sources.iter().map(Source::name).collect();
    let namespace = args
        .namespace
        .clone()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let mut checker = Checker {
        scope: args.uniqueness_scope,
        default_namespace: namespace,
        schema: schema::Schema::generated(),
        holders: HashMap::new(),
        defined: HashMap::new(),
        report,
    };
    for source in &sources {
        checker.source(source);
    }
    Ok(checker.report)
}

/// Where a value is: its input, document and parsed text.
struct At<'a> {
    path: &'a str,
    document: usize,
    parsed: &'a Parsed,
    /// Prefix of field paths inside a `List` item (`items[2].`), empty otherwise.
    prefix: String,
}

impl At<'_> {
    fn line_of(&self, field: &str) -> usize {
        self.parsed.line_of(&format!("{}{field}", self.prefix))
    }
}

struct Checker {
    scope: UniquenessScope,
    default_namespace: String,
    schema: schema::Schema,
    /// Who holds each instance name so far, and in which input.
    holders: HashMap<InstanceKey, (ObjectKey, String)>,
    /// Where each object was first defined.
    defined: HashMap<ObjectKey, String>,
    report: CheckReport,
}

impl Checker {
    fn source(&mut self, source: &Source) {
        let path = source.name();
        let unreadable = |this: &mut Checker, message: String| {
            this.report
                .problems
                .push(Finding::about(&path, "file", Rule::Unreadable, message));
        };
        let text = match source.read() {
            Ok(None) => {
                return unreadable(
                    self,
                    format!("is larger than {MAX_FILE_BYTES} bytes: not read (a manifest is far smaller)"),
                );
            }
            Ok(Some(bytes)) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(_) => return unreadable(self, "is not UTF-8 text".to_owned()),
            },
            Err(e) => return unreadable(self, format!("cannot be read: {e}")),
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut number = 0usize;
        for document in yaml::split_documents(text) {
            if yaml::is_blank(document.text) {
                continue;
            }
            number += 1;
            match yaml::parse(&document) {
                Ok(Some(parsed)) => {
                    for (field, line) in parsed.repeated() {
                        let message = format!("{field} is written twice; kubectl keeps the last value");
                        let warning = Finding::about(&path, format!("document {number}"), Rule::DuplicateKey, message);
                        self.report
                            .warnings
                            .push(warning.at(number, *line).on(Some(field.clone())));
                    }
                    let at = At {
                        path: &path,
                        document: number,
                        parsed: &parsed,
                        prefix: String::new(),
                    };
                    self.value(&at, &format!("document {number}"), &parsed.value);
                }
                Ok(None) => {}
                Err(error) => {
                    let finding = Finding::about(
                        &path,
                        format!("document {number}"),
                        Rule::InvalidYaml,
                        error.to_string(),
                    );
                    let line = error.line.map_or(document.first_line, |(line, _)| line);
                    self.report.problems.push(finding.at(number, line));
                }
            }
        }
    }

    fn value(&mut self, at: &At<'_>, subject: &str, value: &Value) {
        let Some(object) = value.as_object() else {
            return; // not a Kubernetes object
        };
        let api_version = object.get("apiVersion").and_then(Value::as_str).unwrap_or_default();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        if group == GROUP || (group.is_empty() && version == GROUP) {
            let problem = if self.schema.root(version).is_none() {
                let served: Vec<String> = self.schema.versions().map(|v| format!("{GROUP}/{v}")).collect();
                Some((
                    Rule::UnknownApiVersion,
                    format!(
                        "apiVersion {api_version:?} is not served by the CRD; use {}",
                        served.join(" or ")
                    ),
                ))
            } else if kind != "GitProviderConnection" {
                Some((
                    Rule::UnknownKind,
                    format!("kind {kind:?} is not a kind of {GROUP}; did you mean GitProviderConnection?"),
                ))
            } else {
                None
            };
            match problem {
                Some((rule, message)) => {
                    let field = if rule == Rule::UnknownKind {
                        "kind"
                    } else {
                        "apiVersion"
                    };
                    let finding = Finding::about(at.path, subject, rule, message)
                        .at(at.document, at.line_of(field))
                        .on(Some(field.to_owned()));
                    self.report.problems.push(finding);
                }
                None => self.connection(at, subject, value),
            }
        } else if (kind == "List" || (kind.ends_with("List") && api_version == "v1"))
            && let Some(items) = object.get("items").and_then(Value::as_array)
        {
            for (i, item) in items.iter().enumerate() {
                let inner = At {
                    path: at.path,
                    document: at.document,
                    parsed: at.parsed,
                    prefix: format!("{}items[{i}].", at.prefix),
                };
                self.value(&inner, &format!("{subject} item {}", i + 1), item);
            }
        }
    }

    fn connection(&mut self, at: &At<'_>, subject: &str, value: &Value) {
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
        self.report.connections.push(Checked {
            path: at.path.to_owned(),
            document: at.document,
            line: at.line_of(""),
            object: who.clone(),
        });
        let finding = |rule: Rule, field: Option<&str>, message: String| {
            let line = at.line_of(field.unwrap_or_default());
            Finding::about(at.path, &who, rule, message)
                .at(at.document, line)
                .on(field.map(str::to_owned))
        };
        if !named {
            let problem = finding(
                Rule::Metadata,
                Some("metadata.name"),
                "metadata.name is missing".to_owned(),
            );
            self.report.problems.push(problem);
        }
        if named && let Some(first) = self.defined.get(&key).cloned() {
            let message = format!("is defined again (first in {first}); applying both keeps only one of them");
            self.report.problems.push(finding(Rule::DuplicateObject, None, message));
        } else if named {
            self.defined.insert(key.clone(), at.path.to_owned());
        }
        let version = value["apiVersion"]
            .as_str()
            .and_then(|v| v.split_once('/'))
            .map_or("", |(_, v)| v);
        let violations = self.schema.validate(version, value);
        let parsed = parse_spec(value.get("spec").map(schema::without_nulls).as_ref());
        let review = parsed.as_ref().map(validate_spec).unwrap_or_default();
        // Where the webhook has its own (more helpful) message for a field the schema or a
        // validation rule refuses, the webhook's is shown, once, under the rule that refuses it
        // first at the door.
        let explained: HashSet<String> = review.problems.iter().filter_map(|p| field_of(p)).collect();
        let mut refused_by: HashMap<String, Rule> = HashMap::new();
        let schema_failed = !violations.is_empty();
        for violation in violations {
            if matches!(violation.rule, Rule::Schema | Rule::ValidationRule) && explained.contains(&violation.field) {
                refused_by.entry(violation.field).or_insert(violation.rule);
                continue;
            }
            let field = Some(violation.field.as_str()).filter(|f| !f.is_empty());
            let problem = finding(violation.rule, field, violation.message);
            self.report.problems.push(problem);
        }
        let spec = match parsed {
            Ok(spec) => spec,
            Err(problem) => {
                // the schema already said why, in the API server's terms
                if !schema_failed {
                    self.report.problems.push(finding(Rule::Schema, Some("spec"), problem));
                }
                return;
            }
        };
        for problem in review.problems {
            let field = field_of(&problem);
            let rule = field.as_ref().and_then(|f| refused_by.get(f)).copied();
            let problem = finding(rule.unwrap_or(Rule::Admission), field.as_deref(), problem);
            self.report.problems.push(problem);
        }
        for warning in review.warnings {
            let field = field_of(&warning);
            self.report
                .warnings
                .push(finding(Rule::Admission, field.as_deref(), warning));
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
                    .or_insert_with(|| (key.clone(), at.path.to_owned()));
            }
            Err(duplicate) => {
                let origin = self
                    .holders
                    .get(&claim.instance_key(self.scope, &key.namespace))
                    .map(|(_, file)| file.clone());
                let message = duplicate.message_with_origin(origin.as_deref());
                let problem = finding(Rule::DuplicateInstanceName, Some("spec.instanceName"), message);
                self.report.problems.push(problem);
            }
        }
    }
}

/// The field a webhook message starts with (`spec.url must ...` → `spec.url`).
fn field_of(message: &str) -> Option<String> {
    let field: String = message
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']'))
        .collect();
    let field = field.trim_end_matches('.');
    (field.starts_with("spec.") || field == "spec").then(|| field.to_owned())
}
