//! docker-compose.yml and the Dockerfile, checked as far as a client can without a
//! Docker engine: `docker-compose config` validates the file, and the Dockerfile copies
//! only paths that exist.

mod common;

use std::process::Command;

use common::repo;

#[test]
fn compose_file_is_valid() {
    let Ok(out) = Command::new("docker-compose")
        .arg("-f")
        .arg(repo().join("docker-compose.yml"))
        .arg("config")
        .output()
    else {
        eprintln!("SKIPPED: docker-compose is not installed (apt-get install docker-compose)");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = String::from_utf8_lossy(&out.stdout);
    for svc in ["kafka:", "topics:", "lookout:", "demo-producer:"] {
        assert!(cfg.contains(svc), "service {svc} missing:\n{cfg}");
    }
    assert!(
        cfg.contains("KAFKA_PROCESS_ROLES: broker,controller"),
        "Kafka runs in KRaft mode"
    );
}

#[test]
fn dockerfile_copies_existing_paths() {
    let text = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    assert!(text.matches("FROM ").count() >= 2, "multi-stage");
    for line in text.lines().filter(|l| l.starts_with("COPY ") && !l.contains("--from")) {
        // Flags such as `--chown=lookout` are not sources.
        let parts: Vec<&str> = line.split_whitespace().filter(|p| !p.starts_with("--")).collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "Dockerfile copies {src}, which does not exist"
            );
        }
    }
}
