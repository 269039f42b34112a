//! Server-sent events: writing OpenAI's (`data: <json>\n\n`, ending with `data: [DONE]`), and
//! reading any vendor's incrementally, as bytes arrive.

use serde::Serialize;

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// The most bytes one line, or the data of one event, may hold: 1 MiB. A vendor's events are a
/// few KiB; a stream that never ends its line (an HTML error page, a broken proxy) is refused
/// at this size instead of growing the buffer for as long as it is fed.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// A vendor's event stream broke [`MAX_EVENT_BYTES`]: it cannot be the vendor's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTooLarge {
    /// A line went on past the limit without a line end.
    Line,
    /// An event's `data` lines added up past the limit without the blank line that ends it.
    Data,
}

/// Splits a byte stream into whole SSE events (each with the blank line that ends it), for a
/// stream that passes through event by event: a vendor that breaks off leaves no half event
/// for the client to choke on. Lines end as SSE says, at CRLF, LF or a lone CR.
#[derive(Debug)]
pub struct EventSplitter {
    /// Bytes of the event not yet complete.
    pending: Vec<u8>,
    /// The line being read has nothing in it yet.
    at_line_start: bool,
    /// The last byte scanned was a CR: an LF right after it belongs to it.
    after_cr: bool,
    /// `pending` is a whole event that ended at a CR, the last byte so far: it goes once the
    /// next byte shows whether an LF (of a CRLF) belongs to it.
    held: bool,
}

impl Default for EventSplitter {
    fn default() -> Self {
        Self { pending: Vec::new(), at_line_start: true, after_cr: false, held: false }
    }
}

/// The most bytes one event may span on the wire: room for the field names and line ends
/// around at most `MAX_EVENT_BYTES` of data, which the parser enforces.
const MAX_PENDING_BYTES: usize = 2 * MAX_EVENT_BYTES;

impl EventSplitter {
    /// The stream ended: the event held for the byte after its CR, if one is.
    pub fn take_held(&mut self) -> Option<Vec<u8>> {
        std::mem::take(&mut self.held).then(|| std::mem::take(&mut self.pending))
    }

    /// The bytes held of an event not yet complete.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds bytes; calls `on_event` with each event as it completes, until it returns false.
    /// An event that grows past the bound is an error (and what it held is let go).
    pub fn push(&mut self, bytes: &[u8], mut on_event: impl FnMut(&[u8]) -> bool) -> Result<(), EventTooLarge> {
        // An event ends at the line end of an empty line: each goes as it completes, after what
        // `pending` holds of its beginning (an LF that completes a CRLF goes with it).
        let mut start = 0;
        let mut line_start = 0;
        if self.held && !bytes.is_empty() {
            self.held = false;
            if bytes[0] == b'\n' {
                self.pending.push(b'\n');
                self.after_cr = false;
                start = 1;
                line_start = 1;
            }
            let event = std::mem::take(&mut self.pending);
            let go_on = on_event(&event);
            self.pending = event;
            self.pending.clear();
            if !go_on {
                return Ok(());
            }
        }
        for end in memchr::memchr2_iter(b'\n', b'\r', bytes) {
            if end < start {
                continue;
            }
            let lf_of_crlf = bytes[end] == b'\n' && self.after_cr && end == line_start;
            self.after_cr = bytes[end] == b'\r';
            if lf_of_crlf {
                line_start = end + 1;
                // The CR ended the event already: its LF goes with the next.
                continue;
            }
            let empty = self.at_line_start && end == line_start;
            self.at_line_start = true;
            line_start = end + 1;
            if !empty {
                continue;
            }
            // Take the LF of a CRLF along when it is here already; wait for the next byte when
            // the CR is the last one.
            let mut last = end;
            if bytes[end] == b'\r' && bytes.get(end + 1) == Some(&b'\n') {
                last = end + 1;
            } else if bytes[end] == b'\r' && end + 1 == bytes.len() {
                self.pending.extend_from_slice(&bytes[start..]);
                self.held = true;
                return Ok(());
            }
            let event = bytes.get(start..=last).unwrap_or_default();
            let go_on = if self.pending.is_empty() {
                on_event(event)
            } else {
                let mut joined = std::mem::take(&mut self.pending);
                joined.extend_from_slice(event);
                let go_on = on_event(&joined);
                joined.clear();
                self.pending = joined;
                go_on
            };
            start = last + 1;
            if !go_on {
                return Ok(());
            }
        }
        let rest = bytes.get(start..).unwrap_or_default();
        if line_start < bytes.len() {
            self.at_line_start = false;
            self.after_cr = false;
        }
        if self.pending.len() + rest.len() > MAX_PENDING_BYTES {
            self.pending = Vec::new();
            return Err(EventTooLarge::Data);
        }
        self.pending.extend_from_slice(rest);
        Ok(())
    }
}

