//! Why a store failed, with the underlying error kept as the source
//! (boxed: the database and client errors are large, and every result of
//! the servers carries this type).

use std::path::PathBuf;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the state database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("state database {path}: {what}")]
    Embedded {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("etcd ({endpoints}): {what}")]
    Etcd {
        endpoints: String,
        what: &'static str,
        #[source]
        source: Box<etcd_client::Error>,
    },
    #[error("etcd ({endpoints}): {what}: no answer within {secs} s")]
    EtcdTimeout {
        endpoints: String,
        what: &'static str,
        secs: u64,
    },
    #[error("etcd ({endpoints}): {what}: unreachable {secs} s ago, not tried again yet")]
    EtcdAway {
        endpoints: String,
        what: &'static str,
        secs: u64,
    },
    #[error("a damaged record {key} in the store")]
    Damaged {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("a damaged record {key} in the store: {why}")]
    Malformed { key: String, why: &'static str },
    #[error("importing {path} into the state database")]
    Import {
        path: PathBuf,
        #[source]
        source: Box<StoreError>,
    },
    #[error("the site key in {path} is damaged (not 64 hex digits)")]
    KeyDamaged { path: PathBuf },
    #[error("enrolled machines in {path}")]
    EnrolledDamaged {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
