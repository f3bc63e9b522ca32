//! Log output: the subscriber the binary installs, and the field formatter it uses.
//!
//! Every request opens a `request` span with three fields (`LOG_REQUESTS`), and the
//! text formatter renders a span's fields when the span is created, whether or not a
//! line is ever written in it. `tracing_subscriber`'s default field formatter wraps
//! each field name in a (possibly empty) ANSI style, which costs more than the rest
//! of the span; [`PlainFields`] writes the same characters without it when colours
//! are off, and is the default formatter otherwise.

use std::fmt;
use std::io::IsTerminal;

use tracing::field::{Field, Visit};
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};

use crate::config::Settings;

/// Installs the global subscriber: `LOG_LEVEL` (or `RUST_LOG`), text or JSON
/// (`LOG_JSON_FORMAT`), colours only on a terminal.
pub(crate) fn init(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,hyper=warn", settings.log_level)));
    // Colours only on a terminal: escape codes are noise in a file or a log collector.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = if settings.log_json_format {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.fmt_fields(PlainFields).try_init()
    };
}

/// `DefaultFields`' output, written without styling when the writer has no colours.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PlainFields;

impl<'a> MakeVisitor<Writer<'a>> for PlainFields {
    type Visitor = PlainVisitor<'a>;

    fn make_visitor(&self, writer: Writer<'a>) -> Self::Visitor {
        PlainVisitor {
            writer,
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`PlainFields`]: `name=value` pairs separated by one space, the
/// `message` field bare. What it does not write itself (messages, errors, raw
/// identifiers, `log.` metadata, anything under colours) goes to `DefaultFields`'
/// visitor, so the output is the default one character for character.
pub(crate) struct PlainVisitor<'a> {
    writer: Writer<'a>,
    is_empty: bool,
    result: fmt::Result,
}

impl PlainVisitor<'_> {
    /// Whether this field is a plain `name=value` the visitor writes itself.
    fn plain(&self, field: &Field) -> bool {
        let name = field.name();
        !self.writer.has_ansi_escapes()
            && name != "message"
            && !name.starts_with("r#")
            && !name.starts_with("log.")
    }

    /// Hands one field to the default visitor, with this visitor's padding state.
    fn delegate(&mut self, field: &Field, record: impl FnOnce(&mut DefaultVisitor<'_>)) {
        let mut inner = DefaultVisitor::new(self.writer.by_ref(), self.is_empty);
        record(&mut inner);
        self.result = inner.finish();
        // The default visitor writes every field but `log.` metadata.
        if !field.name().starts_with("log.") {
            self.is_empty = false;
        }
    }
}

impl Visit for PlainVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if self.result.is_err() {
            return;
        }
        if self.plain(field) {
            self.record_debug(field, &value);
        } else {
            self.delegate(field, |v| v.record_str(field, value));
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if self.result.is_err() {
            return;
        }
        self.delegate(field, |v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        if !self.plain(field) {
            self.delegate(field, |v| v.record_debug(field, value));
            return;
        }
        // " name=" in one write where it fits (field names are short identifiers): one
        // call into the writer costs more than checking the few bytes.
        let mut head = [0u8; 64];
        let name = field.name().as_bytes();
        let pad = usize::from(!self.is_empty);
        self.is_empty = false;
        let len = pad + name.len() + 1;
        self.result = (|| {
            match head.get_mut(..len) {
                Some(h) => {
                    h[0] = b' ';
                    h[pad..len - 1].copy_from_slice(name);
                    h[len - 1] = b'=';
                    self.writer
                        .write_str(std::str::from_utf8(h).map_err(|_| fmt::Error)?)?;
                }
                None => {
                    self.writer.write_str(&" "[..pad])?;
                    self.writer.write_str(field.name())?;
                    self.writer.write_str("=")?;
                }
            }
            write!(self.writer, "{value:?}")
        })();
    }
}

impl VisitOutput<fmt::Result> for PlainVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for PlainVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    /// A writer that keeps what was written.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer failure")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Every kind of field a log line of rotor's can carry, inside a request span.
    fn scenario() {
        let span = tracing::info_span!(
            "request",
            correlation_id = %"corr-1",
            method = %"GET",
            path = %"/v1/users/me"
        );
        let _entered = span.enter();
        let err = Outer(std::io::Error::other("disk on fire"));
        tracing::warn!(
            user = "ann\"quoted\"",
            count = 3,
            flag = true,
            r#type = "refresh",
            error = &err as &(dyn std::error::Error + 'static),
            detail = ?Some(1.5),
            a_field_name_that_is_longer_than_sixty_four_bytes_so_it_is_written_in_pieces = 1,
            "replay detected: \u{1b}[31m{}",
            "family"
        );
        tracing::info!("bare message");
        tracing::info!(only = %"a field");
    }

    fn render<N>(fields: N, ansi: bool) -> String
    where
        N: for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static,
    {
        let out = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(ansi)
            .without_time()
            .with_writer(out.clone())
            .fmt_fields(fields)
            .finish();
        tracing::subscriber::with_default(subscriber, scenario);
        let bytes = out.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn plain_fields_write_what_the_default_formatter_writes() {
        for ansi in [false, true] {
            let plain = render(PlainFields, ansi);
            let default = render(tracing_subscriber::fmt::format::DefaultFields::new(), ansi);
            assert_eq!(plain, default, "ansi = {ansi}");
            if !ansi {
                for want in [
                    "request{correlation_id=corr-1 method=GET path=/v1/users/me}",
                    "error=outer failure error.sources=[disk on fire]",
                    "a_field_name_that_is_longer_than_sixty_four_bytes_so_it_is_written_in_pieces=1",
                    "type=\"refresh\"",
                ] {
                    assert!(plain.contains(want), "{want} in {plain}");
                }
            }
        }
    }
}
