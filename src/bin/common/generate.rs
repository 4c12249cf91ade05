//! `--generate man|bash|zsh|fish|powershell`: the man page and the shell
//! completions, made from the same clap definitions as `--help` (ripgrep's
//! `rg --generate` is the model). Nothing is written by hand, so a flag added
//! to a binary is in its man page and completions at once, with its
//! environment variable. What clap does not know, each binary hands over:
//! its exit codes. The man page's ENVIRONMENT section is built from the
//! flags' `env` names.

use clap::{CommandFactory, ValueEnum};
use clap_complete::Shell;
use roff::{Roff, bold, roman};
use std::io::{self, Write};
use std::process::ExitCode;

/// `--generate`, identical in every binary that has a man page.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Print the man page (roff) or a shell's completion script on stdout,
    /// and exit
    #[arg(long, value_enum, value_name = "KIND")]
    generate: Option<Kind>,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Man,
    Bash,
    Zsh,
    Fish,
    Powershell,
}

/// One exit code and what it means, for the man page's EXIT STATUS.
pub type ExitStatus = (u8, &'static str);

/// Exit code when the output cannot be written (other than a closed pipe,
/// which is success: the reader has what it wanted).
const EXIT_WRITE_FAILED: u8 = 1;

impl GenerateArgs {
    /// With `--generate KIND`: prints it for the binary `T` and returns the
    /// exit code; without it, `None` and the binary carries on.
    pub fn run<T: CommandFactory>(&self, exit_codes: &[ExitStatus]) -> Option<ExitCode> {
        let kind = self.generate?;
        // Made in memory first: clap_complete panics when a write fails, and
        // a closed pipe (`| head`) must not be a panic.
        let mut text = Vec::new();
        write(kind, T::command(), exit_codes, &mut text).expect("writing to memory cannot fail");
        let mut stdout = io::stdout().lock();
        let result = stdout.write_all(&text).and_then(|()| stdout.flush());
        Some(match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!(
                    "{}: cannot write --generate output: {e}",
                    T::command().get_name()
                );
                ExitCode::from(EXIT_WRITE_FAILED)
            }
        })
    }
}

fn write(
    kind: Kind,
    mut command: clap::Command,
    exit_codes: &[ExitStatus],
    out: &mut dyn Write,
) -> io::Result<()> {
    let shell = match kind {
        Kind::Man => return man_page(command, exit_codes, out),
        Kind::Bash => Shell::Bash,
        Kind::Zsh => Shell::Zsh,
        Kind::Fish => Shell::Fish,
        Kind::Powershell => Shell::PowerShell,
    };
    let name = command.get_name().to_string();
    clap_complete::generate(shell, &mut command, name, out);
    Ok(())
}

/// clap_mangen's page (NAME, SYNOPSIS, DESCRIPTION, OPTIONS with each
/// flag's default and variable, VERSION) with EXIT STATUS and ENVIRONMENT
/// before VERSION, where man-pages(7) puts them.
fn man_page(
    command: clap::Command,
    exit_codes: &[ExitStatus],
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut command = command;
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    extra_sections(&command, exit_codes).to_writer(out)?;
    man.render_version_section(out)
}

/// EXIT STATUS from the binary's list; ENVIRONMENT from every flag that has
/// a variable, and `RUST_LOG`, which the logger reads.
fn extra_sections(command: &clap::Command, exit_codes: &[ExitStatus]) -> Roff {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for (code, meaning) in exit_codes {
        roff.control("TP", []);
        roff.text([bold(code.to_string())]);
        roff.text([roman(*meaning)]);
    }
    roff.control("SH", ["ENVIRONMENT"]);
    roff.text([roman(
        "Each variable sets the flag it names; the flag on the command line wins. \
         An on/off flag's variable is true or false.",
    )]);
    for arg in command.get_arguments() {
        let (Some(variable), Some(long)) = (arg.get_env(), arg.get_long()) else {
            continue;
        };
        roff.control("TP", []);
        roff.text([bold(variable.to_string_lossy())]);
        roff.text([roman("Sets "), bold(format!("--{long}")), roman(".")]);
    }
    roff.control("TP", []);
    roff.text([bold("RUST_LOG")]);
    roff.text([roman(
        "When set, the log filter (e.g. debug, or warn), overriding -v and -q.",
    )]);
    roff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    #[command(name = "hb-example", version)]
    struct Example {
        /// Where to go
        #[arg(long, env = "HB_EXAMPLE_TO", default_value = "here")]
        to: String,

        /// Go quietly
        #[arg(long)]
        quietly: bool,

        #[command(flatten)]
        generate: GenerateArgs,
    }

    fn generated(kind: Kind) -> String {
        let mut out = Vec::new();
        write(
            kind,
            Example::command(),
            &[(0, "went"), (7, "lost the way")],
            &mut out,
        )
        .expect("generate");
        String::from_utf8(out).expect("UTF-8")
    }

    #[test]
    fn man_page_has_every_flag_the_exit_codes_and_the_variables() {
        let page = generated(Kind::Man);
        let sections: Vec<&str> = page.lines().filter(|l| l.starts_with(".SH")).collect();
        assert_eq!(
            sections,
            [
                ".SH NAME",
                ".SH SYNOPSIS",
                ".SH DESCRIPTION",
                ".SH OPTIONS",
                ".SH \"EXIT STATUS\"",
                ".SH ENVIRONMENT",
                ".SH VERSION"
            ]
        );
        for flag in [
            "\\-\\-to",
            "\\-\\-quietly",
            "\\-\\-generate",
            "\\-\\-help",
            "\\-\\-version",
        ] {
            assert!(page.contains(flag), "{flag} missing from:\n{page}");
        }
        let exit_status = page
            .split(".SH \"EXIT STATUS\"")
            .nth(1)
            .expect("EXIT STATUS");
        assert!(
            exit_status.contains("\\fB7\\fR\nlost the way"),
            "{exit_status}"
        );
        let environment = page.split(".SH ENVIRONMENT").nth(1).expect("ENVIRONMENT");
        assert!(
            environment.contains("\\fBHB_EXAMPLE_TO\\fR\nSets \\fB\\-\\-to\\fR."),
            "{environment}"
        );
        assert!(environment.contains("RUST_LOG"), "{environment}");
    }

    #[test]
    fn completions_name_the_flags_for_each_shell() {
        for kind in [Kind::Bash, Kind::Zsh, Kind::Fish, Kind::Powershell] {
            let script = generated(kind);
            assert!(script.contains("hb-example"), "{kind:?}:\n{script}");
            assert!(script.contains("quietly"), "{kind:?}:\n{script}");
        }
    }
}
