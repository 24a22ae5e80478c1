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
mod skeleton;
mod yaml11;

use std::fmt;

use yaml_serde::Value;

use schema::{Field, ROOT, Shape};
use skeleton::Skeleton;

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
    let header = text.split('\n').next().unwrap_or("").trim_end();
    if header != "#cloud-config" {
        return vec![finding(
            Level::Error,
            "(header)".into(),
            "the first line must be \"#cloud-config\"",
        )];
    }
    // Parse the structure only (see `skeleton`); when in doubt, or to report
    // a parse error at its real line, parse the whole text.
    let mut out = Vec::new();
    let parsed = match skeleton::skeleton(text) {
        Skeleton::Misindented(line) => {
            let message = "a line of this block scalar is less indented than its first line, which ends the scalar";
            return vec![finding(Level::Error, format!("line {line}"), message)];
        }
        Skeleton::Unhandled => {
            out.extend(yaml11::scan(
                text.lines().enumerate().map(|(i, l)| (i + 1, l)),
            ));
            yaml_serde::from_str::<Value>(text)
        }
        Skeleton::Text { text: skel, lines } => {
            out.extend(yaml11::scan(lines.iter().copied().zip(skel.lines())));
            yaml_serde::from_str::<Value>(&skel).or_else(|_| yaml_serde::from_str::<Value>(text))
        }
    };
    let doc = match parsed {
        Ok(doc) => doc,
        Err(e) => {
            let place = e
                .location()
                .map_or("(yaml)".to_owned(), |l| format!("line {}", l.line()));
            out.push(finding(
                Level::Error,
                place,
                &format!("YAML does not parse: {e}"),
            ));
            return out;
        }
    };
    let mut walk = Walk {
        path: Vec::new(),
        out,
    };
    match &doc {
        Value::Null => {}
        Value::Mapping(_) => walk.check(&doc, ROOT),
        _ => walk.out.push(finding(
            Level::Error,
            "(document)".into(),
            "the document must be a mapping of keys",
        )),
    }
    walk.out
}

fn finding(level: Level, path: String, message: &str) -> Finding {
    Finding {
        level,
        path,
        message: message.to_owned(),
    }
}

/// One step into the document.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A walk over the document against the schema. The path is kept as a
/// stack and only turned into text for a finding.
struct Walk<'a> {
    path: Vec<Seg<'a>>,
    out: Vec<Finding>,
}

impl<'a> Walk<'a> {
    fn report(&mut self, level: Level, message: &str) {
        let mut path = String::new();
        for seg in &self.path {
            match seg {
                Seg::Key(k) if path.is_empty() => path.push_str(k),
                Seg::Key(k) => {
                    path.push('.');
                    path.push_str(k);
                }
                Seg::Index(i) => path.push_str(&format!("[{i}]")),
            }
        }
        self.out.push(finding(level, path, message));
    }

    fn check(&mut self, v: &'a Value, shape: &Shape) {
        match (shape, v) {
            (Shape::Str, Value::String(_)) | (Shape::Bool, Value::Bool(_)) => {}
            (Shape::Str, _) => self.report(Level::Warning, "incorrect type (want a quoted string)"),
            (Shape::Bool, _) => self.report(Level::Warning, "incorrect type (want true or false)"),
            (Shape::List(item), Value::Sequence(items)) => {
                for (i, it) in items.iter().enumerate() {
                    self.path.push(Seg::Index(i));
                    self.check(it, item);
                    self.path.pop();
                }
            }
            (Shape::List(_), _) => self.report(Level::Warning, "incorrect type (want a list)"),
            (Shape::Struct(fields), Value::Mapping(map)) => {
                for (k, val) in map {
                    let Some(key) = k.as_str() else {
                        self.report(Level::Warning, "keys must be strings");
                        continue;
                    };
                    self.path.push(Seg::Key(key));
                    if key.contains('-') {
                        self.report(Level::Info, "uses '-' instead of '_'");
                    }
                    let normal = key.replace('-', "_");
                    match fields.iter().find(|f| f.name == normal) {
                        Some(field) => self.check_field(field, val),
                        None if normal == "write_files"
                            && matches!(self.path[..], [Seg::Key("coreos"), _]) =>
                        {
                            self.report(Level::Info, "write_files doesn't belong under coreos");
                        }
                        None => self.report(Level::Warning, "unrecognized key"),
                    }
                    self.path.pop();
                }
                self.struct_rules(map);
            }
            (Shape::Struct(_), _) => self.report(Level::Warning, "incorrect type (want a mapping)"),
        }
    }

    fn check_field(&mut self, field: &Field, val: &'a Value) {
        if let Some(why) = field.deprecated {
            self.report(Level::Warning, &format!("deprecated key ({why})"));
            return;
        }
        self.check(val, field.shape);
        if let (Some(ok), Value::String(s)) = (field.valid, val) {
            if !s.is_empty() && !ok(s) {
                self.report(Level::Error, &format!("invalid value {s:?}"));
            }
        }
    }

    /// Rules about a mapping as a whole: units need a name, files a path
    /// that is absolute and writable.
    fn struct_rules(&mut self, map: &'a yaml_serde::Mapping) {
        match self.path[..] {
            [Seg::Key("coreos"), Seg::Key("units"), Seg::Index(_)] if !map.contains_key("name") => {
                self.report(Level::Error, "a unit needs a name");
            }
            [Seg::Key("write_files"), Seg::Index(_)] => {
                match map.get("path").and_then(Value::as_str) {
                    None => self.report(Level::Error, "a file needs a path"),
                    Some(p) if !p.starts_with('/') || p.starts_with("/usr") => {
                        self.path.push(Seg::Key("path"));
                        let message = if p.starts_with('/') {
                            "file cannot be written to a read-only filesystem"
                        } else {
                            "the path must be absolute"
                        };
                        self.report(Level::Error, message);
                        self.path.pop();
                    }
                    Some(_) => {}
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
