//! `bootfleet cluster` without a daemon: the XML it gives libvirt
//! (golden files, and accepted by libvirt's own parser in the in-process
//! `test:///default` driver), convergence, and ownership: only tagged
//! resources are the cluster's.

use std::path::Path;

use bootfleet::cluster::driver::{Found, Libvirt};
use bootfleet::cluster::plan::Plan;
use bootfleet::cluster::xml;

use crate::support::*;

/// Counts of the domains, networks and pools of cluster `name` (by their
/// names: tests share the process's one `test:///default` driver).
fn counts(lv: &Libvirt, name: &str) -> (usize, usize, usize) {
    let c = lv.connection();
    let ours = |n: String| n.starts_with(&format!("{name}-")) || n == format!("bootfleet-{name}");
    (
        c.list_all_domains(0)
            .unwrap()
            .into_iter()
            .filter(|d| ours(d.name().unwrap()))
            .count(),
        c.list_all_networks(0)
            .unwrap()
            .into_iter()
            .filter(|n| ours(n.name().unwrap()))
            .count(),
        c.list_all_storage_pools(0)
            .unwrap()
            .into_iter()
            .filter(|p| ours(p.name().unwrap()))
            .count(),
    )
}

/// Defines every resource of `plan` in the connection (libvirt parses and
/// checks each document), then removes them again.
fn validate(lv: &Libvirt, plan: &Plan) {
    let c = lv.connection();
    let nets: Vec<_> = plan
        .networks
        .iter()
        .map(|net| {
            c.define_network_xml(&xml::network(plan, net).unwrap())
                .expect("network XML")
        })
        .collect();
    let p = c
        .define_storage_pool_xml(&xml::pool(plan).unwrap(), 0)
        .expect("pool XML");
    p.create(0).unwrap();
    for d in &plan.domains {
        let v = virt::storage_vol::StorageVol::create_xml(&p, &xml::volume(d).unwrap(), 0)
            .expect("volume XML");
        let dom = c
            .define_domain_xml(&xml::domain(plan, d).unwrap())
            .expect("domain XML");
        dom.undefine().unwrap();
        v.delete(0).unwrap();
    }
    p.destroy().unwrap();
    p.undefine().unwrap();
    for n in nets {
        n.undefine().unwrap();
    }
}

fn spec_of(path: &Path) -> bootfleet::spec::Spec {
    bootfleet::spec::load(path).expect("example spec").spec
}

/// A spec of cluster `name` whose libvirt connection is the in-process
/// test driver.
fn test_driver_spec(dir: &Path, name: &str) -> bootfleet::spec::Spec {
    let text = std::fs::read_to_string(root().join("examples/quickstart.toml")).unwrap();
    let text = text
        .replace(
            "[libvirt]\n",
            "[libvirt]\nuri = \"test:///default\"\naccel = \"tcg\"\n",
        )
        .replace("name = \"quickstart\"", &format!("name = \"{name}\""));
    let path = dir.join("spec.toml");
    std::fs::write(&path, text).unwrap();
    spec_of(&path)
}

#[test]
fn the_libvirt_xml_of_every_example_matches_its_golden_file_and_libvirt_accepts_it() {
    let lv = Libvirt::open("test:///default").unwrap();
    for ex in examples() {
        let spec = spec_of(&ex);
        let stem = ex.file_stem().unwrap().to_string_lossy().into_owned();
        let console = format!("/var/lib/bootfleet/clusters/{}/console", spec.cluster.name);
        let plan = Plan::new(&spec, false, Path::new(&console));
        let mut docs = vec![
            (
                "network".to_owned(),
                xml::network(&plan, &plan.networks[0]).unwrap(),
            ),
            ("pool".to_owned(), xml::pool(&plan).unwrap()),
        ];
        for d in &plan.domains {
            docs.push((format!("volume__{}", d.node), xml::volume(d).unwrap()));
            docs.push((
                format!("domain__{}", d.node),
                xml::domain(&plan, d).unwrap(),
            ));
        }
        insta::with_settings!({snapshot_path => "golden/libvirt", prepend_module_to_snapshot => false, omit_expression => true}, {
            for (name, text) in &docs {
                insta::assert_snapshot!(format!("{stem}__{name}"), text);
            }
        });
        // libvirt's own parser takes each document (and names what it
        // does not like, which fails the test).
        for (name, text) in &docs {
            assert!(
                roxmltree::Document::parse(text).is_ok(),
                "{stem} {name}: not XML"
            );
            assert_eq!(
                xml::owner(text).is_some(),
                name == "network" || name.starts_with("domain"),
                "{stem} {name}: only networks and domains carry the tag"
            );
        }
        validate(&lv, &plan);
    }
}

#[test]
fn a_uefi_domain_loads_ovmf_with_an_nvram_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        std::fs::read_to_string(root().join("examples/ci.toml")).unwrap() + "firmware = \"uefi\"\n";
    let path = dir.path().join("uefi.toml");
    std::fs::write(&path, text).unwrap();
    let spec = spec_of(&path);
    let plan = Plan::new(&spec, false, dir.path());
    let x = xml::domain(&plan, &plan.domains[0]).unwrap();
    assert!(
        x.contains(&format!(
            "<loader readonly=\"yes\" type=\"pflash\">{}</loader>",
            xml::OVMF_CODE
        )),
        "{x}"
    );
    assert!(
        x.contains("/var/lib/libvirt/qemu/nvram/ci-ci0_VARS.fd"),
        "{x}"
    );
    assert!(!x.contains("useserial"), "{x}");
}

