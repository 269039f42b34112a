"""Schemathesis hooks and checks of the fuzz stage (scripts/fuzz.sh loads them through
SCHEMATHESIS_HOOKS).

Hooks: three cases in four get a model the gateway serves (the configuration of
tests/fuzz/serve.mjs, read from the file FUZZ_GATEWAY_INFO names), so that generated requests
reach the providers' translations and the mock vendor (a third of those chats with
"stream": true; a `max_tokens` of 0 made 16 and `stream_options` given its `stream`, as
OpenAI refuses both as they are and its document does not say so); the fourth keeps the generated model, so that random names are tried too. The choice is a hash of the case, so a failing case replays
the same.

Checks, on every response of the four operations:
  no_gateway_5xx       a 5xx is allowed only as a vendor-side failure the gateway relays:
                       status 502, 503 or 504, an OpenAI-shaped body, and an `error.code`
                       starting with `upstream_` (upstream_unreachable, upstream_timeout,
                       upstream_invalid_response, upstream_stream_broken, upstream_auth_failed,
                       upstream_error). Anything else (500 of any code, config_invalid,
                       internal_error, no_target_available, deadline_exceeded, a runtime's
                       error page, ...) is the gateway's own making and fails; so is
                       all_targets_failed, since the mock vendor never fails by itself: every
                       target failing means the gateway sent what none could answer.
  openai_error_shape   every 4xx and 5xx body is exactly OpenAI's error shape:
                       {"error": {"message": str, "type": str, "param": str|null,
                       "code": str|null}}.
  json_where_promised  a 200 to a chat request with "stream": true is text/event-stream whose
                       data events are JSON (or [DONE], which ends it); a 200 to speech is
                       audio (or its SSE events), one to a streamed image request SSE whose
                       data events are JSON; every other response
                       is application/json with a body that parses as JSON, but those that
                       have no body by HTTP's rules (204, 304, an answer to HEAD; schemathesis
                       sends OPTIONS, which is a CORS preflight answered 204).
  fuzz_stats           counts responses by operation, generation mode (positive: valid by
                       OpenAI's schema; negative: not), status and error code, with one message
                       of each (up to 20 different ones), into the file FUZZ_STATS names (printed by scripts/fuzz.sh);
                       never fails.
"""

import json
import os
import zlib
from collections import Counter

import schemathesis

with open(os.environ["FUZZ_GATEWAY_INFO"], encoding="utf-8") as f:
    INFO = json.load(f)
CHAT = INFO["chat_models"]
EMBEDDINGS = INFO["embedding_models"]
IMAGES = INFO["image_models"]
SPEECH = INFO["speech_models"]


def digest(value):
    return zlib.crc32(json.dumps(value, sort_keys=True, default=repr).encode())


def operation(case):
    return f"{case.operation.method.upper()} {case.operation.path}"


