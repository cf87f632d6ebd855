//! The edge's request path: from a client's request to a backend's
//! answer, whichever hop carries it.
//!
//! * [`conn`] — the HTTP/1.1 client connection loop (heads, keep-alive,
//!   panics); [`h2`] — HTTP/2 client connections, a task per stream;
//! * [`client`] — the client side of one request, either of those;
//! * [`proxy`] — the proxy core, every phase of a request in one place;
//! * [`hop`] — what a hop is; [`direct`] and [`tunnel`] are the two;
//! * [`path`], [`headers`], [`request`], [`response`] — the phases'
//!   rules: path normal form, headers the edge owns, the upstream request,
//!   the response head and body filter.
#![deny(clippy::disallowed_methods)]

pub mod admission;
pub mod client;
pub mod conn;
mod direct;
mod direct_h2;
pub mod h2;
mod h2guard;
pub mod headers;
mod hop;
pub mod path;
mod proxy;
mod request;
mod response;
mod tunnel;
pub mod tunnels;
