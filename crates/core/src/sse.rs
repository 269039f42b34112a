//! Server-sent events: writing OpenAI's (`data: <json>\n\n`, ending with `data: [DONE]`), and
//! reading any vendor's incrementally, as bytes arrive.

use serde::Serialize;

pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// Appends one `data:` event holding `value` as JSON.
pub fn push_event<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    out.extend_from_slice(b"data: ");
    // Serializing the gateway's own wire types into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
    out.extend_from_slice(b"\n\n");
}

/// An incremental event-stream parser. Bytes go in as they arrive, split anywhere (inside a
/// line, a CRLF or a UTF-8 sequence); each complete event comes out once, as its `event` name
/// and its `data`. Work is linear in the bytes: only the unfinished line is kept between calls.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended with CR: an LF starting the next one belongs to it.
    after_cr: bool,
    event: String,
    data: Vec<u8>,
    has_data: bool,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes`; calls `on_event(event, data)` for each event they complete.
    pub fn push(&mut self, mut bytes: &[u8], on_event: &mut impl FnMut(&str, &[u8])) {
        if bytes.is_empty() {
            return; // an empty chunk between a CR and its LF must not part them
        }
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = bytes.strip_prefix(b"\n") {
                bytes = rest;
            }
        }
        while let Some(end) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (head, tail) = bytes.split_at(end);
            let crlf = tail.starts_with(b"\r\n");
            if tail == b"\r" {
                self.after_cr = true;
            }
            if self.line.is_empty() {
                self.line_complete(head, on_event);
            } else {
                self.line.extend_from_slice(head);
                let line = std::mem::take(&mut self.line);
                self.line_complete(&line, on_event);
                self.line = line;
                self.line.clear();
            }
            bytes = &tail[if crlf { 2 } else { 1 }..];
        }
        self.line.extend_from_slice(bytes);
    }

    /// The stream ended. As the SSE specification says, an event not closed by a blank line is
    /// incomplete and discarded: a stream cut in the middle of an event delivers nothing of it.
    pub fn finish(&mut self) {
        self.line.clear();
        self.after_cr = false;
        self.event.clear();
        self.data.clear();
        self.has_data = false;
    }

    fn line_complete(&mut self, line: &[u8], on_event: &mut impl FnMut(&str, &[u8])) {
        if line.is_empty() {
            self.dispatch(on_event);
            return;
        }
        if line[0] == b':' {
            return; // a comment (keep-alive)
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_in_pieces(input: &[u8], piece: usize) -> Vec<(String, String)> {
        let mut parser = SseParser::new();
        let mut events = Vec::new();
        let mut on_event =
            |event: &str, data: &[u8]| events.push((event.to_owned(), String::from_utf8(data.to_vec()).unwrap()));
        for chunk in input.chunks(piece.max(1)) {
            parser.push(chunk, &mut on_event);
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
    fn an_empty_chunk_between_cr_and_lf_does_not_part_them() {
        let mut parser = SseParser::new();
        let mut events = 0;
        for chunk in [&b"data: x\r"[..], b"", b"\n"] {
            parser.push(chunk, &mut |_, _| events += 1);
        }
        assert_eq!(events, 0, "CRLF ends one line, not two");
    }
}
