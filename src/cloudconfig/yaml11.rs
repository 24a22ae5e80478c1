//! YAML 1.1 traps. coreos-cloudinit reads YAML 1.1, where an unquoted `no`,
//! `on` or `0644` is a boolean or an octal number; our parser reads YAML 1.2
//! and would see strings. So plain (unquoted) scalars are scanned in the
//! text itself, skipping the contents of block scalars (`|`, `>`).

use super::{Finding, Level};

/// Plain scalars that YAML 1.1 resolves to something other than a string.
fn yaml11_non_string(v: &str) -> bool {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF", "~", "null", "Null", "NULL",
    ];
    let octal = v.len() > 1 && v.starts_with('0') && v.bytes().all(|b| b.is_ascii_digit());
    WORDS.contains(&v) || octal
}

/// Findings for plain scalars that YAML 1.1 would not read as text, except
/// where a boolean is meant (`true`/`false` written as such).
/// Takes (1-based line number, line) pairs.
pub fn scan<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut block_indent: Option<usize> = None;
    for (number, line) in lines {
        let indent = line.len() - line.trim_start().len();
        let body = line.trim();
        if let Some(bi) = block_indent {
            if body.is_empty() || indent > bi {
                continue;
            }
            block_indent = None;
        }
        if body.starts_with('#') {
            continue;
        }
        let item = body.strip_prefix("- ").unwrap_or(body);
        let value = match item.split_once(": ") {
            Some((_, v)) => v.trim(),
            None if item.ends_with(':') => continue,
            None if body.starts_with("- ") => item.trim(),
            None => continue,
        };
        if value.starts_with('|') || value.starts_with('>') {
            block_indent = Some(indent);
            continue;
        }
        if ["true", "false"].contains(&value) || !yaml11_non_string(value) {
            continue;
        }
        out.push(Finding {
            level: Level::Warning,
            path: format!("line {number}"),
            message: format!("YAML 1.1 does not read the unquoted `{value}` as text; quote it"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_unquoted_traps_outside_block_scalars() {
        let text = "#cloud-config\nhostname: no\nwrite_files:\n  - path: \"/a\"\n    permissions: 0644\n    content: |\n      enabled: yes\n      mode: 0755\ncoreos:\n  units:\n    - name: \"x\"\n      enable: true\n    - on\n";
        let lines: Vec<String> = scan(text.lines().enumerate().map(|(i, l)| (i + 1, l)))
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(lines, vec!["line 2", "line 5", "line 13"]);
    }

    #[test]
    fn quoted_values_are_fine() {
        assert!(scan([(1, "hostname: \"no\""), (2, "permissions: '0644'")].into_iter()).is_empty());
    }
}
