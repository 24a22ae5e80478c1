//! From the wire form to the checked [`Spec`]: every rule that can be
//! checked without the network, each failure a [`Diagnostic`] with a fix.
//!
//! The checker keeps going after an error so the user sees every problem in
//! one run. Rules for nodes live in `check_nodes.rs`, rules for etcd, fleet
//! and the load in `check_services.rs`.

use std::net::Ipv4Addr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use toml::Spanned;

use super::wire;
use super::{BiosLoader, Boot, Cluster, DhcpMode, Diagnostic, Network, Severity, Spec, User};

/// Collects diagnostics against one source file.
pub(super) struct Checker<'a> {
    pub path: &'a Path,
    pub source: &'a str,
    pub diags: Vec<Diagnostic>,
}

impl Checker<'_> {
    /// Records an error at `span` with a fix.
    pub fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = Diagnostic::at(Severity::Error, self.path, self.source, span, message).help(help);
        self.diags.push(d);
    }

    /// Records a warning at `span` with advice.
    pub fn warn(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        let d = Diagnostic::at(Severity::Warning, self.path, self.source, span, message).help(help);
        self.diags.push(d);
    }

    /// Parses an IPv4 address, recording an error if it is not one.
    pub fn ipv4(&mut self, value: &Spanned<String>, what: &str) -> Option<Ipv4Addr> {
        match value.get_ref().parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    value.span(),
                    format!("{what} `{}` is not an IPv4 address", value.get_ref()),
                    "write a dotted quad such as 10.0.0.2",
                );
                None
            }
        }
    }

    /// Requires `value` to match `ok` character by character.
    pub fn charset(
        &mut self,
        value: &Spanned<String>,
        what: &str,
        ok: impl Fn(char) -> bool,
        allowed: &str,
    ) -> bool {
        let v = value.get_ref();
        if v.is_empty() {
            self.error(
                value.span(),
                format!("{what} is empty"),
                format!("give a value made of {allowed}"),
            );
            return false;
        }
        if let Some(bad) = v.chars().find(|c| !ok(*c)) {
            self.error(
                value.span(),
                format!("{what} `{v}` contains {bad:?}"),
                format!("use only {allowed}"),
            );
            return false;
        }
        true
    }

    /// Requires `value` to be a DNS label (a host name without dots).
    pub fn dns_label(&mut self, value: &Spanned<String>, what: &str) -> bool {
        let v = value.get_ref();
        if !self.charset(
            value,
            what,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-',
            "lower-case letters, digits and '-'",
        ) {
            return false;
        }
        if v.len() > 63 || v.starts_with('-') || v.ends_with('-') {
            self.error(
                value.span(),
                format!("{what} `{v}` is not a valid host name"),
                "use at most 63 characters and do not start or end with '-'",
            );
            return false;
        }
        true
    }
}

