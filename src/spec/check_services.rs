//! Rules for `[etcd]`, `[fleet]` and `[load]`: how services run, and that the
//! load fits the workers and the MAC space.

use toml::Spanned;

use super::check::{Checker, image_path};
use super::{Etcd, Fleet, Load, NodeSpec, Runner, SerialPattern, Spread, wire};

/// The etcd image used when the spec names none. etcd 3.5 still serves the
/// v2 API (with `--enable-v2`) that fleet needs; 3.6 removed it.
pub const DEFAULT_ETCD_IMAGE: &str = "quay.io/coreos/etcd:v3.5.17";
/// The fleetd binary, under the images root, used when the spec names none.
pub const DEFAULT_FLEET_BINARY: &str = "fleet/v1.0.0/fleetd";

fn is_image_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || "./:@_-".contains(ch)
}

fn runner(
    c: &mut Checker,
    image: Option<&Spanned<String>>,
    binary: Option<&Spanned<String>>,
    default: Runner,
    section: &str,
) -> Option<Runner> {
    match (image, binary) {
        (None, None) => Some(default),
        (Some(i), None) => c
            .charset(i, "image", is_image_char, "letters, digits and . / : @ _ -")
            .then(|| Runner::Image(i.get_ref().clone())),
        (None, Some(b)) => image_path(c, b, "binary").then(|| Runner::Binary(b.get_ref().clone())),
        (Some(i), Some(_)) => {
            c.error(i.span(), format!("[{section}] gives both image and binary"), "keep one: image runs a container with docker, binary fetches a file bootfleet serves");
            None
        }
    }
}

/// Checks `[etcd]` and the set of etcd members.
pub(super) fn etcd(
    c: &mut Checker,
    w: Option<&wire::Etcd>,
    nodes: &[NodeSpec],
    wire_nodes: &[wire::Node],
) -> Option<Etcd> {
    let members: Vec<&wire::Node> = wire_nodes
        .iter()
        .filter(|n| n.roles.get_ref().iter().any(|r| r == "etcd"))
        .collect();
    let has_workers = nodes.iter().any(|n| n.roles.worker);
    if members.is_empty() && has_workers {
        let first = wire_nodes
            .iter()
            .find(|n| n.roles.get_ref().iter().any(|r| r == "worker"));
        let span = first.map_or(0..0, |n| n.roles.span());
        c.error(span, "workers need etcd, but no node has the etcd role", "add \"etcd\" to the roles of one node (or three, for a cluster that survives a failure)");
    } else if members.len() % 2 == 0 && !members.is_empty() {
        let last = members[members.len() - 1];
        c.warn(
            last.roles.span(),
            format!(
                "{} etcd members tolerate no more failures than {}",
                members.len(),
                members.len() - 1
            ),
            "use an odd number of etcd members (1, 3 or 5)",
        );
    }
    let image = w.and_then(|w| w.image.as_ref());
    let binary = w.and_then(|w| w.binary.as_ref());
    let run = runner(
        c,
        image,
        binary,
        Runner::Image(DEFAULT_ETCD_IMAGE.into()),
        "etcd",
    )?;
    let token = match w.and_then(|w| w.token.as_ref()) {
        Some(t) => {
            if !c.charset(
                t,
                "etcd token",
                |ch| ch.is_ascii_alphanumeric() || "._-".contains(ch),
                "letters, digits, '.', '_' and '-'",
            ) {
                return None;
            }
            t.get_ref().clone()
        }
        None => String::new(),
    };
    let client_port = w.and_then(|w| w.client_port.as_ref());
    let peer_port = w.and_then(|w| w.peer_port.as_ref());
    let client = client_port.map_or(2379, |p| *p.get_ref());
    let peer = peer_port.map_or(2380, |p| *p.get_ref());
    if client == peer || client == 0 || peer == 0 {
        let span = client_port.or(peer_port).map_or(0..0, |p| p.span());
        c.error(
            span,
            "etcd needs two different non-zero ports",
            "use client_port = 2379 and peer_port = 2380",
        );
        return None;
    }
    Some(Etcd {
        run,
        token,
        client_port: client,
        peer_port: peer,
    })
}

