//! The shape of a cloud-config as Flatcar's coreos-cloudinit reads it: every
//! key it knows, its type, and the values it accepts.

/// The type of a value.
pub enum Shape {
    Str,
    Bool,
    List(&'static Shape),
    Struct(&'static [Field]),
}

/// A known key.
pub struct Field {
    pub name: &'static str,
    pub shape: &'static Shape,
    /// Set for keys coreos-cloudinit warns about.
    pub deprecated: Option<&'static str>,
    /// Values the key accepts, when it is restricted.
    pub valid: Option<fn(&str) -> bool>,
}

const fn f(name: &'static str, shape: &'static Shape) -> Field {
    Field {
        name,
        shape,
        deprecated: None,
        valid: None,
    }
}

const fn valid(name: &'static str, check: fn(&str) -> bool) -> Field {
    Field {
        name,
        shape: &Shape::Str,
        deprecated: None,
        valid: Some(check),
    }
}

const fn gone(name: &'static str, why: &'static str) -> Field {
    Field {
        name,
        shape: &Shape::Struct(&[]),
        deprecated: Some(why),
        valid: None,
    }
}

const STR: &Shape = &Shape::Str;
const BOOL: &Shape = &Shape::Bool;
const STRS: &Shape = &Shape::List(STR);

fn unit_command(v: &str) -> bool {
    [
        "start",
        "stop",
        "restart",
        "reload",
        "try-restart",
        "reload-or-restart",
        "reload-or-try-restart",
    ]
    .contains(&v)
}

fn permissions(v: &str) -> bool {
    let digits = v.strip_prefix('0').filter(|d| d.len() >= 3).unwrap_or(v);
    (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
}

fn encoding(v: &str) -> bool {
    [
        "base64",
        "b64",
        "gz",
        "gzip",
        "gz+base64",
        "gzip+base64",
        "gz+b64",
        "gzip+b64",
    ]
    .contains(&v)
}

fn reboot_strategy(v: &str) -> bool {
    ["best-effort", "etcd-lock", "reboot", "off"].contains(&v)
}

const DROP_IN: &Shape = &Shape::Struct(&[f("name", STR), f("content", STR)]);

const UNIT: &Shape = &Shape::Struct(&[
    f("name", STR),
    f("mask", BOOL),
    f("enable", BOOL),
    f("runtime", BOOL),
    f("content", STR),
    valid("command", unit_command),
    f("drop_ins", &Shape::List(DROP_IN)),
]);

const FILE: &Shape = &Shape::Struct(&[
    valid("encoding", encoding),
    f("content", STR),
    f("owner", STR),
    f("path", STR),
    valid("permissions", permissions),
]);

const USER: &Shape = &Shape::Struct(&[
    f("name", STR),
    f("passwd", STR),
    f("ssh_authorized_keys", STRS),
    f("coreos_ssh_import_github", STR),
    f("coreos_ssh_import_github_users", STRS),
    f("coreos_ssh_import_url", STR),
    f("gecos", STR),
    f("homedir", STR),
    f("no_create_home", BOOL),
    f("primary_group", STR),
    f("groups", STRS),
    f("no_user_group", BOOL),
    f("system", BOOL),
    f("no_log_init", BOOL),
    f("shell", STR),
    f("sudo", STR),
]);

const FLANNEL: &Shape = &Shape::Struct(&[
    f("etcd_endpoints", STR),
    f("etcd_cafile", STR),
    f("etcd_certfile", STR),
    f("etcd_keyfile", STR),
    f("etcd_prefix", STR),
    f("etcd_username", STR),
    f("etcd_password", STR),
    f("ip_masq", STR),
    f("subnet_file", STR),
    f("interface", STR),
    f("public_ip", STR),
]);

const LOCKSMITH: &Shape = &Shape::Struct(&[
    f("endpoint", STR),
    f("etcd_cafile", STR),
    f("etcd_certfile", STR),
    f("etcd_keyfile", STR),
    f("etcd_username", STR),
    f("etcd_password", STR),
    f("group", STR),
    f("reboot_window_start", STR),
    f("reboot_window_length", STR),
]);

const OEM: &Shape = &Shape::Struct(&[
    f("id", STR),
    f("name", STR),
    f("version_id", STR),
    f("home_url", STR),
    f("bug_report_url", STR),
]);

const UPDATE: &Shape = &Shape::Struct(&[
    valid("reboot_strategy", reboot_strategy),
    f("server", STR),
    f("group", STR),
]);

const COREOS: &Shape = &Shape::Struct(&[
    gone("etcd", "etcd is no longer shipped in Container Linux"),
    gone("etcd2", "etcd2 is no longer shipped in Container Linux"),
    f("flannel", FLANNEL),
    gone("fleet", "fleet is no longer shipped in Container Linux"),
    f("locksmith", LOCKSMITH),
    f("oem", OEM),
    f("update", UPDATE),
    f("units", &Shape::List(UNIT)),
]);

/// The whole document.
pub const ROOT: &Shape = &Shape::Struct(&[
    f("ssh_authorized_keys", STRS),
    f("coreos", COREOS),
    f("write_files", &Shape::List(FILE)),
    f("hostname", STR),
    f("users", &Shape::List(USER)),
    f("manage_etc_hosts", STR),
]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permission_forms() {
        for ok in ["644", "0644", "0755", "1777", "01777"] {
            assert!(permissions(ok), "{ok}");
        }
        for bad in ["64", "0888", "rw-r--r--", "00644x", "12345"] {
            assert!(!permissions(bad), "{bad}");
        }
    }
}
