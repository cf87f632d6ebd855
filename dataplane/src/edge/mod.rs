//! The edge's request path: from a client's request to a backend's
//! answer, whichever hop (direct or tunnel) carries it.

pub mod headers;
pub mod path;
