//! What ships, tested as a user gets it: the image under podman, the
//! release archives in dist/, and `make install` into a scratch folder.
//! Every test is `#[ignore]`d: they need what `make test-ship` builds first
//! (`make dist`, `make image`, an install into target/install-test), and
//! that target runs them with `--ignored`. Without podman the image cases
//! print SKIPPED; CI installs it (.ci/run).

mod common;

use common::{PATIENCE, ServerProcess, round_trip, wait_for};
use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const IMAGE: &str = "localhost/tcp-heartbeat:latest";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The issue's bound on the image.
const MAX_IMAGE_BYTES: u64 = 16_000_000;
/// How soon `podman stop` must see hb-server, PID 1, exit.
const STOP_WITHIN: Duration = Duration::from_secs(3);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"))
}

/// Runs and expects success; returns stdout.
fn run_ok(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn have(program: &str) -> bool {
    run("sh", &["-c", &format!("command -v {program}")])
        .status
        .success()
}

/// True (after saying SKIPPED) when podman is missing.
fn no_podman() -> bool {
    let missing = !have("podman");
    if missing {
        println!("SKIPPED: podman not found");
    }
    missing
}

/// A container of the image, removed when dropped.
struct Container {
    name: String,
}

impl Container {
    /// `podman run -d` of the image with a random host port on 127.0.0.1
    /// published to 5005, `extra` before the image name and `args` after
    /// it; returns once hb-server says it listens.
    fn start(extra: &[&str], args: &[&str]) -> Container {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "hb-ship-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let container = Container { name };
        let mut command = vec![
            "run",
            "-d",
            "--name",
            &container.name,
            "-p",
            "127.0.0.1::5005",
        ];
        command.extend_from_slice(extra);
        command.push(IMAGE);
        command.extend_from_slice(args);
        run_ok("podman", &command);
        wait_for("hb-server in the container to listen", || {
            container.logs().contains("listening on 0.0.0.0:5005")
        });
        container
    }

    /// stdout and stderr so far.
    fn logs(&self) -> String {
        let output = run("podman", &["logs", &self.name]);
        String::from_utf8_lossy(&[output.stdout, output.stderr].concat()).into_owned()
    }

    /// The host address published to the container's port 5005.
    fn published(&self) -> SocketAddr {
        let port = run_ok("podman", &["port", &self.name, "5005/tcp"]);
        port.trim()
            .parse()
            .unwrap_or_else(|_| panic!("podman port said {port:?}"))
    }

    fn exec(&self, command: &[&str]) -> Output {
        run("podman", &[&["exec", &self.name], command].concat())
    }

    fn inspect(&self, format: &str) -> String {
        run_ok("podman", &["inspect", "--format", format, &self.name])
            .trim()
            .to_string()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = run("podman", &["rm", "-f", "-t", "0", &self.name]);
    }
}

#[test]
#[ignore = "needs make image and podman: make test-ship"]
fn image_echoes_and_answers_heartbeats_through_a_published_port() {
    if no_podman() {
        return;
    }
    // README's ways to configure it: a variable, and flags after the image.
    let container = Container::start(&["-e", "HB_IDLE_TIMEOUT=42s"], &["--max-connections", "7"]);
    assert!(
        container
            .logs()
            .contains("idle timeout 42s; max 7 connections"),
        "{}",
        container.logs()
    );
    let mut stream = TcpStream::connect(container.published()).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    round_trip(&mut stream, b"hello\n", b"HELLO\n");
    round_trip(&mut stream, b"HeartBeat\n", b"OK\n");
}

#[test]
#[ignore = "needs make image and podman: make test-ship"]
fn check_inside_the_container_and_as_its_health_command() {
    if no_podman() {
        return;
    }
    // The exec form: a scratch image has no /bin/sh for the string form.
    let container = Container::start(&["--health-cmd", r#"["hb-client","--check"]"#], &[]);

    let answered = container.exec(&["hb-client", "--check"]);
    assert_eq!(answered.status.code(), Some(0), "{answered:?}");
    assert!(
        answered.stdout.is_empty() && answered.stderr.is_empty(),
        "{answered:?}"
    );

    let closed = container.exec(&["hb-client", "--check", "--connect", "127.0.0.1:5999"]);
    assert_eq!(closed.status.code(), Some(1), "{closed:?}");
    assert!(closed.stdout.is_empty(), "{closed:?}");
    let stderr = String::from_utf8_lossy(&closed.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("hb-client: check failed: cannot connect to 127.0.0.1:5999"));

    // Podman runs the health command itself (its timer needs systemd,
    // which may be missing: the error it prints about that is ignored).
    let health = run("podman", &["healthcheck", "run", &container.name]);
    assert_eq!(health.status.code(), Some(0), "{health:?}");
    assert_eq!(container.inspect("{{.State.Health.Status}}"), "healthy");
}

#[test]
#[ignore = "needs make image and podman: make test-ship"]
fn podman_stop_ends_hb_server_cleanly_within_3s() {
    if no_podman() {
        return;
    }
    let container = Container::start(&[], &[]);
    let started = Instant::now();
    // A stop timeout well past the bound: a server that ignored SIGTERM
    // would be killed after 10 s with 137, not pass by being killed at 3 s.
    run_ok("podman", &["stop", "-t", "10", &container.name]);
    let took = started.elapsed();
    println!("podman stop returned after {took:?}");
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    assert!(took < STOP_WITHIN, "podman stop took {took:?}");
    assert!(
        container.logs().contains("shut down:"),
        "{}",
        container.logs()
    );
}

#[test]
#[ignore = "needs make image and podman: make test-ship"]
fn image_is_small_non_root_and_labelled() {
    if no_podman() {
        return;
    }
    let inspect = |image: &str, format: &str| {
        run_ok("podman", &["image", "inspect", "--format", format, image])
            .trim()
            .to_string()
    };
    let size: u64 = inspect(IMAGE, "{{.Size}}").parse().expect("a size");
    println!("image {IMAGE}: {size} bytes");
    assert!(size <= MAX_IMAGE_BYTES, "{size} bytes");
    let versioned = format!("localhost/tcp-heartbeat:{VERSION}");
    assert_eq!(inspect(&versioned, "{{.Id}}"), inspect(IMAGE, "{{.Id}}"));

    let user = inspect(IMAGE, "{{.Config.User}}");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid.parse::<u32>().is_ok_and(|uid| uid != 0),
        "USER {user:?} must be a numeric non-root id"
    );
    assert_eq!(
        inspect(IMAGE, "{{json .Config.Entrypoint}}"),
        r#"["/usr/local/bin/hb-server"]"#
    );
    assert!(inspect(IMAGE, "{{json .Config.ExposedPorts}}").contains("5005/tcp"));
    assert!(inspect(IMAGE, "{{json .Config.Env}}").contains("HB_LISTEN=0.0.0.0:5005"));
    let label = |name: &str| inspect(IMAGE, &format!("{{{{index .Config.Labels \"{name}\"}}}}"));
    assert_eq!(label("org.opencontainers.image.version"), VERSION);
    assert!(!label("org.opencontainers.image.source").is_empty());
}

/// The archive of `target` in dist/.
fn archive(target: &str, extension: &str) -> PathBuf {
    let path = root()
        .join("dist")
        .join(format!("tcp-heartbeat-{VERSION}-{target}.{extension}"));
    assert!(path.exists(), "{} missing: run make dist", path.display());
    path
}

/// The files every archive holds besides the binaries, under its folder.
fn shared_entries(folder: &str) -> BTreeSet<String> {
    let mut entries: BTreeSet<String> = ["README.md", "deploy/Containerfile", "deploy/haproxy.cfg"]
        .iter()
        .chain(&[
            "deploy/hb-server.service",
            "deploy/sysctl.d/60-hb-server.conf",
        ])
        .map(|e| format!("{folder}/{e}"))
        .collect();
    for binary in ["hb-server", "hb-client"] {
        for file in [
            format!("doc/{binary}.1"),
            format!("complete/{binary}.bash"),
            format!("complete/_{binary}"),
            format!("complete/{binary}.fish"),
            format!("complete/_{binary}.ps1"),
        ] {
            entries.insert(format!("{folder}/{file}"));
        }
    }
    entries
}

fn assert_holds(listed: &[String], expected: &BTreeSet<String>) {
    let listed: BTreeSet<String> = listed.iter().cloned().collect();
    let missing: Vec<_> = expected.difference(&listed).collect();
    assert!(missing.is_empty(), "missing {missing:?} from {listed:?}");
}

#[test]
#[ignore = "needs make dist: make test-ship"]
fn linux_archive_is_sorted_and_dated_alike_and_its_static_server_serves() {
    let target = "x86_64-unknown-linux-musl";
    let tarball = archive(target, "tar.gz");
    let folder = format!("tcp-heartbeat-{VERSION}-{target}");
    let listing = run_ok(
        "tar",
        &["-tvzf", &tarball.display().to_string(), "--full-time"],
    );
    let names: Vec<String> = listing
        .lines()
        .map(|line| line.split_whitespace().last().expect("a name").to_string())
        .collect();
    let files: Vec<String> = names
        .iter()
        .map(|n| n.trim_end_matches('/').to_string())
        .collect();
    let mut expected = shared_entries(&folder);
    expected.insert(format!("{folder}/hb-server"));
    expected.insert(format!("{folder}/hb-client"));
    assert_holds(&files, &expected);
    let mut sorted = files.clone();
    sorted.sort();
    assert_eq!(files, sorted, "entries not in name order");
    let dates: BTreeSet<&str> = listing
        .lines()
        .map(|line| line.split_whitespace().nth(3).expect("a date"))
        .collect();
    assert_eq!(dates.len(), 1, "more than one date: {dates:?}");

    let unpacked =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("ship-{}", std::process::id()));
    std::fs::create_dir_all(&unpacked).unwrap();
    run_ok(
        "tar",
        &[
            "-xzf",
            &tarball.display().to_string(),
            "-C",
            &unpacked.display().to_string(),
        ],
    );
    let server = unpacked.join(&folder).join("hb-server");
    assert!(
        !has_interpreter(&server),
        "{} is not static",
        server.display()
    );

    let mut process = ServerProcess::spawn(Command::new(&server), "127.0.0.1:0", &[]);
    let mut stream = common::connect(process.addr);
    round_trip(&mut stream, b"HeartBeat\n", b"OK\n");
    drop(stream);
    process.signal("TERM");
    assert_eq!(process.wait_exit(PATIENCE).code(), Some(0));
    std::fs::remove_dir_all(&unpacked).unwrap();
}

/// Whether the ELF file at `path` names a dynamic loader (a PT_INTERP
/// program header): a static binary has none.
fn has_interpreter(path: &Path) -> bool {
    const PT_INTERP: u32 = 3;
    let elf = std::fs::read(path).expect("read binary");
    assert_eq!(&elf[..5], b"\x7fELF\x02", "not a 64-bit ELF file");
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let u32_at = |at: usize| u32::from_le_bytes(elf[at..at + 4].try_into().unwrap());
    let table = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
    let (entry_size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| u32_at(table + i * entry_size) == PT_INTERP)
}

#[test]
#[ignore = "needs make dist: make test-ship"]
fn windows_archive_holds_the_exe_files() {
    let target = "x86_64-pc-windows-gnu";
    let zip = archive(target, "zip").display().to_string();
    let folder = format!("tcp-heartbeat-{VERSION}-{target}");
    let names: Vec<String> = run_ok("unzip", &["-Z1", &zip])
        .lines()
        .map(str::to_string)
        .collect();
    let mut expected = shared_entries(&folder);
    for exe in ["hb-server.exe", "hb-client.exe"] {
        expected.insert(format!("{folder}/{exe}"));
        let member = format!("{folder}/{exe}");
        let bytes = run("unzip", &["-p", &zip, &member]).stdout;
        assert_eq!(&bytes[..2], b"MZ", "{member} is not a Windows executable");
    }
    assert_holds(&names, &expected);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries not in name order");
}

#[test]
#[ignore = "needs make dist: make test-ship"]
fn sums_verify_and_name_both_archives() {
    let dist = root().join("dist");
    let output = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(&dist)
        .output()
        .expect("run sha256sum");
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{said}");
    assert_eq!(
        said.lines().filter(|l| l.ends_with(": OK")).count(),
        2,
        "{said}"
    );
    for line in said.lines() {
        let size = std::fs::metadata(dist.join(line.trim_end_matches(": OK")))
            .expect("archive")
            .len();
        println!("{line} ({size} bytes)");
    }
}

#[test]
#[ignore = "needs make install into target/install-test: make test-ship"]
fn install_puts_pages_and_completions_where_man_and_the_shells_look() {
    let prefix = root().join("target/install-test/usr/local");
    let share = prefix.join("share");
    for file in [
        "bin/hb-server",
        "bin/hb-client",
        "share/man/man1/hb-server.1",
        "share/man/man1/hb-client.1",
        "share/bash-completion/completions/hb-server",
        "share/zsh/site-functions/_hb-client",
        "share/fish/vendor_completions.d/hb-server.fish",
    ] {
        assert!(prefix.join(file).is_file(), "{file} not installed");
    }
    let path = format!(
        "{}:{}",
        prefix.join("bin").display(),
        std::env::var("PATH").unwrap()
    );
    let data_dirs = format!("{}:/usr/share", share.display());
    let shell = |program: &str, script: &str| {
        let output = Command::new(program)
            .args(["-c", script])
            .env("PATH", &path)
            .env("XDG_DATA_DIRS", &data_dirs)
            .env("MANPATH", share.join("man"))
            .output()
            .expect("run a shell");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };

    if have("man") {
        let page = shell("sh", "man -w hb-client");
        assert!(
            page.trim().ends_with("man1/hb-client.1"),
            "man found {page:?}"
        );
    } else {
        println!("SKIPPED: man not found");
    }
    let loader = "/usr/share/bash-completion/bash_completion";
    if Path::new(loader).exists() {
        let loaded = shell(
            "bash",
            &format!("source {loader}; __load_completion hb-server; complete -p hb-server"),
        );
        assert!(
            loaded.contains(" hb-server"),
            "bash-completion loaded {loaded:?}"
        );
    } else {
        println!("SKIPPED: bash-completion not found");
    }
    if have("fish") {
        let home = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fish-home");
        let offered = shell(
            "fish",
            &format!(
                "set -x HOME {0}; set -x XDG_CONFIG_HOME {0}; fish -c 'complete -C \"hb-server --li\"'",
                home.display()
            ),
        );
        assert!(offered.starts_with("--listen"), "fish offered {offered:?}");
    } else {
        println!("SKIPPED: fish not found");
    }
    if have("zsh") {
        let site = share.join("zsh/site-functions");
        let registered = shell(
            "zsh",
            &format!(
                "fpath=({} $fpath); autoload -Uz compinit; compinit -u -D; print ${{_comps[hb-client]}}",
                site.display()
            ),
        );
        assert_eq!(registered.trim(), "_hb-client");
    } else {
        println!("SKIPPED: zsh not found");
    }
}