impl std::fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self {
            Self::Line => "a line of the event stream",
            Self::Data => "the data of one stream event",
        };
        write!(f, "{what} exceeds the limit of {MAX_EVENT_BYTES} bytes (1 MiB)")
    }
}

impl std::error::Error for EventTooLarge {}

/// Appends one `data:` event holding `value` as JSON.
pub fn push_event<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    // Serializing the gateway's own wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// An incremental event-stream parser. Bytes go in as they arrive, split anywhere (inside a
/// line, a CRLF or a UTF-8 sequence); each complete event comes out once, as its `event` name
/// and its `data`. Work is linear in the bytes: only the unfinished line is kept between calls,
/// and neither it nor an event's data may pass [`MAX_EVENT_BYTES`].
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF starting the next one belongs to it.
    after_cr: bool,
    event: String,
    data: Vec<u8>,
    has_data: bool,
    /// The stream broke the size limit: nothing more is read from it.
    too_large: Option<EventTooLarge>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; calls `on_event(event, data)` for each event they complete. Once a line or
    /// an event's data passes [`MAX_EVENT_BYTES`], that is the error, now and for every later
    /// call: the rest of the stream is not read.
    pub fn push(&mut self, bytes: &[u8], on_event: &mut impl FnMut(&str, &[u8])) -> Result<(), EventTooLarge> {
        if let Some(too_large) = self.too_large {
            return Err(too_large);
        }
        let result = self.read(bytes, on_event);
        if let Err(too_large) = result {
            self.too_large = Some(too_large);
            self.line = Vec::new();
            self.data = Vec::new();
        }
        result
    }

    fn read(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&str, &[u8])) -> Result<(), EventTooLarge> {
        if bytes.is_empty() {
            return Ok(()); // an empty chunk between a CR and its LF must not part them
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = memchr::memchr2(b'\n', b'\r', bytes) {
            let (head, tail) = bytes.split_at(end);
            if self.line.len() + head.len() > MAX_EVENT_BYTES {
                return Err(EventTooLarge::Line);
            }
            let crlf = tail.starts_with(b"\r\n");
            if tail == b"\r" {
                self.after_cr = true;
            }
            if self.line.is_empty() {
                self.line_complete(head, on_event)?;
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                let result = self.line_complete(&line, on_event);
                self.line = line;
                self.line.clear();
                result?;
            }
            bytes = tail.get(if crlf { 2 } else { 1 }..).unwrap_or_default();
        }
        if self.line.len() + bytes.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge::Line);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// The stream ended. As the SSE specification says, an event not closed by a blank line is
    /// incomplete and discarded: a stream cut in the middle of an event delivers nothing of it.
    pub fn finish(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.event.clear();
        self.data.clear();
        self.has_data = false;
        self.too_large = None;
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut impl FnMut(&str, &[u8])) -> Result<(), EventTooLarge> {
        if line.is_empty() {
            self.dispatch(on_event);
            return Ok(());
        }
        if line.starts_with(b":") {
            return Ok(()); // a comment (keep-alive)
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let (field, value) = line.split_at(i);
                let value = value.get(1..).unwrap_or_default();
                (field, value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT_BYTES {
                    return Err(EventTooLarge::Data);
                }
                if self.has_data {
                    self.data.push(b'\n');
                }
                self.data.extend_from_slice(value);
                self.has_data = true;
            }
            b"event" => {
                // Reuses the buffer: one allocation for the whole stream, not one an event.
                self.event.clear();
                self.event.push_str(&String::from_utf8_lossy(value));
            }
            _ => {} // id, retry: nothing a gateway needs
        }
        Ok(())
    }

    fn dispatch(&mut self, on_event: &mut impl FnMut(&str, &[u8])) {
        if self.has_data {
            on_event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }
}

/// Whether `bytes` (whole events, as a translator writes them) hold a `data:` line, and not only
/// comments: a stream that has sent only keep-alives has not started its answer yet.
pub fn holds_data(bytes: &[u8]) -> bool {
    bytes.starts_with(b"data:") || memchr::memmem::find(bytes, b"\ndata:").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<(String, String)> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut on_event =
            |event: &str, data: &[u8]| events.push((event.to_owned(), String::from_utf8(data.to_vec()).unwrap()));
        for chunk in input.chunks(piece.max(1)) {
            parser.push(chunk, &mut on_event).unwrap();
        }
        parser.finish();
        events
    }

    #[test]
    fn event_is_one_data_line_and_a_blank_line() {
        let mut out = Vec::new();
        push_event(&mut out, &serde_json::json!({"a": "b\nc"}));
        assert_eq!(out, b"data: {\"a\":\"b\\nc\"}\n\n");
    }

    #[test]
    fn events_come_out_the_same_however_the_bytes_are_split() {
        let input = "event: message_start\r\ndata: {\"a\":\"é€😀\"}\r\n\r\n: keep-alive\n\nevent: delta\ndata: line one\ndata: line two\n\ndata:no-space\r\rdata: [DONE]\n\n";
        let expected = vec![
            ("message_start".to_owned(), "{\"a\":\"é€😀\"}".to_owned()),
            ("delta".to_owned(), "line one\nline two".to_owned()),
            (String::new(), "no-space".to_owned()),
            (String::new(), "[DONE]".to_owned()),
        ];
        for piece in 1..input.len() {
            assert_eq!(parse_in_pieces(input.as_bytes(), piece), expected, "pieces of {piece} bytes");
        }
    }

    #[test]
    fn an_event_cut_before_its_blank_line_is_discarded() {
        assert_eq!(parse_in_pieces(b"data: 1\n\ndata: {\"x\":1}\n", 3), vec![(String::new(), "1".to_owned())]);
    }

    #[test]
    fn event_name_does_not_leak_into_the_next_event() {
        let events = parse_in_pieces(b"event: ping\ndata: {}\n\ndata: 2\n\n", 5);
        assert_eq!(events[1].0, "");
    }

    #[test]
    fn a_line_without_an_end_is_refused_at_the_limit() {
        let mut parser = SseParser::new();
        let mut events = 0;
        let piece = vec![b'x'; 64 * 1024];
        let mut fed = 0;
        let result = loop {
            if let Err(e) = parser.push(&piece, &mut |_, _| events += 1) {
                break e;
            }
            fed += piece.len();
            assert!(fed <= MAX_EVENT_BYTES, "the parser kept {fed} bytes of one line");
        };
        assert_eq!(result, EventTooLarge::Line);
        assert!(parser.line.capacity() <= MAX_EVENT_BYTES + piece.len());
        // Once over the limit, the stream is not read any more.
        assert_eq!(parser.push(b"\n\ndata: 1\n\n", &mut |_, _| events += 1), Err(EventTooLarge::Line));
        assert_eq!(events, 0);
        assert!(result.to_string().contains("1048576 bytes"));
    }

    #[test]
    fn an_event_whose_data_lines_never_end_is_refused_at_the_limit() {
        let mut parser = SseParser::new();
        let line = format!("data: {}\n", "y".repeat(1000));
        let mut result = Ok(());
        for _ in 0..(MAX_EVENT_BYTES / 1000 + 2) {
            result = parser.push(line.as_bytes(), &mut |_, _| panic!("no blank line, no event"));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result, Err(EventTooLarge::Data));
    }

    #[test]
    fn a_long_line_that_comes_in_one_piece_is_refused_too() {
        let mut input = b"data: ".to_vec();
        input.resize(MAX_EVENT_BYTES + 10, b'z');
        input.extend_from_slice(b"\n\n");
        let mut parser = SseParser::new();
        assert_eq!(parser.push(&input, &mut |_, _| panic!("too large")), Err(EventTooLarge::Line));
    }

    #[test]
    fn an_event_just_under_the_limit_goes_through() {
        let mut input = b"data: ".to_vec();
        input.resize(MAX_EVENT_BYTES, b'z');
        input.extend_from_slice(b"\n\n");
        let mut sizes = Vec::new();
        let mut parser = SseParser::new();
        for chunk in input.chunks(4096) {
            parser.push(chunk, &mut |_, data| sizes.push(data.len())).unwrap();
        }
        assert_eq!(sizes, [MAX_EVENT_BYTES - 6]);
    }

    #[test]
    fn an_empty_chunk_between_cr_and_lf_does_not_part_them() {
        let mut parser = SseParser::new();
        let mut events = 0;
        for chunk in [&b"data: x\r"[..], b"", b"\n"] {
            parser.push(chunk, &mut |_, _| events += 1).unwrap();
        }
        assert_eq!(events, 0, "CRLF ends one line, not two");
    }

    #[test]
    fn comments_alone_hold_no_data() {
        assert!(!holds_data(b": keep-alive\n\n: ping\n\n"));
        assert!(!holds_data(b": data: not really\n\n"));
        assert!(holds_data(b": keep-alive\n\ndata: {}\n\n"));
        assert!(holds_data(b"data: [DONE]\n\n"));
    }
}
