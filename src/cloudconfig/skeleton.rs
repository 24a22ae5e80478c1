//! The structure of a cloud-config without the bodies of its block scalars.
//!
//! Unit files and scripts make up most of a rendered cloud-config, and they
//! sit in block scalars (`content: |`) whose text YAML never interprets. The
//! validator checks structure and key types, which the bodies cannot change
//! as long as they are indented consistently; so each body is replaced by a
//! one-line placeholder before parsing, which makes validation several times
//! faster. A body whose indentation would end the scalar early is exactly
//! what could change the structure: that is reported, and documents this
//! module does not handle (explicit indentation indicators) are returned
//! unchanged for a full parse.

/// The result of skeletonizing a document.
#[derive(Debug, PartialEq, Eq)]
pub enum Skeleton {
    /// The skeleton, and for each of its lines the 1-based line number in
    /// the original text.
    Text { text: String, lines: Vec<usize> },
    /// A block scalar body line (1-based) that is less indented than the
    /// body's first line but more than its key: YAML would end the scalar
    /// there, so the structure depends on it.
    Misindented(usize),
    /// A block header with an explicit indentation indicator: parse it all.
    Unhandled,
}

/// Replaces every block scalar body by a one-line placeholder.
pub fn skeleton(text: &str) -> Skeleton {
    let mut out = String::with_capacity(text.len() / 3);
    let mut numbers = Vec::new();
    let mut lines = text.lines().enumerate().peekable();
    while let Some((i, line)) = lines.next() {
        out.push_str(line);
        out.push('\n');
        numbers.push(i + 1);
        let header_indent = match block_header(line) {
            Header::None => continue,
            Header::Unhandled => return Skeleton::Unhandled,
            Header::Block(indent) => indent,
        };
        let mut body_indent: Option<usize> = None;
        let mut first_body_line = 0;
        while let Some((j, next)) = lines.peek() {
            if next.trim().is_empty() {
                lines.next();
                continue;
            }
            let indent = next.len() - next.trim_start_matches(' ').len();
            if indent <= header_indent {
                break;
            }
            match body_indent {
                None => {
                    body_indent = Some(indent);
                    first_body_line = j + 1;
                }
                Some(b) if indent < b => return Skeleton::Misindented(j + 1),
                Some(_) => {}
            }
            lines.next();
        }
        if let Some(b) = body_indent {
            out.push_str(&" ".repeat(b));
            out.push_str("x\n");
            numbers.push(first_body_line);
        }
    }
    Skeleton::Text {
        text: out,
        lines: numbers,
    }
}

enum Header {
    None,
    Block(usize),
    Unhandled,
}

/// For a line that opens a block scalar (`key: |`, `- >-`), the indentation
/// of the line; `None` otherwise, and for headers with an explicit
/// indentation digit (then the caller's full parse handles them).
fn block_header(line: &str) -> Header {
    let mut body = line.trim_start_matches(' ');
    let mut indent = line.len() - body.len();
    // In `- key: |` the scalar belongs to `key`, which starts after the dash.
    while let Some(rest) = body.strip_prefix("- ").filter(|r| r.contains(": ")) {
        let item = rest.trim_start_matches(' ');
        indent += body.len() - item.len();
        body = item;
    }
    let value = match body.rsplit_once(": ") {
        Some((_, v)) => v,
        None => match body.strip_prefix("- ") {
            Some(v) => v,
            None => return Header::None,
        },
    };
    let value = value.trim_end();
    let Some(rest) = value.strip_prefix(['|', '>']) else {
        return Header::None;
    };
    let rest = rest.split(" #").next().unwrap_or("").trim();
    match rest {
        "" | "-" | "+" => Header::Block(indent),
        _ if rest.len() <= 2
            && rest
                .chars()
                .all(|c| c.is_ascii_digit() || c == '-' || c == '+') =>
        {
            Header::Unhandled
        }
        _ => Header::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: Skeleton) -> (String, Vec<usize>) {
        match s {
            Skeleton::Text { text, lines } => (text, lines),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bodies_become_placeholders_and_structure_stays() {
        let doc = "a: |\n  line one\n\n    deeper\n  line two\nb:\n  - content: |-\n      x: [not yaml\n    name: \"n\"\nc: \"d\"\n";
        let (s, lines) = text(skeleton(doc));
        assert_eq!(
            s,
            "a: |\n  x\nb:\n  - content: |-\n      x\n    name: \"n\"\nc: \"d\"\n"
        );
        assert_eq!(lines, vec![1, 2, 6, 7, 8, 9, 10]);
        let full: yaml_serde::Value = yaml_serde::from_str(doc).unwrap();
        let skel: yaml_serde::Value = yaml_serde::from_str(&s).unwrap();
        assert_eq!(full["b"][0]["name"], skel["b"][0]["name"]);
        assert_eq!(full["c"], skel["c"]);
    }

    #[test]
    fn a_body_line_less_indented_than_the_first_is_reported() {
        assert_eq!(
            skeleton("a: |\n    one\n  two\nb: \"c\"\n"),
            Skeleton::Misindented(3)
        );
    }

    #[test]
    fn headers() {
        assert!(matches!(block_header("  key: \"|\""), Header::None));
        assert!(matches!(block_header("  - |"), Header::Block(2)));
        assert!(matches!(block_header("    content: |"), Header::Block(4)));
        assert!(matches!(block_header("  - content: |"), Header::Block(4)));
        assert!(matches!(block_header("    content: |2"), Header::Unhandled));
        assert_eq!(skeleton("a: |2\n  x\n"), Skeleton::Unhandled);
    }
}
