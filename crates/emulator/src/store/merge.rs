//! Merging two records, as HubSpot merges contacts, companies, deals and tickets.
//!
//! The emulator's reading of HubSpot's merge rules (documented as an approximation): the
//! primary record keeps its id and every value it has; a property empty on the primary takes
//! the merged record's value; the earlier create date wins; the merged record's associations
//! move to the primary. The merged id keeps resolving: reads by it answer with the primary.

use super::Store;
use super::links::Link;
use super::object::{Actor, StoredObject, ValueSource};
use crate::clock::{iso8601, now_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use hubspot::WebhookEvent;

impl Store {
    /// Merges `merged` into `primary`; the primary as it is afterwards.
    pub fn merge(&mut self, t: ObjectType, primary: u64, merged: u64, actor: Actor) -> ApiResult<StoredObject> {
        if primary == merged {
            return Err(ApiFailure::validation("primaryObjectId and objectIdToMerge must name different records"));
        }
        let live = |store: &Store, id: u64| {
            store.of(t).objects.get(&id).filter(|o| !o.is_archived()).cloned().ok_or_else(|| {
                ApiFailure::not_found(&format!("resource not found: {} {id} does not exist", t.shouting()))
            })
        };
        let secondary = live(self, merged)?;
        live(self, primary)?;
        let now = now_ms();
        // HubSpot maintains these itself; the primary's stand.
        let maintained = t.always_returned();
        let types = self.of_mut(t);
        let target = types.objects.get_mut(&primary).expect("checked above");
        for (name, value) in &secondary.properties {
            let empty_on_primary = target.properties.get(name).is_none_or(String::is_empty);
            if empty_on_primary && !value.is_empty() && !maintained.contains(&name.as_str()) {
                target.set(name, value.clone(), now, ValueSource::Written(actor));
            }
        }
        if secondary.created_at_ms < target.created_at_ms {
            target.created_at_ms = secondary.created_at_ms;
            target.set(t.create_date_property(), iso8601(secondary.created_at_ms), now, ValueSource::Calculated);
        }
        target.updated_at_ms = now;
        target.set(t.last_modified_property(), iso8601(now), now, ValueSource::Calculated);
        let result = target.clone();
        types.objects.remove(&merged);
        for lives_in in types.merged.values_mut().filter(|p| **p == merged) {
            *lives_in = primary;
        }
        types.merged.insert(merged, primary);
        let moved: Vec<Link> = self.associations.get(&(t, merged)).into_iter().flatten().copied().collect();
        self.remove_associations_of((t, merged));
        for link in moved {
            let inverse = self
                .association_types(t, link.to_type)
                .iter()
                .find(|a| a.type_id == link.type_id)
                .map_or(link.type_id, |a| a.inverse);
            self.associations_mut().entry((t, primary)).or_default().insert(link);
            self.associations_mut().entry((link.to_type, link.to_id)).or_default().insert(Link {
                to_type: t,
                to_id: primary,
                type_id: inverse,
            });
        }
        let event = WebhookEvent {
            occurred_at: now,
            object_id: primary,
            primary_object_id: Some(primary),
            merged_object_ids: Some(vec![merged]),
            new_object_id: Some(primary),
            ..Default::default()
        };
        self.emit_event(t, "merge", actor, event);
        Ok(result)
    }
}
