//! Rules for `[libvirt]`: how `bootfleet cluster` builds VMs that boot
//! from bootfleet. Every key has a default, so a spec without the table
//! can still be brought up as a test cluster.

use std::path::PathBuf;

use toml::Spanned;

use super::check::{Checker, parse_duration};
use super::{Accel, Firmware, Forward, Libvirt, wire};

/// The connection used when the spec names none: the system's QEMU, which
/// can create bridges (a session connection cannot).
pub const DEFAULT_URI: &str = "qemu:///system";

fn choice<T: Copy>(
    c: &mut Checker,
    v: Option<&Spanned<String>>,
    what: &str,
    options: &[(&str, T)],
) -> Option<T> {
    let Some(v) = v else {
        return Some(options[0].1);
    };
    if let Some((_, t)) = options.iter().find(|(name, _)| *name == v.get_ref()) {
        return Some(*t);
    }
    let names: Vec<String> = options.iter().map(|(n, _)| format!("\"{n}\"")).collect();
    c.error(
        v.span(),
        format!("unknown {what} `{}`", v.get_ref()),
        format!("use one of {}", names.join(", ")),
    );
    None
}

fn bounded(
    c: &mut Checker,
    v: Option<&Spanned<u32>>,
    default: u32,
    what: &str,
    min: u32,
    max: u32,
) -> Option<u32> {
    let Some(v) = v else { return Some(default) };
    if (min..=max).contains(v.get_ref()) {
        return Some(*v.get_ref());
    }
    c.error(
        v.span(),
        format!("{what} must be between {min} and {max}"),
        format!("{default} is the default"),
    );
    None
}

/// Checks `[libvirt]` (or takes every default when it is absent).
/// `in_ram_os` says the boot image runs from memory (Flatcar's PXE image
/// needs about 3 GiB), which sets the default memory.
pub(super) fn libvirt(
    c: &mut Checker,
    w: Option<&wire::Libvirt>,
    cluster: &str,
    in_ram_os: bool,
) -> Option<Libvirt> {
    let empty = wire::Libvirt::default();
    let w = w.unwrap_or(&empty);
    let uri = w
        .uri
        .as_ref()
        .map_or(DEFAULT_URI.to_owned(), |u| u.get_ref().clone());
    let forward = choice(
        c,
        w.network.as_ref(),
        "libvirt network",
        &[("isolated", Forward::Isolated), ("nat", Forward::Nat)],
    );
    let firmware = choice(
        c,
        w.firmware.as_ref(),
        "firmware",
        &[("bios", Firmware::Bios), ("uefi", Firmware::Uefi)],
    );
    let accel = choice(
        c,
        w.accel.as_ref(),
        "accelerator",
        &[
            ("auto", Accel::Auto),
            ("kvm", Accel::Kvm),
            ("tcg", Accel::Tcg),
        ],
    );
    let memory_mib = bounded(
        c,
        w.memory_mib.as_ref(),
        if in_ram_os { 3072 } else { 512 },
        "memory_mib",
        128,
        1 << 20,
    );
    let vcpus = bounded(c, w.vcpus.as_ref(), 1, "vcpus", 1, 256);
    let disk_gib = bounded(c, w.disk_gib.as_ref(), 8, "disk_gib", 1, 1 << 16);
    let pool_dir = match &w.pool_dir {
        None => Some(PathBuf::from(format!(
            "/var/lib/libvirt/images/bootfleet-{cluster}"
        ))),
        Some(p) if p.get_ref().starts_with('/') && !p.get_ref().split('/').any(|s| s == "..") => {
            Some(PathBuf::from(p.get_ref()))
        }
        Some(p) => {
            c.error(
                p.span(),
                "pool_dir must be an absolute path without `..`",
                "write the directory libvirt keeps the disks in, such as /var/lib/libvirt/images/mycluster",
            );
            None
        }
    };
    let boot_timeout = match &w.boot_timeout {
        None => Some(std::time::Duration::from_secs(600)),
        Some(t) => match parse_duration(t.get_ref()) {
            Some(d) => Some(d),
            None => {
                c.error(
                    t.span(),
                    format!("`{}` is not a duration", t.get_ref()),
                    "write a number and a unit: 90s, 10m, 1h",
                );
                None
            }
        },
    };
    Some(Libvirt {
        uri,
        forward: forward?,
        memory_mib: memory_mib?,
        vcpus: vcpus?,
        disk_gib: disk_gib?,
        firmware: firmware?,
        accel: accel?,
        pool_dir: pool_dir?,
        boot_timeout: boot_timeout?,
    })
}
