//! `--generate man|bash|zsh|fish|powershell` of the real binaries: the man
//! page names every long flag of `--help`, every `HB_*` variable, and the
//! exit codes of README's table; groff renders it without a warning; bash
//! and fish complete a flag from the scripts; zsh parses its script.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BINARIES: [(&str, &str); 2] = [
    ("hb-server", env!("CARGO_BIN_EXE_hb-server")),
    ("hb-client", env!("CARGO_BIN_EXE_hb-client")),
];

fn run(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert_success(program, args, &output);
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn assert_success(program: &str, args: &[&str], output: &Output) {
    assert!(
        output.status.success(),
        "{program} {args:?}: {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Words of `text` that start with `prefix` and go on with the characters
/// of a flag or a variable name.
fn words_starting(text: &str, prefix: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|word| word.starts_with(prefix) && word.len() > prefix.len())
        .map(str::to_string)
        .collect()
}

/// The page with roff's escaped dashes (`\-`) and font changes (`\fB`)
/// made plain.
fn man_page(binary: &str) -> String {
    run(binary, &["--generate", "man"])
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fI", "")
        .replace("\\fR", "")
}

/// The page's section `name`, up to the next heading.
fn section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .find(&format!(".SH {name}\n"))
        .unwrap_or_else(|| panic!("no section {name} in:\n{page}"));
    let rest = &page[start + 4 + name.len()..];
    &rest[..rest.find("\n.SH ").unwrap_or(rest.len())]
}

/// The exit codes in README's table under `## NAME`.
fn readme_exit_codes(name: &str) -> BTreeSet<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let start = readme
        .find(&format!("\n## {name}\n"))
        .expect("README section");
    let part = &readme[start + 1..];
    let part = &part[..part[1..].find("\n## ").map_or(part.len(), |i| i + 1)];
    let table = &part[part.find("| exit code |").expect("exit code table")..];
    table
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| line.split('|').nth(1).expect("a cell").trim().to_string())
        .collect()
}

#[test]
fn man_page_lists_every_flag_variable_and_exit_code() {
    for (name, binary) in BINARIES {
        let help = run(binary, &["--help"]);
        let page = man_page(binary);
        let options = section(&page, "OPTIONS");
        let flags = words_starting(&help, "--");
        assert!(flags.contains("--generate"), "{name} --help: {help}");
        let documented = words_starting(options, "--");
        let missing: Vec<_> = flags.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "{name}: {missing:?} of --help not in the man page's OPTIONS:\n{options}"
        );

        let environment = section(&page, "ENVIRONMENT");
        let variables = words_starting(&help, "HB_");
        assert!(!variables.is_empty(), "{name} --help names no HB_ variable");
        assert_eq!(
            words_starting(environment, "HB_"),
            variables,
            "{name}: ENVIRONMENT lists other variables than --help"
        );

        let exit_status = section(&page, "\"EXIT STATUS\"");
        // Each code is the line after a `.TP`.
        let codes: BTreeSet<String> = exit_status
            .split(".TP\n")
            .skip(1)
            .filter_map(|item| item.lines().next())
            .map(str::to_string)
            .collect();
        assert_eq!(
            codes,
            readme_exit_codes(name),
            "{name}: the man page's exit codes differ from README's table"
        );
    }
}

#[test]
fn groff_renders_the_man_pages_without_warnings() {
    if which("groff").is_none() {
        println!("SKIPPED: groff not found");
        return;
    }
    for (name, binary) in BINARIES {
        let page = write_temp(&format!("{name}.1"), &run(binary, &["--generate", "man"]));
        let output = Command::new("groff")
            .args(["-man", "-Tutf8", "-ww", "-z"])
            .arg(&page)
            .output()
            .expect("run groff");
        assert_success("groff", &[], &output);
        assert!(
            output.stderr.is_empty(),
            "{name}: groff warns: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn bash_completes_a_flag() {
    for ((name, binary), (typed, expected)) in BINARIES
        .into_iter()
        .zip([("--li", "--listen"), ("--connect-t", "--connect-timeout")])
    {
        let script = write_temp(
            &format!("{name}.bash"),
            &run(binary, &["--generate", "bash"]),
        );
        // The function the script registers, called as bash would for
        // `NAME TYPED<Tab>`: command, word, previous word.
        let completed = run(
            "bash",
            &[
                "-c",
                &format!(
                    "source {script}; function=$(complete -p {name} | sed 's/.*-F \\([^ ]*\\).*/\\1/'); \
                     COMP_WORDS=({name} {typed}); COMP_CWORD=1; \
                     $function {name} {typed} {name}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                    script = script.display()
                ),
            ],
        );
        assert_eq!(
            completed.trim(),
            expected,
            "{name}: bash's offer for {typed}"
        );
    }
}

#[test]
fn fish_completes_a_flag_and_zsh_parses_its_script() {
    let (Some(fish), Some(zsh)) = (which("fish"), which("zsh")) else {
        println!("SKIPPED: fish or zsh not found");
        return;
    };
    for (name, binary) in BINARIES {
        let script = write_temp(
            &format!("{name}.fish"),
            &run(binary, &["--generate", "fish"]),
        );
        let completed = run(
            &fish,
            &[
                "--no-config",
                "-c",
                &format!("source {}; complete -C '{name} --gen'", script.display()),
            ],
        );
        assert!(
            completed.starts_with("--generate"),
            "{name}: fish offered {completed:?} for --gen"
        );

        let script = run(binary, &["--generate", "zsh"]);
        assert!(script.starts_with(&format!("#compdef {name}")), "{script}");
        let path = write_temp(&format!("_{name}"), &script);
        run(&zsh, &["-n", &path.display().to_string()]);
    }
}

#[test]
fn powershell_script_registers_the_binary() {
    for (name, binary) in BINARIES {
        let script = run(binary, &["--generate", "powershell"]);
        assert!(
            script.contains(&format!(
                "Register-ArgumentCompleter -Native -CommandName '{name}'"
            )),
            "{script}"
        );
        assert!(script.contains("'--generate'"), "{script}");
    }
}

#[test]
fn a_reader_gone_is_no_error() {
    for (name, binary) in BINARIES {
        for kind in ["man", "bash", "powershell"] {
            let mut child = Command::new(binary)
                .args(["--generate", kind])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            // Closed long before the program is far enough to write.
            drop(child.stdout.take());
            let output = child.wait_with_output().expect("wait");
            assert_eq!(output.status.code(), Some(0), "{name} {kind}: {output:?}");
            assert!(output.stderr.is_empty(), "{name} {kind}: {output:?}");
        }
    }
}

#[test]
fn unknown_kind_is_a_usage_error() {
    for (name, binary) in BINARIES {
        let output = Command::new(binary)
            .args(["--generate", "troff"])
            .output()
            .expect("run");
        assert_eq!(output.status.code(), Some(2), "{name}");
        assert!(output.stdout.is_empty(), "{name}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{name}: {stderr}");
    }
}

fn which(program: &str) -> Option<String> {
    let output = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Writes `text` to a file of this test process's own folder under
/// target/tmp.
fn write_temp(file: &str, text: &str) -> PathBuf {
    let dir =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("generate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    let path = dir.join(file);
    std::fs::write(&path, text).expect("write temp file");
    path
}
