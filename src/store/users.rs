//! Admin users (SPEC 5).

use super::*;

impl Store {
    /// How many users exist.
    pub fn count_users(&self) -> Result<i64> {
        Ok(self
            .scalar("SELECT COUNT(*) FROM app_user", &[])?
            .and_then(|v| v.as_i64())
            .unwrap_or(0))
    }

    /// Adds a user; [`StoreError::Conflict`] if the email is taken.
    pub fn insert_user(&self, u: &User) -> Result<()> {
        let n = self.db.execute(
            "INSERT INTO app_user (id, email, password_hash, role, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            &[
                Value::text(&u.id),
                Value::text(&u.email),
                Value::text(&u.password_hash),
                Value::text(u.role.as_str()),
                Value::I64(u.created_at),
            ],
        )?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("user {:?}", u.email)));
        }
        Ok(())
    }

    /// A user by email.
    pub fn user_by_email(&self, email: &str) -> Result<Option<User>> {
        self.user_where("email", email)
    }

    /// A user by id.
    pub fn user_by_id(&self, id: &str) -> Result<Option<User>> {
        self.user_where("id", id)
    }

    /// The user whose `column` (a fixed column name) is `value`.
    fn user_where(&self, column: &'static str, value: &str) -> Result<Option<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM app_user WHERE {column} = $1"),
            &[Value::text(value)],
        )?;
        rows.into_iter().next().map(user_from_row).transpose()
    }

    /// Changes a user's role; whether the user exists.
    pub fn set_user_role(&self, id: &str, role: Role) -> Result<bool> {
        Ok(self.db.execute(
            "UPDATE app_user SET role = $1 WHERE id = $2",
            &[Value::text(role.as_str()), Value::text(id)],
        )? > 0)
    }

    /// All users, oldest first.
    pub fn list_users(&self) -> Result<Vec<User>> {
        let rows = self.db.query(
            &format!("SELECT {USER_COLUMNS} FROM app_user ORDER BY created_at, email"),
            &[],
        )?;
        rows.into_iter().map(user_from_row).collect()
    }

    /// Deletes a user; whether it existed.
    pub fn delete_user(&self, id: &str) -> Result<bool> {
        Ok(self
            .db
            .execute("DELETE FROM app_user WHERE id = $1", &[Value::text(id)])?
            > 0)
    }
}
