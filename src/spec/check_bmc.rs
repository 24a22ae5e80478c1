//! A node's `bmc`: a driver bootfleet has, the address it needs, and the
//! password from a file or an environment variable, never the spec.

use std::path::Path;

use toml::Spanned;

use super::check::Checker;
use super::{Bmc, BmcDriver, PasswordSource, wire};

/// The checked BMC, or `None` after an error.
pub(super) fn bmc(c: &mut Checker, w: &Spanned<wire::Bmc>) -> Option<Bmc> {
    let span = w.span();
    let w = w.get_ref();
    let driver = match w.driver.get_ref().as_str() {
        "redfish" => BmcDriver::Redfish,
        "ipmi" => BmcDriver::Ipmi,
        "libvirt" => BmcDriver::Libvirt,
        other => {
            c.error(
                w.driver.span(),
                format!("unknown BMC driver `{other}`"),
                "use \"redfish\", \"ipmi\" (IPMI 2.0 over LAN) or \"libvirt\" (the node is a VM)",
            );
            return None;
        }
    };
    let mut ok = true;
    let remote = driver != BmcDriver::Libvirt;
    if remote {
        match &w.address {
            None => {
                c.error(
                    span.clone(),
                    "this BMC has no `address`",
                    if driver == BmcDriver::Redfish {
                        "add `address = \"https://BMC-HOST\"`"
                    } else {
                        "add `address = \"BMC-HOST\"` (or \"HOST:PORT\"; 623 by default)"
                    },
                );
                ok = false;
            }
            Some(a) if driver == BmcDriver::Redfish => {
                let v = a.get_ref();
                if !(v.starts_with("https://") || v.starts_with("http://")) || v.contains(' ') {
                    c.error(
                        a.span(),
                        format!("Redfish address `{v}` is not an http(s) URL"),
                        "write it as https://HOST or https://HOST:PORT",
                    );
                    ok = false;
                } else if v.starts_with("http://") {
                    c.warn(
                        a.span(),
                        "the BMC's credentials would cross the network in clear (http)",
                        "use https:// if the BMC offers it",
                    );
                }
            }
            Some(_) => {}
        }
        if w.username.is_none() {
            c.error(
                span.clone(),
                "this BMC has no `username`",
                "add `username = \"...\"`",
            );
            ok = false;
        }
    }
    let base = c.path.parent().unwrap_or(Path::new(".")).to_owned();
    let password = match (&w.password_file, &w.password_env) {
        (Some(f), None) => Some(PasswordSource::File(base.join(f.get_ref()))),
        (None, Some(v)) => Some(PasswordSource::Env(v.get_ref().clone())),
        (None, None) if remote => {
            c.error(
                span.clone(),
                "this BMC's password comes from nowhere",
                "add `password_file = \"PATH\"` (a file of mode 0600) or `password_env = \"VARIABLE\"`; never the password itself",
            );
            ok = false;
            None
        }
        (Some(f), Some(_)) => {
            c.error(
                f.span(),
                "both `password_file` and `password_env`",
                "keep one of them",
            );
            ok = false;
            None
        }
        (None, None) => None,
    };
    if !remote {
        for (key, given) in [
            ("username", w.username.is_some()),
            ("password_file", w.password_file.is_some()),
            ("password_env", w.password_env.is_some()),
            ("ca_file", w.ca_file.is_some()),
        ] {
            if given {
                c.error(
                    span.clone(),
                    format!("a libvirt BMC takes no `{key}`"),
                    "remove it (libvirt is reached with the `address` URI, as virsh -c)",
                );
                ok = false;
            }
        }
    }
    if driver != BmcDriver::Redfish && (w.ca_file.is_some() || w.insecure.is_some()) && remote {
        c.error(
            span.clone(),
            "`ca_file` and `insecure` are for Redfish (TLS)",
            "remove them",
        );
        ok = false;
    }
    if w.insecure == Some(true) && w.ca_file.is_some() {
        c.error(
            span.clone(),
            "`insecure = true` and a `ca_file`",
            "keep the ca_file (verified) and remove insecure",
        );
        ok = false;
    }
    ok.then(|| Bmc {
        driver,
        address: w.address.as_ref().map(|a| a.get_ref().clone()),
        system: w.system.as_ref().map(|s| s.get_ref().clone()),
        username: w.username.as_ref().map(|u| u.get_ref().clone()),
        password,
        ca_file: w.ca_file.as_ref().map(|f| base.join(f.get_ref())),
        insecure: w.insecure.unwrap_or(false),
    })
}
