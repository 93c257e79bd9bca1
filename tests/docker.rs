//! deploy/Dockerfile (issue 14): the dependency layer's stand-in sources
//! make a workspace cargo accepts from the manifests alone (so a source edit
//! does not rebuild the dependencies), the build context leaves out what the
//! build does not need, and the image has a health check.
// Tests run on plain threads, not on shards: blocking calls and locks are fine here.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::result_large_err
)]

mod support;

use std::path::Path;
use std::process::Command;

use support::TempDir;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_dependency_layer_is_a_workspace_cargo_accepts() {
    let dir = TempDir::new();
    let d = &dir.0;
    // What the Dockerfile copies before the sources.
    for f in [
        "Cargo.toml",
        "Cargo.lock",
        "proto/Cargo.toml",
        "loadtest/Cargo.toml",
    ] {
        std::fs::create_dir_all(d.join(f).parent().unwrap()).unwrap();
        std::fs::copy(root().join(f), d.join(f)).unwrap();
    }
    copy_dir(&root().join("vendor"), &d.join("vendor"));
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    for copied in [
        "COPY Cargo.toml Cargo.lock ./",
        "COPY proto/Cargo.toml proto/",
        "COPY loadtest/Cargo.toml loadtest/",
        "COPY vendor vendor",
    ] {
        assert!(
            dockerfile.contains(copied),
            "{copied} missing from the Dockerfile"
        );
    }
    let skeleton = Command::new("sh")
        .arg(root().join("deploy/docker-skeleton.sh"))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(skeleton.status.success(), "{skeleton:?}");
    // Cargo loads the whole workspace (every target the manifests name must
    // exist) with the lock file unchanged; the small proto crate is built
    // to prove it.
    let check = Command::new(env!("CARGO"))
        .args([
            "check",
            "--locked",
            "--offline",
            "-q",
            "-p",
            "wsrelay-proto",
        ])
        .env("CARGO_TARGET_DIR", d.join("target"))
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}

#[test]
fn the_context_leaves_out_build_output_and_the_image_checks_its_health() {
    let ignore = std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for line in ["target/", ".git/", "**/node_modules/"] {
        assert!(
            ignore.lines().any(|l| l.trim() == line),
            "{line} not ignored"
        );
    }
    let dockerfile = std::fs::read_to_string(root().join("deploy/Dockerfile")).unwrap();
    assert!(dockerfile.contains("HEALTHCHECK"), "no HEALTHCHECK");
    assert!(
        dockerfile.contains("/healthz"),
        "the health check does not ask /healthz"
    );
}
