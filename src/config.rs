//! The configuration in force: the `SWITCHYARD_CONFIG` var when it is set (replaceable at run
//! time, no rebuild), else the document embedded at build time (`config/default.json`).
//! Parsed once per isolate and kept while the text is unchanged.

use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::config::{Config, ConfigError};
use worker::Env;

const EMBEDDED: &str = include_str!("../config/default.json");
pub const VAR: &str = "SWITCHYARD_CONFIG";

type Parsed = Result<Rc<Config>, ConfigError>;

thread_local! {
    static CACHE: RefCell<Option<(String, Parsed)>> = const { RefCell::new(None) };
}

/// The configuration in force, or why it is invalid.
pub fn current(env: &Env) -> Parsed {
    let text = env.var(VAR).map(|v| v.to_string()).ok().filter(|t| !t.trim().is_empty());
    let text = text.as_deref().unwrap_or(EMBEDDED);
    CACHE.with(|cache| {
        if let Some((cached_text, parsed)) = cache.borrow().as_ref() {
            if cached_text == text {
                return parsed.clone();
            }
        }
        let parsed = Config::parse(text).map(Rc::new).map_err(|e| ConfigError { path: e.path, reason: e.reason });
        if let Err(e) = &parsed {
            worker::console_error!("switchyard: invalid configuration: {e}");
        }
        *cache.borrow_mut() = Some((text.to_owned(), parsed.clone()));
        parsed
    })
}
