//! Ignition configs (spec 3.3.0), the format Flatcar provisions with: built
//! from typed structures (the `ignition-config` crate, the CoreOS team's
//! serde types), checked with the rules `ignition-validate` applies, and
//! summarised as what a node looks like once Ignition applied one.
//!
//! Pure: pieces in, a config out. The text of units and files comes from
//! the templates (see [`crate::render`]); this module only places it.

mod build;
mod dataurl;
mod digest;
mod validate;

pub use build::{FilePiece, Pieces, UnitPiece, UserPiece, build};
pub use dataurl::{decode as decode_data_url, encode as data_url};
pub use digest::expected as digest;
pub use ignition_config::v3_3::Config;
pub use validate::{Finding, validate};

/// The spec version bootfleet writes: every Flatcar release in support
/// reads it (LTS 4081 ships Ignition 2.19), and so does Debian's
/// `ignition-validate` 2.14.
pub const VERSION: &str = "3.3.0";

/// The media type Ignition configs are served with.
pub const MEDIA_TYPE: &str = "application/vnd.coreos.ignition+json";

/// Why a config was refused.
#[derive(Debug, thiserror::Error)]
pub enum IgnitionError {
    /// Not JSON, not an Ignition config, or of a version nobody knows.
    #[error("{0}")]
    Parse(#[from] ignition_config::Error),
    /// A version newer than what the nodes' Ignition may read.
    #[error(
        "spec version {0} is newer than {VERSION}, which Flatcar's LTS and Debian's Ignition read"
    )]
    TooNew(String),
    /// Parsed, but breaks a rule of `ignition-validate`.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Finding>),
}

/// Checks a user's config that every node merges: JSON of spec 3.0.0 to
/// 3.3.0 that breaks no rule (3.3.0 configs are checked in full).
pub fn check_merge(bytes: &[u8]) -> Result<(), IgnitionError> {
    use ignition_config::Config as Any;
    let (config, _warnings) = Any::parse_slice(bytes)?;
    match config {
        Any::V3_0(_) | Any::V3_1(_) | Any::V3_2(_) => Ok(()),
        Any::V3_3(c) => {
            let findings = validate(&c, &|_| true);
            if findings.is_empty() {
                Ok(())
            } else {
                Err(IgnitionError::Invalid(findings))
            }
        }
        Any::V3_4(_) => Err(IgnitionError::TooNew("3.4.0".into())),
        Any::V3_5(_) => Err(IgnitionError::TooNew("3.5.0".into())),
        _ => Err(IgnitionError::TooNew("3.6.0 or later".into())),
    }
}

/// The config as JSON, without the `null`s the typed structures carry for
/// every unset optional key (Ignition reads both the same).
pub fn to_json(config: &Config) -> String {
    let mut value = serde_json::to_value(config).expect("an Ignition config serialises");
    strip_nulls(&mut value);
    let mut out = serde_json::to_string_pretty(&value).expect("JSON serialises");
    out.push('\n');
    out
}

fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