/// Checks `[fleet]`.
pub(super) fn fleet(c: &mut Checker, w: Option<&wire::Fleet>) -> Option<Fleet> {
    let image = w.and_then(|w| w.image.as_ref());
    let binary = w.and_then(|w| w.binary.as_ref());
    let run = runner(
        c,
        image,
        binary,
        Runner::Binary(DEFAULT_FLEET_BINARY.into()),
        "fleet",
    )?;
    let empty = Default::default();
    let metadata = w.map_or(&empty, |w| &w.metadata);
    if !super::check_nodes::labels(c, metadata, "fleet metadata") {
        return None;
    }
    Some(Fleet {
        run,
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.get_ref().clone()))
            .collect(),
    })
}

/// Checks `[load]` against the workers it will run on.
pub(super) fn load(c: &mut Checker, w: &wire::Load, nodes: &[NodeSpec]) -> Option<Load> {
    let mut ok = c.charset(
        &w.image,
        "browser image",
        is_image_char,
        "letters, digits and . / : @ _ -",
    );
    ok &= c.charset(
        &w.host,
        "load host",
        |ch| ch.is_ascii_alphanumeric() || ".-:[]".contains(ch),
        "a host name or address, optionally with :port",
    );
    let path = match &w.path {
        Some(p) => {
            let good = p.get_ref().starts_with('/')
                && p.get_ref()
                    .chars()
                    .all(|ch| ch.is_ascii_graphic() && !"\"'`\\".contains(ch));
            if !good {
                c.error(
                    p.span(),
                    format!("load path `{}` is not a URL path", p.get_ref()),
                    "start it with '/' and leave out spaces and quotes, e.g. /portal/index.html",
                );
                ok = false;
            }
            p.get_ref().clone()
        }
        None => "/".to_owned(),
    };
    for arg in w.browser_args.iter().chain(&w.viewer_command) {
        if arg.get_ref().contains(['\n', '\r', '\0']) {
            c.error(
                arg.span(),
                "arguments cannot contain line breaks",
                "split it into several list items",
            );
            ok = false;
        }
    }
    let browsers = *w.browsers.get_ref();
    let workers = nodes.iter().filter(|n| n.roles.worker).count() as u64;
    if browsers == 0 {
        c.error(
            w.browsers.span(),
            "a load of 0 browsers",
            "give the number of browsers to run, or remove [load]",
        );
        ok = false;
    }
    if workers == 0 {
        c.error(
            w.browsers.span(),
            "the load has no workers to run on",
            "give at least one node the \"worker\" role, or remove [load]",
        );
        ok = false;
    }
    let spread = match w.spread.as_ref().map(|s| (s, s.get_ref().as_str())) {
        None | Some((_, "even")) => Spread::Even,
        Some((_, "fill")) => Spread::Fill,
        Some((s, other)) => {
            c.error(s.span(), format!("unknown spread `{other}`"), "use \"even\" (same count everywhere) or \"fill\" (fill each worker to per_node_cap in order)");
            return None;
        }
    };
    let cap = w.per_node_cap.as_ref().map(|c| *c.get_ref());
    match (spread, &w.per_node_cap) {
        (Spread::Fill, None) => {
            c.error(
                w.spread.as_ref().map_or(0..0, |s| s.span()),
                "spread = \"fill\" needs per_node_cap",
                "add per_node_cap = N, the most browsers one worker runs",
            );
            ok = false;
        }
        (_, Some(cs))
            if workers > 0 && u64::from(*cs.get_ref()) * workers < u64::from(browsers) =>
        {
            c.error(
                cs.span(),
                format!(
                    "{workers} worker(s) with at most {} browsers each cannot run {browsers}",
                    cs.get_ref()
                ),
                "raise per_node_cap, add workers, or lower browsers",
            );
            ok = false;
        }
        (_, Some(cs)) if *cs.get_ref() == 0 => {
            c.error(
                cs.span(),
                "per_node_cap = 0 runs nothing",
                "set the most browsers one worker runs",
            );
            ok = false;
        }
        _ => {}
    }
    let serial = match &w.serial_pattern {
        Some(p) => serial_pattern(c, p)?,
        None => SerialPattern {
            prefix: "IPTV".into(),
            width: 6,
            suffix: String::new(),
        },
    };
    let mac_prefix = match &w.mac_prefix {
        Some(p) => mac_prefix(c, p)?,
        None => vec![0x02, 0x1b, 0xf0],
    };
    let load = Load {
        image: w.image.get_ref().clone(),
        host: w.host.get_ref().clone(),
        path,
        browsers,
        spread,
        per_node_cap: cap,
        serial,
        mac_prefix,
        disable_cache: w.disable_cache.unwrap_or(false),
        browser_args: w.browser_args.iter().map(|a| a.get_ref().clone()).collect(),
        viewers: w.viewers.unwrap_or(false),
        viewer_command: w
            .viewer_command
            .iter()
            .map(|a| a.get_ref().clone())
            .collect(),
    };
    if u64::from(browsers) > load.max_browsers() {
        c.error(
            w.browsers.span(),
            format!(
                "{browsers} browsers do not fit the MAC prefix, which leaves room for {}",
                load.max_browsers()
            ),
            "use a shorter mac_prefix (3 bytes leave room for 16,777,215 browsers)",
        );
        ok = false;
    }
    ok.then_some(load)
}

