//! `GET /`: the live dashboard, one page whose HTML, script modules and
//! style sheet are compiled into the binary (no CDN, no request but to its
//! own server).
//!
//! The page needs the token like every data route, and reads it from its
//! own URL (`/?token=T`) to open `/ws?token=T` and call `/api/summary`. Its
//! script modules and style sheet are static code without data, served
//! without the token: a browser fetching them cannot add it. The
//! Content-Security-Policy lets the page run only those files and talk only
//! to its own origin, so even a bug that put an event field into markup
//! could not run a script.

use crate::server::http::Response;
use crate::server::router::{Handler, Router};

const INDEX_HTML: &str = include_str!("index.html");
const STYLE_CSS: &str = include_str!("style.css");
/// Where the page finds its style sheet.
const STYLE_PATH: &str = "/dashboard/style.css";
/// The script's modules: the app (stream, polling, scheduling), the model
/// of the runs, the DOM building.
const SCRIPTS: [(&str, &str); 4] = [
    ("/dashboard/app.js", include_str!("app.js")),
    ("/dashboard/model.js", include_str!("model.js")),
    ("/dashboard/view.js", include_str!("view.js")),
    ("/dashboard/plots.js", include_str!("plots.js")),
];

/// Scripts and styles from this origin only (no inline code, no `eval`);
/// connections to this origin only (`'self'` covers `ws:`/`wss:` to the
/// same host in CSP Level 3); no framing, no plugins, no form posts.
pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// Adds `/` (behind the token, when one is set) and the page's assets
/// (public) to `router`.
pub(crate) fn mount(router: Router) -> Router {
    let router = router
        .route("/", false, asset(INDEX_HTML, "text/html; charset=utf-8"))
        .route(
            STYLE_PATH,
            true,
            asset(STYLE_CSS, "text/css; charset=utf-8"),
        );
    SCRIPTS.iter().fold(router, |router, (path, code)| {
        router.route(path, true, asset(code, "text/javascript; charset=utf-8"))
    })
}

/// Every path [`mount`] adds, and whether it is public (served without
/// the token). For the HTTP fuzz harness.
#[cfg(feature = "fuzzing")]
pub(crate) fn paths() -> impl Iterator<Item = (&'static str, bool)> {
    [("/", false), (STYLE_PATH, true)]
        .into_iter()
        .chain(SCRIPTS.iter().map(|(path, _)| (*path, true)))
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
        let entry = SCRIPTS[0].0;
        assert!(INDEX_HTML.contains(&format!(r#"<script type="module" src="{entry}"></script>"#)));
        assert!(INDEX_HTML.contains(&format!(r#"<link rel="stylesheet" href="{STYLE_PATH}">"#)));
        assert_eq!(INDEX_HTML.matches("<script").count(), 1, "no inline script");
        assert!(!INDEX_HTML.contains("<style"), "no inline style");
        assert!(
            !INDEX_HTML.contains("style=\""),
            "no inline style attribute"
        );
        // Every module imported is mounted.
        for (path, code) in SCRIPTS {
            for import in code.lines().filter_map(|l| l.split(" from './").nth(1)) {
                let file = import.trim_end_matches("';");
                assert!(
                    SCRIPTS
                        .iter()
                        .any(|(p, _)| *p == format!("/dashboard/{file}")),
                    "{path} imports {file}, which is not mounted"
                );
            }
        }
    }

    #[test]
    fn the_page_fetches_nothing_from_another_origin() {
        let files = [("index.html", INDEX_HTML), ("style.css", STYLE_CSS)];
        for (name, text) in files.into_iter().chain(SCRIPTS) {
            // The SVG namespace is a name, not an address anything loads.
            let text = text.replace("'http://www.w3.org/2000/svg'", "");
            for needle in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(needle), "{name} contains {needle}");
            }
        }
    }

    #[test]
    fn the_scripts_never_turn_text_into_markup_or_code() {
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
            for (path, code) in SCRIPTS {
                assert!(!code.contains(sink), "{path} uses {sink}");
            }
        }
    }
}
