//! Rule files: where they are read from, how physical lines join into directives, and
//! how `Include` patterns expand.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

/// Where rule files come from. The edge and the CLI read the file system ([`OsFs`]);
/// tests and fuzzing use [`MemFs`].
pub trait RuleFs {
    /// The text of a file.
    fn read(&self, path: &Path) -> io::Result<String>;
    /// The names of the entries of a directory.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
}

/// Files held in memory over the real file system (a generated top-level file that
/// includes real rule files). Directory listings come from the real one.
#[derive(Debug, Default)]
pub struct OverlayFs(pub MemFs);

impl RuleFs for OverlayFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.0.read(path).or_else(|_| OsFs.read(path))
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        OsFs.list(dir)
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsFs;

impl RuleFs for OsFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let bytes = std::fs::read(path)?;
        String::from_utf8(bytes).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
            )
        })
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(n) = entry?.file_name().to_str() {
                names.push(n.to_owned());
            }
        }
        Ok(names)
    }
}

/// Files held in memory, by path.
#[derive(Debug, Default, Clone)]
pub struct MemFs {
    files: BTreeMap<PathBuf, String>,
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a file.
    pub fn insert(&mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> &mut Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl RuleFs for MemFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        self.files
            .get(path)
            .cloned()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names: Vec<String> = self
            .files
            .keys()
            .filter_map(|p| p.strip_prefix(dir).ok())
            .filter_map(|rest| rest.components().next())
            .filter_map(|c| c.as_os_str().to_str().map(str::to_owned))
            .collect();
        names.dedup();
        if names.is_empty() {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such directory"));
        }
        Ok(names)
    }
}

/// A logical line: physical lines joined where one ends in a backslash.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The joined text (backslash-newline pairs removed).
    pub text: String,
    /// `(offset in text, offset in file)` where each physical piece starts.
    segments: Vec<(usize, usize)>,
}

impl Line {
    /// The byte offset in the file of byte `at` of the logical line.
    pub fn file_offset(&self, at: usize) -> usize {
        let i = self.segments.partition_point(|&(start, _)| start <= at);
        let (start, file) = self.segments[i.saturating_sub(1)];
        file + (at - start)
    }
}

/// Splits a file into logical lines, skipping blank lines and comments. A line ending in
/// `\` continues on the next (the backslash and the line break are removed; leading
/// spaces of the continuation stay, as in Apache and ModSecurity).
pub(crate) fn logical_lines(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    let mut current: Option<Line> = None;
    let mut offset = 0;
    for raw in text.split_inclusive('\n') {
        let start = offset;
        offset += raw.len();
        let body = raw.strip_suffix('\n').unwrap_or(raw);
        let body = body.strip_suffix('\r').unwrap_or(body);
        let (piece, continues) = match body.strip_suffix('\\') {
            Some(p) => (p, true),
            None => (body, false),
        };
        let line = current.get_or_insert_with(|| Line {
            text: String::new(),
            segments: Vec::new(),
        });
        line.segments.push((line.text.len(), start));
        line.text.push_str(piece);
        if !continues {
            if let Some(done) = current.take() {
                push_line(&mut out, done);
            }
        }
    }
    if let Some(done) = current.take() {
        push_line(&mut out, done);
    }
    out
}

fn push_line(out: &mut Vec<Line>, line: Line) {
    let t = line.text.trim_start();
    if !t.is_empty() && !t.starts_with('#') {
        out.push(line);
    }
}

/// Whether a path pattern has glob metacharacters.
pub(crate) fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Expands a glob pattern (`*`, `?`, `[…]` in any component) into the matching paths,
/// sorted as glob(3) sorts them. Entries whose names start with `.` match only a pattern
/// component that starts with `.`.
pub(crate) fn expand_glob(fs: &dyn RuleFs, pattern: &Path) -> io::Result<Vec<PathBuf>> {
    let mut paths = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy();
        if !is_glob(&part) {
            for p in &mut paths {
                p.push(comp.as_os_str());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &paths {
            let listed = if dir.as_os_str().is_empty() {
                fs.list(Path::new("."))
            } else {
                fs.list(dir)
            };
            let Ok(mut names) = listed else { continue };
            names.sort();
            for name in names {
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if glob_match(part.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(&name));
                }
            }
        }
        paths = next;
    }
    paths.sort();
    Ok(paths)
}

/// Matches one path component against a glob pattern.
pub(crate) fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative matcher with one backtrack point for the last `*`.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class_match(&pattern[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        // An unclosed `[` is a literal.
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Matches a `[…]` class at the start of `pattern`: `(matched, length of the class)`, or
/// `None` if the class is not closed.
fn class_match(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        let x = pattern[i];
        if x == b']' && !first {
            return Some((matched != negated, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let hi = pattern[i + 2];
            matched |= (x..=hi).contains(&c);
            i += 3;
        } else {
            matched |= x == c;
            i += 1;
        }
    }
    None
}
