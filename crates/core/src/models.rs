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
    }
}
