//! Log output: the subscriber the binary installs, its field formatter, and the
//! request span.
//!
//! Every request opens a `request` span with three fields (`LOG_REQUESTS`), and the
//! text formatter renders a span's fields into a string when the span is created,
//! whether or not a line is ever written in it. Two things keep that cheap:
//! [`request_span`] writes the three fields' text itself and [`RenderedRequestFields`]
//! hands it to the formatter, which then has nothing to render; and every other
//! span's and event's fields go through [`PlainFields`], which writes what
//! `tracing_subscriber`'s default field formatter writes without wrapping each field
//! name in an (empty) ANSI style when colours are off. The output is the default
//! formatter's, byte for byte (see the tests).

use std::cell::RefCell;
use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::format::{DefaultVisitor, Writer};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;
use tracing_subscriber::registry::LookupSpan;

use crate::config::Settings;

/// Installs the global subscriber: `LOG_LEVEL` (or `RUST_LOG`), text or JSON
/// (`LOG_JSON_FORMAT`), colours only on a terminal.
pub(crate) fn init(settings: &Settings) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("{},sqlx=warn,hyper=warn", settings.log_level)));
    // Colours only on a terminal: escape codes are noise in a file or a log collector.
    let ansi = std::io::stderr().is_terminal();
    if settings.log_json_format {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init();
    } else {
        let _ = text_subscriber(ansi, std::io::stderr)
            .with(filter)
            .try_init();
    }
}

/// The text log: rotor's field formatter, and the request span's fields as
/// [`request_span`] wrote them when colours are off.
fn text_subscriber<W>(ansi: bool, writer: W) -> impl Subscriber + for<'a> LookupSpan<'a>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let format = tracing_subscriber::fmt::layer()
        .fmt_fields(PlainFields)
        .with_ansi(ansi)
        .with_writer(writer);
    // Under the formatter, so its text is in place when the formatter looks.
    tracing_subscriber::registry()
        .with((!ansi).then(RenderedRequestFields::new))
        .with(format)
}

thread_local! {
    /// The fields of the request span [`request_span`] is opening on this thread.
    static RENDERED: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Whether a [`RenderedRequestFields`] layer is installed (else there is no point in
/// writing the fields' text).
static RENDER_REQUEST_FIELDS: AtomicBool = AtomicBool::new(false);

/// Opens the `request` span of one request: its correlation id, method and path on
/// every line logged while it is entered.
pub(crate) fn request_span(correlation_id: &str, method: &str, path: &str) -> tracing::Span {
    // Nothing to write for a log without the layer, or one that drops `info` spans.
    if !RENDER_REQUEST_FIELDS.load(Ordering::Relaxed)
        || !tracing::level_enabled!(tracing::Level::INFO)
    {
        return tracing::info_span!(
            "request",
            correlation_id = %correlation_id,
            method = %method,
            path = %path
        );
    }
    // What `PlainFields` writes for these three `Display` fields.
    const NAMES: [&str; 3] = ["correlation_id=", " method=", " path="];
    let values = [correlation_id, method, path];
    let len = NAMES.iter().chain(&values).map(|s| s.len()).sum();
    let mut text = String::with_capacity(len);
    for (name, value) in NAMES.iter().zip(values) {
        text.push_str(name);
        text.push_str(value);
    }
    RENDERED.with(|r| *r.borrow_mut() = Some(text));
    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        method = %method,
        path = %path
    );
    // Not taken when the span is disabled.
    RENDERED.with(|r| r.borrow_mut().take());
    span
}

/// Gives the formatter the `request` span's fields as [`request_span`] wrote them.
/// The formatter renders a span's fields only when it finds none stored for it.
pub(crate) struct RenderedRequestFields(());

impl RenderedRequestFields {
    fn new() -> Self {
        RENDER_REQUEST_FIELDS.store(true, Ordering::Relaxed);
        Self(())
    }
}

impl<S> Layer<S> for RenderedRequestFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().name() != "request" {
            return;
        }
        let Some(text) = RENDERED.with(|r| r.borrow_mut().take()) else {
            return;
        };
        if let Some(span) = ctx.span(id) {
            span.extensions_mut()
                .insert(FormattedFields::<PlainFields>::new(text));
        }
    }
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
        let span = request_span("corr-1", "GET", "/v1/users/me");
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

    /// The lines without their leading timestamp.
    fn untimed(log: &str) -> String {
        log.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn render_with<S>(subscriber: S, out: &Captured) -> String
    where
        S: Subscriber + Send + Sync + 'static,
    {
        tracing::subscriber::with_default(subscriber, scenario);
        let bytes = out.0.lock().unwrap().clone();
        untimed(&String::from_utf8(bytes).unwrap())
    }

    #[test]
    fn rotor_s_text_log_is_the_default_formatter_s_byte_for_byte() {
        for ansi in [false, true] {
            let out = Captured::default();
            let rotor = render_with(text_subscriber(ansi, out.clone()), &out);
            let out = Captured::default();
            let default = render_with(
                tracing_subscriber::fmt()
                    .with_ansi(ansi)
                    .with_writer(out.clone())
                    .finish(),
                &out,
            );
            assert_eq!(rotor, default, "ansi = {ansi}");
            assert_eq!(rotor.lines().count(), 3);
        }
    }

    #[test]
    fn the_request_span_s_fields_are_the_text_request_span_wrote() {
        let out = Captured::default();
        let subscriber = text_subscriber(false, out.clone());
        tracing::subscriber::with_default(subscriber, || {
            // Whatever text is waiting is what the formatter shows for the span.
            RENDERED.with(|r| *r.borrow_mut() = Some("written=by-rotor".into()));
            let span = tracing::info_span!("request", correlation_id = %"x");
            let _entered = span.enter();
            tracing::info!("inside");
            // Taken once: another span renders its own fields.
            assert!(RENDERED.with(|r| r.borrow().is_none()));
        });
        let log = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("request{written=by-rotor}: "), "{log}");
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
