//! `wsrelay migrate` as an operator runs it.

use std::process::Command;

fn migrate(url: &str) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
        .args(["migrate", "--database", url])
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn migrate_applies_once_then_reports_up_to_date() {
    let dir = std::env::temp_dir().join(format!("wsrelay-migrate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("m.db").display());
    let (code, out, err) = migrate(&url);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("applied 5 migration(s)"), "{out}");
    let (code, out, _) = migrate(&url);
    assert_eq!(code, 0);
    assert!(out.contains("applied 0 migration(s)"), "{out}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn an_unreachable_database_is_one_line_and_exit_2_without_the_password() {
    let (code, out, err) = migrate("postgres://wsrelay:hunter2@127.0.0.1:1/wsrelay");
    assert_eq!(code, 2, "{out}{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("database unavailable"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    let (code, _, err) = migrate("mysql://x");
    assert_eq!(code, 2);
    assert!(err.contains("bad database URL"), "{err}");
}

#[test]
fn user_add_reads_the_password_from_stdin() {
    use std::io::Write as _;
    let dir = std::env::temp_dir().join(format!("wsrelay-useradd-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("u.db").display());
    let add = |email: &str, password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsrelay"))
            .args([
                "user",
                "add",
                "--email",
                email,
                "--role",
                "viewer",
                "--database",
                &url,
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8(out.stdout).unwrap() + &String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, out) = add("viewer@example.com", "a long enough password");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("added viewer@example.com (viewer)"), "{out}");
    assert!(!out.contains("a long enough password"), "{out}");
    let (code, out) = add("viewer@example.com", "another long password");
    assert_eq!(code, 2);
    assert!(out.contains("already exists"), "{out}");
    let (code, out) = add("viewer2@example.com", "short");
    assert_eq!(code, 2);
    assert!(out.contains("at least 12 characters"), "{out}");

    let store = wsrelay::store::Store::connect(&url).unwrap();
    let u = store.user_by_email("viewer@example.com").unwrap().unwrap();
    assert_eq!(u.role, wsrelay::store::Role::Viewer);
    assert!(wsrelay::admin::auth::verify_password(
        "a long enough password",
        &u.password_hash,
        &mut wsrelay::admin::auth::hash_memory()
    ));
    let _ = std::fs::remove_dir_all(dir);
}
