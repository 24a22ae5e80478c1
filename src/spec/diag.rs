//! Diagnostics that point into a spec file: `file:line:column`, what is
//! wrong, and how to fix it.
//!
//! Every check in the spec module reports through [`Diagnostic`] so that the
//! command line can print all problems at once instead of the first only.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How bad a finding is: errors stop `check` and `render`; warnings do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Something a careful operator should look at, but that can work.
    Warning,
    /// The spec cannot be used until this is fixed.
    Error,
}

/// One finding in a spec file, with its place and a suggested fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the finding is in (the spec, or a user template).
    pub file: PathBuf,
    /// 1-based line; 0 when the finding has no place in the file.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub column: usize,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub help: Option<String>,
    /// The offending source line, for context.
    pub snippet: Option<String>,
}

impl Diagnostic {
    /// A finding at byte range `span` of `source` (the text of `file`).
    pub fn at(
        severity: Severity,
        file: &Path,
        source: &str,
        span: Range<usize>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_col(source, span.start);
        let snippet = source
            .lines()
            .nth(line.saturating_sub(1))
            .map(str::to_owned);
        Diagnostic {
            severity,
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
            help: None,
            snippet,
        }
    }

    /// A finding about a whole file, with no line to point at.
    pub fn whole_file(severity: Severity, file: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            file: file.to_owned(),
            line: 0,
            column: 0,
            message: message.into(),
            help: None,
            snippet: None,
        }
    }

    /// Adds the suggested fix.
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// True for errors.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// 1-based line and column (in characters) of byte `offset` in `source`.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..floor_char_boundary(source, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.line > 0 {
            write!(
                f,
                "{}:{}:{}: {kind}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        } else {
            write!(f, "{}: {kind}: {}", self.file.display(), self.message)?;
        }
        if let Some(snippet) = &self.snippet {
            let gutter = self.line.to_string();
            write!(f, "\n {gutter} | {snippet}")?;
            if self.column > 0 {
                let pad = " ".repeat(gutter.len());
                let col = " ".repeat(self.column - 1);
                write!(f, "\n {pad} | {col}^")?;
            }
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 9), (2, 4));
        assert_eq!(line_col(src, 999), (3, 1));
    }

    #[test]
    fn display_shows_place_snippet_and_help() {
        let src = "[network]\nsubnet = \"x\"\n";
        let d = Diagnostic::at(
            Severity::Error,
            Path::new("s.toml"),
            src,
            19..22,
            "bad subnet",
        )
        .help("write a CIDR such as 10.0.0.0/24");
        let text = d.to_string();
        assert!(text.starts_with("s.toml:2:10: error: bad subnet"), "{text}");
        assert!(text.contains("2 | subnet = \"x\""), "{text}");
        assert!(text.contains("help: write a CIDR"), "{text}");
    }
}
