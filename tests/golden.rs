//! Golden files: every file rendered from every example, compared byte for
//! byte with `tests/golden/`. After an intended change, regenerate with
//! `INSTA_UPDATE=always cargo test golden` and review the diff.

use crate::support::*;

#[test]
fn every_rendered_file_of_every_example_matches_its_golden_file() {
    for ex in examples() {
        let stem = ex.file_stem().unwrap().to_string_lossy().into_owned();
        let (_state, out) = render_example(ex.file_name().unwrap().to_str().unwrap());
        let files = files_under(out.path());
        insta::with_settings!({snapshot_path => "golden", prepend_module_to_snapshot => false, omit_expression => true}, {
            insta::assert_snapshot!(format!("{stem}__listing"), files.join("\n"));
            for f in files.iter().filter(|f| !f.ends_with(".bootfleet-manifest")) {
                let content = std::fs::read_to_string(out.path().join(f)).unwrap();
                insta::assert_snapshot!(format!("{stem}__{}", f.replace('/', "__")), content);
            }
        });
    }
}

#[test]
fn same_spec_and_key_give_the_same_bytes() {
    let state = fixed_state();
    let ex = root().join("examples/rack.toml");
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for dir in [&a, &b] {
        render_spec(state.path(), &ex, dir.path());
    }
    let files = files_under(a.path());
    assert_eq!(files, files_under(b.path()));
    for f in files {
        assert_eq!(
            std::fs::read(a.path().join(&f)).unwrap(),
            std::fs::read(b.path().join(&f)).unwrap(),
            "{f}"
        );
    }
}
