//! Text from elsewhere made safe to print on the operator's terminal.
//!
//! Error messages, stderr excerpts, host names and minion ids come from the collected hosts, from
//! Salt or from the server, and any of them may be hostile: an escape sequence can retitle the
//! window (`ESC ] 0 ; ... BEL`), clear the screen (`ESC [ 2 J`), move the cursor to hide a line or
//! fake one, and a carriage return can overwrite what was printed before it on the same line.
//! Everything of that kind that the agent prints goes through [`text`] or [`line`], which replace
//! control characters with a visible escape (`\x1b`, `\r`, `\u{9b}`), so the operator sees what was
//! sent instead of the terminal obeying it. The tracing subscriber does the same for every log
//! field (`logging.rs`), since tracing-subscriber itself leaves `\r` and most C0 controls alone in
//! field values.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every control character escaped except line feeds and tabs, for multi-line
/// output (a report's error shown as it was written).
pub fn text(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n' || c == '\t')
}

/// `text` with every control character escaped, line feeds and tabs included, for output that
/// must stay on one line (a summary row, a log field).
pub fn line(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// True for the characters a terminal may act on instead of showing: C0 controls, DEL, C1
/// controls (U+0080..U+009F: `U+009B` is CSI on terminals that read 8-bit controls), and the
/// bidirectional overrides and isolates, which reorder what follows them on screen.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !is_unsafe(c) || keep(c) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\t' => out.write_str("\\t"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_left_alone() {
        assert!(matches!(text("web-01: connection refused (os error 111)"), Cow::Borrowed(_)));
        assert_eq!(text("two\nlines\tand a tab"), "two\nlines\tand a tab");
        assert_eq!(line("Müller, 東京, ok"), "Müller, 東京, ok");
    }

    #[test]
    fn escape_sequences_and_controls_are_shown_not_obeyed() {
        let hostile = "\x1b]0;pwned\x07title \x1b[2Jclear \roverwrite \u{9b}31mcsi \u{202e}txt.exe\0";
        for shown in [text(hostile), line(hostile)] {
            assert!(!shown.chars().any(is_unsafe), "{shown:?}");
            assert_eq!(shown, "\\x1b]0;pwned\\x07title \\x1b[2Jclear \\roverwrite \\u{9b}31mcsi \\u{202e}txt.exe\\x00");
        }
        assert_eq!(line("a\nb\tc\x7f"), "a\\nb\\tc\\x7f");
        assert_eq!(text("a\nb\tc\x0b"), "a\nb\tc\\x0b");
    }
}
