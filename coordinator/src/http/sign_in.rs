//! Signing in to the dashboard: a CLI token as `Authorization: Bearer` or
//! in the cookie the sign-in form sets; the middleware that requires one.

use super::*;

/// The token a request carries: `Authorization: Bearer T`, else the cookie.
pub(super) fn presented_token(headers: &HeaderMap) -> Result<&str, String> {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        return h
            .to_str()
            .ok()
            .and_then(auth::bearer)
            .ok_or_else(|| "malformed authorization header".to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .find_map(|c| c.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            "no token: sign in at /login or send `Authorization: Bearer TOKEN`".to_string()
        })
}

impl App {
    /// The caller, if it holds a CLI token that may read the cluster.
    fn caller(&self, headers: &HeaderMap) -> Result<Caller, String> {
        let caller = auth::authenticate(&self.tokens, presented_token(headers)?)?;
        authorize(&caller, Action::Status)?;
        Ok(caller)
    }
}

pub(super) async fn require_token(
    State(app): State<App>,
    mut req: Request,
    next: Next,
) -> Response {
    match app.caller(req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(why) => unauthorized(req.uri().path(), &why),
    }
}

/// 401 and nothing else: a JSON error for the API and `/metrics`, the
/// sign-in form for pages.
pub(super) fn unauthorized(path: &str, why: &str) -> Response {
    if path.starts_with("/api/") || path == "/metrics" {
        let body = Json(serde_json::json!({ "error": format!("unauthorized: {why}") }));
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            body,
        )
            .into_response()
    } else {
        (StatusCode::UNAUTHORIZED, sign_in_form(None)).into_response()
    }
}

pub(super) fn sign_in_form(error: Option<&str>) -> Html<String> {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", html_escape(e)))
        .unwrap_or_default();
    Html(LOGIN_HTML.replace("<!--error-->", &error))
}

pub(super) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) async fn login_page() -> Html<String> {
    sign_in_form(None)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    pub(super) token: String,
}

pub(super) async fn login(State(app): State<App>, Form(form): Form<LoginForm>) -> Response {
    let token = form.token.trim();
    let caller = auth::authenticate(&app.tokens, token)
        .and_then(|c| authorize(&c, Action::Status).map(|()| c));
    match caller {
        // A live token is `convoy_` + hex: nothing that could break the
        // cookie header.
        Ok(caller)
            if token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_') =>
        {
            tracing::info!(who = %caller.who(), "signed in to the dashboard");
            let cookie = format!("{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/");
            (
                [(header::SET_COOKIE, cookie)],
                Redirect::to("/").into_response(),
            )
                .into_response()
        }
        Ok(_) => (
            StatusCode::UNAUTHORIZED,
            sign_in_form(Some("invalid token")),
        )
            .into_response(),
        Err(why) => (StatusCode::UNAUTHORIZED, sign_in_form(Some(&why))).into_response(),
    }
}

pub(super) async fn logout() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (
        [(header::SET_COOKIE, cookie)],
        Redirect::to("/login").into_response(),
    )
        .into_response()
}
