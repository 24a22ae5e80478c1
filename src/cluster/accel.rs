//! KVM or TCG. `/dev/kvm` can exist and still not run a guest (a nested
//! or paravirtual host where `-enable-kvm` hangs once the guest leaves
//! real mode), so `auto` boots the cluster's own kernel under KVM for a
//! few seconds without a root disk: a kernel that gets as far as its
//! "cannot mount root" panic (and with `panic=-1 -no-reboot`, quits QEMU)
//! proves KVM works. The answer is kept per host boot.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::spec::Accel;

/// What the VMs run on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub kvm: bool,
    pub why: String,
}

/// How long the probe guest may take to panic under KVM.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Decides for `accel`; `kernel` is what the probe boots, `cache` the
/// file the answer is kept in.
pub fn decide(accel: Accel, kernel: &Path, cache: &Path) -> Decision {
    match accel {
        Accel::Kvm => {
            return Decision {
                kvm: true,
                why: "KVM, as the spec says".into(),
            };
        }
        Accel::Tcg => {
            return Decision {
                kvm: false,
                why: "TCG (software emulation), as the spec says".into(),
            };
        }
        Accel::Auto => {}
    }
    if !Path::new("/dev/kvm").exists() {
        return Decision {
            kvm: false,
            why: "TCG (software emulation): this host has no /dev/kvm".into(),
        };
    }
    let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let key = format!("{} {}", boot_id.trim(), kernel.display());
    if let Some(kvm) = std::fs::read_to_string(cache).ok().and_then(|t| {
        let (k, v) = t.trim().rsplit_once(' ')?;
        (k == key).then(|| v == "kvm")
    }) {
        return decision(kvm, " (probed earlier since this host booted)");
    }
    let kvm = probe(kernel);
    if let Some(dir) = cache.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(
        cache,
        format!("{key} {}\n", if kvm { "kvm" } else { "tcg" }),
    );
    decision(kvm, "")
}

fn decision(kvm: bool, note: &str) -> Decision {
    Decision {
        kvm,
        why: if kvm {
            format!("KVM: a probe guest booted under it{note}")
        } else {
            format!(
                "TCG (software emulation, slow): /dev/kvm exists but a probe guest did not boot under it within {} s{note}; set `accel = \"kvm\"` under [libvirt] to insist",
                PROBE_TIMEOUT.as_secs()
            )
        },
    }
}

/// Boots `kernel` under KVM without a root disk; true when it reaches its
/// panic and QEMU exits by itself.
fn probe(kernel: &Path) -> bool {
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-accel",
            "kvm",
            "-m",
            "128",
            "-nodefaults",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "none",
            "-no-reboot",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "panic=-1 root=/dev/nonexistent"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut child) = child else { return false };
    let deadline = Instant::now() + PROBE_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status.success(),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return false;
            }
        }
    }
}
