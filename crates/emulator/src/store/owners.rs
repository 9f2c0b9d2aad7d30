//! The account's owners: the users records are assigned to through `hubspot_owner_id`. Owners
//! come from HubSpot's users; the emulator seeds the account's first user as one and takes
//! more through its admin API and fixtures. An owner whose user is deactivated is archived:
//! it keeps its id, but its `userId` moves to `userIdIncludingInactive` and it can no longer
//! be assigned.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::Store;
use crate::clock::iso8601;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::{OptionsSource, PropertyOption};

/// The first owner id handed out; HubSpot's owner ids are large numbers unlike user ids.
const FIRST_OWNER_ID: u64 = 75_000_001;

/// One owner as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owner {
    pub id: u64,
    pub user_id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub teams: Vec<Team>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub archived: bool,
}

/// A team an owner belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Team {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub primary: bool,
}

/// An owner to add or the fields to change (`/_emulator/owners`, fixtures).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnerInput {
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// The user behind the owner; the next free user id when absent.
    pub user_id: Option<u64>,
    pub teams: Option<Vec<Team>>,
    /// Deactivates (`true`) or reactivates (`false`) the owner's user.
    pub archived: Option<bool>,
}

/// The owners of an account.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Owners {
    pub by_id: BTreeMap<u64, Owner>,
}

impl Owner {
    /// HubSpot's JSON for an owner (`PublicOwner`).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "id": self.id.to_string(),
            "email": self.email,
            "type": "PERSON",
            "firstName": self.first_name,
            "lastName": self.last_name,
            "userIdIncludingInactive": self.user_id,
            "createdAt": iso8601(self.created_at_ms),
            "updatedAt": iso8601(self.updated_at_ms),
            "archived": self.archived,
            "teams": self.teams,
        });
        // A deactivated user's id is only in `userIdIncludingInactive`.
        if !self.archived {
            v["userId"] = json!(self.user_id);
        }
        v
    }

    fn label(&self) -> String {
        let name = format!("{} {}", self.first_name, self.last_name);
        let name = name.trim();
        if name.is_empty() { self.email.clone() } else { format!("{name} ({})", self.email) }
    }
}

impl Owners {
    /// The active owners, in id order.
    pub fn active(&self) -> impl Iterator<Item = &Owner> {
        self.by_id.values().filter(|o| !o.archived)
    }

    /// The owner with this id, or whose user has this id.
    pub fn find(&self, id: u64, by_user_id: bool) -> Option<&Owner> {
        if by_user_id { self.by_id.values().find(|o| o.user_id == id) } else { self.by_id.get(&id) }
    }
}

impl Store {
    /// Adds an owner; its JSON. Every owner needs an email no other owner has.
    pub fn add_owner(&mut self, input: OwnerInput, now_ms: i64) -> ApiResult<Value> {
        let Some(email) = input.email.map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()) else {
            return Err(ApiFailure::validation("An owner needs an email."));
        };
        let owners = &self.owners.by_id;
        if owners.values().any(|o| o.email == email) {
            return Err(ApiFailure::conflict(&format!("An owner with email {email} already exists.")));
        }
        let user_id = match input.user_id {
            Some(id) if owners.values().any(|o| o.user_id == id) => {
                return Err(ApiFailure::conflict(&format!("User {id} already has an owner.")));
            }
            Some(id) => id,
            None => owners.values().map(|o| o.user_id + 1).max().unwrap_or(crate::auth::FIRST_USER_ID),
        };
        let id = owners.keys().next_back().map_or(FIRST_OWNER_ID, |last| last + 1);
        let owner = Owner {
            id,
            user_id,
            email,
            first_name: input.first_name.unwrap_or_default(),
            last_name: input.last_name.unwrap_or_default(),
            teams: input.teams.unwrap_or_default(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            archived: input.archived.unwrap_or(false),
        };
        let created = owner.to_json();
        self.owners.by_id.insert(id, owner);
        self.owners_changed();
        Ok(created)
    }

    /// Changes an owner's details or deactivates it; its JSON.
    pub fn update_owner(&mut self, id: u64, input: OwnerInput, now_ms: i64) -> ApiResult<Value> {
        if input.user_id.is_some() {
            return Err(ApiFailure::validation("An owner's userId cannot change."));
        }
        let email = input.email.map(|e| e.trim().to_ascii_lowercase());
        if let Some(email) = &email
            && self.owners.by_id.values().any(|o| o.id != id && &o.email == email)
        {
            return Err(ApiFailure::conflict(&format!("An owner with email {email} already exists.")));
        }
        let owner = self.owners.by_id.get_mut(&id).ok_or_else(|| owner_not_found(id))?;
        if let Some(v) = email {
            owner.email = v;
        }
        if let Some(v) = input.first_name {
            owner.first_name = v;
        }
        if let Some(v) = input.last_name {
            owner.last_name = v;
        }
        if let Some(v) = input.teams {
            owner.teams = v;
        }
        if let Some(v) = input.archived {
            owner.archived = v;
        }
        owner.updated_at_ms = now_ms;
        let updated = owner.to_json();
        self.owners_changed();
        Ok(updated)
    }

    pub fn owners(&self) -> &Owners {
        &self.owners
    }

    /// Records a change of the owners: `hubspot_owner_id`'s options follow them.
    fn owners_changed(&mut self) {
        self.revision += 1;
        self.refresh_owner_options();
    }

    /// Sets the options of every property whose options are the owners: the active owners.
    pub(super) fn refresh_owner_options(&mut self) {
        let options: Vec<PropertyOption> = self
            .owners
            .active()
            .enumerate()
            .map(|(i, o)| PropertyOption {
                label: o.label(),
                value: o.id.to_string(),
                description: None,
                display_order: Some(i as i64),
                hidden: false,
            })
            .collect();
        for store in self.types.values_mut() {
            for def in store.properties.values_mut().filter(|d| d.options_from == Some(OptionsSource::Owners)) {
                def.options = options.clone();
            }
        }
    }
}

/// HubSpot's 404 for an owner id it does not know.
pub fn owner_not_found(id: impl std::fmt::Display) -> ApiFailure {
    ApiFailure::not_found(&format!("Owner {id} not found"))
}