@schemathesis.hook
def map_case(context, case):
    op = operation(case)
    if op == "POST /chat/completions" and isinstance(case.body, dict):
        h = digest(case.body)
        if h % 4:
            case.body = {**case.body, "model": CHAT[(h // 4) % len(CHAT)]}
            # And one in three of those streamed, so that every provider's stream translation
            # is reached.
            if (h >> 16) % 3 == 0:
                case.body["stream"] = True
            # OpenAI's document sets no minimum on these, but OpenAI refuses 0 and so does the
            # gateway; the coverage phase sends 0 in most of its cases, which would keep them
            # from going further.
            for name in ("max_tokens", "max_completion_tokens"):
                if case.body.get(name) == 0:
                    case.body[name] = 16
            # `stream_options` without `stream`: refused by OpenAI and the gateway alike.
            if "stream_options" in case.body and case.body.get("stream") is not True:
                case.body["stream"] = True
    elif op == "POST /embeddings" and isinstance(case.body, dict):
        h = digest(case.body)
        if h % 4:
            # A chat model now and then: the embeddings path must refuse it cleanly.
            names = EMBEDDINGS * 3 + CHAT[:2]
            case.body = {**case.body, "model": names[(h // 4) % len(names)]}
    elif op == "POST /responses" and isinstance(case.body, dict):
        h = digest(case.body)
        if h % 4:
            case.body = {**case.body, "model": CHAT[(h // 4) % len(CHAT)]}
            if (h >> 16) % 3 == 0:
                case.body["stream"] = True
            # A continuation of a response that does not exist is a 404 before anything else.
            if (h >> 8) % 4:
                case.body.pop("previous_response_id", None)
                case.body.pop("conversation", None)
    elif op == "POST /images/generations" and isinstance(case.body, dict):
        h = digest(case.body)
        if h % 4:
            # A chat model now and then: the images path must refuse it cleanly.
            names = IMAGES * 3 + CHAT[:1]
            case.body = {**case.body, "model": names[(h // 4) % len(names)]}
            # Many images of a vendor that makes one a call: bounded, as OpenAI bounds it.
            if isinstance(case.body.get("n"), int) and case.body["n"] > 4:
                case.body["n"] = 4
    elif op == "POST /audio/speech" and isinstance(case.body, dict):
        h = digest(case.body)
        if h % 4:
            names = SPEECH * 3 + CHAT[:1]
            case.body = {**case.body, "model": names[(h // 4) % len(names)]}
    elif op == "GET /models/{model}" and isinstance(case.path_parameters, dict):
        h = digest(case.path_parameters)
        if h % 2:
            names = CHAT + EMBEDDINGS
            case.path_parameters = {**case.path_parameters, "model": names[(h // 2) % len(names)]}
    return case


def header(response, name):
    values = response.headers.get(name) or [""]
    return values[0]


def error_problem(content):
    """What is wrong with `content` as OpenAI's error body; None when nothing is."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError) as e:
        return f"the body is not JSON ({e}): {content[:300]!r}"
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"the body is not {{\"error\": {{...}}}}: {json.dumps(body)[:300]}"
    error = body["error"]
    problems = []
    if set(error) != {"message", "type", "param", "code"}:
        problems.append(f"its members are {sorted(error)}, not code, message, param, type")
    if not isinstance(error.get("message"), str):
        problems.append("error.message is not a string")
    if not isinstance(error.get("type"), str):
        problems.append("error.type is not a string")
    for name in ("param", "code"):
        if name in error and error[name] is not None and not isinstance(error[name], str):
            problems.append(f"error.{name} is neither a string nor null")
    if problems:
        return "; ".join(problems) + f": {json.dumps(body)[:300]}"
    return None


def error_code(content):
    try:
        return json.loads(content)["error"]["code"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return None


@schemathesis.check
def no_gateway_5xx(ctx, response, case):
    status = response.status_code
    if status < 500:
        return None
    code = error_code(response.content)
    if status in (502, 503, 504) and isinstance(code, str) and code.startswith("upstream_"):
        return None
    raise AssertionError(
        f"HTTP {status} of the gateway's own making (code {code!r}): {response.content[:500]!r}"
    )


@schemathesis.check
def openai_error_shape(ctx, response, case):
    if response.status_code < 400:
        return None
    problem = error_problem(response.content)
    if problem:
        raise AssertionError(f"HTTP {response.status_code} without OpenAI's error shape: {problem}")
    content_type = header(response, "content-type")
    if not content_type.startswith("application/json"):
        raise AssertionError(f"HTTP {response.status_code} error with content-type {content_type!r}")
    return None


def wants_stream(case):
    return isinstance(case.body, dict) and case.body.get("stream") is True


@schemathesis.check
def json_where_promised(ctx, response, case):
    if response.status_code in (204, 304) or response.request.method in ("HEAD",):
        if response.content:
            raise AssertionError(f"HTTP {response.status_code} to {response.request.method} with a body")
        return None
    content_type = header(response, "content-type")
    if operation(case) == "POST /chat/completions" and response.status_code == 200 and wants_stream(case):
        if not content_type.startswith("text/event-stream"):
            raise AssertionError(f"a streamed chat answered with content-type {content_type!r}")
        text = response.content.decode("utf-8", errors="strict")
        events = []
        for block in text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if data:
                events.append(data)
        for i, data in enumerate(events):
            if data == "[DONE]":
                if i != len(events) - 1:
                    raise AssertionError(f"[DONE] is event {i} of {len(events)}")
                continue
            try:
                json.loads(data)
            except ValueError as e:
                raise AssertionError(f"stream event {i} is not JSON ({e}): {data[:300]!r}") from None
        if not response.stream_cut_short and (not events or events[-1] != "[DONE]"):
            raise AssertionError(f"the stream does not end with [DONE]: {text[-300:]!r}")
        return None
    if operation(case) == "POST /responses" and response.status_code == 200 and wants_stream(case):
        if not content_type.startswith("text/event-stream"):
            raise AssertionError(f"a streamed response answered with content-type {content_type!r}")
        text = response.content.decode("utf-8", errors="strict")
        types = []
        for block in text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if not data:
                continue
            try:
                event = json.loads(data)
            except ValueError as e:
                raise AssertionError(f"stream event {len(types)} is not JSON ({e}): {data[:300]!r}") from None
            if event.get("sequence_number") != len(types):
                raise AssertionError(f"event {len(types)} has sequence_number {event.get('sequence_number')!r}")
            types.append(event.get("type"))
        terminal = {"response.completed", "response.incomplete", "response.failed"}
        ends = [t for t in types if t in terminal]
        if not response.stream_cut_short and (len(ends) != 1 or types[-1] not in terminal | {"error"}):
            raise AssertionError(f"the stream does not end with one terminal event: {types[-4:]}")
        return None
    if operation(case) == "POST /audio/speech" and response.status_code == 200:
        # The audio itself (or, with `stream_format: sse`, its events).
        if not content_type.startswith(("audio/", "application/octet-stream", "text/event-stream")):
            raise AssertionError(f"speech answered with content-type {content_type!r}")
        if not response.content and not response.stream_cut_short:
            raise AssertionError("speech answered 200 with no audio")
        return None
    if operation(case) == "POST /images/generations" and response.status_code == 200 and wants_stream(case):
        if not content_type.startswith("text/event-stream"):
            raise AssertionError(f"a streamed image answered with content-type {content_type!r}")
        text = response.content.decode("utf-8", errors="strict")
        for block in text.replace("\r\n", "\n").split("\n\n"):
            data = "\n".join(line[5:].lstrip() for line in block.split("\n") if line.startswith("data:"))
            if data:
                try:
                    json.loads(data)
                except ValueError as e:
                    raise AssertionError(f"image stream event is not JSON ({e}): {data[:300]!r}") from None
        return None
    if not content_type.startswith("application/json"):
        raise AssertionError(
            f"HTTP {response.status_code} with content-type {content_type!r}, not JSON: {response.content[:300]!r}"
        )
    try:
        json.loads(response.content)
    except (ValueError, UnicodeDecodeError) as e:
        raise AssertionError(f"HTTP {response.status_code} body is not JSON ({e}): {response.content[:300]!r}") from None
    return None


def mode(case):
    try:
        return case.meta.generation.mode.value
    except AttributeError:
        return "?"


def error_message(content):
    try:
        return str(json.loads(content)["error"]["message"])[:200]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        return content[:200].decode("utf-8", errors="replace")


@schemathesis.check
class fuzz_stats:  # noqa: N801 - the check's name as the command line gives it
    """Counts responses by operation, mode, status and error code; writes them at the end."""

    def __init__(self):
        self.counts = Counter()
        self.samples = {}

    def after_response(self, ctx, response, case):
        status = response.status_code
        if status >= 400:
            code = error_code(response.content)
        else:
            # Who answered, and whether as a stream: how deep the generated requests went.
            provider = header(response, "x-switchyard-provider")
            streamed = header(response, "content-type").startswith("text/event-stream")
            code = (f"provider={provider}" if provider else None) if not streamed else f"provider={provider}, stream"
        method = response.request.method
        # The probes with other methods (405, or 204 to a preflight) are counted together.
        op = operation(case) if method == case.operation.method.upper() else f"(other) {case.operation.path}"
        key = (op, mode(case), status, code)
        self.counts[key] += 1
        if status >= 400:
            samples = self.samples.setdefault(key, [])
            message = error_message(response.content)
            if len(samples) < 20 and message not in samples:
                samples.append(message)

    def after_run(self, ctx):
        path = os.environ.get("FUZZ_STATS")
        if not path:
            return
        rows = [
            {"operation": op, "mode": m, "status": status, "code": code, "count": n, "samples": self.samples.get((op, m, status, code), [])}
            for (op, m, status, code), n in sorted(self.counts.items(), key=lambda kv: tuple(map(str, kv[0])))
        ]
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rows, f)
