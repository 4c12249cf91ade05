//! Issue 19: TLS passed through a real HAProxy running
//! deploy/haproxy-tls.cfg, to hb-server backends that terminate it after
//! reading HAProxy's PROXY v2 header; HAProxy's health checks speak the
//! protocol inside TLS.

use super::common::tls::{Pki, arg_path};
use super::common::*;
use super::haproxy::Haproxy;

#[test]
fn tls_passes_through_haproxy_with_the_clients_own_address() {
    let test = "tls_passes_through_haproxy_with_the_clients_own_address";
    let pki = Pki::new("passthrough CA");
    let mut args = pki.server_args();
    args.push("--proxy-protocol".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let backends = [ServerProcess::start(&args), ServerProcess::start(&args)];
    // Start waits for both backends to be UP: the TLS health checks pass.
    let Some(haproxy) = Haproxy::start_tls(test, [backends[0].addr, backends[1].addr]) else {
        return;
    };
    let ca = arg_path(&pki.ca);
    let mut client = ClientProcess::start(
        haproxy.frontend,
        &["--tls-ca", &ca, "--tls-server-name", "localhost"],
    );
    client.send(b"through haproxy\n");
    client.wait_output(b"THROUGH HAPROXY\n");
    client.close_stdin();
    assert!(client.wait_exit(PATIENCE).success(), "{:?}", client.logged);
    // The backend that served it logged the client's own address (its
    // port is not HAProxy's frontend port), connected via HAProxy.
    let mut served = None;
    wait_for("a backend's connect line", || {
        served = backends
            .iter()
            .find_map(|b| b.log.try_iter().find(|l| l.contains("connected via")));
        served.is_some()
    });
    let served = served.unwrap();
    assert!(served.contains("INFO"), "{served}");
    assert!(
        !served.contains(&format!("from {} ", haproxy.frontend)),
        "{served}"
    );
}
