//! The Swagger UI page at /docs: Swagger UI's script and style as poem-openapi bundles
//! them (the page loads nothing from the network), the served document inlined, the
//! product's name as title, a link to /openapi.json and, in AUTH_MODE=headers, one form
//! that sets the three identity headers at once (`identity_form.html`,
//! `swagger_headers.js`), kept across reloads.

use crate::config::AuthMode;

/// The page's title and heading.
pub const TITLE: &str = "tenantry API";

const PAGE: &str = include_str!("swagger_page.html");
const IDENTITY_FORM: &str = include_str!("identity_form.html");
const START_HEADERS: &str = include_str!("swagger_headers.js");
const START_JWT: &str = include_str!("swagger_jwt.js");

/// The page for a server in `mode` showing `document`. `poem_page` is poem-openapi's own
/// Swagger UI page, whose assets this one reuses.
pub fn swagger_ui(mode: AuthMode, document: &str, poem_page: &str) -> String {
    let (style, script) = bundled_assets(poem_page);
    let (identity_form, start) = match mode {
        AuthMode::Headers => (IDENTITY_FORM, START_HEADERS),
        AuthMode::Jwt => ("", START_JWT),
    };
    fill(
        PAGE,
        &[
            ("title", TITLE),
            ("swagger_ui_css", style),
            ("swagger_ui_js", script),
            ("identity_form", identity_form),
            ("spec", &inline_in_script(document)),
            ("start", start),
        ],
    )
}

/// Swagger UI's style and script out of poem-openapi's page: it bundles them but offers
/// only that page, with a fixed title and configuration
/// (<https://github.com/poem-web/poem/issues/708>).
fn bundled_assets(poem_page: &str) -> (&str, &str) {
    let inside = |open: &str, close: &str| {
        let start = poem_page.find(open)? + open.len();
        let length = poem_page[start..].find(close)?;
        Some(&poem_page[start..start + length])
    };
    let style = inside("<style charset=\"UTF-8\">", "</style>");
    let script = inside("<script charset=\"UTF-8\">", "</script>");
    (
        style.expect("poem-openapi's Swagger UI page inlines the style"),
        script.expect("poem-openapi's Swagger UI page inlines the script"),
    )
}

/// `json` as it can stand inside a `<script>` element: a `</script` or `<!--` in a string
/// would end or derail the element, so their `<` is escaped (JSON allows `\/` and
/// `\u003c` in strings, the only place a `<` can be). Anything else is left as written.
fn inline_in_script(json: &str) -> String {
    let mut safe = String::with_capacity(json.len());
    let mut rest = json;
    while let Some(at) = rest.find('<') {
        safe.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if after.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("/script")) {
            safe.push_str("<\\");
        } else if after.starts_with("!--") {
            safe.push_str("\\u003c");
        } else {
            safe.push('<');
        }
        rest = after;
    }
    safe.push_str(rest);
    safe
}

/// `template` with each `{{name}}` replaced by its value, in one pass: a value is never
/// searched for placeholders (Swagger UI's script has braces of its own).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut page = String::with_capacity(template.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        let end = start + rest[start..].find("}}").expect("a placeholder ends with }}");
        let name = &rest[start + 2..end];
        let value = values.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        page.push_str(&rest[..start]);
        page.push_str(value.unwrap_or_else(|| panic!("no value for the placeholder {name}")));
        rest = &rest[end + 2..];
    }
    page.push_str(rest);
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::extract::auth::HEADER_SCHEMES;

    #[test]
    fn a_script_end_or_comment_start_in_the_document_stays_inside_the_script() {
        let json = r#"{"a": "</script><!-- </SCRIPT </api <b>"}"#;
        let safe = inline_in_script(json);
        assert_eq!(safe, r#"{"a": "<\/script>\u003c!-- <\/SCRIPT </api <b>"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(parsed, serde_json::from_str::<serde_json::Value>(json).unwrap());
    }

    #[test]
    fn placeholders_are_filled_once_and_values_are_not_searched() {
        let page = fill("<{{a}}|{{b}}>", &[("a", "{{b}}"), ("b", "x")]);
        assert_eq!(page, "<{{b}}|x>");
    }

    #[test]
    fn the_identity_form_has_a_field_for_each_identity_header() {
        for (_, header, _) in HEADER_SCHEMES {
            assert!(IDENTITY_FORM.contains(&format!("data-header=\"{header}\"")), "{header}");
        }
        assert_eq!(IDENTITY_FORM.matches("data-header=").count(), HEADER_SCHEMES.len());
    }
}
