use super::*;

fn store() -> Store {
    let s = Store::connect("sqlite://:memory:").unwrap();
    s.migrate().unwrap();
    s
}

#[test]
fn passwords_hash_with_argon2id_at_the_required_cost_and_verify() {
    let mem = &mut hash_memory();
    let h = hash_password("correct horse battery", mem);
    assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
    assert!(verify_password("correct horse battery", &h, mem));
    assert!(!verify_password("correct horse batterY", &h, mem));
    assert!(!verify_password("anything", "not-a-phc-string", mem));
    // Same password, new salt.
    assert_ne!(h, hash_password("correct horse battery", mem));
    // A hash made by the argon2 crate's own hasher (any parameters) verifies.
    use argon2::password_hash::PasswordHasher as _;
    let salt = SaltString::generate(&mut OsRng);
    let theirs = Argon2::new(
        Algorithm::Argon2id,
        Version::V0x13,
        Params::new(8 * 1024, 1, 1, None).unwrap(),
    )
    .hash_password(b"pw-of-another-cost", &salt)
    .unwrap()
    .to_string();
    assert!(verify_password("pw-of-another-cost", &theirs, mem));
    assert!(!verify_password("pw-of-another-cosT", &theirs, mem));
    // One needing more memory than `mem` holds is computed in its own.
    assert!(verify_password(
        "correct horse battery",
        &h,
        &mut hash_memory()[..16]
    ));
}

#[test]
fn users_are_validated() {
    let s = store();
    assert!(matches!(
        add_user(
            &s,
            "not-an-email",
            "long enough password",
            Role::Admin,
            &mut hash_memory()
        ),
        Err(UserError::BadEmail(_))
    ));
    assert!(matches!(
        add_user(
            &s,
            "a@example.com",
            "short",
            Role::Admin,
            &mut hash_memory()
        ),
        Err(UserError::WeakPassword)
    ));
    let u = add_user(
        &s,
        " Ops@Example.com ",
        "long enough password",
        Role::Viewer,
        &mut hash_memory(),
    )
    .unwrap();
    assert_eq!(u.email, "ops@example.com");
    assert!(matches!(
        add_user(
            &s,
            "ops@example.com",
            "another long password",
            Role::Admin,
            &mut hash_memory()
        ),
        Err(UserError::Store(StoreError::Conflict(_)))
    ));
}

#[test]
fn the_first_start_seeds_one_admin() {
    let s = store();
    let Seeded::Generated { email, password } = seed_admin(&s, None, None).unwrap() else {
        panic!("expected a generated password");
    };
    assert_eq!(email, "admin@localhost.localdomain");
    assert!(password.len() >= 24);
    let admin = s.user_by_email(&email).unwrap().unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(verify_password(
        &password,
        &admin.password_hash,
        &mut hash_memory()
    ));
    // Users exist: nothing more happens, even with environment values.
    assert_eq!(
        seed_admin(&s, Some("x@example.com"), Some("a password of length")).unwrap(),
        Seeded::Existing
    );

    let s = store();
    assert_eq!(
        seed_admin(&s, Some("root@example.com"), Some("from the environment")).unwrap(),
        Seeded::FromEnvironment("root@example.com".into())
    );
    let u = s.user_by_email("root@example.com").unwrap().unwrap();
    assert!(verify_password(
        "from the environment",
        &u.password_hash,
        &mut hash_memory()
    ));
}

#[test]
fn the_jwt_secret_comes_from_the_environment_or_is_kept_in_the_store() {
    let s = store();
    assert_eq!(jwt_secret(&s, Some("from-env")).unwrap(), b"from-env");
    let first = jwt_secret(&s, None).unwrap();
    assert!(first.len() >= 32);
    assert_eq!(jwt_secret(&s, None).unwrap(), first, "kept across restarts");
}

fn user() -> User {
    User {
        id: "u1".into(),
        email: "ops@example.com".into(),
        password_hash: String::new(),
        role: Role::Viewer,
        created_at: 0,
    }
}

#[test]
fn tokens_round_trip_and_are_pinned_to_hs256() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let t = issue_token(secret, &user(), 3600);
    let c = verify_token(secret, &t).unwrap();
    assert_eq!((c.sub.as_str(), c.role), ("u1", Role::Viewer));
    assert!(verify_token(b"another secret", &t).is_none());

    let now = (now_ms() / 1000) as u64;
    let forge = |alg: jsonwebtoken::Algorithm, exp: u64| {
        let claims = Claims {
            sub: "u1".into(),
            email: "ops@example.com".into(),
            role: Role::Admin,
            iat: now,
            exp,
        };
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    };
    // Another HMAC algorithm with the same secret is refused.
    assert!(verify_token(secret, &forge(jsonwebtoken::Algorithm::HS512, now + 60)).is_none());
    // Expired beyond the 30 s leeway: refused; within it: accepted.
    assert!(verify_token(secret, &forge(jsonwebtoken::Algorithm::HS256, now - 120)).is_none());
    assert!(verify_token(secret, &forge(jsonwebtoken::Algorithm::HS256, now - 5)).is_some());
    // alg "none": refused.
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        t.split('.').nth(1).unwrap()
    );
    assert!(verify_token(secret, &none).is_none());
}

#[test]
fn admin_tokens_check_nbf_and_refuse_claims_of_the_wrong_type() {
    let secret = b"0123456789abcdef0123456789abcdef";
    let now = (now_ms() / 1000) as u64;
    let sign = |claims: serde_json::Value| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    };
    let base = |extra: serde_json::Value| {
        let mut c = serde_json::json!({"sub": "u1", "email": "a@b.example", "role": "admin", "iat": now, "exp": now + 600});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        sign(c)
    };
    assert!(verify_token(secret, &base(serde_json::json!({}))).is_some());
    // Not yet valid (past the leeway): refused; just inside it: accepted.
    assert!(verify_token(secret, &base(serde_json::json!({"nbf": now + 300}))).is_none());
    assert!(verify_token(secret, &base(serde_json::json!({"nbf": now + 5}))).is_some());
    // Wrong types never pass as absent.
    assert!(verify_token(
        secret,
        &base(serde_json::json!({"nbf": (now + 300).to_string()}))
    )
    .is_none());
    assert!(verify_token(secret, &base(serde_json::json!({"exp": "never"}))).is_none());
    assert!(verify_token(secret, &base(serde_json::json!({"sub": 42}))).is_none());
}
