//! Places rendered pieces into an Ignition config: files with inline
//! contents, units, users, and the user's configs to merge.

use ignition_config::v3_3::{
    Config, File, IgnitionConfig, Passwd, Resource, Storage, Systemd, Unit, User, Verification,
};

/// Everything one node's config holds, already rendered.
#[derive(Debug, Default, Clone)]
pub struct Pieces {
    pub files: Vec<FilePiece>,
    pub units: Vec<UnitPiece>,
    pub users: Vec<UserPiece>,
    /// Configs Ignition fetches and merges: `(url, sha512-<hex>)`.
    pub merge: Vec<(String, String)>,
}

/// A file written with its contents inline.
#[derive(Debug, Clone)]
pub struct FilePiece {
    pub path: String,
    pub mode: u32,
    pub contents: String,
}

/// A systemd unit: its text (none for a unit the OS ships, such as
/// `docker.service`), and whether it is enabled.
#[derive(Debug, Clone)]
pub struct UnitPiece {
    pub name: String,
    pub contents: Option<String>,
    pub enabled: bool,
}

/// A login.
#[derive(Debug, Clone)]
pub struct UserPiece {
    pub name: String,
    pub password_hash: Option<String>,
    pub groups: Vec<String>,
    pub ssh_authorized_keys: Vec<String>,
}

/// The config of `pieces`, spec [`super::VERSION`].
pub fn build(pieces: &Pieces) -> Config {
    let mut config = Config::default();
    if !pieces.merge.is_empty() {
        config.ignition.config = Some(IgnitionConfig {
            merge: Some(
                pieces
                    .merge
                    .iter()
                    .map(|(url, hash)| Resource {
                        source: Some(url.clone()),
                        verification: Some(Verification {
                            hash: Some(hash.clone()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            replace: None,
        });
    }
    if !pieces.users.is_empty() {
        config.passwd = Some(Passwd {
            groups: None,
            users: Some(pieces.users.iter().map(user).collect()),
        });
    }
    if !pieces.files.is_empty() {
        config.storage = Some(Storage {
            files: Some(pieces.files.iter().map(file).collect()),
            ..Default::default()
        });
    }
    if !pieces.units.is_empty() {
        config.systemd = Some(Systemd {
            units: Some(pieces.units.iter().map(unit).collect()),
        });
    }
    config
}

fn user(u: &UserPiece) -> User {
    let mut out = User::new(u.name.clone());
    out.password_hash = u.password_hash.clone();
    out.groups = (!u.groups.is_empty()).then(|| u.groups.clone());
    out.ssh_authorized_keys =
        (!u.ssh_authorized_keys.is_empty()).then(|| u.ssh_authorized_keys.clone());
    out
}

fn file(f: &FilePiece) -> File {
    let mut out = File::new(f.path.clone());
    out.mode = Some(i64::from(f.mode));
    // The OS may ship the file (/etc/hostname): ours replaces it.
    out.overwrite = Some(true);
    out.contents = Some(Resource {
        source: Some(super::data_url(f.contents.as_bytes())),
        ..Default::default()
    });
    out
}

fn unit(u: &UnitPiece) -> Unit {
    let mut out = Unit::new(u.name.clone());
    out.contents = u.contents.clone();
    out.enabled = u.enabled.then_some(true);
    out
}
