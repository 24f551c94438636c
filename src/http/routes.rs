//! The route table: every API operation (id, method, path template), built once from
//! poem-openapi's own metadata of the handlers, and given as data to what needs to know
//! routes at run time: metrics (which route a request counts under), the middleware
//! (`Allow` on a 405, and a CORS preflight's methods) and error rendering (path parameter
//! names). Nothing here reads the served document.

use poem::http::Method;
use poem_openapi::registry::MetaApi;

/// One API operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub id: &'static str,
    pub method: Method,
    /// The path template as the document writes it, e.g. `/api/issues/{id}`.
    pub path: String,
}

/// Every operation, in the handlers' order.
#[derive(Debug, Clone)]
pub struct RouteTable {
    operations: Vec<Operation>,
}

impl RouteTable {
    /// From poem-openapi's metadata (`OpenApi::meta()`; its registry types are
    /// `#[doc(hidden)]`, so the version is pinned and a test checks every documented path
    /// is here).
    pub fn from_meta(apis: Vec<MetaApi>) -> RouteTable {
        let mut operations = Vec::new();
        for path in apis.into_iter().flat_map(|api| api.paths) {
            for operation in path.operations {
                let id = operation.operation_id.expect("every operation has an operation_id");
                operations.push(Operation { id, method: operation.method, path: path.path.clone() });
            }
        }
        RouteTable { operations }
    }

    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }

    /// The operation whose method and path template `path` matches, if any.
    pub fn find(&self, method: &Method, path: &str) -> Option<&Operation> {
        let mut matching: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|op| op.method == method && template_matches(&op.path, path))
            .collect();
        // Literal segments win over templated ones (`/a/b` before `/a/{id}`).
        matching.sort_by_key(|op| templated_segments(&op.path));
        matching.first().copied()
    }

    /// The path template a concrete path is an instance of (literal segments winning over
    /// templated ones), or `None` when no operation's template matches it.
    pub fn template_of(&self, path: &str) -> Option<&str> {
        self.operations
            .iter()
            .filter(|op| template_matches(&op.path, path))
            .min_by_key(|op| templated_segments(&op.path))
            .map(|op| op.path.as_str())
    }

    /// The `Allow` header for a concrete path (HEAD wherever GET is: poem answers it), or
    /// `None` when no operation's template matches it. CORS preflights answer the same
    /// list in `Access-Control-Allow-Methods`.
    pub fn allowed_methods(&self, path: &str) -> Option<String> {
        let template = self.template_of(path)?;
        let mut methods: Vec<&str> =
            self.operations.iter().filter(|op| op.path == template).map(|op| op.method.as_str()).collect();
        if methods.contains(&"GET") {
            methods.push("HEAD");
        }
        methods.sort_unstable();
        methods.dedup();
        Some(methods.join(", "))
    }

    /// The name of the `index`-th path parameter of an operation (poem-openapi reports
    /// path parameters as `param0`, `param1`, ...).
    pub fn path_parameter(&self, operation_id: &str, index: usize) -> Option<&str> {
        let operation = self.operations.iter().find(|op| op.id == operation_id)?;
        operation
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .nth(index)
    }
}

fn templated_segments(template: &str) -> usize {
    template.split('/').filter(|segment| segment.starts_with('{')).count()
}

/// Whether `path` is an instance of `template` (`{name}` stands for one non-empty segment).
fn template_matches(template: &str, path: &str) -> bool {
    let (mut template, mut path) = (template.split('/'), path.split('/'));
    loop {
        match (template.next(), path.next()) {
            (None, None) => return true,
            (Some(t), Some(p)) if t.starts_with('{') && t.ends_with('}') && !p.is_empty() => {}
            (Some(t), Some(p)) if t == p => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::template_matches;

    #[test]
    fn a_template_matches_paths_with_one_non_empty_segment_per_parameter() {
        assert!(template_matches("/api/issues/{id}", "/api/issues/7"));
        assert!(template_matches("/api/issues/{id}/activity", "/api/issues/7/activity"));
        assert!(!template_matches("/api/issues/{id}", "/api/issues/"));
        assert!(!template_matches("/api/issues/{id}", "/api/issues/7/activity"));
        assert!(!template_matches("/api/issues", "/api/issues/7"));
    }
}
