//! The test OS: Debian's kernel and a busybox initramfs whose `/init`
//! takes an address by DHCP, fetches the `cloud-config-url=` of its kernel
//! command line, prints it to the serial console between markers, calls
//! the phone-home URL in it and powers off; or, given
//! `ignition.config.url=`, runs Debian's Ignition on its config and prints
//! what Ignition wrote (see `testos.sh`). It proves a rack's or a
//! laptop's PXE path (DHCP, loader, kernel, initrd, cloud-config,
//! phone-home) with nothing but Debian's packages, before Flatcar is
//! fetched; `[boot] testos = true` boots it. Built by `testos.sh` (embedded)
//! with `apt-get download` and `dpkg -x`: nothing is installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ImagesError;

/// The kernel's path under the images directory.
pub const KERNEL: &str = "testos/vmlinuz";
/// The initramfs's path under the images directory.
pub const INITRD: &str = "testos/initrd.img";

/// The build script, run by bash with the output directory as `$1` and
/// the flavour as `$2`.
const SCRIPT: &str = include_str!("testos.sh");

/// What runs after the config was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// busybox's /init phones home itself and powers off (`testos/`).
    Busybox,
    /// Debian's systemd takes over the root Ignition wrote and runs the
    /// units it enabled (`testos-systemd/`): boot it with
    /// `kernel = "testos-systemd/vmlinuz"`, `initrd = "testos-systemd/initrd.img"`.
    Systemd,
}

impl Flavour {
    /// Its directory under the images directory, and the script's name
    /// for it.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            Flavour::Busybox => ("testos", "busybox"),
            Flavour::Systemd => ("testos-systemd", "systemd"),
        }
    }
}

/// Builds the test OS of `flavour` into its directory under `images`
/// unless a build of this recipe is there; returns the directory.
pub fn build(images: &Path, flavour: Flavour) -> Result<PathBuf, ImagesError> {
    let (dir, name) = flavour.names();
    let out = images.join(dir);
    let o = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("bootfleet-testos")
        .arg(&out)
        .arg(name)
        .output()
        .map_err(ImagesError::TestosSpawn)?;
    if !o.status.success() {
        return Err(ImagesError::Testos(
            String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        ));
    }
    Ok(out)
}

/// True when the test OS whose kernel is `kernel` (a path under `images`)
/// was built by this version of the script (its `recipe=` number and the
/// flavour, kept in `.recipe`); true for any other kernel.
pub fn current(images: &Path, kernel: &str) -> bool {
    let flavour = [Flavour::Busybox, Flavour::Systemd]
        .into_iter()
        .find(|f| kernel == format!("{}/vmlinuz", f.names().0));
    let Some(flavour) = flavour else {
        return true;
    };
    let (dir, name) = flavour.names();
    let built = std::fs::read_to_string(images.join(dir).join(".recipe")).unwrap_or_default();
    recipe().is_some_and(|r| built.trim() == format!("{r}-{name}"))
}

/// The script's `recipe=N`: bumped whenever what the image holds changes.
fn recipe() -> Option<&'static str> {
    SCRIPT.lines().find_map(|l| l.strip_prefix("recipe="))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_test_os_of_an_older_recipe_or_another_flavour_is_not_current() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        let r = recipe().expect("the script says its recipe");
        assert!(current(images, "flatcar/1.2.3/vmlinuz"), "not a test OS");
        assert!(!current(images, KERNEL), "nothing built");
        std::fs::create_dir_all(images.join("testos")).unwrap();
        for (stamp, want) in [
            ("1".to_owned(), false),
            (format!("{r}-systemd"), false),
            (format!("{r}-busybox\n"), true),
        ] {
            std::fs::write(images.join("testos/.recipe"), &stamp).unwrap();
            assert_eq!(current(images, KERNEL), want, "{stamp:?}");
        }
        assert!(!current(images, "testos-systemd/vmlinuz"));
    }
}
