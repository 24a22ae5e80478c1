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

/// The build script, run by bash with the output directory as `$1`.
const SCRIPT: &str = include_str!("testos.sh");

/// Builds the test OS into `images/testos/` unless both files are there;
/// returns the directory.
pub fn build(images: &Path) -> Result<PathBuf, ImagesError> {
    let out = images.join("testos");
    let o = Command::new("bash")
        .arg("-c")
        .arg(SCRIPT)
        .arg("bootfleet-testos")
        .arg(&out)
        .output()
        .map_err(ImagesError::TestosSpawn)?;
    if !o.status.success() {
        return Err(ImagesError::Testos(
            String::from_utf8_lossy(&o.stderr).trim().to_owned(),
        ));
    }
    Ok(out)
}

/// True when both files of the test OS are in `images`, built by this
/// version of the script (its `recipe=` number, kept in `.recipe`).
pub fn current(images: &Path) -> bool {
    let files = [KERNEL, INITRD]
        .iter()
        .all(|f| images.join(f).metadata().is_ok_and(|m| m.len() > 0));
    let built = std::fs::read_to_string(images.join("testos/.recipe")).unwrap_or_default();
    files && Some(built.trim()) == recipe()
}

/// The script's `recipe=N`: bumped whenever what the image holds changes.
fn recipe() -> Option<&'static str> {
    SCRIPT.lines().find_map(|l| l.strip_prefix("recipe="))
}
