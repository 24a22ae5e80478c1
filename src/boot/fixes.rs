//! What a sysadmin can do about a failed boot step: the `fix` of a
//! [`super::Failure`], written once for every server that reports one.

use std::path::Path;

use super::Stage;
use crate::spec::Mac;

/// A file a machine asked for is not under the served root.
pub fn missing_file(stage: Stage, file: &str, root: &Path) -> String {
    let file = file.trim_start_matches('/');
    let wanted = root.join(file);
    match stage {
        Stage::Kernel | Stage::Initrd => format!(
            "put the spec's [boot] {} at {} (`bootfleet images fetch flatcar` or \
             `bootfleet images testos` fetches one), or correct [boot] {0} in the spec",
            stage.name(),
            wanted.display(),
        ),
        _ => format!(
            "put {file} at {} (`bootfleet images stage` copies the boot loaders \
             from the system's packages)",
            wanted.display()
        ),
    }
}

/// A machine the spec does not list asked DHCP to boot.
pub fn unknown_machine(mac: Mac) -> String {
    format!(
        "add it to the spec ([[nodes]] with mac = \"{mac}\"), or add an [enrolment] \
         section to boot machines the spec does not list"
    )
}

/// A config or phone-home with a token that is not the node's.
pub const WRONG_TOKEN: &str = "its kernel command line holds a token this server did not \
     issue (the site key changed, or another server booted it): reboot the machine so it \
     fetches a fresh script";

/// An Ignition config asked of a server whose spec renders cloud-configs
/// (the machine kept a kernel command line of another spec).
pub const CONFIG_FORMAT: &str = "the machine booted with `ignition.config.url=` but the spec \
     renders cloud-configs: set `config = \"ignition\"` under [boot], or reboot the machine \
     so it fetches a fresh script";

/// A cloud-config or phone-home from an address that is not the node's.
pub fn wrong_source(node: &str) -> String {
    format!(
        "{node}'s OS asked from an address bootfleet did not lease to it: let the OS take its \
         address from bootfleet's DHCP, or serve without --check-source"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_kernel_names_the_spec_key_and_the_path_wanted() {
        let fix = missing_file(Stage::Initrd, "/f/initrd.img", Path::new("/srv/images"));
        assert!(
            fix.contains("[boot] initrd at /srv/images/f/initrd.img"),
            "{fix}"
        );
        let fix = missing_file(Stage::Loader, "undionly.kpxe", Path::new("/srv/images"));
        assert!(fix.contains("images stage"), "{fix}");
    }
}