/// Checks `source` (the text of `path`); returns the spec when the wire form
/// parsed, plus every diagnostic. The caller decides by the severities.
pub(super) fn check(path: &Path, source: &str) -> (Option<Spec>, Vec<Diagnostic>) {
    let mut c = Checker {
        path,
        source,
        diags: Vec::new(),
    };
    let file: wire::SpecFile = match toml::from_str(source) {
        Ok(file) => file,
        Err(err) => {
            c.diags.push(toml_error(path, source, &err));
            return (None, c.diags);
        }
    };
    let cluster_name = file.cluster.name.get_ref().clone();
    let cluster = cluster(&mut c, file.cluster);
    let network = network(&mut c, file.network);
    let segments = network
        .as_ref()
        .and_then(|n| super::check_segments::segments(&mut c, n, &file.segments));
    let boot = boot(&mut c, file.boot);
    let nodes = super::check_nodes::nodes(&mut c, &cluster_name, &file.nodes, segments.as_deref());
    let enrolment =
        super::check_nodes::enrolment(&mut c, file.enrolment.as_ref(), network.as_ref());
    let etcd = super::check_services::etcd(&mut c, file.etcd.as_ref(), &nodes, &file.nodes);
    let fleet = super::check_services::fleet(&mut c, file.fleet.as_ref());
    let load = file
        .load
        .as_ref()
        .and_then(|l| super::check_services::load(&mut c, l, &nodes));
    let templates_dir = file
        .templates
        .as_ref()
        .and_then(|t| templates_dir(&mut c, t));
    let libvirt = super::check_libvirt::libvirt(
        &mut c,
        file.libvirt.as_ref(),
        &cluster_name,
        boot.as_ref()
            .is_some_and(|b| b.kernel.starts_with("flatcar/")),
    );
    let state = super::check_state::state(&mut c, file.state.as_ref(), &cluster_name, &nodes);
    let keep_expired = super::check_state::keep_expired(
        &mut c,
        file.state.as_ref(),
        network.as_ref().map(|n| n.lease_time),
    );
    let keep_timelines = super::check_state::keep_timelines(&mut c, file.state.as_ref());
    let ignition_merge = super::check_ignition::merge(
        &mut c,
        file.ignition.as_ref(),
        boot.as_ref().map(|b| b.config),
        templates_dir
            .as_deref()
            .zip(file.templates.as_ref().map(|t| t.dir.span())),
    );
    let spec = match (
        cluster,
        network,
        segments,
        boot,
        etcd,
        fleet,
        libvirt,
        state,
        keep_expired,
        keep_timelines,
        ignition_merge,
    ) {
        (
            Some(cluster),
            Some(network),
            Some(segments),
            Some(boot),
            Some(mut etcd),
            Some(fleet),
            Some(libvirt),
            Some(state),
            Some(keep_expired),
            Some(keep_timelines),
            Some(ignition_merge),
        ) => Some(Spec {
            etcd: {
                if etcd.token.is_empty() {
                    etcd.token = format!("{}-etcd", cluster.name);
                }
                etcd
            },
            path: path.to_owned(),
            cluster,
            network,
            segments,
            boot,
            nodes,
            enrolment,
            fleet,
            load,
            templates_dir,
            libvirt,
            state,
            keep_expired,
            keep_timelines,
            ignition_merge,
        }),
        _ => None,
    };
    (spec, c.diags)
}

/// Turns a TOML or serde error into a diagnostic with a fix.
fn toml_error(path: &Path, source: &str, err: &toml::de::Error) -> Diagnostic {
    let message = err.message().trim().to_owned();
    let help = if message.starts_with("unknown field") {
        "remove the key or fix its spelling; a key written after a [table] header belongs to that \
         table, so move it above the header if it was meant for the section before"
    } else if message.starts_with("missing field") {
        "add the key; docs/spec.md lists what each section needs"
    } else if message.contains("invalid type") {
        "check the value's type (quote strings, no quotes around numbers and booleans)"
    } else {
        "fix the TOML syntax at this place"
    };
    match err.span() {
        Some(span) => Diagnostic::at(Severity::Error, path, source, span, message),
        None => Diagnostic::whole_file(Severity::Error, path, message),
    }
    .help(help)
}

fn cluster(c: &mut Checker, w: wire::Cluster) -> Option<Cluster> {
    let mut ok = c.dns_label(&w.name, "cluster name");
    if let Some(domain) = &w.domain {
        ok &= c.charset(
            domain,
            "domain",
            |ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '.',
            "lower-case letters, digits, '-' and '.'",
        );
    }
    for key in &w.ssh_authorized_keys {
        ok &= ssh_key(c, key);
    }
    let mut users = Vec::new();
    for u in &w.users {
        ok &= c.charset(
            &u.name,
            "user name",
            |ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-',
            "lower-case letters, digits, '_' and '-'",
        );
        if let Some(p) = &u.passwd {
            if !p.get_ref().starts_with('$') || p.get_ref().contains(char::is_whitespace) {
                c.error(
                    p.span(),
                    "passwd must be a password hash, not a password",
                    "generate one with `openssl passwd -6` or `mkpasswd -m sha-512`",
                );
                ok = false;
            }
        }
        for g in &u.groups {
            ok &= c.charset(
                g,
                "group name",
                |ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-',
                "lower-case letters, digits, '_' and '-'",
            );
        }
        for key in &u.ssh_authorized_keys {
            ok &= ssh_key(c, key);
        }
        users.push(User {
            name: u.name.get_ref().clone(),
            passwd: u.passwd.as_ref().map(|p| p.get_ref().clone()),
            groups: u.groups.iter().map(|g| g.get_ref().clone()).collect(),
            ssh_authorized_keys: u
                .ssh_authorized_keys
                .iter()
                .map(|k| k.get_ref().clone())
                .collect(),
        });
    }
    ok.then(|| Cluster {
        name: w.name.into_inner(),
        domain: w.domain.map(Spanned::into_inner),
        ssh_authorized_keys: w
            .ssh_authorized_keys
            .into_iter()
            .map(Spanned::into_inner)
            .collect(),
        users,
    })
}

