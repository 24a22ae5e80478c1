//! Renders every file a machine needs to boot and join the cluster, from
//! templates (built in, or overridden from the spec's template directory).
//!
//! Per node: `cloud-config/<name>.yml` (or `ignition/<name>.ign` with
//! `[boot] config = "ignition"`), `pxelinux.cfg/01-<mac>`,
//! `ipxe/<name>.ipxe`. Per cluster: `boot.ipxe`, `pxelinux.cfg/default` and,
//! with a load, `units/` for `fleetctl start`. Every cloud-config is checked
//! with [`crate::cloudconfig::validate`] before anything is returned, and
//! [`write()`] touches the disk only after everything rendered.

mod context;
mod filters;
pub mod generated;
mod ignition;
pub mod templates;
mod write;

pub use generated::Generated;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::cloudconfig;
use crate::inventory::{Inventory, Node};
use crate::spec::{ConfigFormat, Diagnostic, Severity, Spec};
pub use context::{Context, Shared};
use templates::{BUILTIN, ReadOverrideError};
pub use write::{MANIFEST, write};

/// Why rendering failed. Nothing has been written when this is returned.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A template has a syntax error or uses something that does not exist.
    #[error("{0}")]
    Template(Box<Diagnostic>),
    /// The override directory holds a file that replaces no built-in template.
    #[error("{}: not the name of a built-in template\n  help: overrides use the built-in names: {}", .0.display(), templates::builtin_names())]
    UnknownOverride(PathBuf),
    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rendered cloud-config would draw errors or warnings on the node.
    #[error(
        "the cloud-config of {node} would not be accepted cleanly:\n{}\n  help: fix the template that writes these keys (cloud-config.yml, or its override); Flatcar's coreos-cloudinit accepts only the keys and values listed in docs/commands.md",
        .findings.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n")
    )]
    CloudConfig {
        node: String,
        findings: Vec<cloudconfig::Finding>,
    },
    /// A rendered Ignition config breaks a rule of `ignition-validate`.
    #[error(
        "the Ignition config of {node} would not be accepted cleanly:\n{}\n  help: fix the template that writes these files or units; docs/templates.md says which template writes what",
        .findings.iter().map(|f| format!("  {f}")).collect::<Vec<_>>().join("\n")
    )]
    Ignition {
        node: String,
        findings: Vec<crate::ignition::Finding>,
    },
    /// `--node` named a node the spec does not have.
    #[error("no node named `{0}` in the spec")]
    UnknownNode(String),
}

/// One generated file: its path relative to the output directory, and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    pub path: String,
    pub content: String,
}

/// The template environment: built-ins, overrides, filters, strict undefined.
pub struct Renderer {
    env: Environment<'static>,
    /// Override name -> file it came from, for error messages.
    origins: HashMap<String, PathBuf>,
}

