//! Finds where a key path (`mappings.github.push.rules[0].run`) stands in the YAML text.
//!
//! serde gives a line and column for the errors it finds itself (a wrong type,
//! an unknown key); the checks made after parsing (an unknown program, a bad
//! expression) use this to point at the same place. It reads block-style YAML
//! (`key:` lines and `- ` items), which is how config files are written; for
//! anything else it answers with the deepest part of the path it found.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// Renders a path as users read it: `mappings.github.push.rules[0].run`.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.contains('.') || k.contains(' ') || k == "*" {
                    out.push('"');
                    out.push_str(k);
                    out.push('"');
                } else {
                    out.push_str(k);
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

#[derive(Debug)]
struct Entry {
    line: usize,
    col: usize,
    /// `Some(key)` for `key:`, `None` for a `- ` item.
    key: Option<String>,
}

fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut col = line.len() - line.trim_start_matches(' ').len();
        let mut rest = &line[col..];
        if rest.is_empty() || rest.starts_with('#') {
            continue;
        }
        while rest == "-" || rest.starts_with("- ") {
            out.push(Entry {
                line: n + 1,
                col,
                key: None,
            });
            let after = &rest[1..];
            let spaces = after.len() - after.trim_start_matches(' ').len();
            col += 1 + spaces;
            rest = &after[spaces..];
        }
        if let Some(key) = key_of(rest) {
            out.push(Entry {
                line: n + 1,
                col,
                key: Some(key),
            });
        }
    }
    out
}

fn key_of(rest: &str) -> Option<String> {
    let (quoted, body) = match rest.chars().next()? {
        q @ ('"' | '\'') => (Some(q), &rest[1..]),
        _ => (None, rest),
    };
    match quoted {
        Some(q) => {
            let end = body.find(q)?;
            let after = &body[end + 1..];
            after.trim_start().starts_with(':').then(|| body[..end].to_string())
        }
        None => {
            let end = body.find(": ").or_else(|| body.strip_suffix(':').map(|b| b.len()))?;
            let key = body[..end].trim_end();
            (!key.is_empty() && !key.starts_with(['{', '[', '#'])).then(|| key.to_string())
        }
    }
}

/// The line and column (1-based) of the deepest part of `path` found in `text`.
pub fn locate(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    let entries = entries(text);
    let mut pos = 0;
    // The column of the node found last, and whether it was a key.
    let mut parent: Option<(usize, bool)> = None;
    let mut best = None;
    for seg in path {
        let inside = |e: &Entry| match parent {
            None => true,
            Some((col, is_key)) => e.col > col || (e.col == col && is_key && e.key.is_none()),
        };
        let mut found = None;
        let mut block_col = None;
        let mut count = 0;
        for (i, e) in entries.iter().enumerate().skip(pos) {
            if !inside(e) {
                break;
            }
            let wanted_kind = matches!(seg, Seg::Index(_)) == e.key.is_none();
            if !wanted_kind {
                continue;
            }
            let col = *block_col.get_or_insert(e.col);
            if e.col != col {
                continue;
            }
            match seg {
                Seg::Key(k) if e.key.as_deref() == Some(k) => {
                    found = Some(i);
                    break;
                }
                Seg::Index(n) if e.key.is_none() => {
                    if count == *n {
                        found = Some(i);
                        break;
                    }
                    count += 1;
                }
                _ => {}
            }
        }
        let i = found?;
        let e = &entries[i];
        best = Some((e.line, e.col + 1));
        parent = Some((e.col, e.key.is_some()));
        pos = i + 1;
    }
    best
}

/// Where `key` is written the second time in the block map whose first key
/// stands at `start` (line and column, 1-based, as serde reports a map's
/// errors): a duplicate key is reported there, not at the map's start.
pub fn repeated_key(text: &str, start: (usize, usize), key: &str) -> Option<(usize, usize)> {
    let entries = entries(text);
    let first = entries
        .iter()
        .position(|e| e.line == start.0 && e.col + 1 == start.1 && e.key.is_some())?;
    let col = entries[first].col;
    let mut seen = 0;
    for e in &entries[first..] {
        if e.col < col {
            break;
        }
        if e.col == col {
            if e.key.is_none() {
                break;
            }
            if e.key.as_deref() == Some(key) {
                seen += 1;
                if seen == 2 {
                    return Some((e.line, e.col + 1));
                }
            }
        }
    }
    None
}

/// Like [`locate`], but falls back to the longest prefix of `path` that is found.
pub fn locate_nearest(text: &str, path: &[Seg]) -> Option<(usize, usize)> {
    (1..=path.len()).rev().find_map(|n| locate(text, &path[..n]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
server:
  listen: 127.0.0.1:9000
programs:
  deploy:
    command: x
mappings:
  github:
    push:
      params:
        ref: payload.ref
      rules:
        - if: ref == \"x\"
          run: deploy
        - run: other
    \"*\":
      rules:
      - run: log
";

    fn k(s: &str) -> Seg {
        Seg::Key(s.to_string())
    }

    #[test]
    fn a_repeated_key_is_found_where_it_is_written_again() {
        let text = "programs:\n  a:\n    command: x\n  b:\n    command: y\n  'a':\n    command: z\n";
        assert_eq!(repeated_key(text, (2, 3), "a"), Some((6, 3)));
        // Nested keys of the same name do not count.
        let text = "p:\n  a:\n    a: 1\n  b: 2\n";
        assert_eq!(repeated_key(text, (2, 3), "a"), None);
        // A map inside a list item ends at the next item.
        let text = "- a: 1\n  b: 2\n- a: 3\n";
        assert_eq!(repeated_key(text, (1, 3), "a"), None);
    }

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(locate(YAML, &[k("server"), k("listen")]), Some((2, 3)));
        assert_eq!(locate(YAML, &[k("programs"), k("deploy"), k("command")]), Some((5, 5)));
        let rule1 = [
            k("mappings"),
            k("github"),
            k("push"),
            k("rules"),
            Seg::Index(1),
            k("run"),
        ];
        assert_eq!(locate(YAML, &rule1), Some((14, 11)));
        let rule0 = [
            k("mappings"),
            k("github"),
            k("push"),
            k("rules"),
            Seg::Index(0),
            k("run"),
        ];
        assert_eq!(locate(YAML, &rule0), Some((13, 11)));
        let star = [k("mappings"), k("github"), k("*"), k("rules"), Seg::Index(0), k("run")];
        assert_eq!(locate(YAML, &star), Some((17, 9)));
    }

    #[test]
    fn missing_parts_fall_back_to_the_nearest() {
        assert_eq!(locate(YAML, &[k("programs"), k("nope")]), None);
        assert_eq!(locate_nearest(YAML, &[k("programs"), k("nope")]), Some((3, 1)));
        // `listen` under `programs` must not match the one under `server`.
        assert_eq!(locate(YAML, &[k("programs"), k("listen")]), None);
    }

    #[test]
    fn renders_paths() {
        let p = [k("mappings"), k("github"), k("*"), k("rules"), Seg::Index(0), k("run")];
        assert_eq!(render(&p), "mappings.github.\"*\".rules[0].run");
    }
}