/// `PREFIX{n}SUFFIX` or `PREFIX{n:0W}SUFFIX`; prefix and suffix are plain
/// characters because they end up in a shell script and a user agent.
fn serial_pattern(c: &mut Checker, p: &Spanned<String>) -> Option<SerialPattern> {
    let s = p.get_ref();
    let help = "write text around one {n} or {n:0W}, e.g. \"IPTV{n:06}\" gives IPTV000001";
    let Some(open) = s.find("{n") else {
        c.error(p.span(), "the serial pattern has no {n}", help);
        return None;
    };
    let Some(close) = s[open..].find('}').map(|i| open + i) else {
        c.error(p.span(), "the serial pattern has an unclosed {", help);
        return None;
    };
    let spec = &s[open + 2..close];
    let width = match spec {
        "" => Some(0),
        _ => spec
            .strip_prefix(":0")
            .and_then(|w| w.parse::<usize>().ok())
            .filter(|w| *w <= 12),
    };
    let (prefix, suffix) = (&s[..open], &s[close + 1..]);
    let plain = |t: &str| {
        t.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch))
    };
    match width {
        Some(width) if plain(prefix) && plain(suffix) => Some(SerialPattern {
            prefix: prefix.into(),
            width,
            suffix: suffix.into(),
        }),
        _ => {
            c.error(
                p.span(),
                format!("serial pattern `{s}` is not understood"),
                format!("{help}; the text around it may hold letters, digits, '_', '-' and '.'"),
            );
            None
        }
    }
}

/// 3 to 5 bytes, locally administered (bit 1 set) and unicast (bit 0 clear),
/// so the made-up MACs can never collide with a real NIC's.
fn mac_prefix(c: &mut Checker, p: &Spanned<String>) -> Option<Vec<u8>> {
    let bytes: Option<Vec<u8>> = p
        .get_ref()
        .split(':')
        .map(|b| {
            if b.len() == 2 {
                u8::from_str_radix(b, 16).ok()
            } else {
                None
            }
        })
        .collect();
    match bytes {
        Some(b) if (3..=5).contains(&b.len()) && b[0] & 0b11 == 0b10 => Some(b),
        Some(b) if (3..=5).contains(&b.len()) => {
            c.error(
                p.span(),
                format!(
                    "mac_prefix `{}` is not locally administered and unicast",
                    p.get_ref()
                ),
                format!(
                    "make the first byte's low bits 10, e.g. {:02x}",
                    (b[0] & !0b11) | 0b10
                ),
            );
            None
        }
        _ => {
            c.error(
                p.span(),
                format!("mac_prefix `{}` is not 3 to 5 hex bytes", p.get_ref()),
                "write it like 02:1b:f0",
            );
            None
        }
    }
}