fn ssh_key(c: &mut Checker, key: &Spanned<String>) -> bool {
    let k = key.get_ref();
    let known = ["ssh-", "ecdsa-", "sk-"].iter().any(|p| k.starts_with(p));
    if !known || k.contains(['\n', '\r']) || k.split_whitespace().count() < 2 {
        c.error(
            key.span(),
            "this is not an SSH public key",
            "paste one line of a .pub file, such as `ssh-ed25519 AAAA... user@host`",
        );
        return false;
    }
    true
}

fn network(c: &mut Checker, w: wire::Network) -> Option<Network> {
    let mut ok = interface(c, &w.interface);
    let subnet = subnet(c, &w.subnet);
    let server = c.ipv4(&w.server, "server address");
    let gateway = w.gateway.as_ref().map(|g| (g, c.ipv4(g, "gateway")));
    let dns: Vec<_> = w.dns.iter().map(|d| c.ipv4(d, "DNS server")).collect();
    let subnet = subnet?;
    let inside = |c: &mut Checker, v: &Spanned<String>, ip: Ipv4Addr, what: &str| {
        let usable = subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast();
        if !usable {
            c.error(
                v.span(),
                format!("{what} {ip} is not a usable address of {subnet}"),
                format!(
                    "pick an address between {} and {}",
                    first_host(subnet),
                    last_host(subnet)
                ),
            );
        }
        usable
    };
    if let Some(ip) = server {
        ok &= inside(c, &w.server, ip, "server address");
    }
    if let Some((g, Some(ip))) = &gateway {
        ok &= inside(c, g, *ip, "gateway");
    }
    let dynamic_range = w
        .dynamic_range
        .as_ref()
        .and_then(|r| range(c, r, subnet, server));
    ok &= w.dynamic_range.is_none() || dynamic_range.is_some();
    let mode = match w.mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "full")) => DhcpMode::Full,
        Some((_, "proxy")) => DhcpMode::Proxy,
        Some((m, other)) => {
            c.error(m.span(), format!("unknown DHCP mode `{other}`"), "use \"full\" (bootfleet hands out addresses) or \"proxy\" (another DHCP server does)");
            DhcpMode::Full
        }
    };
    let lease_time = lease_time(c, w.lease_time.as_ref(), Duration::from_secs(12 * 3600));
    let http_port = w.http_port.as_ref().map_or(8080, |p| *p.get_ref());
    if let Some(p) = w.http_port.as_ref().filter(|p| *p.get_ref() == 0) {
        c.error(
            p.span(),
            "http_port 0 is not a port",
            "pick a port such as 8080",
        );
        ok = false;
    }
    let gateway = match gateway {
        Some((_, None)) => return None,
        Some((_, Some(ip))) => Some(ip),
        None => None,
    };
    if !ok || dns.iter().any(Option::is_none) {
        return None;
    }
    Some(Network {
        interface: w.interface.into_inner(),
        subnet,
        server: server?,
        gateway,
        dns: dns.into_iter().flatten().collect(),
        dynamic_range,
        mode,
        lease_time: lease_time?,
        http_port,
        router_advertisements: w.router_advertisements.is_none_or(|v| *v.get_ref()),
    })
}

