//! README.md's grpcurl walkthroughs, run as written against `paybind-local`
//! (only the ports differ), so the front door never drifts from the code.
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Every `sh` block from "The shop, with grpcurl" up to "Test cards".
fn walkthrough_script(payment_port: u16, merchant_port: u16, storefront_port: u16) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let start = readme
        .find("## The shop, with grpcurl")
        .expect("walkthrough section");
    let end = readme[start..].find("## Test cards").expect("next section") + start;
    let mut script = String::from("set -u\n");
    for block in readme[start..end].split("```sh\n").skip(1) {
        script.push_str(block.split("```").next().expect("closed block"));
    }
    script
        .replace("localhost:50051", &format!("localhost:{payment_port}"))
        .replace("localhost:50052", &format!("localhost:{merchant_port}"))
        .replace("localhost:8080", &format!("localhost:{storefront_port}"))
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
    let (payment_port, merchant_port) = (free_port(), free_port());
    let storefront_port = free_port();
    let _stack = Running(
        Command::new(env!("CARGO_BIN_EXE_paybind-local"))
            .args([
                "--payment-listen",
                &format!("127.0.0.1:{payment_port}"),
                "--merchant-listen",
                &format!("127.0.0.1:{merchant_port}"),
                "--storefront-listen",
                &format!("127.0.0.1:{storefront_port}"),
                "--pages-listen",
                &format!("127.0.0.1:{}", free_port()),
                "--payment-metrics-listen",
                &format!("127.0.0.1:{}", free_port()),
                "--merchant-metrics-listen",
                &format!("127.0.0.1:{}", free_port()),
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start paybind-local"),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    for port in [payment_port, merchant_port] {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "paybind-local did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    let out = Command::new("bash")
        .arg("-c")
        .arg(walkthrough_script(
            payment_port,
            merchant_port,
            storefront_port,
        ))
        .current_dir(dir.path())
        .output()
        .expect("bash");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "paybind.merchant.v1.MerchantService",
        "\"sessionStatus\": \"BIND_SESSION_STATUS_AWAITING_VERIFICATION\"",
        "\"last4\": \"4242\"",
        "ORDER_STATUS_PAID",
        "\"paidWithCardOnFile\": true",
        "\"declineReason\": \"LIMIT_EXCEEDED\"",
        "ORDER_STATUS_AWAITING_SHOPPER",
        "\"last4\": \"1111\"",
        "\"amountMinor\": \"500\"",
        "PAYMENT_STATUS_SUCCEEDED",
        "BINDING_STATUS_REVOKED",
        "\"reason\":\"BINDING_REVOKED\"",
        "EVENT_TYPE_BINDING_REVOKED",
        "REVOKED_BY_MERCHANT",
        "EVENT_TYPE_PAYMENT_SUCCEEDED",
        "\"outcome\": \"APPLIED\"",
        // The feed's first event, pushed to merchant-svc and acknowledged.
        "DELIVERY_STATUS_DELIVERED",
        "ATTEMPT_OUTCOME_ACKNOWLEDGED",
    ] {
        assert!(
            text.contains(expected),
            "walkthrough output lacks {expected}:\n{text}"
        );
    }
    assert_eq!(
        text.matches("ERROR:").count(),
        1,
        "only the revoked-token example fails:\n{text}"
    );
}
