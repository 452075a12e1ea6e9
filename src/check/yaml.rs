//! YAML streams as `check` reads them: split into documents (keeping each one's first line),
//! each document parsed to JSON with the line of every field, so that a problem found by path
//! (`spec.tokenSecretRef.name`) can point into the file.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use serde_saphyr::Spanned;
use std::collections::HashMap;
use std::fmt;

/// One document of a YAML stream: its text and the line it starts on (1-based).
#[derive(Debug, PartialEq, Eq)]
pub struct Document<'a> {
    pub text: &'a str,
    pub first_line: usize,
}

/// Splits a YAML stream at its `---` document markers (and `...` end markers), keeping each
/// document's first line so that errors can point into the file.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    for (index, line) in lines(text).enumerate() {
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

/// The lines of `text`, each with its line break. YAML ends a line at `\r\n`, `\n` or a lone
/// `\r` (old Mac files), as the parser counts them: splitting at `\n` alone would read a
/// CR-only file as one comment line and skip the manifests in it.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = match rest.find(['\n', '\r']) {
            Some(at) if rest[at..].starts_with("\r\n") => at + 2,
            Some(at) => at + 1,
            None => rest.len(),
        };
        let (line, next) = rest.split_at(end);
        rest = next;
        Some(line)
    })
}

/// True when a document holds nothing but white space and comments.
pub fn is_blank(text: &str) -> bool {
    lines(text).all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    })
}

/// A parsed document: its JSON value and where each field is.
#[derive(Debug, Default)]
pub struct Parsed {
    pub value: Value,
    /// Field path (`spec.repositories[1]`, as the API server writes it) → line in the file.
    lines: HashMap<String, usize>,
    /// Keys written twice in a mapping (the last value is kept, as kubectl does): path → line.
    repeated: Vec<(String, usize)>,
    /// The line of the document's first content.
    pub first_line: usize,
}

impl Parsed {
    /// The keys written twice (the later one's path and line).
    pub fn repeated(&self) -> &[(String, usize)] {
        &self.repeated
    }

    /// The line of `field`, or of its closest parent that has one, or the document's.
    pub fn line_of(&self, field: &str) -> usize {
        let mut field = field;
        loop {
            if let Some(line) = self.lines.get(field) {
                return *line;
            }
            match field.rfind(['.', '[']) {
                Some(cut) => field = &field[..cut],
                None => return self.first_line,
            }
        }
    }
}

/// Why a document could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid YAML{}: {message}", match .line { Some((line, column)) => format!(" at line {line}, column {column}"), None => String::new() })]
pub struct YamlError {
    /// Line in the file and column.
    pub line: Option<(usize, usize)>,
    pub message: String,
}

/// Parses one document; `None` when it holds no value.
pub fn parse(document: &Document<'_>) -> Result<Option<Parsed>, YamlError> {
    // kubectl keeps the last of two equal keys; so does `check`, and it warns
    let options = serde_saphyr::options! {
        with_snippet: false,
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
    };
    let offset = document.first_line.saturating_sub(1);
    let parsed: Result<Option<Spanned<Tree>>, _> = serde_saphyr::from_str_with_options(document.text, options);
    match parsed {
        Ok(None) => Ok(None),
        Ok(Some(tree)) => {
            let first_line = tree.referenced.line() as usize + offset;
            let shift =
                |lines: Vec<(String, usize)>| lines.into_iter().map(move |(field, line)| (field, line + offset));
            Ok(Some(Parsed {
                value: tree.value.value,
                lines: shift(tree.value.lines).collect(),
                repeated: shift(tree.value.repeated).collect(),
                first_line: first_line.max(document.first_line),
            }))
        }
        Err(error) => {
            let mut message = error.to_string();
            let location = error.location().map(|l| (l.line() as usize, l.column() as usize));
            if let Some((line, column)) = location {
                if let Some(stripped) = message.strip_suffix(&format!(" at line {line}, column {column}")) {
                    message = stripped.to_owned();
                }
                return Err(YamlError {
                    line: Some((line.saturating_sub(1) + document.first_line, column)),
                    message,
                });
            }
            Err(YamlError { line: None, message })
        }
    }
}

/// A YAML node as JSON, with the (document-relative) line of each field below it.
#[derive(Debug, Default)]
struct Tree {
    value: Value,
    /// Relative path (`name`, `[2]`, `a.b`) → line.
    lines: Vec<(String, usize)>,
    /// Keys written twice below, as `lines`.
    repeated: Vec<(String, usize)>,
}

impl Tree {
    fn leaf(value: Value) -> Tree {
        Tree {
            value,
            ..Tree::default()
        }
    }

