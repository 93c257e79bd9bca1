//! The admin router: every route of the API, `/ops`, `/metrics`, `/echo`
//! and the UI, with the layers every answer gets (security headers, body
//! limits, NUL refusal, CORS). It imports the handlers; they do not import
//! it.

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;

use crate::admin::http::api::{
    audit, endpoints, health, login, nodes, sessions, users, BODY_LIMIT, NUL_MESSAGE,
};
use crate::admin::state::{ApiError, AppState};

/// Security headers on every response; `no-store` so that no token-bearing
/// answer is cached.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        // The body limit answers in plain text; keep the API's error shape.
        r = ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("request bodies are limited to {} KiB", BODY_LIMIT / 1024),
        )
        .into_response();
    }
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, k: HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(h, header::CACHE_CONTROL, "no-store");
    r
}

/// The admin access log: one info line per request — method, route (the
/// pattern, never the query, which may hold a token), status, duration,
/// actor (the token's user, or `-`) and client address.
async fn access_log(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(none)".to_string(), |m| m.as_str().to_string());
    let client = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let actor = actor(&st, &req).unwrap_or_else(|| "-".to_string());
    let res = next.run(req).await;
    tracing::info!(
        method = %method,
        route = %route,
        status = res.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1e3,
        actor = %actor,
        client = %client,
        "admin request"
    );
    res
}

/// The email of a valid token in `Authorization: Bearer` or `/ops`'s
/// `?token=` (signature and expiry checked; not the store).
fn actor(st: &AppState, req: &Request) -> Option<String> {
    let bearer = crate::admin::http::api::bearer(req.headers()).map(str::to_string);
    let token = bearer.or_else(|| {
        url::form_urlencoded::parse(req.uri().query()?.as_bytes())
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.into_owned())
    })?;
    crate::admin::auth::verify_token(&st.secret, token.trim()).map(|c| c.email)
}

/// 400 naming the path parameter or query parameter that holds a NUL
/// character (percent-encoded as `%00`), before any handler or store sees it.
async fn refuse_nul(matched: Option<MatchedPath>, req: Request, next: Next) -> Response {
    if let Some(field) = nul_field(req.uri(), matched.as_ref().map(MatchedPath::as_str)) {
        return ApiError::field(&field, NUL_MESSAGE).into_response();
    }
    next.run(req).await
}

/// The name of the path or query parameter of `uri` that holds a NUL.
fn nul_field(uri: &axum::http::Uri, pattern: Option<&str>) -> Option<String> {
    let decoded = |s: &str| percent_encoding::percent_decode_str(s).collect::<Vec<u8>>();
    let segments = uri.path().split('/');
    let names = pattern
        .unwrap_or_default()
        .split('/')
        .map(Some)
        .chain(std::iter::repeat(None));
    for (seg, name) in segments.zip(names) {
        if decoded(seg).contains(&0) {
            let name = name
                .and_then(|n| n.strip_prefix('{'))
                .and_then(|n| n.strip_suffix('}'))
                .unwrap_or("path");
            return Some(name.to_string());
        }
    }
    let query = uri.query()?;
    use crate::admin::json::nul_in;
    url::form_urlencoded::parse(query.as_bytes()).find_map(|(k, v)| {
        if nul_in(&k) {
            Some("query".to_string())
        } else {
            nul_in(&v).then(|| k.into_owned())
        }
    })
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// The admin router.
pub fn router(st: AppState, cors_origins: &[String]) -> Router {
    let mut r = Router::new()
        .route("/api/login", post(login::login))
        .route(
            "/api/endpoints",
            get(endpoints::list).post(endpoints::create),
        )
        .route(
            "/api/endpoints/{id}",
            get(endpoints::get_one)
                .patch(endpoints::update)
                .delete(endpoints::remove),
        )
        .route("/api/endpoints/{id}/stats", get(endpoints::stats))
        .route("/api/endpoints/{id}/samples", get(endpoints::samples))
        .route("/api/endpoints/{id}/sessions", get(sessions::by_endpoint))
        .route("/api/nodes", get(nodes::list))
        .route("/api/sessions", get(sessions::list))
        .route("/api/sessions/{id}", delete(sessions::kill_route))
        .route("/api/audit", get(audit::list))
        .route("/api/audit/export", get(audit::export))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{id}", delete(users::remove))
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(crate::admin::http::metrics::render))
        .route("/ops", get(crate::admin::ops::handler))
        .route("/echo", get(crate::admin::http::echo::handler))
        .route("/", get(crate::admin::http::ui::index))
        .route("/ui/app.js", get(crate::admin::http::ui::app))
        .route("/ui/style.css", get(crate::admin::http::ui::style))
        .route_layer(middleware::from_fn(refuse_nul))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Refuses a declared Content-Length over the limit before reading it.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(middleware::from_fn(security_headers));
    if !cors_origins.is_empty() {
        use tower_http::cors::{AllowOrigin, CorsLayer};
        let origins: Vec<HeaderValue> = cors_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o).ok())
            .collect();
        r = r.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::list(origins))
                .allow_methods([
                    axum::http::Method::GET,
                    axum::http::Method::POST,
                    axum::http::Method::PATCH,
                    axum::http::Method::DELETE,
                ])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    r.layer(middleware::from_fn_with_state(st.clone(), access_log))
        .with_state(st)
}
