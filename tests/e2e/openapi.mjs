// Validation against OpenAI's published OpenAPI document (../shared/reference, beside the
// checkout). Where that folder is absent (a user's own clone), `specAvailable` is false and the
// conformance checks say so and skip; nothing else depends on it.

import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import Ajv2020 from "ajv/dist/2020.js";
import { root } from "./harness.mjs";

export const SPEC_PATH = join(root, "..", "shared", "reference", "openai-openapi.yaml");
export const specAvailable = existsSync(SPEC_PATH);

let ajv;

// The document declares OpenAPI 3.1 but still marks fields with 3.0's `nullable: true`, which
// JSON Schema ignores: turn each into an explicit `null` alternative.
function allowNulls(node) {
  if (Array.isArray(node)) return node.forEach(allowNulls);
  if (!node || typeof node !== "object") return;
  for (const value of Object.values(node)) allowNulls(value);
  if (node.nullable !== true) return;
  delete node.nullable;
  if (Array.isArray(node.enum) && !node.enum.includes(null)) node.enum.push(null);
  if (typeof node.type === "string") {
    node.type = [node.type, "null"];
  } else if (node.type === undefined) {
    const copy = { ...node };
    for (const key of Object.keys(node)) delete node[key];
    node.anyOf = [copy, { type: "null" }];
  }
}

function validator(name) {
  if (!ajv) {
    const doc = YAML.parse(readFileSync(SPEC_PATH, "utf8"), { maxAliasCount: -1 });
    allowNulls(doc.components);
    ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
    ajv.addSchema({ $id: "openai", components: doc.components });
  }
  const validate = ajv.getSchema(`openai#/components/schemas/${name}`);
  if (!validate) throw new Error(`no schema ${name} in the OpenAPI document`);
  return validate;
}

/** Throws, naming every violation, unless `value` is a valid `components/schemas/<name>`. */
export function assertSchema(name, value) {
  const validate = validator(name);
  if (!validate(value)) {
    const problems = validate.errors.map((e) => `${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
    throw new Error(`not a valid ${name}:\n  ${problems.join("\n  ")}\n${JSON.stringify(value).slice(0, 2000)}`);
  }
}
