//! A node's Ignition config: the same content as its cloud-config (files,
//! units, logins), placed by [`crate::ignition`] from the same templates,
//! with every value baked in (Ignition substitutes nothing), the user's
//! `[ignition] merge` configs referenced with their hashes, and checked
//! before it is returned.

use crate::ignition::{FilePiece, Pieces, UnitPiece, UserPiece};
use crate::spec::Spec;

use super::{Context, RenderError, Renderer};

impl Renderer {
    /// The Ignition config of the node in `ctx`, as JSON.
    pub(super) fn checked_ignition(
        &self,
        spec: &Spec,
        ctx: &Context,
    ) -> Result<String, RenderError> {
        let node = ctx.node.as_ref().expect("a node's context");
        let pieces = self.pieces(spec, ctx)?;
        let config = crate::ignition::build(&pieces);
        let base = format!("{}/", ctx.shared.network.base_url);
        let findings = crate::ignition::validate(&config, &|url| url.starts_with(&base));
        if !findings.is_empty() {
            return Err(RenderError::Ignition {
                node: node.node.name.clone(),
                findings,
            });
        }
        Ok(crate::ignition::to_json(&config))
    }

    fn pieces(&self, spec: &Spec, ctx: &Context) -> Result<Pieces, RenderError> {
        let node = ctx.node.as_ref().expect("a node's context");
        let load = ctx.shared.load.as_ref();
        let file = |path: &str, mode: u32, contents: String| FilePiece {
            path: path.into(),
            mode,
            contents,
        };
        let mut files = vec![
            file("/etc/hostname", 0o644, format!("{}\n", node.hostname)),
            file(
                "/etc/environment",
                0o644,
                self.render("files/environment", ctx)?,
            ),
        ];
        if node.worker {
            if let Some(load) = load {
                let run = self.render("files/browser-run", ctx)?;
                files.push(file("/opt/bootfleet/bin/browser-run", 0o755, run));
                if load.load.viewers {
                    let publish = self.render("files/viewer-publish", ctx)?;
                    files.push(file("/opt/bootfleet/bin/viewer-publish", 0o755, publish));
                }
            }
        }
        let unit = |name: &str, enabled: bool| -> Result<UnitPiece, RenderError> {
            Ok(UnitPiece {
                name: name.into(),
                contents: Some(self.render(&format!("units/{name}"), ctx)?),
                enabled,
            })
        };
        let mut units = vec![UnitPiece {
            name: "bootfleet-phone-home.service".into(),
            contents: Some(self.render("units/phone-home.service", ctx)?),
            enabled: true,
        }];
        if node.etcd || node.worker {
            // The OS ships docker.service; enabling it is all it needs.
            units.push(UnitPiece {
                name: "docker.service".into(),
                contents: None,
                enabled: true,
            });
        }
        if node.etcd {
            units.push(unit("etcd-member.service", true)?);
        }
        if node.worker {
            units.push(unit("fleet.socket", true)?);
            units.push(unit("fleet.service", true)?);
            if let Some(load) = load {
                units.push(unit("browser@.service", false)?);
                if load.load.viewers {
                    units.push(unit("viewer@.service", false)?);
                }
                if !node.browsers.is_empty() {
                    units.push(unit("bootfleet-load.target", true)?);
                }
            }
        }
        let cluster = &spec.cluster;
        let mut users: Vec<UserPiece> = cluster
            .users
            .iter()
            .map(|u| UserPiece {
                name: u.name.clone(),
                password_hash: u.passwd.clone(),
                groups: u.groups.clone(),
                ssh_authorized_keys: u.ssh_authorized_keys.clone(),
            })
            .collect();
        if !cluster.ssh_authorized_keys.is_empty() {
            // The cluster's keys are the `core` login's, as in a cloud-config.
            match users.iter_mut().find(|u| u.name == "core") {
                Some(core) => {
                    let mut keys = cluster.ssh_authorized_keys.clone();
                    keys.append(&mut core.ssh_authorized_keys);
                    core.ssh_authorized_keys = keys;
                }
                None => users.insert(
                    0,
                    UserPiece {
                        name: "core".into(),
                        password_hash: None,
                        groups: Vec::new(),
                        ssh_authorized_keys: cluster.ssh_authorized_keys.clone(),
                    },
                ),
            }
        }
        let base = &ctx.shared.network.base_url;
        let merge = spec
            .ignition_merge
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let url = format!(
                    "{base}/ignition/{}/merge/{i}?token={}",
                    node.node.name, node.node.token
                );
                (url, m.hash.clone())
            })
            .collect();
        Ok(Pieces {
            files,
            units,
            users,
            merge,
        })
    }
}