/// A subnet in CIDR form with no host bits set.
pub(super) fn subnet(c: &mut Checker, v: &Spanned<String>) -> Option<Ipv4Net> {
    match v.get_ref().parse::<Ipv4Net>() {
        Ok(net) if net.trunc() == net => Some(net),
        Ok(net) => {
            c.error(
                v.span(),
                format!("subnet `{net}` has host bits set"),
                format!("write the network address: {}", net.trunc()),
            );
            None
        }
        Err(_) => {
            c.error(
                v.span(),
                format!("subnet `{}` is not an IPv4 network", v.get_ref()),
                "write it in CIDR form such as 10.0.0.0/24",
            );
            None
        }
    }
}

/// A lease time of at least a minute (`default` when not given).
pub(super) fn lease_time(
    c: &mut Checker,
    v: Option<&Spanned<String>>,
    default: Duration,
) -> Option<Duration> {
    match v {
        None => Some(default),
        Some(t) => parse_duration(t.get_ref())
            .filter(|d| d.as_secs() >= 60)
            .or_else(|| {
                c.error(
                    t.span(),
                    format!(
                        "lease time `{}` is not a duration of at least a minute",
                        t.get_ref()
                    ),
                    "write a number with a unit: 90s, 30m, 12h or 2d",
                );
                None
            }),
    }
}

/// The interface name rules: `ip link`'s names.
pub(super) fn interface(c: &mut Checker, v: &Spanned<String>) -> bool {
    let mut ok = c.charset(
        v,
        "interface",
        |ch| ch.is_ascii_alphanumeric() || "-_.@".contains(ch),
        "letters, digits, '-', '_', '.' and '@'",
    );
    if v.get_ref().len() > 15 {
        c.error(
            v.span(),
            "interface names have at most 15 characters",
            "give the name `ip link` shows",
        );
        ok = false;
    }
    ok
}

pub(super) fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
}

pub(super) fn last_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.broadcast()).saturating_sub(1))
}

pub(super) fn range(
    c: &mut Checker,
    r: &Spanned<Vec<String>>,
    subnet: Ipv4Net,
    server: Option<Ipv4Addr>,
) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let help = format!(
        "write [\"FIRST\", \"LAST\"] with both between {} and {}",
        first_host(subnet),
        last_host(subnet)
    );
    let ips: Vec<Option<Ipv4Addr>> = r.get_ref().iter().map(|s| s.parse().ok()).collect();
    let (start, end) = match ips.as_slice() {
        [Some(a), Some(b)] => (*a, *b),
        _ => {
            c.error(r.span(), "dynamic_range must be two IPv4 addresses", help);
            return None;
        }
    };
    let usable =
        |ip: Ipv4Addr| subnet.contains(&ip) && ip != subnet.network() && ip != subnet.broadcast();
    if !usable(start) || !usable(end) || start > end {
        c.error(
            r.span(),
            format!("dynamic_range {start}..{end} is not an ordered range inside {subnet}"),
            help,
        );
        return None;
    }
    if let Some(s) = server.filter(|s| start <= *s && *s <= end) {
        c.error(
            r.span(),
            format!("the server's own address {s} is inside dynamic_range"),
            "shrink the range or move the server address out of it",
        );
        return None;
    }
    Some((start, end))
}

/// `90s`, `30m`, `12h`, `2d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num.parse().ok()?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return None,
    };
    n.checked_mul(mult).map(Duration::from_secs)
}

