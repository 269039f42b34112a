"""The official Python SDKs against the gateway, unmodified: each check prints one JSON line,
{"check": name, "ok": bool, "detail": ...}, for tests/e2e/python-sdks.test.mjs to assert.

Usage: clients.py BASE_URL GATEWAY_KEY
"""

import json
import sys
import traceback

import anthropic
import openai

BASE, KEY = sys.argv[1], sys.argv[2]
oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=20)
an = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=20)

WEATHER = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
FUNCTION = {"type": "function", "name": "get_weather", "description": "Current weather in a city",
            "parameters": WEATHER["input_schema"]}


def check(name):
    def run(f):
        try:
            detail = f()
            print(json.dumps({"check": name, "ok": True, "detail": detail}), flush=True)
        except Exception as e:  # every failure is reported, none stops the others
            print(json.dumps({"check": name, "ok": False, "detail": f"{e!r}\n{traceback.format_exc()}"}), flush=True)
        return f
    return run


for model in ["claude-sonnet", "gpt-test", "gemini-flash", "echo", "gpt-native"]:

    @check(f"anthropic messages.create {model}")
    def _():
        m = an.messages.create(model=model, max_tokens=200, system="Be brief.",
                               messages=[{"role": "user", "content": "Hi"}])
        assert m.type == "message" and m.content[0].type == "text" and m.content[0].text, m
        assert m.stop_reason == "end_turn" and m.usage.output_tokens > 0, m
        return m.content[0].text

    @check(f"anthropic messages.stream {model}")
    def _():
        with an.messages.stream(model=model, max_tokens=200, messages=[{"role": "user", "content": "Hi"}]) as s:
            text = "".join(s.text_stream)
            final = s.get_final_message()
        assert text and final.content[0].text == text and final.stop_reason == "end_turn", final
        return text

    @check(f"openai responses.create {model}")
    def _():
        r = oa.responses.create(model=model, input="Hi there", instructions="Be brief.")
        assert r.status == "completed" and r.output_text, r
        again = oa.responses.retrieve(r.id)
        assert again.output_text == r.output_text
        follow = oa.responses.create(model=model, input="And?", previous_response_id=r.id)
        assert follow.previous_response_id == r.id and follow.output_text
        return r.output_text

    @check(f"openai responses.stream {model}")
    def _():
        with oa.responses.stream(model=model, input="Tell me something") as s:
            deltas = "".join(e.delta for e in s if e.type == "response.output_text.delta")
            final = s.get_final_response()
        assert final.status == "completed" and deltas == final.output_text, final
        return deltas

    @check(f"openai chat.completions {model}")
    def _():
        c = oa.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}])
        assert c.choices[0].message.content
        chunks = oa.chat.completions.create(model=model, stream=True, messages=[{"role": "user", "content": "Hi"}])
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        assert text
        return text

    if model == "echo":
        continue

    @check(f"anthropic tools {model}")
    def _():
        ask = dict(model=model, max_tokens=300, tools=[WEATHER], messages=[{"role": "user", "content": "Weather in Paris?"}])
        first = an.messages.create(**ask)
        use = next(b for b in first.content if b.type == "tool_use")
        assert first.stop_reason == "tool_use" and isinstance(use.input, dict), first
        with an.messages.stream(**ask) as s:
            streamed = s.get_final_message()
        assert next(b for b in streamed.content if b.type == "tool_use").input == use.input
        second = an.messages.create(**{**ask, "messages": ask["messages"] + [
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees"}]},
        ]})
        assert "18 degrees" in second.content[0].text, second
        return use.input

    @check(f"openai responses tools {model}")
    def _():
        first = oa.responses.create(model=model, tools=[FUNCTION], input="Weather in Paris?")
        call = next(o for o in first.output if o.type == "function_call")
        second = oa.responses.create(model=model, tools=[FUNCTION], previous_response_id=first.id,
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}])
        assert "18 degrees" in second.output_text, second
        return json.loads(call.arguments)


@check("openai images.generate, whole and streamed (Gemini's image model)")
def _():
    r = oa.images.generate(model="py-image", prompt="A cute baby sea otter", n=2, size="1024x1024")
    assert len(r.data) == 2 and all(d.b64_json for d in r.data), r
    events = list(oa.images.generate(model="py-image", prompt="otter", stream=True))
    assert [e.type for e in events] == ["image_generation.completed"] and events[0].b64_json, events
    return len(r.data[0].b64_json)


@check("openai audio.speech and audio.transcriptions")
def _():
    with oa.audio.speech.with_streaming_response.create(model="py-tts", voice="alloy", input="Hello there",
                                                        response_format="wav") as r:
        audio = r.read()
    assert audio[:4] == b"RIFF" and r.headers["content-type"] == "audio/wav", (audio[:16], r.headers)
    text = oa.audio.transcriptions.create(model="py-whisper", file=("hello.wav", audio, "audio/wav"))
    assert text.text, text
    return text.text


@check("anthropic errors")
def _():
    try:
        an.messages.create(model="no-such-model", max_tokens=10, messages=[{"role": "user", "content": "Hi"}])
    except anthropic.NotFoundError as e:
        assert e.status_code == 404 and e.body["error"]["type"] == "not_found_error", e.body
        return e.body
    raise AssertionError("no NotFoundError")


@check("anthropic count_tokens and models")
def _():
    counted = an.messages.count_tokens(model="claude-sonnet", messages=[{"role": "user", "content": "Hello"}])
    ids = [m.id for m in an.models.list().data]
    assert counted.input_tokens > 0 and "claude-sonnet" in ids, (counted, ids)
    return counted.input_tokens
