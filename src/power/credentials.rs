//! A BMC's password: from a file only its owner can read, or from an
//! environment variable the spec names, never from the spec itself.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::spec::PasswordSource;

/// Why the password could not be read. Never holds the password.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read the BMC password file {}: {source}\n  help: create it with the password on its first line, mode 0600", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the BMC password file {} may be read by others (mode {mode:04o})\n  help: chmod 0600 {}", .path.display(), .path.display())]
    Open { path: PathBuf, mode: u32 },
    #[error("the BMC password file {} is empty\n  help: put the password on its first line", .0.display())]
    Empty(PathBuf),
    #[error(
        "the environment variable {0} that holds the BMC password is not set\n  help: export {0}=... before running bootfleet"
    )]
    Unset(String),
}

/// The password `source` names.
pub fn password(source: &PasswordSource) -> Result<String, CredentialsError> {
    match source {
        PasswordSource::Env(var) => match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(v),
            _ => Err(CredentialsError::Unset(var.clone())),
        },
        PasswordSource::File(path) => {
            let read = |source| CredentialsError::Read {
                path: path.clone(),
                source,
            };
            let meta = std::fs::metadata(path).map_err(read)?;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(CredentialsError::Open {
                    path: path.clone(),
                    mode,
                });
            }
            let text = std::fs::read_to_string(path).map_err(read)?;
            let line = text.lines().next().unwrap_or("").to_owned();
            if line.is_empty() {
                return Err(CredentialsError::Empty(path.clone()));
            }
            Ok(line)
        }
    }
}
