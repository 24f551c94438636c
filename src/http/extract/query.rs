//! Query strings of the paged endpoints, and the `Link` to the next page.
//!
//! poem-openapi parses the parameters an operation declares and silently ignores any
//! other (a misspelt `stauts=OPEN` would list everything). [`CheckedQuery`] refuses those
//! with a 400 naming them, and a single-valued parameter sent twice. [`ValueList`] reads
//! a list parameter either repeated (`status=OPEN&status=DONE`) or comma-separated
//! (`status=OPEN,DONE`). [`CheckedQuery::next_link`] makes the RFC 8288 `Link` header
//! value: the same query with the next cursor.

use std::{borrow::Cow, collections::HashSet, marker::PhantomData};

use poem::{FromRequest, Request, RequestBody};
use poem_openapi::{
    registry::{MetaSchemaRef, Registry},
    types::{ParseError, ParseFromParameter, ParseResult, Type},
};

use crate::http::error::{ApiError, FieldError};

/// The query parameters one operation accepts.
pub trait QuerySpec: Send + Sync {
    /// Every parameter, as documented.
    const PARAMETERS: &'static [&'static str];
    /// Those that may be sent more than once.
    const LISTS: &'static [&'static str];
}

/// For operations that take no query parameter at all.
pub struct NoParameters;
impl QuerySpec for NoParameters {
    const PARAMETERS: &'static [&'static str] = &[];
    const LISTS: &'static [&'static str] = &[];
}

/// The name of the parameter holding a page's cursor.
pub const CURSOR: &str = "cursor";
/// The most refused parameters one 400 names.
const MAX_NAMED: usize = 10;

/// The request's query, checked against `S`: no unknown parameter, no single-valued
/// parameter twice. Keeps the path and pairs for [`CheckedQuery::next_link`].
pub struct CheckedQuery<S> {
    path: String,
    pairs: Vec<(String, String)>,
    spec: PhantomData<fn() -> S>,
}

impl<S: QuerySpec> CheckedQuery<S> {
    fn check(path: &str, query: &str) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        // Every offending parameter, each named once, in one 400.
        let mut seen = HashSet::new();
        let mut named = HashSet::new();
        let mut errors = Vec::new();
        for (name, _) in &pairs {
            let problem = if !S::PARAMETERS.contains(&name.as_str()) {
                Some(match S::PARAMETERS {
                    [] => "this operation takes no query parameters".to_owned(),
                    known => format!("not a parameter of this operation (known: {})", known.join(", ")),
                })
            } else if !seen.insert(name.as_str()) && !S::LISTS.contains(&name.as_str()) {
                Some("must be given at most once".to_owned())
            } else {
                None
            };
            if let Some(problem) = problem
                && named.insert(name.as_str())
            {
                errors.push(FieldError::new(name.as_str(), problem));
            }
        }
        match errors.len() {
            0 => Ok(CheckedQuery { path: path.to_owned(), pairs, spec: PhantomData }),
            1 => {
                let error = errors.remove(0);
                Err(ApiError::invalid(error.field, error.message))
            }
            // A problem as large as the query would be an amplifier: name the first few.
            n if n > MAX_NAMED => {
                errors.truncate(MAX_NAMED);
                let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
                let detail = format!("{n} parameters refused; the first {MAX_NAMED}: {}", fields.join(", "));
                Err(ApiError::Invalid { detail, errors })
            }
            _ => Err(ApiError::invalid_fields(errors)),
        }
    }

    /// The URL of the next page: this path and query, with `cursor` set to `cursor`.
    pub fn next_link(&self, cursor: &str) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in self.pairs.iter().filter(|(name, _)| name != CURSOR) {
            query.append_pair(name, value);
        }
        query.append_pair(CURSOR, cursor);
        format!("<{}?{}>; rel=\"next\"", self.path, query.finish())
    }
}

impl<'a, S: QuerySpec> FromRequest<'a> for CheckedQuery<S> {
    async fn from_request(request: &'a Request, _body: &mut RequestBody) -> poem::Result<Self> {
        Ok(Self::check(request.uri().path(), request.uri().query().unwrap_or_default())?)
    }
}

/// A list query parameter: repeated, comma-separated, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueList<T>(pub Vec<T>);

impl<T: Type> Type for ValueList<T> {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;
    type RawElementValueType = T::RawValueType;

