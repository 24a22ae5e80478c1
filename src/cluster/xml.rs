//! libvirt's XML for a [`Plan`], from the templates in `libvirt/`
//! (compiled in). Every value is XML-escaped on the way out; no XML is
//! put together from strings here.

use minijinja::value::Serde;
use minijinja::{Environment, UndefinedBehavior, Value, context};

use super::plan::{DomainPlan, NS, NetworkPlan, Plan};

const TEMPLATES: &[(&str, &str)] = &[
    ("network.xml", include_str!("../../libvirt/network.xml")),
    ("pool.xml", include_str!("../../libvirt/pool.xml")),
    ("volume.xml", include_str!("../../libvirt/volume.xml")),
    ("domain.xml", include_str!("../../libvirt/domain.xml")),
];

/// The UEFI firmware a UEFI domain loads (Debian's ovmf package): the
/// code, and the variable store each domain's NVRAM file is copied from.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// A template failed to render (a bug: the templates are built in).
#[derive(Debug, thiserror::Error)]
#[error("libvirt template {name}: {source}")]
pub struct XmlError {
    name: &'static str,
    source: minijinja::Error,
}

fn escape(s: &str, out: &mut String) {
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
}

fn env() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, _state, value| {
        let text = value.to_string();
        let mut escaped = String::with_capacity(text.len());
        escape(&text, &mut escaped);
        out.write_str(&escaped)?;
        Ok(())
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("built-in libvirt template");
    }
    env
}

fn render(name: &'static str, ctx: Value) -> Result<String, XmlError> {
    let env = env();
    let mut text = env
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|source| XmlError { name, source })?;
    text.push('\n');
    Ok(text)
}

/// The XML of `network`, one of the plan's.
pub fn network(plan: &Plan, network: &NetworkPlan) -> Result<String, XmlError> {
    render(
        "network.xml",
        context! { ns => NS, cluster => &plan.cluster, network => Value::from(Serde(network)) },
    )
}

/// The storage pool's XML.
pub fn pool(plan: &Plan) -> Result<String, XmlError> {
    render(
        "pool.xml",
        context! { pool => Value::from(Serde(&plan.pool)) },
    )
}

/// The XML of `domain`'s disk volume.
pub fn volume(domain: &DomainPlan) -> Result<String, XmlError> {
    render(
        "volume.xml",
        context! { domain => Value::from(Serde(domain)) },
    )
}

/// The XML of `domain`.
pub fn domain(plan: &Plan, domain: &DomainPlan) -> Result<String, XmlError> {
    render(
        "domain.xml",
        context! {
            ns => NS,
            cluster => &plan.cluster,
            domain => Value::from(Serde(domain)),
            network => Value::from(Serde(plan.networks.iter().find(|n| n.name == domain.network))),
            pool => Value::from(Serde(&plan.pool)),
            firmware => context! { code => OVMF_CODE, vars => OVMF_VARS },
        },
    )
}

/// The cluster name an element's `<metadata>` tags it with, if any: the
/// `name` of a `cluster` element in bootfleet's namespace.
pub fn owner(xml: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let meta = doc
        .root_element()
        .children()
        .find(|n| n.has_tag_name("metadata"))?;
    meta.children()
        .find(|n| n.has_tag_name((NS, "cluster")))
        .and_then(|n| n.attribute("name"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let mut out = String::new();
        escape(r#"a<b>&"c"'"#, &mut out);
        assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&quot;&apos;");
    }

    #[test]
    fn the_owner_is_read_from_metadata_and_nothing_else() {
        let tagged = format!(
            r#"<network><name>x</name><metadata><bf:cluster xmlns:bf="{NS}" name="ci"/></metadata></network>"#
        );
        assert_eq!(owner(&tagged).as_deref(), Some("ci"));
        let other_ns = r#"<network><metadata><bf:cluster xmlns:bf="urn:else" name="ci"/></metadata></network>"#;
        assert_eq!(owner(other_ns), None);
        assert_eq!(owner("<network><name>ci</name></network>"), None);
        assert_eq!(owner("not xml"), None);
    }
}
