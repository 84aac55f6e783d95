//! The seed format: users, clients and devices in one JSON file, imported into any store by the
//! local API at start-up and by the operator tooling.

use serde::Deserialize;

use crate::domain::{Client, Device, User};
use crate::secret;
use crate::store::{Store, StoreError};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Seed {
    #[serde(default)]
    pub clients: Vec<SeedClient>,
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub devices: Vec<Device>,
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

    pub fn users(&self) -> impl Iterator<Item = User> + '_ {
        self.users.iter().map(|u| {
            let mut user = u.user.clone();
            if let Some(code) = &u.user_code {
                user.user_code_hash = Some(secret::hash(code));
            }
            user
        })
    }

    /// Writes everything into `store`; importing twice changes nothing.
    pub async fn import(&self, store: &dyn Store) -> Result<(), StoreError> {
        for client in self.clients() {
            store.put_client(&client).await?;
        }
        for user in self.users() {
            store.put_user(&user).await?;
        }
        for device in &self.devices {
            store.put_device(device).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[tokio::test]
    async fn seed_secrets_are_hashed_on_import() {
        let seed = Seed::from_json(
            r#"{"clients":[{"client_id":"c1","client_secret":"s3cret"}],
                "users":[{"sub":"u1","login_hints":["alice"],"user_code":"1234"}]}"#,
        )
        .unwrap();
        let store = MemoryStore::new();
        seed.import(&store).await.unwrap();
        let client = store.get_client("c1").await.unwrap().unwrap();
        assert_eq!(client.client_secret_hash, Some(secret::hash("s3cret")));
        let user = store.find_user_by_hint("alice").await.unwrap().unwrap();
        assert_eq!(user.user_code_hash, Some(secret::hash("1234")));
    }

    #[test]
    fn unknown_top_level_field_is_refused() {
        assert!(Seed::from_json(r#"{"client":[]}"#).is_err());
    }
}
