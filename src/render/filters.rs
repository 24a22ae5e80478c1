//! Filters templates use to write values safely into YAML and shell.

use minijinja::Environment;

/// Adds `yaml` and `sh` to `env`.
pub fn register(env: &mut Environment<'_>) {
    env.add_filter("yaml", yaml);
    env.add_filter("sh", sh);
}

/// A YAML double-quoted scalar. JSON string syntax is a subset of YAML's
/// double-quoted style, so this is exact for any text, and it keeps YAML 1.1
/// from reading `no` or `0644` as a boolean or a number.
pub fn yaml(value: String) -> String {
    serde_json::to_string(&value).expect("strings always serialize")
}

/// A single-quoted POSIX shell word: `it's` becomes `'it'\''s'`.
pub fn sh(value: String) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_quotes_what_yaml_would_misread() {
        assert_eq!(yaml("no".into()), "\"no\"");
        assert_eq!(yaml("0644".into()), "\"0644\"");
        assert_eq!(yaml("a\"b\nc".into()), r#""a\"b\nc""#);
    }

    #[test]
    fn yaml_output_parses_back_to_the_input() {
        for s in [
            "plain",
            "yes",
            "with: colon",
            "#hash",
            "tab\there",
            "ünïcode",
            "$6$salt$hash",
        ] {
            let back: String = yaml_serde::from_str(&yaml(s.into())).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn sh_quotes_single_quotes() {
        assert_eq!(sh("it's".into()), r"'it'\''s'");
        assert_eq!(sh("$HOME `x`".into()), "'$HOME `x`'");
    }
}
