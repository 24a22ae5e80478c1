//! Every example parses; every example with a bogus key in any section is
//! rejected at the right line.

use crate::support::*;

#[test]
fn every_example_checks_clean() {
    let state = fixed_state();
    for ex in examples() {
        let out = bootfleet(state.path(), &["check", ex.to_str().unwrap()]);
        assert!(out.status.success(), "{}: {}", ex.display(), stderr(&out));
        assert!(stdout(&out).contains(": ok: "), "{}", stdout(&out));
        assert_eq!(stderr(&out), "", "{}: no warnings expected", ex.display());
    }
}

#[test]
fn a_bogus_key_in_any_section_of_any_example_is_rejected_at_its_line() {
    for ex in examples() {
        let text = std::fs::read_to_string(&ex).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let headers: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.starts_with('['))
            .map(|(i, _)| i)
            .collect();
        assert!(headers.len() >= 4, "{}", ex.display());
        for h in headers {
            let mut edited: Vec<&str> = lines.clone();
            edited.insert(h + 1, "bogus_key = 1");
            let source = edited.join("\n");
            let err = bootfleet::spec::parse(&ex, &source).expect_err("bogus key accepted");
            let bootfleet::spec::SpecError::Invalid { diagnostics, .. } = err else {
                panic!("not a spec error")
            };
            assert_eq!(diagnostics.len(), 1);
            let d = &diagnostics[0];
            assert_eq!(d.line, h + 2, "{} after {}: {d}", ex.display(), lines[h]);
            assert!(d.message.contains("unknown field `bogus_key`"), "{d}");
            assert!(
                d.help.as_deref().unwrap().contains("belongs to that table"),
                "{d}"
            );
        }
    }
}

#[test]
fn a_key_written_under_the_wrong_table_is_caught() {
    // `domain` belongs to [cluster] but follows the [network] header.
    let source = "[cluster]\nname = \"a\"\n\n[network]\ndomain = \"lab\"\ninterface = \"eth0\"\nsubnet = \"10.0.0.0/24\"\nserver = \"10.0.0.2\"\n\n[boot]\nflatcar = \"1.2.3\"\n";
    let err = bootfleet::spec::parse(std::path::Path::new("m.toml"), source).unwrap_err();
    let text = err_text(err);
    assert!(
        text.contains("m.toml:5:1: error: unknown field `domain`"),
        "{text}"
    );
}

fn err_text(e: bootfleet::spec::SpecError) -> String {
    match e {
        bootfleet::spec::SpecError::Invalid { diagnostics, .. } => diagnostics
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    }
}
