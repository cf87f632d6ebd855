//! Renders the command line's man pages and shell completions (bash, zsh,
//! fish) from the clap definitions the binary parses (`src/args.rs`),
//! into `target/<profile>/postern-assets/`, where the Debian package
//! (`cargo deb`) takes them from.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

#[path = "src/args.rs"]
#[allow(dead_code)]
mod args;

fn main() -> std::io::Result<()> {
    println!("cargo::rerun-if-changed=src/args.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or_else(|| {
        std::io::Error::other("cargo sets OUT_DIR for build scripts; it is missing")
    })?);
    // OUT_DIR is <target>/<profile>/build/<package>-<hash>/out.
    let dir = out
        .ancestors()
        .nth(3)
        .map_or_else(|| out.clone(), Path::to_path_buf)
        .join("postern-assets");
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(args::Cli::command(), &man)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut args::Cli::command(), "postern", &completions)?;
    }
    Ok(())
}
