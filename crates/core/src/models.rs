//! `GET /v1/models`: the configured public models, and their aliases, in OpenAI's list shape.

use crate::config::{Config, Model};
use serde::Serialize;

#[derive(Serialize)]
pub struct ModelObject<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'a str,
}

#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<ModelObject<'a>>,
}

fn object<'a>(id: &'a str, model: &'a Model) -> ModelObject<'a> {
    // The gateway has no creation date for a configured model; 0 keeps the field an integer.
    ModelObject { id, object: "model", created: 0, owned_by: &model.owned_by }
}

/// Every model name and alias the gateway answers to, each as its own entry.
pub fn list(config: &Config) -> ModelList<'_> {
    let data = config
        .models
        .iter()
        .flat_map(|m| {
            std::iter::once(m.name.as_str()).chain(m.aliases.iter().map(String::as_str)).map(move |id| object(id, m))
        })
        .collect();
    ModelList { object: "list", data }
}

/// One model by name or alias, as `GET /v1/models/{model}` answers it.
pub fn retrieve<'a>(config: &'a Config, id: &'a str) -> Option<ModelObject<'a>> {
    config.model(id).map(|m| object(id, m))
}

/// A model in Anthropic's shape (`GET /v1/models` from a client that sends
/// `anthropic-version`): `{"type":"model","id","display_name","created_at"}`.
pub fn anthropic_object(id: &str) -> serde_json::Value {
    // No creation date is known for a configured model: the epoch, as an RFC 3339 time.
    serde_json::json!({"type": "model", "id": id, "display_name": id, "created_at": "1970-01-01T00:00:00Z"})
}

/// A list of models in Anthropic's shape, all on one page.
pub fn anthropic_list(list: &ModelList<'_>) -> serde_json::Value {
    let data: Vec<serde_json::Value> = list.data.iter().map(|m| anthropic_object(m.id)).collect();
    serde_json::json!({
        "data": data,
        "has_more": false,
        "first_id": list.data.first().map(|m| m.id),
        "last_id": list.data.last().map(|m| m.id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_names_and_aliases() {
        let config = Config::parse(
            r#"{"providers":{"p":{"kind":"mock"}},
                "models":[{"name":"a","aliases":["b"],"targets":[{"provider":"p","model":"x"}]},
                          {"name":"c","targets":[{"provider":"p","model":"y"}],"owned_by":"acme"}]}"#,
        )
        .unwrap();
        let v = serde_json::to_value(list(&config)).unwrap();
        assert_eq!(v["object"], "list");
        let ids: Vec<&str> = v["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(v["data"][2]["owned_by"], "acme");
        assert_eq!(v["data"][0]["object"], "model");
        assert_eq!(serde_json::to_value(retrieve(&config, "b").unwrap()).unwrap()["id"], "b");
        assert!(retrieve(&config, "z").is_none());
        let anthropic = anthropic_list(&list(&config));
        assert_eq!((anthropic["first_id"].as_str(), anthropic["last_id"].as_str()), (Some("a"), Some("c")));
        assert_eq!(
            anthropic["data"][1],
            serde_json::json!({"type": "model", "id": "b", "display_name": "b", "created_at": "1970-01-01T00:00:00Z"})
        );
    }
}