    /// Takes in a child's lines under `step` (`key` or `[i]`).
    fn adopt(&mut self, step: String, line: usize, child: Tree) {
        let join = |path: String| {
            if path.starts_with('[') {
                format!("{step}{path}")
            } else {
                format!("{step}.{path}")
            }
        };
        self.lines
            .extend(child.lines.into_iter().map(|(path, l)| (join(path), l)));
        self.repeated
            .extend(child.repeated.into_iter().map(|(path, l)| (join(path), l)));
        self.lines.push((step, line));
    }
}

impl<'de> Deserialize<'de> for Tree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Tree, D::Error> {
        deserializer.deserialize_any(TreeVisitor)
    }
}

struct TreeVisitor;

impl<'de> Visitor<'de> for TreeVisitor {
    type Value = Tree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Number(v.into())))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Number(v.into())))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Tree, E> {
        Ok(Tree::leaf(Number::from_f64(v).map_or(Value::Null, Value::Number)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::String(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::String(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Tree, E> {
        Ok(Tree::leaf(Value::Null))
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Tree, D::Error> {
        Tree::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Tree, A::Error> {
        let mut tree = Tree::default();
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Tree>>()? {
            let line = item.referenced.line() as usize;
            let Tree { value, lines, repeated } = item.value;
            tree.adopt(
                format!("[{}]", items.len()),
                line,
                Tree {
                    value: Value::Null,
                    lines,
                    repeated,
                },
            );
            items.push(value);
        }
        tree.value = Value::Array(items);
        Ok(tree)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Tree, A::Error> {
        let mut tree = Tree::default();
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let Tree { value, lines, repeated } = map.next_value()?;
            let line = key.referenced.line() as usize;
            if fields.contains_key(&key.value) {
                tree.repeated.push((key.value.clone(), line));
            }
            tree.adopt(
                key.value.clone(),
                line,
                Tree {
                    value: Value::Null,
                    lines,
                    repeated,
                },
            );
            fields.insert(key.value, value);
        }
        tree.value = Value::Object(fields);
        Ok(tree)
    }
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
    fn a_lone_carriage_return_ends_a_line_as_the_parser_counts() {
        let text = "# c\rkind: K\r---\r\r\nb: [\r";
        let docs = split_documents(text);
        let summary: Vec<(&str, usize)> = docs.iter().map(|d| (d.text, d.first_line)).collect();
        assert_eq!(summary, vec![("# c\rkind: K\r", 1), ("\r\r\nb: [\r", 3)]);
        assert!(!is_blank(docs[0].text));
        assert!(is_blank("# c\r\r# d\r\n"));
        let error = parse(&docs[1]).unwrap_err();
        assert_eq!(error.line.map(|(line, _)| line), Some(5), "{error:?}");
    }

    #[test]
    fn blank_documents() {
        assert!(is_blank(""));
        assert!(is_blank("  \n# c\n   # d\n"));
        assert!(!is_blank("a: 1"));
    }

    #[test]
    fn fields_keep_their_lines() {
        let text = "x: 0\n---\n# c\nkind: K\nspec:\n  a: 1\n  list:\n  - p\n  - {q: 2,\n     r: [3]}\n  flow: {s: yes, t: null, u: 1.5}\n";
        let docs = split_documents(text);
        let parsed = parse(&docs[1]).unwrap().unwrap();
        assert_eq!(
            parsed.value,
            serde_json::json!({"kind": "K", "spec": {"a": 1, "list": ["p", {"q": 2, "r": [3]}],
                "flow": {"s": parsed.value["spec"]["flow"]["s"], "t": null, "u": 1.5}}})
        );
        assert_eq!(parsed.first_line, 4);
        assert_eq!(parsed.line_of("kind"), 4);
        assert_eq!(parsed.line_of("spec"), 5);
        assert_eq!(parsed.line_of("spec.a"), 6);
        assert_eq!(parsed.line_of("spec.list[0]"), 8);
        assert_eq!(parsed.line_of("spec.list[1].q"), 9);
        assert_eq!(parsed.line_of("spec.list[1].r[0]"), 10);
        assert_eq!(parsed.line_of("spec.list[1].nothing.deeper"), 9);
        assert_eq!(parsed.line_of("spec.flow.u"), 11);
        assert_eq!(parsed.line_of("other"), 4);
        eprintln!("yes = {}", parsed.value["spec"]["flow"]["s"]);
    }

    #[test]
    fn errors_point_into_the_file() {
        let text = "a: 1\n---\nb: [\n";
        let docs = split_documents(text);
        let error = parse(&docs[1]).unwrap_err();
        assert!(error.line.is_some_and(|(line, _)| line >= 3), "{error:?}");
        let parsed = parse(&Document {
            text: "a: 1\nb:\n  c: 2\n  c: 3\na: 4\n",
            first_line: 3,
        })
        .unwrap()
        .unwrap();
        assert_eq!(parsed.value, serde_json::json!({"a": 4, "b": {"c": 3}}));
        assert_eq!(parsed.repeated(), [("b.c".to_owned(), 6), ("a".to_owned(), 7)]);
    }
}
