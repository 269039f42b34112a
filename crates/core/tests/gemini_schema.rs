//! Tool and response schemas reduced for Gemini stay small whatever their references do: a
//! few hundred bytes whose `$ref`s fan out or recurse must not grow into billions of nodes
//! (seen: 4 GB and a killed isolate from a 300-byte request).

use serde_json::{json, Value};
use switchyard_core::providers::gemini::{reduce_schema, SCHEMA_NODES};

fn nodes(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(nodes).sum::<usize>(),
        Value::Array(items) => items.iter().map(nodes).sum(),
        _ => 0,
    }
}

#[test]
fn a_recursive_reference_that_fans_out_is_cut_where_it_recurses() {
    let schema = json!({"type": "object", "properties": {"root": {"$ref": "#/$defs/T"}}, "$defs": {"T": {
        "type": "object",
        "properties": {"a": {"$ref": "#/$defs/T"}, "b": {"$ref": "#/$defs/T"}, "c": {"$ref": "#/$defs/T"}, "d": {"$ref": "#/$defs/T"}}
    }}});
    let reduced = reduce_schema(&schema);
    assert_eq!(reduced["properties"]["root"]["properties"]["a"], json!({"type": "object"}));
    assert!(nodes(&reduced) < 32, "{reduced}");
}

#[test]
fn a_chain_of_definitions_that_fans_out_stops_at_the_node_budget() {
    // T0 -> four T1 -> four T2 ... -> T15: 4^15 nodes inlined naively, no cycle anywhere.
    let mut defs = serde_json::Map::new();
    for level in 0..16 {
        let next = format!("#/$defs/T{}", level + 1);
        let properties: serde_json::Map<String, Value> =
            ["a", "b", "c", "d"].iter().map(|k| (k.to_string(), json!({"$ref": next}))).collect();
        defs.insert(format!("T{level}"), json!({"type": "object", "properties": properties}));
    }
    defs.insert("T16".into(), json!({"type": "string"}));
    let schema = json!({"$ref": "#/$defs/T0", "$defs": defs});
    let reduced = reduce_schema(&schema);
    assert!(nodes(&reduced) <= 2 * SCHEMA_NODES, "{} nodes", nodes(&reduced));
}

#[test]
fn references_that_do_not_recurse_are_still_inlined() {
    let schema = json!({"type": "object", "properties": {"when": {"$ref": "#/$defs/Date"}, "also": {"$ref": "#/$defs/Date"}},
                        "$defs": {"Date": {"type": "string", "description": "a day"}}});
    let reduced = reduce_schema(&schema);
    assert_eq!(reduced["properties"]["when"], json!({"type": "string", "description": "a day"}));
    assert_eq!(reduced["properties"]["also"], reduced["properties"]["when"]);
}
