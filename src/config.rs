//! The configuration in force: the `SWITCHYARD_CONFIG` var when it is set (replaceable at run
//! time, no rebuild), else the document embedded at build time (`config/default.json`).
//! Read and parsed once per isolate: a var changes only with a new deployment, which starts new
//! isolates (reading it on every request would copy the whole document into wasm each time).

use std::cell::RefCell;
use std::rc::Rc;
use switchyard_core::config::{Config, ConfigError};
use worker::Env;

const EMBEDDED: &str = include_str!("../config/default.json");
pub const VAR: &str = "SWITCHYARD_CONFIG";

type Parsed = Result<Rc<Config>, ConfigError>;

thread_local! {
    static CACHE: RefCell<Option<Parsed>> = const { RefCell::new(None) };
}

/// The configuration in force, or why it is invalid.
pub fn current(env: &Env) -> Parsed {
    CACHE.with(|cache| {
        if let Some(parsed) = cache.borrow().as_ref() {
            return parsed.clone();
        }
        let text = env.var(VAR).map(|v| v.to_string()).ok().filter(|t| !t.trim().is_empty());
        let parsed = Config::parse(text.as_deref().unwrap_or(EMBEDDED))
            .map(Rc::new)
            .map_err(|e| ConfigError { path: e.path, reason: e.reason });
        if let Err(e) = &parsed {
            worker::console_error!("switchyard: invalid configuration: {e}");
        }
        *cache.borrow_mut() = Some(parsed.clone());
        parsed
    })
}
