//! Shell completions (bash, zsh) and the man page, generated from the CLI definition:
//! `rvirt generate-assets DIR` (hidden; the Debian packaging script runs it).

use anyhow::{Context, Result};
use std::path::Path;

/// Writes `DIR/completions/rvirt.bash`, `DIR/completions/_rvirt` (zsh) and
/// `DIR/man/rvirt.1` (plus one page per subcommand).
pub fn generate(mut cmd: clap::Command, dir: &Path) -> Result<()> {
    let comp = dir.join("completions");
    let man = dir.join("man");
    std::fs::create_dir_all(&comp).with_context(|| format!("cannot make {}", comp.display()))?;
    std::fs::create_dir_all(&man).with_context(|| format!("cannot make {}", man.display()))?;
    cmd.build();
    for (shell, file) in [
        (clap_complete::Shell::Bash, "rvirt.bash"),
        (clap_complete::Shell::Zsh, "_rvirt"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd, "rvirt", &mut out);
        std::fs::write(comp.join(file), out)?;
    }
    clap_mangen::generate_to(cmd, &man).context("cannot write the man pages")?;
    Ok(())
}
