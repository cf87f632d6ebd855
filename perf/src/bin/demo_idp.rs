//! `postern-demo-idp`: the quickstart's demo OpenID provider on its own,
//! for the pre-authentication benchmark (`scripts/bench-preauth.sh`),
//! which signs in through it as a browser would and fetches bearer tokens
//! from it with the password grant.
//!
//! Usage: postern-demo-idp PORT CLIENT_ID CLIENT_SECRET USER PASSWORD REDIRECT_URI...
//! Prints `ready <issuer>` once it listens on 127.0.0.1:PORT.

use postern_dataplane::quickstart::demo_idp::{start, Client, Config, User};

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 6 {
        eprintln!(
            "usage: postern-demo-idp PORT CLIENT_ID CLIENT_SECRET USER PASSWORD REDIRECT_URI..."
        );
        return std::process::ExitCode::from(2);
    }
    let Ok(port) = args[0].parse::<u16>() else {
        eprintln!("postern-demo-idp: PORT {:?} is not a port number", args[0]);
        return std::process::ExitCode::from(2);
    };
    let listener = match std::net::TcpListener::bind(("127.0.0.1", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("postern-demo-idp: cannot listen on 127.0.0.1:{port}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    let issuer = format!("http://127.0.0.1:{port}");
    let cfg = Config {
        issuer: issuer.clone(),
        client: Client {
            id: args[1].clone(),
            secret: args[2].clone(),
            redirect_uris: args[5..].to_vec(),
            post_logout_redirect_uris: Vec::new(),
        },
        user: User {
            username: args[3].clone(),
            password: args[4].clone(),
            name: "Bench User".into(),
            email: "bench@example.com".into(),
            groups: vec!["staff".into()],
        },
        // Long enough for every round of a benchmark.
        id_token_lifetime: 4 * 3600,
    };
    if let Err(e) = start(listener, cfg) {
        eprintln!("postern-demo-idp: {e}");
        return std::process::ExitCode::from(1);
    }
    println!("ready {issuer}");
    loop {
        std::thread::park();
    }
}