#[test]
fn values_from_the_spec_are_escaped_in_the_xml() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(root().join("examples/ci.toml"))
        .unwrap()
        .replace(
            "boot_timeout = \"5m\"",
            "boot_timeout = \"5m\"\npool_dir = \"/srv/a&b<c>'d\\\"\"",
        );
    let path = dir.path().join("esc.toml");
    std::fs::write(&path, text).unwrap();
    let plan = Plan::new(&spec_of(&path), false, dir.path());
    let x = xml::pool(&plan).unwrap();
    assert!(
        x.contains("<path>/srv/a&amp;b&lt;c&gt;&apos;d&quot;</path>"),
        "{x}"
    );
    let doc = roxmltree::Document::parse(&x).unwrap();
    assert_eq!(
        doc.descendants()
            .find(|n| n.has_tag_name("path"))
            .unwrap()
            .text(),
        Some("/srv/a&b<c>'d\"")
    );
}

#[test]
fn a_second_up_in_the_test_driver_converges_without_duplicating_anything() {
    let dir = tempfile::tempdir().unwrap();
    let spec = test_driver_spec(dir.path(), "converge");
    let plan = Plan::new(&spec, false, dir.path());
    let lv = Libvirt::open("test:///default").unwrap();
    let before = counts(&lv, "converge");
    for round in 0..2 {
        lv.ensure_network(&plan, &plan.networks[0]).unwrap();
        lv.ensure_storage(&plan).unwrap();
        let started = lv.ensure_domains(&plan).unwrap();
        if round == 0 {
            assert_eq!(started, ["node0", "node1", "node2"]);
        } else {
            assert!(
                started.is_empty(),
                "running domains are not started again: {started:?}"
            );
        }
        let now = counts(&lv, "converge");
        assert_eq!(
            now,
            (before.0 + 3, before.1 + 1, before.2 + 1),
            "round {round}: domains, networks, pools"
        );
        assert_eq!(lv.volumes(&plan).unwrap().len(), 3);
    }
    assert_eq!(
        lv.network_found(&plan, &plan.networks[0]).unwrap(),
        Found::Ours { active: true }
    );
    assert_eq!(lv.pool_found(&plan).unwrap(), Found::Ours { active: true });
    // A missing piece is added back, the rest left as it is.
    assert!(lv.remove_domain(&plan, &plan.domains[1]).unwrap());
    assert_eq!(lv.ensure_domains(&plan).unwrap(), ["node1"]);
    assert_eq!(
        counts(&lv, "converge"),
        (before.0 + 3, before.1 + 1, before.2 + 1)
    );
    // Down removes all of it.
    for d in &plan.domains {
        assert!(lv.remove_domain(&plan, d).unwrap());
    }
    assert!(lv.remove_network(&plan, &plan.networks[0]).unwrap());
    assert!(lv.remove_storage(&plan).unwrap());
    assert_eq!(counts(&lv, "converge"), before);
}

#[test]
fn untagged_namesakes_in_the_test_driver_are_never_the_clusters_and_never_removed() {
    let dir = tempfile::tempdir().unwrap();
    let spec = test_driver_spec(dir.path(), "namesakes");
    let plan = Plan::new(&spec, false, dir.path());
    let lv = Libvirt::open("test:///default").unwrap();
    // Someone else's network, pool and domain with the cluster's names.
    let d = &plan.domains[0];
    let c = lv.connection();
    c.define_network_xml(&format!(
        "<network><name>{}</name><bridge name='other0'/><ip address='10.250.0.1' netmask='255.255.255.0'/></network>",
        plan.networks[0].name
    ))
    .unwrap();
    c.define_storage_pool_xml(
        &format!(
            "<pool type='dir'><name>{}</name><target><path>/tmp/other</path></target></pool>",
            plan.pool.name
        ),
        0,
    )
    .unwrap();
    c.define_domain_xml(&format!(
        "<domain type='qemu'><name>{}</name><memory unit='MiB'>128</memory><os><type arch='x86_64'>hvm</type></os></domain>",
        d.name
    ))
    .unwrap();
    assert_eq!(
        lv.network_found(&plan, &plan.networks[0]).unwrap(),
        Found::Foreign
    );
    assert_eq!(lv.pool_found(&plan).unwrap(), Found::Foreign);
    assert_eq!(lv.domain_found(&plan, d).unwrap(), Found::Foreign);
    let before = counts(&lv, "namesakes");
    assert!(!lv.remove_domain(&plan, d).unwrap());
    assert!(!lv.remove_network(&plan, &plan.networks[0]).unwrap());
    assert!(!lv.remove_storage(&plan).unwrap());
    assert_eq!(
        counts(&lv, "namesakes"),
        before,
        "nothing of someone else's was removed"
    );
    // A tag of another cluster is not this one's either.
    let other = xml::domain(&plan, d).unwrap().replace(
        &format!("name=\"{}\" node", plan.cluster),
        "name=\"someone-else\" node",
    );
    assert_eq!(xml::owner(&other).as_deref(), Some("someone-else"));
}
