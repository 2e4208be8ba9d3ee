//! `GET /`: the live dashboard, one page whose HTML, script and style
//! sheet are compiled into the binary (no CDN, no request but to its own
//! server).
//!
//! The page needs the token like every data route, and reads it from its
//! own URL (`/?token=T`) to open `/ws?token=T` and call `/api/summary`. Its
//! script and style sheet are static code without data, served without the
//! token: a browser fetching them cannot add it. The Content-Security-Policy
//! lets the page run only those two files and talk only to its own origin,
//! so even a bug that put an event field into markup could not run a script.

use crate::server::http::Response;
use crate::server::router::{Handler, Router};

const INDEX_HTML: &str = include_str!("index.html");
const APP_JS: &str = include_str!("app.js");
const STYLE_CSS: &str = include_str!("style.css");

/// Where the page finds its script and style sheet.
pub(crate) const SCRIPT_PATH: &str = "/dashboard/app.js";
pub(crate) const STYLE_PATH: &str = "/dashboard/style.css";

/// Scripts and styles from this origin only (no inline code, no `eval`);
/// connections to this origin only (`'self'` covers `ws:`/`wss:` to the
/// same host in CSP Level 3); no framing, no plugins, no form posts.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Adds `/` (behind the token, when one is set) and the page's two assets
/// (public) to `router`.
pub(crate) fn mount(router: Router) -> Router {
    router
        .route("/", false, asset(INDEX_HTML, "text/html; charset=utf-8"))
        .route(
            SCRIPT_PATH,
            true,
            asset(APP_JS, "text/javascript; charset=utf-8"),
        )
        .route(
            STYLE_PATH,
            true,
            asset(STYLE_CSS, "text/css; charset=utf-8"),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Handler {
    Handler::Respond(Box::new(move |_| {
        // `Cache-Control: no-store` comes with every response: a page from an
        // older binary never talks to a newer server.
        Response::new(200, content_type, body)
            .with_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            .with_header("Referrer-Policy", "no-referrer")
            .with_header("X-Frame-Options", "DENY")
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_exactly_the_assets_that_are_mounted() {
        assert!(INDEX_HTML.contains(&format!(r#"<script src="{SCRIPT_PATH}" defer></script>"#)));
        assert!(INDEX_HTML.contains(&format!(r#"<link rel="stylesheet" href="{STYLE_PATH}">"#)));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1, "no inline script");
        assert!(!INDEX_HTML.contains("<style"), "no inline style");
        assert!(
            !INDEX_HTML.contains("style=\""),
            "no inline style attribute"
        );
    }

    #[test]
    fn the_page_fetches_nothing_from_another_origin() {
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("app.js", APP_JS),
            ("style.css", STYLE_CSS),
        ] {
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(needle), "{name} contains {needle}");
            }
        }
    }

    #[test]
    fn the_script_never_turns_text_into_markup_or_code() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setAttribute('style'",
            "setAttribute('on",
        ] {
            assert!(!APP_JS.contains(sink), "app.js uses {sink}");
        }
    }
}
