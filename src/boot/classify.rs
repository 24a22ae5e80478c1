//! Which boot stage a fetched file stands for. Pure: a TFTP file name or
//! an HTTP path, and the spec's kernel and initrd paths, in; a stage out.

use super::Stage;

/// The spec's kernel and initrd, relative to the images root.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub kernel: String,
    pub initrd: String,
}

fn trim(p: &str) -> &str {
    p.trim_start_matches('/')
}

/// The stage a TFTP download stands for: the kernel, the initrd, or else
/// a boot loader or pxelinux configuration.
pub fn tftp(file: &str, names: &Names) -> Stage {
    let f = trim(file);
    if f == trim(&names.kernel) {
        Stage::Kernel
    } else if f == trim(&names.initrd) {
        Stage::Initrd
    } else {
        Stage::Loader
    }
}

/// The stage an HTTP request path (without the query) stands for, or
/// `None` for pages, the API and the like.
pub fn http(path: &str, names: &Names) -> Option<Stage> {
    if path == "/boot.ipxe" || path.starts_with("/ipxe/") {
        return Some(Stage::Script);
    }
    if let Some(asset) = path.strip_prefix("/assets/") {
        // An asset that is neither kernel nor initrd is a loader fetched
        // by UEFI HTTP boot.
        return Some(tftp(asset, names));
    }
    // The config stage: a cloud-config, or Ignition's fetch of its config
    // and of the configs it merges.
    if path.starts_with("/cloud-config/") || path.starts_with("/ignition/") {
        return Some(Stage::CloudConfig);
    }
    if path.starts_with("/phone-home/") {
        return Some(Stage::Booted);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_paths_map_to_stages() {
        let n = Names {
            kernel: "flatcar/vmlinuz".into(),
            initrd: "flatcar/initrd.cpio.gz".into(),
        };
        assert_eq!(tftp("undionly.kpxe", &n), Stage::Loader);
        assert_eq!(tftp("pxelinux.cfg/01-52-54-00-00-00-01", &n), Stage::Loader);
        assert_eq!(tftp("/flatcar/vmlinuz", &n), Stage::Kernel);
        assert_eq!(tftp("flatcar/initrd.cpio.gz", &n), Stage::Initrd);
        assert_eq!(http("/boot.ipxe", &n), Some(Stage::Script));
        assert_eq!(http("/ipxe/boot", &n), Some(Stage::Script));
        assert_eq!(http("/assets/flatcar/vmlinuz", &n), Some(Stage::Kernel));
        assert_eq!(http("/assets/ipxe.efi", &n), Some(Stage::Loader));
        assert_eq!(http("/cloud-config/n1", &n), Some(Stage::CloudConfig));
        assert_eq!(http("/ignition/n1", &n), Some(Stage::CloudConfig));
        assert_eq!(http("/ignition/n1/merge/0", &n), Some(Stage::CloudConfig));
        assert_eq!(http("/phone-home/n1", &n), Some(Stage::Booted));
        assert_eq!(http("/api/v1/nodes", &n), None);
    }
}
