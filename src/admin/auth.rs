//! Admin users and tokens: argon2id password hashes, the admin seeded on
//! first start, and the HS256 JWTs the admin API issues and checks.
//!
//! Hashing is deliberately slow (19 MiB, 2 passes): callers on the admin
//! runtime run it on the blocking pool, behind a cap on concurrent hashes.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine as _;
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

use crate::store::{now_ms, Role, Store, StoreError, User};

pub use argon2::Block;

/// argon2id memory, in 1 KiB blocks: OWASP's minimum of 19 MiB.
pub const HASH_BLOCKS: u32 = 19 * 1024;

fn params() -> Params {
    Params::new(HASH_BLOCKS, 2, 1, Some(32)).expect("valid argon2 parameters")
}

/// The working memory of one hash (19 MiB). The admin API allocates one
/// per hashing permit, once, and hashes into it again and again: argon2's
/// own allocation per hash left freed 19 MiB chunks in glibc's per-thread
/// arenas, and RSS grew without bound under concurrent logins.
pub fn hash_memory() -> Vec<Block> {
    vec![Block::new(); HASH_BLOCKS as usize]
}

/// The PHC string of `password` (argon2id, 19 MiB, 2 passes, 1 lane, random
/// salt), computed in `mem` (at least [`HASH_BLOCKS`] blocks).
pub fn hash_password(password: &str, mem: &mut [Block]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_buf = [0u8; 64];
    let salt_bytes = salt
        .as_salt()
        .decode_b64(&mut salt_buf)
        .expect("a generated salt decodes");
    let p = params();
    let mut out = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p.clone())
        .hash_password_into_with_memory(password.as_bytes(), salt_bytes, &mut out, mem)
        .expect("argon2 hashing with valid parameters and enough memory");
    PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&p).expect("argon2 parameters as a PHC string"),
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).expect("a 32-byte output")),
    }
    .to_string()
}

/// Whether `password` matches `phc` (any argon2 variant's PHC string; a
/// malformed hash never matches), computed in `mem`. A stored hash that
/// needs more memory than `mem` holds (made with other parameters) is
/// computed in memory of its own.
pub fn verify_password(password: &str, phc: &str, mem: &mut [Block]) -> bool {
    let Ok(h) = PasswordHash::new(phc) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (h.salt, h.hash) else {
        return false;
    };
    let Ok(alg) = Algorithm::try_from(h.algorithm) else {
        return false;
    };
    let version = match h.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(p) = Params::try_from(&h) else {
        return false;
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    let mut out_buf = [0u8; Output::MAX_LENGTH];
    let out = &mut out_buf[..expected.len()];
    let blocks = p.block_count();
    let a = Argon2::new(alg, version, p);
    let done = if blocks <= mem.len() {
        a.hash_password_into_with_memory(password.as_bytes(), salt, out, mem)
    } else {
        a.hash_password_into(password.as_bytes(), salt, out)
    };
    // `Output`'s equality is constant-time.
    done.is_ok() && Output::new(out).is_ok_and(|o| o == expected)
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

/// Adds a user after checking the email and password; hashes in `mem`.
pub fn add_user(
    store: &Store,
    email: &str,
    password: &str,
    role: Role,
    mem: &mut [Block],
) -> Result<User, UserError> {
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
        password_hash: hash_password(password, mem),
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
    let mem = &mut hash_memory();
    let email = email
        .filter(|e| !e.is_empty())
        .unwrap_or("admin@localhost.localdomain");
    let seeded = match password.filter(|p| !p.is_empty()) {
        Some(p) => {
            add_user(store, email, p, Role::Admin, mem).map(|u| Seeded::FromEnvironment(u.email))
        }
        None => {
            let password = generate_password();
            add_user(store, email, &password, Role::Admin, mem).map(|u| Seeded::Generated {
                email: u.email,
                password,
            })
        }
    };
    match seeded {
        // Another node sharing the database seeded it at the same moment.
        Err(UserError::Store(StoreError::Conflict(_))) => Ok(Seeded::Existing),
        other => other,
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
        &EncodingKey::from_secret(secret).expect("the JWT secret is never empty"),
    )
    .expect("HS256 encoding cannot fail")
}

/// Checks a token's signature and times: HS256 only (the algorithm is
/// pinned), `exp` and `sub` required, `nbf` checked when present, 30 s of
/// leeway. Whether its user still exists, and with which role, is the
/// caller's to check against the store.
pub fn verify_token(secret: &[u8], token: &str) -> Option<Claims> {
    let mut v = Validation::new(jsonwebtoken::Algorithm::HS256);
    v.leeway = 30;
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "sub"]);
    let key = DecodingKey::from_secret(secret).ok()?;
    jsonwebtoken::decode::<Claims>(token, &key, &v)
        .ok()
        .map(|d| d.claims)
}

#[cfg(test)]
mod tests;

pub mod throttle;
