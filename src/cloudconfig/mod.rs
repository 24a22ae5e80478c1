//! Checks a cloud-config the way Flatcar's coreos-cloudinit validator does,
//! so a rendered file that passes here boots without errors or warnings.
//!
//! Mirrors the validator's rules: the `#cloud-config` header, YAML that
//! parses, every key known (dashed spellings and deprecated keys are
//! reported), values of the right type, unit commands, file permissions and
//! encodings from the accepted sets, no files under read-only `/usr`. It is
//! stricter in two places: strings must be YAML strings (YAML 1.1 reads an
//! unquoted `no` or `0644` as something else), and file paths must be
//! absolute. Pure: text in, findings out.

mod schema;
mod yaml11;

use std::fmt;

use yaml_serde::Value;

use schema::{Field, ROOT, Shape};

/// How serious a finding is, in the validator's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Error,
    Warning,
    Info,
}

/// One problem, located by its key path (`coreos.units[2].command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.level {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Info => "info",
        };
        write!(f, "{level}: {}: {}", self.path, self.message)
    }
}

/// Every finding for `text`; empty means coreos-cloudinit takes it cleanly.
pub fn validate(text: &str) -> Vec<Finding> {
    let mut out = Vec::new();
    let header = text.split('\n').next().unwrap_or("").trim_end();
    if header != "#cloud-config" {
        out.push(finding(
            Level::Error,
            "(header)",
            "the first line must be \"#cloud-config\"",
        ));
        return out;
    }
    match yaml_serde::from_str::<Value>(text) {
        Ok(Value::Null) => {}
        Ok(doc @ Value::Mapping(_)) => {
            out.extend(yaml11::scan(text));
            check(&doc, ROOT, "", &mut out);
        }
        Ok(_) => out.push(finding(
            Level::Error,
            "(document)",
            "the document must be a mapping of keys",
        )),
        Err(e) => {
            let place = e
                .location()
                .map_or("(yaml)".to_owned(), |l| format!("line {}", l.line()));
            out.push(finding(
                Level::Error,
                &place,
                &format!("YAML does not parse: {e}"),
            ));
        }
    }
    out
}

fn finding(level: Level, path: &str, message: &str) -> Finding {
    Finding {
        level,
        path: path.to_owned(),
        message: message.to_owned(),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn check(v: &Value, shape: &Shape, path: &str, out: &mut Vec<Finding>) {
    match (shape, v) {
        (Shape::Str, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => {}
        (Shape::Str, _) => out.push(finding(
            Level::Warning,
            path,
            "incorrect type (want a quoted string)",
        )),
        (Shape::Bool, _) => out.push(finding(
            Level::Warning,
            path,
            "incorrect type (want true or false)",
        )),
        (Shape::List(item), Value::Sequence(items)) => {
            for (i, it) in items.iter().enumerate() {
                check(it, item, &format!("{path}[{i}]"), out);
            }
        }
        (Shape::List(_), _) => out.push(finding(
            Level::Warning,
            path,
            "incorrect type (want a list)",
        )),
        (Shape::Struct(fields), Value::Mapping(map)) => {
            for (k, val) in map {
                let Some(key) = k.as_str() else {
                    out.push(finding(Level::Warning, path, "keys must be strings"));
                    continue;
                };
                let here = join(path, key);
                if key.contains('-') {
                    out.push(finding(Level::Info, &here, "uses '-' instead of '_'"));
                }
                let normal = key.replace('-', "_");
                match fields.iter().find(|f| f.name == normal) {
                    Some(field) => check_field(field, val, &here, out),
                    None if path == "coreos" && normal == "write_files" => {
                        out.push(finding(
                            Level::Info,
                            &here,
                            "write_files doesn't belong under coreos",
                        ));
                    }
                    None => out.push(finding(Level::Warning, &here, "unrecognized key")),
                }
            }
            struct_rules(path, map, out);
        }
        (Shape::Struct(_), _) => out.push(finding(
            Level::Warning,
            path,
            "incorrect type (want a mapping)",
        )),
    }
}

fn check_field(field: &Field, val: &Value, path: &str, out: &mut Vec<Finding>) {
    if let Some(why) = field.deprecated {
        out.push(finding(
            Level::Warning,
            path,
            &format!("deprecated key ({why})"),
        ));
        return;
    }
    check(val, field.shape, path, out);
    if let (Some(ok), Value::String(s)) = (field.valid, val) {
        if !s.is_empty() && !ok(s) {
            out.push(finding(Level::Error, path, &format!("invalid value {s:?}")));
        }
    }
}

/// Rules about a mapping as a whole: units need a name, files a path that
/// is absolute and writable.
fn struct_rules(path: &str, map: &yaml_serde::Mapping, out: &mut Vec<Finding>) {
    let is_item_of = |list: &str| {
        path.strip_prefix(list)
            .is_some_and(|rest| rest.starts_with('['))
    };
    if is_item_of("coreos.units") && !map.contains_key("name") {
        out.push(finding(Level::Error, path, "a unit needs a name"));
    }
    if is_item_of("write_files") {
        match map.get("path").and_then(Value::as_str) {
            None => out.push(finding(Level::Error, path, "a file needs a path")),
            Some(p) if !p.starts_with('/') => out.push(finding(
                Level::Error,
                &join(path, "path"),
                "the path must be absolute",
            )),
            Some(p) if p.starts_with("/usr") => {
                out.push(finding(
                    Level::Error,
                    &join(path, "path"),
                    "file cannot be written to a read-only filesystem",
                ));
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests;
