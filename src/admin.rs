//! `/admin/*`: operator endpoints, authenticated by the `ADMIN_TOKEN` secret, never by a
//! gateway key.

use crate::{http, provider_health};
use switchyard_core::GatewayError;
use worker::{Env, Request, Response};

pub const TOKEN_SECRET: &str = "ADMIN_TOKEN";

fn authorize(req: &Request, env: &Env) -> Result<(), GatewayError> {
    let Ok(expected) = env.secret(TOKEN_SECRET).map(|s| s.to_string()) else {
        return Err(GatewayError::new(
            403,
            "permission_error",
            "admin_disabled",
            "The admin API is disabled: set the ADMIN_TOKEN secret (wrangler secret put ADMIN_TOKEN).",
        ));
    };
    let authorization = req.headers().get("authorization").ok().flatten();
    let presented = switchyard_core::auth::presented_key(authorization.as_deref(), None);
    let matches = presented.is_some_and(|p| {
        switchyard_core::auth::sha256(p) == switchyard_core::auth::sha256(&expected) && !expected.is_empty()
    });
    if matches {
        Ok(())
    } else {
        Err(GatewayError::new(
            401,
            "invalid_request_error",
            "invalid_admin_token",
            "The admin API needs `Authorization: Bearer <ADMIN_TOKEN>`.",
        ))
    }
}

/// `GET /admin/health`
pub async fn health(req: &Request, env: &Env) -> Result<Response, GatewayError> {
    authorize(req, env)?;
    let mut snapshot = provider_health::snapshot(env).await.map_err(|e| {
        GatewayError::new(503, "server_error", "health_unavailable", format!("The health record is unavailable: {e}"))
    })?;
    let body = snapshot.bytes().await.unwrap_or_default();
    Ok(http::bytes_response(200, "application/json", body))
}
