//! Admin users and tokens: argon2id password hashes, the admin seeded on
//! first start, and the HS256 JWTs the admin API issues and checks.
//!
//! Hashing is deliberately slow (19 MiB, 2 passes): callers on the admin
//! runtime run it on the blocking pool, behind a cap on concurrent hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::store::{now_ms, Role, Store, StoreError, User};

/// argon2id with OWASP's minimum: 19 MiB of memory, 2 passes, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The PHC string of `password` (argon2id, random salt).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 hashing with valid parameters")
        .to_string()
}

/// Whether `password` matches `phc` (any argon2 variant's PHC string; a
/// malformed hash never matches).
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| hasher().verify_password(password.as_bytes(), &h).is_ok())
        .unwrap_or(false)
}

/// A random password for a generated admin: 24 characters, URL-safe.
pub fn generate_password() -> String {
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Why a user could not be added.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// Not an email address.
    #[error("email: {0:?} is not an email address")]
    BadEmail(String),
    /// Too short.
    #[error("password: at least 12 characters")]
    WeakPassword,
    /// The store refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Adds a user after checking the email and password.
pub fn add_user(store: &Store, email: &str, password: &str, role: Role) -> Result<User, UserError> {
    let email = email.trim().to_lowercase();
    let valid = email.len() <= 254
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !email.chars().any(char::is_whitespace);
    if !valid {
        return Err(UserError::BadEmail(email));
    }
    if password.chars().count() < 12 {
        return Err(UserError::WeakPassword);
    }
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        email,
        password_hash: hash_password(password),
        role,
        created_at: now_ms(),
    };
    store.insert_user(&user)?;
    Ok(user)
}

/// What first start did about the admin account.
#[derive(Debug, PartialEq)]
pub enum Seeded {
    /// Users exist already; nothing done.
    Existing,
    /// An admin was created with the given password.
    FromEnvironment(String),
    /// An admin was created with a generated password, to be shown once.
    Generated {
        /// The admin's email.
        email: String,
        /// The password (printed once, never logged).
        password: String,
    },
}

/// On first start (no users), creates an admin from `email`/`password`
/// (`WSRELAY_ADMIN_EMAIL`/`WSRELAY_ADMIN_PASSWORD`), generating the password
/// when none is given. Default email: `admin@localhost.localdomain`.
pub fn seed_admin(
    store: &Store,
    email: Option<&str>,
    password: Option<&str>,
) -> Result<Seeded, UserError> {
    if store.count_users()? > 0 {
        return Ok(Seeded::Existing);
    }
    let email = email
        .filter(|e| !e.is_empty())
        .unwrap_or("admin@localhost.localdomain");
    match password.filter(|p| !p.is_empty()) {
        Some(p) => {
            let u = add_user(store, email, p, Role::Admin)?;
            Ok(Seeded::FromEnvironment(u.email))
        }
        None => {
            let password = generate_password();
            let u = add_user(store, email, &password, Role::Admin)?;
            Ok(Seeded::Generated {
                email: u.email,
                password,
            })
        }
    }
}

/// The key `jwt_secret` is kept under in the store's settings.
pub const JWT_SECRET_SETTING: &str = "jwt_secret";

/// The JWT secret: `env` (`WSRELAY_JWT_SECRET`) when given, else the one kept
/// in the store, generated on first use (so tokens survive restarts and are
/// shared by nodes on one database).
pub fn jwt_secret(store: &Store, env: Option<&str>) -> Result<Vec<u8>, StoreError> {
    if let Some(s) = env.filter(|s| !s.is_empty()) {
        return Ok(s.as_bytes().to_vec());
    }
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    let fresh = base64::engine::general_purpose::STANDARD.encode(b);
    Ok(store
        .setting_or_insert(JWT_SECRET_SETTING, &fresh)?
        .into_bytes())
}

/// Claims of an admin token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// User id.
    pub sub: String,
    /// User email.
    pub email: String,
    /// Role.
    pub role: Role,
    /// Issued at (Unix s).
    pub iat: u64,
    /// Expires (Unix s).
    pub exp: u64,
}

/// Issues an HS256 token for `user`, valid `ttl_s` seconds.
pub fn issue_token(secret: &[u8], user: &User, ttl_s: u64) -> String {
    let now = (now_ms() / 1000) as u64;
    let claims = Claims {
        sub: user.id.clone(),
        email: user.email.clone(),
        role: user.role,
        iat: now,
        exp: now + ttl_s,
    };
    jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 encoding cannot fail")
}

/// Checks a token: HS256 only (the algorithm is pinned), `exp` required,
/// 30 s of leeway.
pub fn verify_token(secret: &[u8], token: &str) -> Option<Claims> {
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.leeway = 30;
    v.set_required_spec_claims(&["exp", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &v)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests;
