//! User text as an error shows it. A topology file may come from a generator gone wrong or from
//! someone hostile: a 10 MB node name must not make a 10 MB error, and escape codes in a name
//! must not reach the terminal that prints the error.

use std::fmt::Write as _;

/// The most characters of one user string an error shows: a valid name (at most 63) fits whole.
pub(crate) const SHOWN_MAX: usize = 64;

/// One user string (a name, a value) as an error shows it; see [`clip`].
pub(crate) fn shown(s: &str) -> String {
    clip(s, SHOWN_MAX)
}

/// `s` with every control or other non-printing character escaped as Rust's `{:?}` escapes it
/// (`\u{1b}`, `\n`; `\`, `'` and `"` too, so the output cannot be mistaken for other text), cut
/// at `max` characters of output and then ended with `…` and the length of the whole in bytes.
/// An escape is never cut in half.
pub(crate) fn clip(s: &str, max: usize) -> String {
    let mut out = String::new();
    let mut width = 0;
    for c in s.chars() {
        let escaped = c.escape_debug();
        if width + escaped.len() > max {
            let _ = write!(out, "… ({} bytes)", s.len());
            return out;
        }
        width += escaped.len();
        out.extend(escaped);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_printable_text_is_shown_as_it_is() {
        assert_eq!(shown("db-1.eu_west"), "db-1.eu_west");
        assert_eq!(shown("grüße"), "grüße");
        assert_eq!(shown(""), "");
        let longest_name = "n".repeat(63);
        assert_eq!(shown(&longest_name), longest_name);
    }

    #[test]
    fn control_characters_are_escaped_so_none_reaches_the_terminal() {
        let hostile = "a\u{1b}[2J\u{7}\r\n\t\u{0}\u{202e}b'\\";
        let out = shown(hostile);
        assert_eq!(out, r"a\u{1b}[2J\u{7}\r\n\t\0\u{202e}b\'\\");
        assert!(out.chars().all(|c| !c.is_control()), "{out:?}");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis_and_its_length_in_bytes() {
        let huge = "x".repeat(10 * 1024 * 1024);
        let out = shown(&huge);
        assert_eq!(out, format!("{}… (10485760 bytes)", "x".repeat(SHOWN_MAX)));
        assert_eq!(clip(&"y".repeat(11), 10), "yyyyyyyyyy… (11 bytes)");
        assert_eq!(clip(&"y".repeat(10), 10), "yyyyyyyyyy");
    }

    #[test]
    fn an_escape_is_never_cut_in_half() {
        // `\u{1b}` is 6 characters: after 60 plain ones it does not fit in 64
        let text = format!("{}\u{1b}tail", "z".repeat(60));
        assert_eq!(
            shown(&text),
            format!("{}… ({} bytes)", "z".repeat(60), text.len())
        );
    }
}
