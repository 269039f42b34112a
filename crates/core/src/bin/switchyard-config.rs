//! `switchyard-config check <file>`: validates a configuration document the way the worker
//! does, so that a mistake is reported before the gateway starts or deploys.
//! `switchyard-config hash-key <key>` prints the SHA-256 that the `keys` section stores.

use std::process::ExitCode;
use switchyard_core::Config;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["check", path] => {
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) => {
                    eprintln!("{path}: {e}");
                    return ExitCode::from(2);
                }
            };
            match Config::parse(&text) {
                Ok(config) => {
                    println!(
                        "{path}: ok ({} providers, {} models, {} keys)",
                        config.providers.len(),
                        config.models.len(),
                        config.keys.len()
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{path}: invalid configuration: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        ["hash-key", key] => {
            let hash = switchyard_core::auth::sha256(key);
            println!("{}", hash.iter().map(|b| format!("{b:02x}")).collect::<String>());
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("usage: switchyard-config check <config.json>\n       switchyard-config hash-key <key>");
            ExitCode::from(2)
        }
    }
}
