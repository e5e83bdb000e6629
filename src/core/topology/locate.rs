//! Places in the file: byte offsets to line numbers, and the node and field around a serde
//! error, which itself knows only an offset.

use toml::Spanned;

/// Maps byte offsets to 1-based line numbers. The line starts are found once, so each lookup
/// is a binary search: a 10,000-node file asks for a line tens of thousands of times, and
/// counting newlines from the top on every ask made loading quadratic in the file's size.
pub(super) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(super) fn new(text: &str) -> Self {
        let starts = std::iter::once(0)
            .chain(
                text.bytes()
                    .enumerate()
                    .filter(|&(_, b)| b == b'\n')
                    .map(|(i, _)| i + 1),
            )
            .collect();
        Lines { starts }
    }
    pub(super) fn of(&self, offset: usize) -> usize {
        // the number of line starts at or before the offset is its 1-based line
        self.starts.partition_point(|&s| s <= offset)
    }
    pub(super) fn at<T>(&self, s: &Spanned<T>) -> Option<usize> {
        Some(self.of(s.span().start))
    }
}

/// What a serde error concerns, read from the text around it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Place {
    pub(super) node: Option<String>,
    pub(super) policy: Option<String>,
    pub(super) field: Option<String>,
}

/// The node or policy and the field a serde error concerns, read from the text around it: serde
/// knows only the offset, and naming the node (`unknown field `endpiont`` in node 'db-1') or
/// the policy saves a search.
pub(super) fn place(text: &str, offset: usize, message: &str) -> Place {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let is_header = |l: &str| l.trim_start().starts_with('[');
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.starts_with("unknown field") || message.starts_with("missing field"))
        .map(str::to_string)
        .or_else(|| {
            let line = text[line_start..].lines().next().unwrap_or("");
            let key = line.split_once('=')?.0.trim();
            (!is_header(line) && !key.is_empty()).then(|| key.trim_matches('"').to_string())
        });
    // the table the offset lies in starts at the last header line at or before it
    let before: Vec<&str> = text[..line_start].lines().collect();
    let own = text[line_start..].lines().next().filter(|l| is_header(l));
    let header = own.or_else(|| before.iter().rev().find(|l| is_header(l)).copied());
    let header = header.map(|h| h.split('#').next().unwrap_or("").trim());
    let name = || {
        let header_at = if own.is_some() {
            before.len()
        } else {
            before.iter().rposition(|l| is_header(l))?
        };
        text.lines()
            .skip(header_at + 1)
            .take_while(|l| !is_header(l))
            .filter_map(|l| toml::from_str::<toml::Table>(l).ok())
            .find_map(|t| t.get("name")?.as_str().map(str::to_string))
    };
    Place {
        node: (header == Some("[[node]]")).then(name).flatten(),
        policy: (header == Some("[[policy]]")).then(name).flatten(),
        field,
    }
}
