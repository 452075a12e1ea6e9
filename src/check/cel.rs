//! The CRD's `x-kubernetes-validations` (CEL) rules, as Rust.
//!
//! Each rule of the generated CRD is looked up here by its exact text, so a rule added to
//! src/api.rs without its Rust twin fails `every_rule_of_the_crd_is_known` (and `check` says
//! which rule it could not evaluate rather than passing it silently).

use crate::duration::{MIN_VERIFY_INTERVAL, is_go_duration_syntax, parse_duration};
use serde_json::Value;

/// A rule: whether `self` passes it.
type Holds = fn(&str) -> bool;

/// Rule text (as in the CRD) → its meaning on a string `self`.
const RULES: &[(&str, Holds)] = &[
    (r"!self.matches('^\\s*$')", |s| !s.chars().all(is_re2_space)),
    (r"self.matches('^https?://[^/?#]+')", |s| {
        after_scheme(s).is_some_and(|rest| rest.chars().next().is_some_and(|c| !matches!(c, '/' | '?' | '#')))
    }),
    (r"!self.matches('^https?://[^/?#]*@')", |s| {
        !after_scheme(s).is_some_and(|rest| rest.split(['/', '?', '#']).next().is_some_and(|a| a.contains('@')))
    }),
    ("!self.contains('?')", |s| !s.contains('?')),
    ("!self.contains('#')", |s| !s.contains('#')),
    (
        r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1m')",
        |s| is_go_duration_syntax(s) && parse_duration(s).is_ok_and(|d| d >= MIN_VERIFY_INTERVAL),
    ),
    (
        "!self.startsWith('/') && !self.endsWith('/') && self.contains('/')",
        |s| !s.starts_with('/') && !s.ends_with('/') && s.contains('/'),
    ),
];

/// Whether `value` passes `rule`; `None` when the rule is not one this binary knows.
pub fn holds(rule: &str, value: &Value) -> Option<bool> {
    let (_, holds) = RULES.iter().find(|(text, _)| *text == rule)?;
    // every rule applies to a string; another type is the schema's problem, reported there
    Some(value.as_str().is_none_or(holds))
}

/// RE2's `\s`: `[\t\n\f\r ]`.
fn is_re2_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ')
}

fn after_scheme(s: &str) -> Option<&str> {
    s.strip_prefix("https://").or_else(|| s.strip_prefix("http://"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(i: usize, s: &str) -> bool {
        holds(RULES[i].0, &json!(s)).unwrap()
    }

    #[test]
    fn rules_mean_what_their_cel_says() {
        assert!(!rule(0, " \t\n") && !rule(0, "") && rule(0, " a "));
        assert!(rule(1, "https://h") && rule(1, "http://h/p") && !rule(1, "https://") && !rule(1, "ftp://h"));
        assert!(!rule(1, "https:///p") && !rule(1, "h.example.com"));
        assert!(!rule(2, "https://u:p@h") && rule(2, "https://h/@x") && rule(2, "ftp://u@h"));
        assert!(!rule(3, "https://h/?a") && !rule(4, "https://h/#a") && rule(3, "https://h"));
        for ok in ["1m", "1h30m", "90s", "1.5h", "60000ms", "3600000000000ns"] {
            assert!(rule(5, ok), "{ok}");
        }
        for bad in ["30s", "1d", "soon", "", "1.m", ".5h", "-1h", "1h ", "59.9s"] {
            assert!(!rule(5, bad), "{bad}");
        }
        assert!(rule(6, "a/b") && !rule(6, "/a/b") && !rule(6, "a/b/") && !rule(6, "ab"));
        assert_eq!(holds("self.size() > 1", &json!("x")), None);
        assert_eq!(holds(RULES[0].0, &json!(7)), Some(true));
    }
}
