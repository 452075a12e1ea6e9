//! How `check` prints its report: text for people, JSON for scripts, SARIF 2.1.0 for GitHub code
//! scanning, JUnit XML for GitLab (and most CI test report viewers).
//!
//! Machine-readable formats go to stdout alone (nothing else is printed there); the exit code
//! does not depend on the format.

use super::{CheckReport, Finding, Rule};
use serde_json::{Value, json};
use std::io::Write;

/// `check -o FORMAT`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
    Sarif,
    Junit,
}

/// Version of the `-o json` shape; raised only for a change that breaks a reader.
pub const JSON_VERSION: u32 = 1;
/// What SARIF results name as the tool.
pub const TOOL_NAME: &str = "gitprovider-operator check";
const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Prints `report` in `format` (text: problems on stdout, warnings and the summary on stderr).
pub fn print(report: &CheckReport, format: Format) {
    let mut out = std::io::stdout().lock();
    let _ = match format {
        Format::Text => {
            for problem in &report.problems {
                let _ = writeln!(out, "{problem}");
            }
            let _ = out.flush();
            for warning in &report.warnings {
                let line = warning.to_string();
                let message = line.strip_prefix(&format!("{}: {}: ", warning.path, warning.subject));
                eprintln!(
                    "{}: {}: warning: {}",
                    warning.path,
                    warning.subject,
                    message.unwrap_or(&line)
                );
            }
            eprintln!("{}", summary(report));
            Ok(())
        }
        Format::Json => writeln!(out, "{:#}", json(report)),
        Format::Sarif => writeln!(out, "{:#}", sarif(report)),
        Format::Junit => out.write_all(junit(report).as_bytes()),
    };
    let _ = out.flush();
}

/// `checked 3 GitProviderConnections in 2 files: 1 problem`.
pub fn summary(report: &CheckReport) -> String {
    let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
    let outcome = match report.problems.len() {
        0 => "no problems".to_owned(),
        n => plural(n, "problem"),
    };
    format!(
        "checked {} in {}: {outcome}",
        plural(report.connections.len(), "GitProviderConnection"),
        plural(report.files.len(), "file")
    )
}

fn findings(report: &CheckReport) -> impl Iterator<Item = (&Finding, &'static str)> {
    let problems = report.problems.iter().map(|f| (f, "error"));
    problems.chain(report.warnings.iter().map(|f| (f, "warning")))
}

/// The `-o json` document (its shape is documented in docs/cli.md).
pub fn json(report: &CheckReport) -> Value {
    let documents: Vec<Value> = report
        .connections
        .iter()
        .map(|c| json!({"path": c.path, "document": c.document, "line": c.line, "object": c.object}))
        .collect();
    let problems: Vec<Value> = findings(report)
        .map(|(f, severity)| {
            json!({
                "path": f.path,
                "document": f.document,
                "line": f.line,
                "object": f.subject,
                "field": f.field,
                "rule": f.rule.id(),
                "severity": severity,
                "message": f.message,
            })
        })
        .collect();
    json!({
        "version": JSON_VERSION,
        "files": report.files,
        "documents": documents,
        "problems": problems,
        "summary": {
            "files": report.files.len(),
            "connections": report.connections.len(),
            "errors": report.problems.len(),
            "warnings": report.warnings.len(),
        },
    })
}

/// The `-o sarif` log: one run, every rule described, one result per finding.
pub fn sarif(report: &CheckReport) -> Value {
    let rules: Vec<Value> = Rule::ALL
        .iter()
        .map(|rule| {
            json!({
                "id": rule.id(),
                "shortDescription": {"text": rule.description()},
                "defaultConfiguration": {"level": if *rule == Rule::Skipped { "warning" } else { "error" }},
            })
        })
        .collect();
    let results: Vec<Value> = findings(report)
        .map(|(f, level)| {
            json!({
                "ruleId": f.rule.id(),
                "ruleIndex": Rule::ALL.iter().position(|r| *r == f.rule),
                "level": level,
                "message": {"text": format!("{}: {}", f.subject, f.message)},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.path)},
                        "region": {"startLine": f.line.unwrap_or(1)},
                    },
                }],
            })
        })
        .collect();
    json!({
        "version": "2.1.0",
        "$schema": SARIF_SCHEMA,
        "runs": [{
            "tool": {"driver": {
                "name": TOOL_NAME,
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": env!("CARGO_PKG_REPOSITORY"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

/// A path as a URI reference: relative paths stay relative (code scanning resolves them against
/// the repository), absolute ones become `file://`; bytes outside RFC 3986's unreserved set and
/// `/` are percent-encoded.
fn uri(path: &str) -> String {
    let mut out = String::new();
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `-o junit` report: one test case per GitProviderConnection (failed with each of its
/// problems) and one per problem outside a connection; warnings in `<system-out>`.
pub fn junit(report: &CheckReport) -> String {
    let mut cases: Vec<(String, String, Vec<&Finding>, Vec<&Finding>)> = report
        .connections
        .iter()
        .map(|c| (c.path.clone(), c.object.clone(), Vec::new(), Vec::new()))
        .collect();
    for (finding, severity) in findings(report) {
        let case = cases
            .iter_mut()
            .find(|(path, object, _, _)| *path == finding.path && *object == finding.subject);
        let case = match case {
            Some(case) => case,
            None => {
                cases.push((finding.path.clone(), finding.subject.clone(), Vec::new(), Vec::new()));
                cases.last_mut().expect("just pushed")
            }
        };
        if severity == "error" {
            case.2.push(finding);
        } else {
            case.3.push(finding);
        }
    }
    let failures = cases.iter().filter(|c| !c.2.is_empty()).count();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!(
        "<testsuites name=\"{TOOL_NAME}\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"{TOOL_NAME}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\">\n",
        cases.len(),
        cases.len()
    ));
    for (path, object, problems, warnings) in &cases {
        xml.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\"",
            escape(path),
            escape(object)
        ));
        if problems.is_empty() && warnings.is_empty() {
            xml.push_str("/>\n");
            continue;
        }
        xml.push_str(">\n");
        for problem in problems {
            let at = problem
                .line
                .map(|l| format!("{path}:{l}"))
                .unwrap_or_else(|| path.clone());
            xml.push_str(&format!(
                "      <failure type=\"{}\" message=\"{}\">{}: {}</failure>\n",
                problem.rule.id(),
                escape(&problem.message),
                escape(&at),
                escape(&problem.message)
            ));
        }
        if !warnings.is_empty() {
            let text: Vec<String> = warnings.iter().map(|w| format!("warning: {}", w.message)).collect();
            xml.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                escape(&text.join("\n"))
            ));
        }
        xml.push_str("    </testcase>\n");
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

/// XML text and attribute escaping; characters XML 1.0 cannot hold become U+FFFD.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_and_xml_are_escaped() {
        assert_eq!(uri("a b/c.yaml"), "a%20b/c.yaml");
        assert_eq!(uri("/abs/x.yaml"), "file:///abs/x.yaml");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(escape("a<b & \"c\"\u{1}"), "a&lt;b &amp; &quot;c&quot;\u{FFFD}");
    }
}