    fn name() -> Cow<'static, str> {
        format!("list_{}", T::name()).into()
    }

    fn schema_ref() -> MetaSchemaRef {
        Vec::<T>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.0.iter().filter_map(|item| item.as_raw_value()))
    }
}

impl<T: ParseFromParameter> ParseFromParameter for ValueList<T> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Self::parse_from_parameters([value])
    }

    fn parse_from_parameters<I: IntoIterator<Item = A>, A: AsRef<str>>(iter: I) -> ParseResult<Self> {
        let mut values = Vec::new();
        for raw in iter {
            for piece in raw.as_ref().split(',') {
                values.push(T::parse_from_parameter(piece.trim()).map_err(ParseError::propagate)?);
            }
        }
        Ok(ValueList(values))
    }
}

/// Refuses every timestamp parameter outside what PostgreSQL and the encoder take, naming
/// each one in a single 400.
pub fn check_timestamps(parameters: &[(&str, Option<time::OffsetDateTime>)]) -> Result<(), ApiError> {
    let errors: Vec<FieldError> = parameters
        .iter()
        .filter(|(_, value)| value.is_some_and(|v| !crate::domain::rules::timestamp_in_range(v)))
        .map(|(name, _)| FieldError::new(*name, TIMESTAMP_RANGE_RULE))
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(ApiError::invalid_fields(errors)) }
}

/// What [`check_timestamps`] says.
pub const TIMESTAMP_RANGE_RULE: &str =
    "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999999Z once converted to UTC";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Status;

    struct Spec;
    impl QuerySpec for Spec {
        const PARAMETERS: &'static [&'static str] = &["limit", "status", "cursor", "q"];
        const LISTS: &'static [&'static str] = &["status"];
    }

    fn field(result: Result<CheckedQuery<Spec>, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid { errors, .. }) => errors[0].field.clone(),
            _ => panic!("expected a 400"),
        }
    }

    #[test]
    fn unknown_and_repeated_single_parameters_are_refused_by_name() {
        assert!(CheckedQuery::<Spec>::check("/x", "").is_ok());
        assert!(CheckedQuery::<Spec>::check("/x", "status=OPEN&status=DONE&limit=5").is_ok());
        assert_eq!(field(CheckedQuery::<Spec>::check("/x", "limit=5&stauts=OPEN")), "stauts");
        assert_eq!(field(CheckedQuery::<Spec>::check("/x", "limit=5&limit=6")), "limit");
        assert_eq!(field(CheckedQuery::<Spec>::check("/x", "q%20x=1")), "q x");
    }

    #[test]
    fn every_unknown_parameter_is_named_once_in_one_refusal() {
        let Err(ApiError::Invalid { errors, .. }) =
            CheckedQuery::<Spec>::check("/x", "stauts=OPEN&limt=5&limit=1&limit=2&stauts=DONE&sort=x")
        else {
            panic!("refused")
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["stauts", "limt", "limit", "sort"]);

        let many: Vec<String> = (0..5000).map(|n| format!("p{n}=1")).collect();
        let Err(ApiError::Invalid { errors, detail }) = CheckedQuery::<Spec>::check("/x", &many.join("&"))
        else {
            panic!("refused")
        };
        assert_eq!(errors.len(), MAX_NAMED);
        assert!(detail.starts_with("5000 parameters refused; the first 10: p0, p1,"), "{detail}");
    }

    #[test]
    fn the_next_link_keeps_the_query_and_replaces_the_cursor() {
        let query =
            CheckedQuery::<Spec>::check("/api/issues", "q=login+page&cursor=old&status=OPEN").unwrap();
        assert_eq!(
            query.next_link("abc_-1"),
            "</api/issues?q=login+page&status=OPEN&cursor=abc_-1>; rel=\"next\""
        );
    }

    #[test]
    fn list_values_may_repeat_or_be_comma_separated() {
        let parsed = ValueList::<Status>::parse_from_parameters(["OPEN,DONE", "IN_PROGRESS"]).unwrap();
        assert_eq!(parsed.0, [Status::Open, Status::Done, Status::InProgress]);
        assert!(ValueList::<Status>::parse_from_parameters(["OPEN,"]).is_err());
        assert!(ValueList::<Status>::parse_from_parameters(["open"]).is_err());
    }
}
