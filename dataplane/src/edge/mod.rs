//! The edge's request path: from a client's request to a backend's
//! answer, whichever hop carries it.
//!
//! * [`conn`] — the client connection loop (heads, keep-alive, panics);
//! * [`proxy`] — the proxy core, every phase of a request in one place;
//! * [`hop`] — what a hop is; [`direct`] and [`tunnel`] are the two;
//! * [`path`], [`headers`], [`request`], [`response`] — the phases'
//!   rules: path normal form, headers the edge owns, the upstream request,
//!   the response head and body filter.
#![deny(clippy::disallowed_methods)]

pub mod admission;
pub mod conn;
mod direct;
pub mod headers;
mod hop;
pub mod path;
mod proxy;
mod request;
mod response;
mod tunnel;
pub mod tunnels;
