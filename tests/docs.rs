//! The documentation stays true to the program: every key the spec parser
//! accepts is documented in docs/spec.md, and every key docs/spec.md
//! documents is accepted. The accepted keys are asked of the parser itself:
//! a key it does not know makes it list the ones it does (serde's
//! `deny_unknown_fields`), table by table. (The README's tour is run as it
//! stands by the fresh-machine check, `.ci/fresh-machine.sh`.)

use std::collections::BTreeMap;

use bootfleet::spec::wire::SpecFile;

const PROBE: &str = "zz_not_a_key";

/// The keys the parser accepts in the table at `path` (`[]` is the top
/// level), read from its "unknown field" error.
fn accepted_keys(path: &[&str], array: bool) -> Vec<String> {
    let doc = if path.is_empty() {
        format!("{PROBE} = 1\n")
    } else if array {
        format!("{}[[{}]]\n{PROBE} = 1\n", parent(path), path.join("."))
    } else {
        format!("{}[{}]\n{PROBE} = 1\n", parent(path), path.join("."))
    };
    let err = toml::from_str::<SpecFile>(&doc).expect_err("an unknown key must be refused");
    let message = err.message().to_owned();
    let expected = message
        .split_once("expected one of ")
        .map(|(_, rest)| rest)
        .or_else(|| message.split_once("expected ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("no list of keys in the error for {path:?}: {message}"));
    assert!(
        message.contains(PROBE),
        "the error for {path:?} is not about the probe: {message}"
    );
    // serde lists them as "`a`", "`a` or `b`", or "`a`, `b`, `c`".
    expected
        .split(", ")
        .flat_map(|k| k.split(" or "))
        .map(|k| k.trim().trim_matches('`').to_owned())
        .filter(|k| !k.is_empty())
        .collect()
}

/// What a key of the table at `path` holds: a table of its own (probed as
/// `[path.key]`), an array of tables (`[[path.key]]`), or a value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Table,
    ArrayOfTables,
    Value,
}

/// A table under an element of an array of tables (`[nodes.bmc]`) is
/// written after that element's header (`[[nodes]]`).
fn parent(path: &[&str]) -> String {
    match path {
        [first, _, ..] if kind_of(&[], first) == Kind::ArrayOfTables => format!("[[{first}]]\n"),
        _ => String::new(),
    }
}

fn kind_of(path: &[&str], key: &str) -> Kind {
    let mut full: Vec<&str> = path.to_vec();
    full.push(key);
    let parent = parent(&full);
    for (kind, doc) in [
        (
            Kind::Table,
            format!("{parent}[{}]\n{PROBE} = 1\n", full.join(".")),
        ),
        (
            Kind::ArrayOfTables,
            format!("{parent}[[{}]]\n{PROBE} = 1\n", full.join(".")),
        ),
    ] {
        if let Err(e) = toml::from_str::<SpecFile>(&doc) {
            if e.message().contains(&format!("unknown field `{PROBE}`")) {
                return kind;
            }
        }
    }
    Kind::Value
}

/// Every table of the spec, by its TOML header (`cluster`, `cluster.users`,
/// `nodes`, ...), with the keys it accepts and whether it is an array.
fn spec_tables() -> BTreeMap<String, (bool, Vec<String>)> {
    let mut tables = BTreeMap::new();
    let mut todo: Vec<(Vec<String>, bool)> = vec![(vec![], false)];
    while let Some((path, array)) = todo.pop() {
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let keys = accepted_keys(&refs, array);
        for key in &keys {
            let kind = kind_of(&refs, key);
            if kind != Kind::Value {
                let mut child = path.clone();
                child.push(key.clone());
                todo.push((child, kind == Kind::ArrayOfTables));
            }
        }
        tables.insert(path.join("."), (array, keys));
    }
    tables
}

/// docs/spec.md cut into its sections by `## ` heading.
fn spec_doc_sections() -> BTreeMap<String, String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/spec.md")).unwrap();
    let mut sections = BTreeMap::new();
    let mut current = String::new();
    let mut body = String::new();
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            sections.insert(std::mem::take(&mut current), std::mem::take(&mut body));
            current = h.trim().to_owned();
        } else {
            body.push_str(line);
            body.push('\n');
        }
    }
    sections.insert(current, body);
    sections
}

/// The section that documents the table `name`: `## \`[name]\`` or
/// `## \`[[name]]\``; a nested table (`cluster.users`) is documented inside
/// its parent's section.
fn section_for<'a>(
    sections: &'a BTreeMap<String, String>,
    name: &str,
) -> Option<(&'a str, &'a String)> {
    // A nested table may have a section of its own (`[nodes.bmc]`), else
    // it is documented in its top table's.
    let top = name.split('.').next().unwrap();
    let find = |n: &str| {
        sections
            .iter()
            .find(|(h, _)| *h == &format!("`[{n}]`") || *h == &format!("`[[{n}]]`"))
            .map(|(h, b)| (h.as_str(), b))
    };
    find(name).or_else(|| find(top))
}

#[test]
fn every_key_the_spec_parser_accepts_is_documented_in_docs_spec_md() {
    let tables = spec_tables();
    // The probe must have found the whole spec, not stopped at the top.
    for t in [
        "cluster",
        "cluster.users",
        "network",
        "boot",
        "nodes",
        "state",
        "libvirt",
    ] {
        assert!(
            tables.contains_key(t),
            "the parser's tables: {:?}",
            tables.keys()
        );
    }
    let sections = spec_doc_sections();
    let mut missing = Vec::new();
    for (name, (_, keys)) in &tables {
        if name.is_empty() {
            // Top-level keys are the tables themselves.
            for key in keys {
                if section_for(&sections, key).is_none() {
                    missing.push(format!("no section `[{key}]` in docs/spec.md"));
                }
            }
            continue;
        }
        let Some((heading, body)) = section_for(&sections, name) else {
            missing.push(format!("no section for [{name}] in docs/spec.md"));
            continue;
        };
        for key in keys {
            let nested = format!("`[[{name}.{key}]]`");
            if !body.contains(&format!("`{key}`")) && !body.contains(&nested) {
                missing.push(format!("[{name}] {key}: not documented under {heading}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "undocumented spec keys:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_key_docs_spec_md_documents_is_accepted_by_the_parser() {
    let tables = spec_tables();
    let sections = spec_doc_sections();
    let mut wrong = Vec::new();
    for (heading, body) in &sections {
        let Some(name) = heading
            .strip_prefix("`[")
            .and_then(|h| h.strip_suffix("]`"))
        else {
            continue;
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let Some((_, keys)) = tables.get(name) else {
            wrong.push(format!(
                "docs/spec.md documents [{name}], which the parser does not take"
            ));
            continue;
        };
        // The first cell of each row of the section's key table names keys.
        for line in body.lines().filter(|l| l.starts_with("| `")) {
            let cell = line.split('|').nth(1).unwrap_or_default();
            for key in cell
                .split(['`', ','])
                .map(str::trim)
                .filter(|k| !k.is_empty())
            {
                if key.starts_with('[') {
                    continue;
                }
                if !keys.iter().any(|k| k == key) {
                    wrong.push(format!(
                        "[{name}] {key}: documented, but the parser refuses it"
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