fn boot(c: &mut Checker, w: wire::Boot) -> Option<Boot> {
    let mut ok = true;
    let testos = w.testos.as_ref().filter(|t| *t.get_ref());
    let image = match (&w.flatcar, testos, &w.kernel, &w.initrd) {
        (Some(v), None, None, None) => {
            let valid = c.charset(
                v,
                "Flatcar version",
                |ch| ch.is_ascii_digit() || ch == '.',
                "digits and dots, such as 4081.2.0",
            );
            valid.then(|| {
                let dir = format!("flatcar/{}", v.get_ref());
                (
                    format!("{dir}/flatcar_production_pxe.vmlinuz"),
                    format!("{dir}/flatcar_production_pxe_image.cpio.gz"),
                )
            })
        }
        (None, Some(_), None, None) => Some((
            crate::images::testos::KERNEL.to_owned(),
            crate::images::testos::INITRD.to_owned(),
        )),
        (None, None, Some(k), Some(i)) => {
            let k_ok = image_path(c, k, "kernel");
            let i_ok = image_path(c, i, "initrd");
            (k_ok && i_ok).then(|| (k.get_ref().clone(), i.get_ref().clone()))
        }
        (None, None, k, i) => {
            let span = k.as_ref().or(i.as_ref()).map_or(0..0, |s| s.span());
            c.error(span, "[boot] names no image", "add `flatcar = \"VERSION\"` (files under images/flatcar/VERSION/), `testos = true` (built by `bootfleet images testos`) or both `kernel` and `initrd`");
            None
        }
        (f, t, k, _) => {
            let span = f
                .as_ref()
                .map(|v| v.span())
                .or(t.map(|v| v.span()))
                .or(k.as_ref().map(|v| v.span()))
                .unwrap_or(0..0);
            c.error(
                span,
                "give one image: flatcar, testos, or kernel and initrd",
                "keep one of `flatcar`, `testos = true` or `kernel` + `initrd` and remove the others",
            );
            None
        }
    };
    for arg in w.kernel_args.iter().chain(&w.console) {
        ok &= c.charset(
            arg,
            "kernel argument",
            |ch| ch.is_ascii_graphic() && !"\"'`\\$".contains(ch),
            "printable characters without spaces, quotes, '$' or '\\' (one argument per string)",
        );
    }
    let bios_loader = match w.bios_loader.as_ref().map(|l| (l, l.get_ref().as_str())) {
        None | Some((_, "ipxe")) => BiosLoader::Ipxe,
        Some((_, "pxelinux")) => BiosLoader::Pxelinux,
        Some((l, other)) => {
            c.error(
                l.span(),
                format!("unknown BIOS loader `{other}`"),
                "use \"ipxe\" (undionly.kpxe) or \"pxelinux\" (pxelinux.0)",
            );
            ok = false;
            BiosLoader::Ipxe
        }
    };
    let retries = w.retries.as_ref().map_or(3, |r| *r.get_ref());
    if let Some(r) = w
        .retries
        .as_ref()
        .filter(|r| !(1..=20).contains(r.get_ref()))
    {
        c.error(
            r.span(),
            "retries must be between 1 and 20",
            "3 is a good value",
        );
        ok = false;
    }
    let config = super::check_ignition::format(c, w.config.as_ref());
    ok &= config.is_some();
    let (kernel, initrd) = image?;
    ok.then(|| Boot {
        config: config.unwrap_or_default(),
        kernel,
        initrd,
        kernel_args: w.kernel_args.into_iter().map(Spanned::into_inner).collect(),
        console: w
            .console
            .into_iter()
            .map(|c| format!("console={}", c.into_inner()))
            .collect(),
        bios_loader,
        retries,
    })
}

/// A path under the images root: relative, no `..`, plain characters.
pub(super) fn image_path(c: &mut Checker, v: &Spanned<String>, what: &str) -> bool {
    let p = v.get_ref();
    if !c.charset(
        v,
        what,
        |ch| ch.is_ascii_alphanumeric() || "._-/+".contains(ch),
        "letters, digits, '.', '_', '-', '+' and '/'",
    ) {
        return false;
    }
    if p.starts_with('/') || p.split('/').any(|part| part == ".." || part.is_empty()) {
        c.error(
            v.span(),
            format!("{what} path `{p}` must stay inside the images directory"),
            "write a relative path without `..`, such as flatcar/current/vmlinuz",
        );
        return false;
    }
    true
}

fn templates_dir(c: &mut Checker, t: &wire::Templates) -> Option<PathBuf> {
    let base = c.path.parent().unwrap_or(Path::new("."));
    let dir = base.join(t.dir.get_ref());
    if !dir.is_dir() {
        c.error(
            t.dir.span(),
            format!("template directory {} does not exist", dir.display()),
            "create it or fix the path (relative paths start at the spec file's directory)",
        );
        return None;
    }
    Some(dir)
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("12h"), Some(Duration::from_secs(43200)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172800)));
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
