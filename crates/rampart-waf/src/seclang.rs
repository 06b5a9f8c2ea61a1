//! SecLang, ModSecurity's rule language: reading rule files into typed directives.
//!
//! [`load`] reads a file (or every `*.conf` of a directory, in name order, as CRS is
//! installed), follows `Include` directives (relative to the including file, with glob
//! patterns), joins continued lines, and parses each directive. It returns every
//! directive it could read together with *all* problems found, each at `file:line:col`
//! with what was expected and, where one is likely, a hint ("did you mean `@rx`?").
//!
//! **API boundary:** [`load`] never fails and never panics; a caller that must refuse a
//! ruleset with errors checks [`Loaded::diagnostics`].

pub mod ast;
mod parse;
pub mod source;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rampart_core::config::{Diagnostic, SourceFile, Span};

pub use ast::*;
pub use source::{MemFs, OsFs, OverlayFs, RuleFs};

/// How deep `Include` may nest (a guard against include cycles through symlinks or
/// globs as well as against mistakes).
pub const MAX_INCLUDE_DEPTH: usize = 32;

/// What [`load`] read.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Directives in file order, includes expanded in place.
    pub directives: Vec<Located>,
    /// Every problem found; empty when the ruleset is valid as far as parsing goes.
    pub diagnostics: Vec<Diagnostic>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

/// Reads the rules at `path`: a file, or a directory whose `*.conf` files are read in
/// name order.
pub fn load(fs: &dyn RuleFs, path: &Path) -> Loaded {
    let mut loaded = Loaded::default();
    let mut stack = Vec::new();
    match fs.list(path) {
        Ok(mut names) => {
            names.sort();
            let confs: Vec<_> = names.into_iter().filter(|n| n.ends_with(".conf")).collect();
            if confs.is_empty() {
                loaded.diagnostics.push(plain(
                    path,
                    "no rule files (*.conf) in this directory".into(),
                    Some("a CRS rules directory, e.g. /usr/share/modsecurity-crs/rules".into()),
                ));
            }
            for n in confs {
                load_file(fs, &path.join(n), &mut stack, &mut loaded);
            }
        }
        Err(_) => load_file(fs, path, &mut stack, &mut loaded),
    }
    loaded
}

/// Parses rules held in a string (no file system: an `Include` is an error).
pub fn parse_str(name: &str, text: &str) -> Loaded {
    let mut fs = MemFs::new();
    fs.insert(name, text);
    let mut loaded = Loaded::default();
    load_file(&fs, Path::new(name), &mut Vec::new(), &mut loaded);
    loaded
}

fn plain(path: &Path, message: String, expected: Option<String>) -> Diagnostic {
    Diagnostic {
        file: path.display().to_string(),
        line: 1,
        col: 1,
        message,
        expected,
        hint: None,
        snippet: None,
    }
}

fn load_file(fs: &dyn RuleFs, path: &Path, stack: &mut Vec<PathBuf>, out: &mut Loaded) {
    let text = match fs.read(path) {
        Ok(t) => t,
        Err(e) => {
            out.diagnostics
                .push(plain(path, format!("cannot read rule file: {e}"), None));
            return;
        }
    };
    out.files.push(path.to_path_buf());
    stack.push(path.to_path_buf());
    let name: Arc<str> = path.display().to_string().into();
    let source = SourceFile::new(name.clone(), text);
    for line in source::logical_lines(source.text()) {
        let at = |offset: usize| line.file_offset(offset.min(line.text.len()));
        let lead = line.text.len() - line.text.trim_start().len();
        let origin = Origin {
            file: name.clone(),
            line: source.line_col(at(lead)).0 as u32,
        };
        match parse::parse_line(&line.text) {
            Ok(parse::Parsed::Directive(directive)) => {
                out.directives.push(Located { directive, origin })
            }
            Ok(parse::Parsed::Include(arg)) => {
                let span = Span::from(at(arg.at)..at(arg.at + arg.text.len()));
                include(fs, path, &arg.text, stack, out, |message, expected| {
                    source.diagnostic(span, message, expected, None)
                });
            }
            Err(e) => {
                let start = at(e.at.max(lead));
                out.diagnostics.push(source.diagnostic(
                    Span::from(start..start + 1),
                    e.message,
                    e.expected,
                    e.hint,
                ));
            }
        }
    }
    stack.pop();
}

fn include(
    fs: &dyn RuleFs,
    from: &Path,
    pattern: &str,
    stack: &mut Vec<PathBuf>,
    out: &mut Loaded,
    diag: impl Fn(String, Option<String>) -> Diagnostic,
) {
    let target = match from.parent() {
        Some(dir) if Path::new(pattern).is_relative() => dir.join(pattern),
        _ => PathBuf::from(pattern),
    };
    let paths = if source::is_glob(pattern) {
        match source::expand_glob(fs, &target) {
            Ok(p) => p,
            Err(e) => {
                out.diagnostics
                    .push(diag(format!("cannot expand `{pattern}`: {e}"), None));
                return;
            }
        }
    } else {
        vec![target]
    };
    if paths.is_empty() {
        out.diagnostics.push(diag(
            format!("`Include {pattern}` matches no file"),
            Some("a path or pattern that names rule files".into()),
        ));
    }
    for p in paths {
        if stack.len() >= MAX_INCLUDE_DEPTH || stack.contains(&p) {
            out.diagnostics.push(diag(
                format!(
                    "`{}` includes itself (through {} file(s))",
                    p.display(),
                    stack.len()
                ),
                Some("an include tree without cycles".into()),
            ));
            continue;
        }
        load_file(fs, &p, stack, out);
    }
}
