//! README.md's grpcurl walkthrough, run as written against `payment-svc dev`
//! (only the port differs), so the front door never drifts from the code.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn walkthrough_script(port: u16) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let start = readme
        .find("## Calling payment-svc with grpcurl")
        .expect("walkthrough section");
    let end = readme[start..].find("## Test cards").expect("next section") + start;
    let mut script = String::from("set -u\n");
    for block in readme[start..end].split("```sh\n").skip(1) {
        script.push_str(block.split("```").next().expect("closed block"));
    }
    script.replace("localhost:50051", &format!("localhost:{port}"))
}

#[test]
fn readme_walkthrough_works_as_written() {
    if Command::new("grpcurl").arg("-version").output().is_err() {
        assert!(
            std::env::var("PAYBIND_REQUIRE_GRPCURL").as_deref() != Ok("1"),
            "grpcurl is required (PAYBIND_REQUIRE_GRPCURL=1) but not on PATH"
        );
        eprintln!("SKIPPED: README walkthrough: grpcurl is not on PATH");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let _server = Running(
        Command::new(env!("CARGO_BIN_EXE_payment-svc"))
            .args(["dev", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start payment-svc dev"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "payment-svc dev did not start");
        std::thread::sleep(Duration::from_millis(100));
    }

    let out = Command::new("bash")
        .arg("-c")
        .arg(walkthrough_script(port))
        .current_dir(dir.path())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "paybind.payment.v1.BindingService",
        "BIND_SESSION_STATUS_AWAITING_VERIFICATION",
        "BIND_SESSION_STATUS_COMPLETED",
        "PAYMENT_STATUS_SUCCEEDED",
        "REFUND_STATUS_SUCCEEDED",
        "\"reason\":\"LIMIT_EXCEEDED\"",
        "\"shopperAuthenticated\": true",
        "BINDING_STATUS_REVOKED",
        "SERVING",
    ] {
        assert!(
            text.contains(expected),
            "walkthrough output lacks {expected}:\n{text}"
        );
    }
    assert_eq!(
        text.matches("ERROR:").count(),
        1,
        "only the limit example fails:\n{text}"
    );
}
