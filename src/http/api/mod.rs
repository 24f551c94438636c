//! The handlers, one module per resource. Each: identity, input, one stored function,
//! response. [`service`] is every API operation, which `http::routes` serves and from
//! which the route table and the document are made.

pub mod activity;
pub mod issues;
pub mod ops;
pub mod stream;
pub mod webhooks;

use poem_openapi::{OpenApi, OpenApiService};

use super::routes::RouteTable;
use crate::domain::page::DEFAULT_PAGE_SIZE;
use activity::ActivityApi;
use issues::IssuesApi;
use stream::StreamApi;
use webhooks::WebhooksApi;

/// Every API operation.
pub type Api = (IssuesApi, ActivityApi, StreamApi, WebhooksApi);

pub fn service() -> OpenApiService<Api, ()> {
    OpenApiService::new(
        (IssuesApi, ActivityApi, StreamApi, WebhooksApi),
        "tenantry",
        env!("CARGO_PKG_VERSION"),
    )
}

/// The route table of every API operation, from poem-openapi's metadata.
pub fn route_table() -> RouteTable {
    RouteTable::from_meta(<Api as OpenApi>::meta())
}

/// 400 of the paged lists.
pub const LIST_BAD_REQUEST: (u16, &str) = (
    400,
    "An unknown query parameter, a parameter sent twice, an invalid value, or a cursor made for \
     another sort or other filters.",
);

/// `limit` when the client does not say.
pub fn default_page_size() -> i32 {
    DEFAULT_PAGE_SIZE
}
