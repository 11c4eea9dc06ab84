//! Man pages and shell completions from a command-line definition, for the packages:
//! `scripts/package` runs the hidden `dirsync generate man|completions DIR` and
//! `idservice generate man|completions DIR`, which call these. Shared by both binaries so the
//! two packages' pages are made one way. Nothing here is used at run time.

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
    let name = command.get_name().to_string();
    let page = Page {
        name: &name,
        bin: &name,
        version: version.as_deref(),
        dir,
    };
    write_page(&command, &page, &mut written)?;
    Ok(written)
}

/// One man page: its name (`dirsync-password-sync-push`), the command line it documents
/// (`dirsync password-sync push`), the version in its header, where it goes.
struct Page<'a> {
    name: &'a str,
    bin: &'a str,
    version: Option<&'a str>,
    dir: &'a Path,
}

fn write_page(command: &Command, at: &Page<'_>, written: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut page = command
        .clone()
        .name(at.name.to_string())
        .bin_name(at.bin.to_string());
    if let Some(v) = at.version {
        page = page.version(v.to_string());
    }
    let mut text = Vec::new();
    clap_mangen::Man::new(page).render(&mut text)?;
    let file = at.dir.join(format!("{}.1", at.name));
    std::fs::write(&file, text)?;
    written.push(file);
    for sub in command.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let name = format!("{}-{}", at.name, sub.get_name());
        let bin = format!("{} {}", at.bin, sub.get_name());
        let sub_page = Page {
            name: &name,
            bin: &bin,
            ..*at
        };
        write_page(sub, &sub_page, written)?;
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
