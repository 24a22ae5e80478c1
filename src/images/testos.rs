//! The test OS: Debian's kernel and a busybox initramfs whose `/init`
//! takes an address by DHCP, fetches the `cloud-config-url=` of its kernel
//! command line, prints it to the serial console between markers, calls
//! the phone-home URL in it and powers off. It proves a rack's or a
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

/// True when both files of the test OS are in `images`.
pub fn present(images: &Path) -> bool {
    [KERNEL, INITRD]
        .iter()
        .all(|f| images.join(f).metadata().is_ok_and(|m| m.len() > 0))
}
