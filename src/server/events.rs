//! What the DHCP and TFTP servers report, turned into boot-timeline
//! events (and, for a DHCP ACK with a boot file, a machine to enrol).

use std::net::IpAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::boot::classify::Names;
use crate::boot::{Event, Registry, Stage, now_ms};
use crate::http::EnrolRequest;
use crate::spec::Mac;
use crate::tftp::files::Files;

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
        if let ("ack", Some(ip), Some(_)) = (r.outcome, r.ip, r.file) {
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
        let failed = matches!(r.outcome, "nak" | "unknown_refused");
        let mut detail = match r.outcome {
            "unknown_refused" => "dhcp refused: not in the spec and no [enrolment]".to_owned(),
            other => format!("dhcp {other}"),
        };
        for part in [
            r.ip.map(|i| i.to_string()),
            r.arch.clone(),
            r.file.map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        {
            detail.push(' ');
            detail.push_str(&part);
        }
        // An offer is news, an ACK (or a proxy's answer) completes the stage.
        if matches!(
            r.outcome,
            "ack" | "nak" | "proxy_offer" | "proxy_ack" | "offer" | "unknown_refused"
        ) {
            reg.record(Event {
                mac: r.mac,
                at: now_ms(),
                stage: Stage::Dhcp,
                detail,
                failed,
                ip: r.ip.filter(|_| r.outcome == "ack"),
                arch: r.arch.clone(),
            });
        }
    })
}

/// The observer of the TFTP server: each finished or failed transfer
/// becomes an event of the machine at that address.
pub fn tftp_observer(reg: Arc<Registry>, names: Names) -> crate::tftp::server::Observer {
    Arc::new(move |r| {
        let IpAddr::V4(ip) = r.peer.ip() else { return };
        let Some(mac) = reg.mac_of_ip(ip) else { return };
        reg.record(Event {
            mac,
            at: now_ms(),
            stage: crate::boot::classify::tftp(r.file, &names),
            detail: r.detail.clone(),
            failed: !r.ok,
            ip: None,
            arch: None,
        });
    })
}

/// The generated pxelinux config of the machine with `mac`.
pub fn pxelinux_config(mac: Mac) -> String {
    format!("pxelinux.cfg/01-{}", mac.dashed())
}
