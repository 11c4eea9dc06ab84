//! Man pages and shell completions from the command-line definition, for the packages
//! (`scripts/package` runs the hidden `dirsync generate man|completions DIR`). Nothing here is
//! used at run time.

use std::io;
use std::path::{Path, PathBuf};

use clap::Command;
use clap_complete::Shell;

/// Writes `NAME.1` for the command and `NAME-SUB[-SUB…].1` for each visible subcommand, at
/// any depth, into `dir` (created if absent). Returns the files written.
pub fn man_pages(command: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut command = command;
    command.build();
    let version = command.get_version().map(str::to_string);
    let mut written = Vec::new();
    write_page(
        &command,
        command.get_name(),
        version.as_deref(),
        dir,
        &mut written,
    )?;
    Ok(written)
}

fn write_page(
    command: &Command,
    name: &str,
    version: Option<&str>,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> io::Result<()> {
    let mut page = command
        .clone()
        .name(name.to_string())
        .bin_name(name.replace('-', " "));
    if let Some(v) = version {
        page = page.version(v.to_string());
    }
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    let file = dir.join(format!("{name}.1"));
    std::fs::write(&file, text)?;
    written.push(file);
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        write_page(
            sub,
            &format!("{name}-{}", sub.get_name()),
            version,
            dir,
            written,
        )?;
    }
    Ok(())
}

/// Writes the bash, zsh and fish completions (`NAME.bash`, `_NAME`, `NAME.fish`) into `dir`
/// (created if absent). Returns the files written.
pub fn completions(command: Command, dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut command = command;
    let name = command.get_name().to_string();
    let mut written = Vec::new();
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(shell, &mut command, &name, dir)?);
    }
    Ok(written)
}
