//! Log lines of at most [`MAX_LINE_BYTES`]: every log line passes through [`CappedLines`]
//! on its way to stderr, whatever field made it long (an error chain, a client's text). A
//! longer human-readable line is cut with a marker; a longer JSON line has its longest strings
//! cut, so that it is still one JSON object a log shipper reads.

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

/// Bytes of a log line at most, its newline included.
pub const MAX_LINE_BYTES: usize = 4096;

/// What replaces the end of a cut text.
pub const CUT_MARKER: &str = "…[cut]";

/// Writers of capped lines to the writers `inner` makes; `json` says the lines are JSON.
pub struct CappedLines<M> {
    inner: M,
    json: bool,
}

impl<M> CappedLines<M> {
    pub fn new(inner: M, json: bool) -> Self {
        CappedLines { inner, json }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for CappedLines<M> {
    type Writer = CappedLine<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        CappedLine { inner: self.inner.make_writer(), json: self.json, line: Vec::new() }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        CappedLine { inner: self.inner.make_writer_for(meta), json: self.json, line: Vec::new() }
    }
}

/// One log line: collected, then written capped when flushed or dropped (the formatter makes
/// one writer per event).
pub struct CappedLine<W: Write> {
    inner: W,
    json: bool,
    line: Vec<u8>,
}

impl<W: Write> Write for CappedLine<W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty() {
            self.inner.write_all(&capped(&line, self.json))?;
        }
        self.inner.flush()
    }
}

impl<W: Write> Drop for CappedLine<W> {
    fn drop(&mut self) {
        // Nowhere to report a failed write of a log line to.
        let _ = self.flush();
    }
}

/// `line` (ending in a newline) when it is short enough, else the line cut to
/// [`MAX_LINE_BYTES`].
pub fn capped(line: &[u8], json: bool) -> Cow<'_, [u8]> {
    if line.len() <= MAX_LINE_BYTES {
        return Cow::Borrowed(line);
    }
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end_matches('\n');
    let cut = match json.then(|| serde_json::from_str::<Value>(text).ok()).flatten() {
        Some(value) => cut_json(value, text.len()),
        None => cut_text(text, MAX_LINE_BYTES - 1),
    };
    Cow::Owned(format!("{cut}\n").into_bytes())
}

/// `text` cut to `max` bytes at most, the marker included.
fn cut_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max.saturating_sub(CUT_MARKER.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{CUT_MARKER}", &text[..end])
}

/// A JSON log line of `length` bytes, its longest strings cut until it fits one line; when
/// that is not enough (a line of many short values), the line's level, target and time, and
/// a message saying how long it was.
fn cut_json(mut value: Value, length: usize) -> String {
    let max = MAX_LINE_BYTES - 1;
    loop {
        let line = value.to_string();
        if line.len() <= max {
            return line;
        }
        let Some(longest) = longest_string(&mut value).filter(|s| s.len() > 2 * CUT_MARKER.len()) else { break };
        let keep = longest.len().saturating_sub(line.len() - max).max(CUT_MARKER.len());
        *longest = cut_text(longest, keep);
    }
    let mut summary = serde_json::Map::new();
    for key in ["timestamp", "level", "target"] {
        if let Some(Value::String(text)) = value.get(key) {
            summary.insert(key.into(), Value::String(cut_text(text, 256)));
        }
    }
    let message = format!("log line of {length} bytes left out: longer than {MAX_LINE_BYTES} bytes");
    summary.insert("fields".into(), serde_json::json!({ "message": message }));
    Value::Object(summary).to_string()
}

/// The longest string anywhere in `value`.
fn longest_string(value: &mut Value) -> Option<&mut String> {
    match value {
        Value::String(text) => Some(text),
        Value::Array(items) => items.iter_mut().filter_map(longest_string).max_by_key(|s| s.len()),
        Value::Object(fields) => fields.values_mut().filter_map(longest_string).max_by_key(|s| s.len()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// The lines one `info!` with a `size`-byte message and field writes, in JSON or not.
    fn logged(json: bool, size: usize) -> String {
        let out = Shared::default();
        let writer = CappedLines::new(
            {
                let out = out.clone();
                move || out.clone()
            },
            json,
        );
        let layer = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(writer);
        let subscriber = tracing_subscriber::registry().with(if json { layer.json().boxed() } else { layer.boxed() });
        tracing::subscriber::with_default(subscriber, || {
            let long = "é".repeat(size / 2);
            tracing::info!(error = %long, "refused {long}");
            tracing::info!("a short line");
        });
        String::from_utf8(out.0.lock().unwrap().clone()).expect("capped lines are UTF-8")
    }

    /// Bytes written by all the writers of one test.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_over_long_line_is_cut_and_a_short_one_kept() {
        for json in [false, true] {
            let text = logged(json, 100 * 1024);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(lines.len(), 2, "{json}: {text}");
            assert!(lines.iter().all(|line| line.len() < MAX_LINE_BYTES), "{json}");
            assert!(lines[0].len() > MAX_LINE_BYTES / 2, "cut, not left out");
            assert!(lines[0].contains(CUT_MARKER), "{json}: {}", lines[0]);
            assert!(lines[1].ends_with("a short line") || lines[1].contains("\"a short line\""), "{}", lines[1]);
            if json {
                for line in &lines {
                    let value: Value = serde_json::from_str(line).expect("a capped JSON line is JSON");
                    assert_eq!(value["level"], "INFO");
                }
            }
        }
    }

    #[test]
    fn lines_within_the_cap_are_not_touched() {
        let line = format!("{}\n", "x".repeat(MAX_LINE_BYTES - 1));
        assert!(matches!(capped(line.as_bytes(), false), Cow::Borrowed(_)));
        let long = format!("{}\n", "x".repeat(MAX_LINE_BYTES));
        assert_eq!(capped(long.as_bytes(), false).len(), MAX_LINE_BYTES);
    }

    #[test]
    fn a_json_line_of_many_short_values_keeps_its_level_and_says_how_long_it_was() {
        let fields: serde_json::Map<String, Value> = (0..2000).map(|i| (format!("f{i}"), Value::from(i))).collect();
        let line = serde_json::json!({"timestamp": "2026-01-01T00:00:00Z", "level": "WARN", "target": "receiver", "fields": fields});
        let line = format!("{line}\n");
        let cut: Value = serde_json::from_slice(&capped(line.as_bytes(), true)).unwrap();
        assert_eq!(cut["level"], "WARN");
        assert!(cut["fields"]["message"].as_str().unwrap().contains(&format!("{} bytes", line.len() - 1)));
    }
}
