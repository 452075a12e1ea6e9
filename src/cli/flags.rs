//! The one map from the resource's fields to `verify`'s flags: messages written for a
//! GitProviderConnection ("needs spec.username") are said in the terms of the command line that
//! was typed ("needs --username") when `verify` runs from a shell.

/// Longest field first, so that a field is never replaced inside a longer one.
const FIELD_TO_FLAG: &[(&str, &str)] = &[
    ("spec.tls.insecureSkipVerify", "--insecure-skip-tls-verify"),
    ("spec.tls.caBundleRef", "--ca-file"),
    ("spec.tokenSecretRef", "--token-file or --token-env"),
    ("spec.repositories", "--repository"),
    ("spec.username", "--username"),
    ("spec.provider", "--provider"),
    ("spec.url", "--url"),
];

/// `message` with every spec field that has a flag named by the flag.
pub fn in_flags(message: &str) -> String {
    FIELD_TO_FLAG
        .iter()
        .fold(message.to_owned(), |text, (field, flag)| text.replace(field, flag))
}

/// Every `message` string in the printed status (the conditions', the repositories'), in flags.
pub fn status_in_flags(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                match item {
                    serde_json::Value::String(text) if key == "message" => *text = in_flags(text),
                    _ => status_in_flags(item),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(status_in_flags),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_flags() {
        assert_eq!(
            in_flags("Bitbucket Cloud needs spec.username: set it"),
            "Bitbucket Cloud needs --username: set it"
        );
        assert_eq!(
            in_flags("spec.repositories[1] \"a\" duplicates spec.repositories[0] \"a\""),
            "--repository[1] \"a\" duplicates --repository[0] \"a\""
        );
        assert_eq!(in_flags("trust it in spec.tls.caBundleRef"), "trust it in --ca-file");
        let mut status = serde_json::json!({"conditions": [{"message": "check spec.url"}], "repositories": [{"message": "spec.username"}]});
        status_in_flags(&mut status);
        assert_eq!(status["conditions"][0]["message"], "check --url");
        assert_eq!(status["repositories"][0]["message"], "--username");
    }
}
