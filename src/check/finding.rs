//! What `check` reports: findings, each under a rule with a stable id (the `rule` of `-o json`,
//! the `ruleId` of SARIF, the failure `type` of JUnit), and the connections it checked.

use std::fmt;

/// What a finding is about: the rule ids of the machine-readable formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    Unreadable,
    Skipped,
    InvalidYaml,
    UnknownApiVersion,
    UnknownKind,
    UnknownField,
    Schema,
    ValidationRule,
    Metadata,
    Admission,
    DuplicateKey,
    DuplicateObject,
    DuplicateInstanceName,
}

impl Rule {
    pub const ALL: [Rule; 13] = [
        Rule::Unreadable,
        Rule::Skipped,
        Rule::InvalidYaml,
        Rule::UnknownApiVersion,
        Rule::UnknownKind,
        Rule::UnknownField,
        Rule::Schema,
        Rule::ValidationRule,
        Rule::Metadata,
        Rule::Admission,
        Rule::DuplicateKey,
        Rule::DuplicateObject,
        Rule::DuplicateInstanceName,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Rule::Unreadable => "unreadable",
            Rule::Skipped => "skipped",
            Rule::InvalidYaml => "invalid-yaml",
            Rule::UnknownApiVersion => "unknown-api-version",
            Rule::UnknownKind => "unknown-kind",
            Rule::UnknownField => "unknown-field",
            Rule::Schema => "schema",
            Rule::ValidationRule => "validation-rule",
            Rule::Metadata => "metadata",
            Rule::Admission => "admission",
            Rule::DuplicateKey => "duplicate-key",
            Rule::DuplicateObject => "duplicate-object",
            Rule::DuplicateInstanceName => "duplicate-instance-name",
        }
    }

    /// One sentence: what the rule holds.
    pub fn description(self) -> &'static str {
        match self {
            Rule::Unreadable => "An input that cannot be read: missing permission, too large, not UTF-8 text.",
            Rule::Skipped => "A symbolic link or special file inside a folder, not followed nor read.",
            Rule::InvalidYaml => "A document that is not valid YAML (kubectl cannot apply it).",
            Rule::UnknownApiVersion => "An apiVersion of the gitprovider.dev group that the CRD does not serve.",
            Rule::UnknownKind => "A kind of the gitprovider.dev group other than GitProviderConnection.",
            Rule::UnknownField => "A field the CRD's schema does not declare (refused by strict field validation).",
            Rule::Schema => {
                "A value of the wrong type, outside an enum, missing or beyond a limit of the CRD's schema."
            }
            Rule::ValidationRule => "A value refused by one of the CRD's x-kubernetes-validations (CEL) rules.",
            Rule::Metadata => "An invalid metadata name, namespace, label or annotation.",
            Rule::Admission => "A spec the operator's admission webhook refuses (or warns about).",
            Rule::DuplicateKey => "A key written twice in one mapping: kubectl keeps the last value silently.",
            Rule::DuplicateObject => "The same namespace/name defined twice: applying both keeps only one.",
            Rule::DuplicateInstanceName => "An instanceName already used by another connection of the provider.",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The input, as reached from the given path (`<stdin>` for standard input).
    pub path: String,
    /// `NAMESPACE/NAME`, or `document N` when the document has no usable identity, or `file`.
    pub subject: String,
    pub message: String,
    pub rule: Rule,
    /// The 1-based index of the document in its input, for a finding inside one.
    pub document: Option<usize>,
    /// The line in the input, when known.
    pub line: Option<usize>,
    /// The field the finding is about (`spec.url`), when there is one.
    pub field: Option<String>,
}

impl Finding {
    pub fn about(
        path: impl Into<String>,
        subject: impl Into<String>,
        rule: Rule,
        message: impl Into<String>,
    ) -> Finding {
        Finding {
            path: path.into(),
            subject: subject.into(),
            message: message.into(),
            rule,
            document: None,
            line: None,
            field: None,
        }
    }

    /// Places the finding in document `document` (1-based), at `line` of the input.
    pub(super) fn at(mut self, document: usize, line: usize) -> Finding {
        self.document = Some(document);
        self.line = Some(line);
        self
    }

    pub(super) fn on(mut self, field: Option<String>) -> Finding {
        self.field = field;
        self
    }
}

impl fmt::Display for Finding {
    /// `PATH: SUBJECT: message (line N)`; invalid YAML names its line and column in the message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.path, self.subject, self.message)?;
        match self.line {
            Some(line) if self.rule != Rule::InvalidYaml => write!(f, " (line {line})"),
            _ => Ok(()),
        }
    }
}

/// A GitProviderConnection that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub path: String,
    /// 1-based index of the document in its input.
    pub document: usize,
    pub line: usize,
    /// `NAMESPACE/NAME`.
    pub object: String,
}

/// One thing the API server would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `spec.tokenSecretRef.name`, `spec.repositories[1]`; empty for the object itself.
    pub field: String,
    pub message: String,
    pub rule: Rule,
}
