//! The parts of the data plane that work without the rest of the binary,
//! as a library so the benchmark harness (`perf/`) measures the same code
//! the `postern` binary runs: link translation, and the completion-I/O
//! stream layer (TCP, TLS over io_uring, the byte relay) that the floor
//! relay is built from; and the quickstart's demo OpenID provider, which
//! the pre-authentication benchmark signs in with. With the `fuzzing`
//! feature it also exposes the HTTP/1.1 parsers and path normalisation to
//! the fuzz targets.

pub mod auth {
    //! The assertion signer (the rest of `auth` belongs to the binary).
    pub mod assertion;
}

pub mod blocking_http;
#[cfg(feature = "fuzzing")]
pub mod http1;
pub mod io;
pub mod pages;
pub mod quickstart {
    //! The demo OpenID provider (the rest of `quickstart` belongs to the
    //! binary).
    pub mod demo_idp;
}
#[cfg(feature = "fuzzing")]
pub mod edge {
    //! Path normalisation (the rest of `edge` belongs to the binary).
    pub mod path;
}
pub mod relay;
pub mod timer;
pub mod translate;
pub mod tunnel;

pub mod tls {
    //! The TLS stream over completion I/O, its poll form for relays, and
    //! the verifier that checks signatures only (the rest of `tls`
    //! belongs to the binary).
    pub mod poll;
    pub mod stream;
    pub mod verify;
}
