//! What the DHCP and TFTP servers report, turned into boot-timeline
//! events (and, for a DHCP ACK with a boot file, a machine to enrol).

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::boot::classify::Names;
use crate::boot::{Event, Registry, Stage, Step, fixes};
use crate::clock::now_ms;
use crate::dhcp::outcome::Outcome;
use crate::files::Files;
use crate::http::EnrolRequest;
use crate::spec::Mac;
use crate::tftp::server::Progress;

/// The observer of the DHCP server: every answer becomes a DHCP-stage
/// event of the machine; an ACK of a boot file may enrol it.
pub fn dhcp_observer(
    reg: Arc<Registry>,
    enrol: mpsc::Sender<EnrolRequest>,
    files: Arc<Files>,
) -> crate::dhcp::server::Observer {
    Box::new(move |r| {
        // A machine that booted and got its address here may be one to
        // enrol (checked by the enroller; a full queue drops it and the
        // script request enrols it instead).
        if let (Outcome::Ack, Some(ip), Some(_)) = (r.outcome, r.ip, r.file) {
            // Its pxelinux config is on its way if it is enrolled: TFTP
            // waits for it rather than answering "not found" first.
            let config = vec![pxelinux_config(r.mac)];
            files.coming(config.clone());
            if enrol
                .try_send(EnrolRequest {
                    mac: r.mac,
                    ip,
                    done: None,
                })
                .is_err()
            {
                files.settled(&config);
            }
        }
        if let Some(e) = dhcp_event(r) {
            reg.record(e);
        }
    })
}

/// The timeline's view of a DHCP answer: a DISCOVER answered starts the
/// stage, an ACK (or a proxy's answer to a REQUEST) completes it, a
/// machine refused fails it; other answers are not boot news.
fn dhcp_event(r: &crate::dhcp::server::Report) -> Option<Event> {
    let (step, asked) = match r.outcome {
        Outcome::Offer | Outcome::ProxyOffer => (Step::Asked, "DHCPDISCOVER"),
        Outcome::Ack | Outcome::ProxyAck => (Step::Served, "DHCPREQUEST"),
        Outcome::Nak => (Step::News, "DHCPREQUEST"),
        Outcome::UnknownRefused => (
            Step::Failed {
                answer: "refused: not in the spec, and no [enrolment]".into(),
                fix: Some(fixes::unknown_machine(r.mac)),
            },
            "DHCP",
        ),
        Outcome::WrongSegment => (
            Step::Failed {
                answer: r.whence.to_string(),
                fix: Some(
                    "connect the machine to the segment the spec puts it in, or give it an address of the segment it is on ([[nodes]] ip)".into(),
                ),
            },
            "DHCP",
        ),
        _ => return None,
    };
    let firmware = r.arch.as_deref().map(|a| format!(" ({a} firmware)"));
    let detail = match r.outcome {
        Outcome::UnknownRefused => format!(
            "dhcp refused{}: not in the spec, and no [enrolment]",
            firmware.as_deref().unwrap_or_default()
        ),
        Outcome::WrongSegment => format!(
            "dhcp refused{}: {}",
            firmware.as_deref().unwrap_or_default(),
            r.whence
        ),
        other => {
            let mut d = format!("dhcp {other}");
            for part in [
                r.ip.map(|i| i.to_string()),
                r.arch.clone(),
                r.file.map(str::to_owned),
            ]
            .into_iter()
            .flatten()
            {
                d.push(' ');
                d.push_str(&part);
            }
            d
        }
    };
    Some(Event {
        mac: r.mac,
        at: now_ms(),
        stage: Stage::Dhcp,
        step,
        asked: format!("{asked}{}", firmware.unwrap_or_default()),
        detail,
        ip: r.ip.filter(|_| r.outcome == Outcome::Ack),
        arch: r.arch.clone(),
    })
}

/// The observer of the TFTP server: each request and each finished or
/// failed transfer becomes an event of the machine at that address.
/// pxelinux looks for its config under several names before `default`
/// (UUID, MAC, address in hex): those misses are expected, not failures.
pub fn tftp_observer(
    reg: Arc<Registry>,
    names: Names,
    root: PathBuf,
    timings: super::gauges::Timings,
) -> crate::tftp::server::Observer {
    Arc::new(move |r| {
        let stage = crate::boot::classify::tftp(r.file, &names);
        if let Progress::Completed { bytes, micros } = r.progress {
            let kind = [("kind", stage.name())];
            timings
                .tftp_seconds
                .get_or_create(&kind)
                .observe(micros as f64 / 1e6);
            timings
                .tftp_bytes
                .get_or_create(&kind)
                .observe(bytes as f64);
        }
        let IpAddr::V4(ip) = r.peer.ip() else { return };
        let Some(mac) = reg.mac_of_ip(ip) else { return };
        let file = r.file;
        let (step, detail) = match &r.progress {
            Progress::Started => (Step::Asked, format!("tftp {file} asked")),
            Progress::Completed { bytes, .. } => {
                (Step::Served, format!("tftp {file} {bytes} bytes"))
            }
            Progress::Failed { why, refusal } => {
                let probe = file.trim_start_matches('/').starts_with("pxelinux.cfg/")
                    && !file.ends_with("/default");
                let step = if probe && *refusal == Some("not_found") {
                    Step::News
                } else {
                    Step::Failed {
                        answer: why.clone(),
                        fix: match refusal {
                            Some("not_found") => Some(fixes::missing_file(stage, file, &root)),
                            _ => None,
                        },
                    }
                };
                (step, format!("tftp {file}: {why}"))
            }
        };
        reg.record(Event {
            mac,
            at: now_ms(),
            stage,
            step,
            asked: file.to_owned(),
            detail,
            ip: None,
            arch: None,
        });
    })
}

/// The generated pxelinux config of the machine with `mac`.
pub fn pxelinux_config(mac: Mac) -> String {
    crate::render::Generated::PxelinuxConfig(mac).path()
}
