//! The seed format: users, clients and devices in one JSON file, imported into any store by the
//! local API at start-up and by the operator tooling.

use serde::Deserialize;

use crate::enrollment::{self, IssueError};
use ciba_shared::domain::{Client, Device, User};
use ciba_shared::op_secret::Keys;
use ciba_shared::secret;
use ciba_shared::store::{Store, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub clients: Vec<SeedClient>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub devices: Vec<Device>,
    #[serde(default)]
    pub enrollment_codes: Vec<SeedEnrollmentCode>,
}

/// A one-time enrolment code in clear for a user (sub or login hint), valid `expires_in` seconds
/// from the import.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedEnrollmentCode {
    pub code: String,
    pub user: String,
    #[serde(default = "day")]
    pub expires_in: i64,
}

fn day() -> i64 {
    86_400
}

/// A client as registered metadata, with its secret in clear (hashed on import).
#[derive(Debug, Deserialize)]
pub struct SeedClient {
    #[serde(flatten)]
    pub client: Client,
    #[serde(default)]
    pub client_secret: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SeedUser {
    #[serde(flatten)]
    pub user: User,
    #[serde(default)]
    pub user_code: Option<String>,
}

impl Seed {
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn clients(&self) -> impl Iterator<Item = Client> + '_ {
        self.clients.iter().map(|c| {
            let mut client = c.client.clone();
            if let Some(secret) = &c.client_secret {
                client.client_secret_hash = Some(secret::hash(secret));
            }
            client
        })
    }

    /// The users, their user codes hashed under the OP secret's `keys` (so the deployment that
    /// checks them must have the same OP secret).
    pub fn users<'a>(&'a self, keys: &'a Keys) -> impl Iterator<Item = User> + 'a {
        self.users.iter().map(|u| {
            let mut user = u.user.clone();
            if let Some(code) = &u.user_code {
                user.user_code_hash = Some(keys.user_code_hash(code));
            }
            user
        })
    }

    /// Writes everything into `store` at time `now`; importing twice changes nothing but the
    /// enrolment codes' expiry.
    pub async fn import(&self, store: &dyn Store, keys: &Keys, now: i64) -> Result<(), StoreError> {
        for client in self.clients() {
            store.clients().put_client(&client).await?;
        }
        for user in self.users(keys) {
            store.accounts().put_user(&user).await?;
        }
        for device in &self.devices {
            store.accounts().put_device(device).await?;
        }
        for code in &self.enrollment_codes {
            let issued = enrollment::issue(
                store,
                &ciba_shared::ports::OsRandom,
                &code.user,
                Some(&code.code),
                code.expires_in,
                now,
            )
            .await;
            match issued {
                Ok(_) => {}
                Err(IssueError::UnknownUser) => {
                    return Err(StoreError::Fault(format!(
                        "seed: enrollment code for unknown user {}",
                        code.user
                    )));
                }
                Err(IssueError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciba_shared::store::MemoryStore;

    #[tokio::test]
    async fn seed_secrets_are_hashed_on_import_user_codes_under_the_op_secret() {
        let seed = Seed::from_json(
            r#"{"clients":[{"client_id":"c1","client_secret":"s3cret"}],
                "users":[{"sub":"u1","login_hints":["alice"],"user_code":"1234"}]}"#,
        )
        .unwrap();
        let store = MemoryStore::new();
        let keys = Keys::derive(&secret::Secret::new("k".repeat(40))).unwrap();
        seed.import(&store, &keys, 0).await.unwrap();
        let client = store.clients().get_client("c1").await.unwrap().unwrap();
        assert_eq!(client.client_secret_hash, Some(secret::hash("s3cret")));
        let user = store
            .accounts()
            .find_user_by_hint("alice")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(user.user_code_hash, Some(keys.user_code_hash("1234")));
        assert_ne!(user.user_code_hash, Some(secret::hash("1234")));
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        assert!(Seed::from_json(r#"{"client":[]}"#).is_err());
    }
}