impl Renderer {
    /// Built-in templates, replaced by those in `overrides_dir` if given.
    /// Every template is compiled here, so a broken override fails now.
    pub fn new(overrides_dir: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // No auto-escaping: YAML, shell and unit files each quote
        // differently, so templates quote explicitly (`yaml`, `sh`).
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .expect("static syntax config"),
        );
        filters::register(&mut env);
        let mut renderer = Renderer {
            env,
            origins: HashMap::new(),
        };
        for (name, source) in BUILTIN {
            renderer
                .env
                .add_template(name, source)
                .map_err(|e| renderer.diagnose(&e))?;
        }
        if let Some(dir) = overrides_dir {
            let overrides = templates::read_overrides(dir).map_err(|e| match e {
                ReadOverrideError::Io(path, source) => RenderError::Io { path, source },
                ReadOverrideError::Unknown(path) => RenderError::UnknownOverride(path),
            })?;
            for o in overrides {
                renderer.origins.insert(o.name.clone(), o.path.clone());
                let result = renderer.env.add_template_owned(o.name.clone(), o.source);
                result.map_err(|e| renderer.diagnose(&e))?;
            }
        }
        Ok(renderer)
    }

    /// Renders template `name` with `ctx`, always ending in one newline.
    pub fn render(&self, name: &str, ctx: &Context) -> Result<String, RenderError> {
        let tmpl = self.env.get_template(name).map_err(|e| self.diagnose(&e))?;
        let mut out = tmpl.render(ctx.to_value()).map_err(|e| self.diagnose(&e))?;
        if !out.ends_with('\n') {
            out.push('\n');
        }
        Ok(out)
    }

    /// Turns a template error into a diagnostic naming the file and line.
    /// Errors inside an included template are reported where they are,
    /// not at the include.
    fn diagnose(&self, err: &minijinja::Error) -> RenderError {
        let mut err = err;
        while let Some(inner) =
            std::error::Error::source(err).and_then(|e| e.downcast_ref::<minijinja::Error>())
        {
            err = inner;
        }
        let name = err.name().unwrap_or("template");
        let file = self
            .origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| Path::new("templates").join(name));
        let mut message = err.kind().to_string();
        if let Some(detail) = err.detail() {
            message = format!("{message}: {detail}");
        }
        let help = match err.kind() {
            ErrorKind::UndefinedError => {
                "the template uses a name bootfleet does not provide; docs/templates.md lists every variable templates can use"
            }
            ErrorKind::SyntaxError => {
                "fix the template syntax at this line (minijinja, a Jinja2 dialect)"
            }
            ErrorKind::UnknownFilter | ErrorKind::UnknownFunction => {
                "use one of minijinja's built-in filters or bootfleet's `yaml` and `sh`"
            }
            _ => "fix the template at this line",
        };
        let mut d = Diagnostic::whole_file(Severity::Error, &file, message).help(help);
        d.line = err.line().unwrap_or(0);
        if d.line > 0 {
            d.column = 1;
            d.snippet = err
                .template_source()
                .and_then(|s| s.lines().nth(d.line - 1))
                .map(str::to_owned);
        }
        RenderError::Template(Box::new(d))
    }

    /// One node's config (cloud-config or Ignition, as the spec says),
    /// checked.
    pub fn node_config(
        &self,
        spec: &Spec,
        inv: &Inventory,
        node: &Node,
    ) -> Result<String, RenderError> {
        let shared = Shared::new(spec, inv, spec.segment_for(node.ip));
        let ctx = Context::for_node(spec, &shared, node);
        match spec.boot.config {
            ConfigFormat::CloudConfig => self.checked_cloud_config(&ctx),
            ConfigFormat::Ignition => self.checked_ignition(spec, &ctx),
        }
    }

    fn checked_cloud_config(&self, ctx: &Context) -> Result<String, RenderError> {
        let text = self.render("cloud-config.yml", ctx)?;
        let findings = cloudconfig::validate(&text);
        if findings.is_empty() {
            Ok(text)
        } else {
            let node = ctx
                .node
                .as_ref()
                .map_or(String::new(), |n| n.node.name.clone());
            Err(RenderError::CloudConfig { node, findings })
        }
    }

    /// Every file of one node.
    pub fn node_files(
        &self,
        spec: &Spec,
        shared: &Shared,
        node: &Node,
    ) -> Result<Vec<File>, RenderError> {
        let ctx = Context::for_node(spec, shared, node);
        let config = match spec.boot.config {
            ConfigFormat::CloudConfig => File {
                path: Generated::CloudConfig(node.name.clone()).path(),
                content: self.checked_cloud_config(&ctx)?,
            },
            ConfigFormat::Ignition => File {
                path: Generated::Ignition(node.name.clone()).path(),
                content: self.checked_ignition(spec, &ctx)?,
            },
        };
        Ok(vec![
            config,
            File {
                path: Generated::PxelinuxConfig(node.mac).path(),
                content: self.render("boot/pxelinux.cfg", &ctx)?,
            },
            File {
                path: Generated::NodeScript(node.name.clone()).path(),
                content: self.render("boot/node.ipxe", &ctx)?,
            },
        ])
    }

    /// The files shared by the whole cluster.
    pub fn cluster_files(&self, spec: &Spec, shared: &Shared) -> Result<Vec<File>, RenderError> {
        let mut ctx = Context::cluster(shared);
        let mut files = vec![
            File {
                path: Generated::BootScript.path(),
                content: self.render("boot/boot.ipxe", &ctx)?,
            },
            File {
                path: Generated::PxelinuxDefault.path(),
                content: self.render("boot/pxelinux-default.cfg", &ctx)?,
            },
        ];
        if let Some(load) = &spec.load {
            ctx.fleet_units = true;
            let mut units = vec!["browser-image.service", "browser@.service"];
            if load.viewers {
                units.push("viewer@.service");
            }
            for unit in units {
                let content = self.render(&format!("units/{unit}"), &ctx)?;
                files.push(File {
                    path: Generated::Unit(unit.to_owned()).path(),
                    content,
                });
            }
        }
        Ok(files)
    }

    /// Every file of the cluster, nodes first in spec order. Renders on all
    /// cores; the result does not depend on how the work was split.
    pub fn all_files(&self, spec: &Spec, inv: &Inventory) -> Result<Vec<File>, RenderError> {
        let shareds = Shared::segments(spec, inv);
        let shareds = &shareds;
        // A node sees its own segment's network and server address.
        let of = move |node: &Node| &shareds[spec.segment_index(node.ip).unwrap_or(0)];
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8);
        let chunk = inv.nodes.len().div_ceil(threads).max(64);
        let parts: Vec<Result<Vec<File>, RenderError>> = std::thread::scope(|s| {
            let handles: Vec<_> = inv
                .nodes
                .chunks(chunk)
                .map(|nodes| {
                    s.spawn(move || {
                        let mut out = Vec::with_capacity(nodes.len() * 3);
                        for node in nodes {
                            out.extend(self.node_files(spec, of(node), node)?);
                        }
                        Ok(out)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("render thread panicked"))
                .collect()
        });
        let mut files = Vec::new();
        for part in parts {
            files.extend(part?);
        }
        files.extend(self.cluster_files(spec, &shareds[0])?);
        Ok(files)
    }
}
