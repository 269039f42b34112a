//! A vendor's stream relayed to the client once the gateway committed to it, without the
//! asynchronous machinery of Rust futures per chunk: a small JavaScript loop reads the vendor's
//! body and writes the client's, and calls into wasm once a chunk, synchronously, for what
//! the chunk becomes (`Tail::push`: the same translator as before, which also watches for the
//! usage, the end event and errors). The loop also rings the keep-alive, holds the route's total
//! timeout, writes the end of the client's stream when the vendor's ends or breaks off
//! (`Tail::finish`), and stops reading the vendor's when the client goes away (the tail is then
//! dropped unfinished, which meters the call as left early).
//!
//! Everything runs in the request's own context: the loop belongs to the response it feeds.

use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use worker::js_sys::{Reflect, Uint8Array};
use worker::web_sys::{ReadableStream, ReadableStreamDefaultReader};

/// What becomes of a vendor's stream after the commit.
pub trait Tail {
    /// Feeds a chunk as it arrived; appends what the client gets for it.
    fn push(&mut self, bytes: &[u8], out: &mut Vec<u8>);
    /// The vendor's end event came: nothing more is read.
    fn done(&self) -> bool;
    /// The vendor has been quiet for a keep-alive's interval.
    fn keepalive(&mut self, out: &mut Vec<u8>);
    /// The vendor's stream ended (with `error` if it broke off, or the total timeout passed):
    /// appends the end of the client's stream.
    fn finish(&mut self, error: Option<&str>, out: &mut Vec<u8>);
}

/// A tail, as the JavaScript loop holds it.
#[wasm_bindgen]
pub struct Relay {
    tail: Box<dyn Tail>,
    finished: bool,
}

#[wasm_bindgen]
impl Relay {
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.tail.push(chunk, &mut out);
            if self.tail.done() {
                self.tail.finish(None, &mut out);
                self.finished = true;
            }
        }
        out
    }

    pub fn done(&self) -> bool {
        self.finished
    }

    pub fn keepalive(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.tail.keepalive(&mut out);
        }
        out
    }

    pub fn finish(&mut self, error: Option<String>) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.finished {
            self.tail.finish(error.as_deref(), &mut out);
            self.finished = true;
        }
        out
    }
}

#[wasm_bindgen(inline_js = r#"
const TICK = Symbol("tick");
// A timer: `at` resolves to TICK after `ms`, unless `stop()` came first.
function timer(ms) {
  let id;
  const at = new Promise((resolve) => (id = setTimeout(() => resolve(TICK), ms)));
  return { at, stop: () => clearTimeout(id) };
}
const message = (e) => String((e && e.message) || e || "the stream broke off");

export function relay(reader, first, tail, keepaliveMs, totalMs) {
  const Identity = globalThis.IdentityTransformStream;
  const { readable, writable } = Identity ? new Identity() : new TransformStream();
  const writer = writable.getWriter();
  let late, quiet;
  (async () => {
    try {
      await writer.write(first);
      const deadline = totalMs > 0 ? Date.now() + totalMs : Infinity;
      // One timer for the whole stream's deadline, one for each quiet spell.
      late = totalMs > 0 ? timer(totalMs) : undefined;
      let error, read;
      while (!tail.done()) {
        read ??= reader.read();
        const waits = [read];
        if (keepaliveMs > 0) waits.push((quiet ??= timer(keepaliveMs)).at);
        if (late) waits.push(late.at);
        let next;
        try {
          next = waits.length > 1 ? await Promise.race(waits) : await read;
        } catch (e) {
          error = message(e);
          break;
        }
        if (next === TICK) {
          if (Date.now() >= deadline) {
            error = "the answer took longer than the route's total timeout";
            break;
          }
          quiet = undefined;
          const out = tail.keepalive();
          if (out.length) await writer.write(out);
          continue;
        }
        read = undefined;
        if (next.done) break;
        const out = tail.push(next.value);
        if (out.length) await writer.write(out);
      }
      const end = tail.finish(error);
      if (end.length) await writer.write(end);
      await writer.close();
    } catch (e) {
      // The client went away: nothing more is written, nor read.
      writer.abort(message(e)).catch(() => {});
    } finally {
      late?.stop();
      quiet?.stop();
      try {
        tail.free();
      } catch {}
      reader.cancel().catch(() => {});
    }
  })();
  return readable;
}

export function cutAfter(body, ms) {
  const Identity = globalThis.IdentityTransformStream;
  const { readable, writable } = Identity ? new Identity() : new TransformStream();
  // Native: the runtime moves the bytes; the signal aborts both ends when the time is up.
  body.pipeTo(writable, { signal: AbortSignal.timeout(ms) }).catch(() => {});
  return readable;
}
"#)]
extern "C" {
    /// The client's body: `first`, then what `tail` makes of the rest of `reader`'s stream.
    #[wasm_bindgen(js_name = relay)]
    fn relay_js(
        reader: &ReadableStreamDefaultReader,
        first: &[u8],
        tail: Relay,
        keepalive_ms: f64,
        total_ms: f64,
    ) -> ReadableStream;

    #[wasm_bindgen(js_name = cutAfter)]
    fn cut_after_js(body: &ReadableStream, ms: f64) -> ReadableStream;
}

/// `body` as it comes, natively, cut off (both ends aborted: the client's body ends in an
/// error) if it has not ended `ms` from now.
pub fn cut_after(body: &ReadableStream, ms: u64) -> ReadableStream {
    cut_after_js(body, ms as f64)
}

/// The client's body: `first`, then what `tail` makes of the rest of `reader` (a keep-alive
/// after `keepalive_ms` of quiet, none if 0; the stream ended as broken after `total_ms`, never
/// if `None`).
pub fn relay(
    reader: &ReadableStreamDefaultReader,
    first: &[u8],
    tail: Box<dyn Tail>,
    keepalive_ms: u64,
    total_ms: Option<u64>,
) -> ReadableStream {
    relay_js(reader, first, Relay { tail, finished: false }, keepalive_ms as f64, total_ms.map_or(0.0, |ms| ms as f64))
}

/// A reader of a vendor's body.
pub fn reader(body: &ReadableStream) -> ReadableStreamDefaultReader {
    body.get_reader().unchecked_into()
}

/// The next chunk of `reader`'s stream (`None`: it ended).
pub async fn read(reader: &ReadableStreamDefaultReader) -> Result<Option<Vec<u8>>, String> {
    let result = worker::wasm_bindgen_futures::JsFuture::from(reader.read()).await.map_err(describe)?;
    if Reflect::get(&result, &"done".into()).map_or(true, |done| done.is_truthy()) {
        return Ok(None);
    }
    let value = Reflect::get(&result, &"value".into()).map_err(describe)?;
    Ok(Some(value.dyn_into::<Uint8Array>().map_err(describe)?.to_vec()))
}

/// Stops reading `reader`'s stream (the vendor's connection is closed).
pub fn cancel(reader: &ReadableStreamDefaultReader) {
    let _ = reader.cancel();
}

/// What a failed JavaScript call said.
pub fn describe(value: JsValue) -> String {
    value
        .dyn_ref::<worker::js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| value.as_string())
        .unwrap_or_else(|| "the stream could not be read".to_owned())
}
