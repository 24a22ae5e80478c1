//! An error told with every cause behind it. Error types here print only
//! their own layer (`opening the site's state`) and keep the cause as their
//! `source`; a log line or message that printed only the outer `Display`
//! would lose why. Wherever an error is logged or printed, it goes through
//! [`error_chain`].

use std::error::Error;

/// `outer: cause: its cause ...`, each layer once (a layer whose text
/// already ends with its cause's, as some wrappers print it, is not
/// repeated).
pub fn error_chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the site's state")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("reading: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn every_cause_is_told_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::PermissionDenied, "permission denied");
        assert_eq!(
            error_chain(&Outer(io())),
            "opening the site's state: permission denied"
        );
        assert_eq!(error_chain(&Repeats(io())), "reading: permission denied");
    }
}
