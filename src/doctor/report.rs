//! The lines `doctor` prints: text (one line per check) or `-o json` (the shape of `check -o
//! json`: a version, the items, a summary).

use super::Format;
use serde_json::{Value, json};
use std::io::Write;

/// Version of the `-o json` shape; raised only for a change that breaks a reader.
pub const JSON_VERSION: u32 = 1;

/// The checks' ids, in the order they run.
pub const API_SERVER: &str = "api-server";
pub const CRD: &str = "crd";
pub const WEBHOOK_CONFIGURATION: &str = "webhook-configuration";
pub const WEBHOOK_ANSWERS: &str = "webhook-answers";
pub const LEASE: &str = "lease";
pub const RBAC: &str = "rbac";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Fail,
    /// Not run: it needs what an earlier check found missing (counts as not OK).
    Skip,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Outcome::Ok => "OK",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One check's result: what was found and, when it is not OK, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub check: &'static str,
    pub outcome: Outcome,
    pub message: String,
    pub fix: Option<String>,
}

impl Line {
    pub fn ok(check: &'static str, message: impl Into<String>) -> Line {
        Line {
            check,
            outcome: Outcome::Ok,
            message: message.into(),
            fix: None,
        }
    }

    pub fn fail(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Line {
        Line {
            check,
            outcome: Outcome::Fail,
            message: message.into(),
            fix: Some(fix.into()),
        }
    }

    pub fn skipped(check: &'static str, why: impl Into<String>) -> Line {
        Line {
            check,
            outcome: Outcome::Skip,
            message: format!("not checked: {}", why.into()),
            fix: None,
        }
    }

    /// `OK   crd: ...` or `FAIL crd: ...; fix: ...`
    pub fn text(&self) -> String {
        let mut text = format!("{:<4} {}: {}", self.outcome.word(), self.check, self.message);
        if let Some(fix) = &self.fix {
            text.push_str("; fix: ");
            text.push_str(fix);
        }
        text
    }
}

pub fn json(lines: &[Line]) -> Value {
    let checks: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({
                "check": l.check,
                "status": l.outcome.word(),
                "message": l.message,
                "fix": l.fix,
            })
        })
        .collect();
    let count = |outcome: Outcome| lines.iter().filter(|l| l.outcome == outcome).count();
    json!({
        "version": JSON_VERSION,
        "checks": checks,
        "summary": {
            "checks": lines.len(),
            "ok": count(Outcome::Ok),
            "failed": count(Outcome::Fail),
            "skipped": count(Outcome::Skip),
        },
    })
}

pub fn print(lines: &[Line], format: Format) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Text => {
            for line in lines {
                writeln!(out, "{}", line.text())?;
            }
        }
        Format::Json => writeln!(out, "{:#}", json(lines))?,
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_line_says_what_to_do() {
        let line = Line::fail(CRD, "not installed", "gitprovider-operator crd | kubectl apply -f -");
        assert_eq!(
            line.text(),
            "FAIL crd: not installed; fix: gitprovider-operator crd | kubectl apply -f -"
        );
        assert_eq!(Line::ok(LEASE, "held").text(), "OK   lease: held");
        let doc = json(&[line, Line::skipped(RBAC, "no API server")]);
        assert_eq!(doc["checks"][0]["status"], "FAIL");
        assert_eq!(doc["checks"][1]["message"], "not checked: no API server");
        assert_eq!(doc["summary"]["failed"], 1);
        assert_eq!(doc["summary"]["skipped"], 1);
    }
}
