#![allow(clippy::unwrap_used, clippy::expect_used)]

//! The deployment files agree with each other and with the workspace: the offline image and
//! the conventional Dockerfile ship the same binaries, and docker-compose.yml is valid for the
//! compose tool this machine has and refuses to start parties without master keys. Without a
//! compose tool the compose test skips, saying so, except under CI (`CI` set), where it fails.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// `BINARIES=(a b c)` in scripts/build-image.sh.
fn offline_binaries() -> BTreeSet<String> {
    let script = read("scripts/build-image.sh");
    let line = script
        .lines()
        .find(|l| l.starts_with("BINARIES=("))
        .expect("build-image.sh defines BINARIES=(...)");
    line.trim_start_matches("BINARIES=(")
        .trim_end_matches(')')
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Every `--bin X` of the Dockerfile's cargo build, and every binary its loop copies out.
fn dockerfile_binaries() -> (BTreeSet<String>, BTreeSet<String>) {
    let dockerfile = read("Dockerfile");
    let words: Vec<&str> = dockerfile.split_whitespace().collect();
    let built = words
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_owned())
        .collect();
    // `&& for b in a b c; do \`
    let loop_line = dockerfile
        .lines()
        .find(|l| l.trim_start().starts_with("&& for b in"))
        .expect("the Dockerfile copies binaries in a `for b in ...; do` loop");
    let list = loop_line
        .split_once(" in ")
        .and_then(|(_, rest)| rest.split_once(';'))
        .expect("for b in ...;")
        .0;
    let copied = list.split_whitespace().map(str::to_owned).collect();
    (built, copied)
}

/// Names of the workspace's `[[bin]]` targets.
fn workspace_binaries() -> BTreeSet<String> {
    let mut manifests = vec![root().join("chaos/Cargo.toml")];
    for entry in std::fs::read_dir(root().join("crates")).unwrap() {
        manifests.push(entry.unwrap().path().join("Cargo.toml"));
    }
    let mut bins = BTreeSet::new();
    for manifest in manifests {
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let mut in_bin = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_bin = line == "[[bin]]";
            } else if in_bin {
                if let Some(name) = line.strip_prefix("name = ") {
                    bins.insert(name.trim_matches('"').to_owned());
                }
            }
        }
    }
    bins
}

#[test]
fn offline_image_and_dockerfile_ship_the_same_workspace_binaries() {
    let offline = offline_binaries();
    let (built, copied) = dockerfile_binaries();
    assert_eq!(
        offline, built,
        "Dockerfile --bin list vs build-image.sh BINARIES"
    );
    assert_eq!(
        offline, copied,
        "Dockerfile copy loop vs build-image.sh BINARIES"
    );
    let workspace = workspace_binaries();
    for bin in &offline {
        assert!(
            workspace.contains(bin),
            "{bin} is no [[bin]] of the workspace ({workspace:?})"
        );
    }
    // mpc-dvn: deploy/k8s/dvn.yaml runs it from the same image.
    for needed in [
        "mpc-coordinator",
        "mpc-party",
        "mpcctl",
        "mpc-chaos",
        "mpc-dvn",
    ] {
        assert!(offline.contains(needed), "the image lacks {needed}");
    }
}

/// Whether this is a CI run (`CI` set and not empty), where a test that cannot run fails.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

fn compose_tool() -> Option<Vec<&'static str>> {
    let works = |cmd: &[&str]| {
        Command::new(cmd[0])
            .args(&cmd[1..])
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works(&["docker", "compose"]) {
        Some(vec!["docker", "compose"])
    } else if works(&["docker-compose"]) {
        Some(vec!["docker-compose"])
    } else {
        None
    }
}

fn compose_config(tool: &[&str]) -> std::process::Output {
    // An empty env file: the test must not depend on a developer's .env.
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("empty.env");
    std::fs::write(&env_file, "").unwrap();
    let mut cmd = Command::new(tool[0]);
    cmd.args(&tool[1..])
        .current_dir(root())
        .args([
            "-p",
            "mpc-config-test",
            "-f",
            "docker-compose.yml",
            "--env-file",
        ])
        .arg(&env_file)
        .arg("config")
        .env_remove("MPC_CLUSTER_DIR");
    cmd.output().unwrap()
}

#[test]
fn compose_file_is_valid_and_gives_secrets_as_files() {
    let Some(tool) = compose_tool() else {
        let why = "neither `docker compose` nor `docker-compose` is installed; scripts/test.sh \
                   installs docker-compose";
        // Under CI (.ci/run sets CI) a missing tool fails: a skip there would pass untested.
        assert!(!in_ci(), "{why} (CI is set: this test must run)");
        eprintln!("SKIP: {why}");
        return;
    };
    let out = compose_config(&tool);
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{tool:?} config: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let services = [
        "coordinator-1",
        "coordinator-2",
        "coordinator-3",
        "coordinator-4",
        "coordinator-5",
        "party-1",
        "party-2",
        "party-3",
    ];
    for service in services {
        assert!(
            config.contains(&format!("  {service}:")),
            "no service {service}"
        );
        // Each node mounts its own secrets, and only those.
        assert!(
            config.contains(&format!(".cluster/secrets/{service}")),
            "{service} does not mount its secrets directory"
        );
    }
    for port in ["50051", "50055", "8080", "8084", "8091", "8093"] {
        assert!(config.contains(port), "port {port} is not published");
    }
    // The Raft port stays inside the network.
    for published in ["published: \"50061\"", "published: 50061", "50061:50061"] {
        assert!(!config.contains(published), "the Raft port is published");
    }
    assert!(
        config.contains("service_healthy"),
        "parties must wait for healthy coordinators"
    );
    assert!(config.contains("unless-stopped"));
    // TLS on every node; no secret in any environment (docker inspect shows those).
    assert_eq!(
        config
            .matches("MPC_TLS__KEY: /etc/mpc/secrets/tls.key")
            .count(),
        5
    );
    assert_eq!(
        config
            .matches("MPC_TLS_KEY: /etc/mpc/secrets/tls.key")
            .count(),
        3
    );
    assert_eq!(
        config
            .matches("MPC_MASTER_KEY_FILE: /etc/mpc/secrets/master.key")
            .count(),
        3
    );
    assert!(
        !config.contains("MPC_MASTER_KEY:"),
        "a master key in the environment"
    );
    assert!(
        !config.contains("INSECURE"),
        "plain text in the reference cluster"
    );
}
