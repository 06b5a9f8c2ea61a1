//! Configuration: raw file schema → validated runtime snapshot.
//!
//! [`load_str`] is the one entry point: it parses TOML into [`raw::RawConfig`] and
//! [`compile::compile`]s it into a [`Config`], or returns every [`Diagnostic`] it found.
//! The file is read by the caller (the edge or the CLI); this module never does I/O, so
//! certificate files and host names are checked later by the edge, which reports its
//! problems as the same [`Diagnostic`] type, located at the key that named them.

pub mod compile;
pub mod diagnostic;
pub mod model;
pub mod policy;
pub mod raw;
pub mod units;

#[cfg(test)]
mod tests;

pub use compile::compile;
pub use diagnostic::{Diagnostic, Diagnostics, SourceFile, Span};
pub use model::*;
pub use policy::{ListDef, PolicySpec};

/// Parses and validates a configuration held in memory.
///
/// `source` carries the file's name (for messages) and its text.
pub fn load_str(source: &SourceFile) -> Result<Config, Diagnostics> {
    let raw: raw::RawConfig = match toml::from_str(source.text()) {
        Ok(raw) => raw,
        Err(err) => {
            let span = err.span().map(Span::from).unwrap_or_default();
            let (message, expected, hint) = diagnostic::explain_toml_error(err.message());
            return Err(Diagnostics::one(
                source.diagnostic(span, message, expected, hint),
            ));
        }
    };
    compile(source, raw)
}
