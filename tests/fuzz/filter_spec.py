"""Cuts OpenAI's OpenAPI document down to the operations the gateway serves.

Usage: filter_spec.py SPEC.yaml OUT.json

Keeps POST /chat/completions, POST /embeddings, GET /models, GET /models/{model}, POST
/responses, GET and DELETE /responses/{response_id}, POST /images/generations and POST
/audio/speech, the
components they reference (transitively) and the security schemes; everything else is dropped,
so that schemathesis loads a few hundred KB instead of 3 MB. The document declares OpenAPI 3.1
but still marks fields with 3.0's `nullable: true`, which 3.1 ignores: each becomes an explicit
`null` alternative, so that generated requests may carry `null` where the API accepts it.
The result is written at run time and never committed (the document is not ours to copy).
"""

import json
import sys

import yaml

try:
    from yaml import CSafeLoader as Loader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as Loader

OPERATIONS = {
    "/chat/completions": ["post"],
    "/embeddings": ["post"],
    "/models": ["get"],
    "/models/{model}": ["get"],
    "/responses": ["post"],
    "/responses/{response_id}": ["get", "delete"],
    "/images/generations": ["post"],
    "/audio/speech": ["post"],
}
PREFIX = "#/components/"


def refs(node, found):
    """Every `$ref` under `node`, into `found`."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            found.add(ref)
        for value in node.values():
            refs(value, found)
    elif isinstance(node, list):
        for value in node:
            refs(value, found)


def resolve(doc, ref):
    node = doc
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def allow_nulls(node):
    if isinstance(node, list):
        for value in node:
            allow_nulls(value)
        return
    if not isinstance(node, dict):
        return
    for value in list(node.values()):
        allow_nulls(value)
    if node.get("nullable") is not True:
        return
    del node["nullable"]
    if isinstance(node.get("enum"), list) and None not in node["enum"]:
        node["enum"].append(None)
    kind = node.get("type")
    if isinstance(kind, str):
        node["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            kind.append("null")
    else:
        copy = dict(node)
        node.clear()
        node["anyOf"] = [copy, {"type": "null"}]


def main(source, target):
    with open(source, encoding="utf-8") as f:
        doc = yaml.load(f, Loader=Loader)
    paths = {}
    for path, methods in OPERATIONS.items():
        item = doc["paths"][path]
        paths[path] = {m: item[m] for m in methods}
        if "parameters" in item:
            paths[path]["parameters"] = item["parameters"]
    # The references, transitively, from the kept operations.
    wanted, seen = set(), set()
    refs(paths, wanted)
    while wanted - seen:
        ref = (wanted - seen).pop()
        seen.add(ref)
        if ref.startswith(PREFIX):
            refs(resolve(doc, ref), wanted)
    components = {"securitySchemes": doc["components"].get("securitySchemes", {})}
    for ref in sorted(seen):
        if not ref.startswith(PREFIX):
            continue
        section, name = ref[len(PREFIX):].split("/", 1)
        components.setdefault(section, {})[name] = resolve(doc, ref)
    out = {
        "openapi": doc["openapi"],
        "info": doc["info"],
        "servers": [{"url": "/v1"}],
        "security": doc.get("security", []),
        "paths": paths,
        "components": components,
    }
    allow_nulls(out)
    with open(target, "w", encoding="utf-8") as f:
        json.dump(out, f)
    kept = sum(len(v) for k, v in components.items() if k != "securitySchemes")
    print(f"filter_spec: {len(paths)} paths, {kept} components kept", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
