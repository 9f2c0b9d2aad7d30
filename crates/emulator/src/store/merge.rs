//! Merging two records, as HubSpot merges contacts, companies, deals and tickets.
//!
//! Contacts and companies merge into a new record with a new id, as HubSpot has done since
//! its "updated merge functionality for contacts and companies": the new record has the
//! primary's current values, and the merged record's where the primary has none; both old ids
//! resolve to it from then on; its `hs_merged_object_ids` lists the ids merged into it. Other
//! types merge into the primary, which keeps its id. Either way the earlier create date wins,
//! the associations of both records end on the result, and one `{type}.merge` event names the
//! primary (`primaryObjectId`), the merged record (`mergedObjectIds`) and the result
//! (`newObjectId`, also its `objectId`).

use super::Store;
use super::links::Link;
use super::object::{Actor, StoredObject, ValueSource};
use crate::clock::{iso8601, now_ms};
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use hubspot::WebhookEvent;

/// The property listing the ids merged into a record.
const MERGED_IDS: &str = "hs_merged_object_ids";

/// Whether a merge of this type makes a new record (rather than keeping the primary's id).
fn merges_into_new_record(t: ObjectType) -> bool {
    matches!(t, ObjectType::Contacts | ObjectType::Companies)
}

impl Store {
    /// Merges `merged` into `primary`; the resulting record.
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
        let mut target = live(self, primary)?;
        let now = now_ms();
        let types = self.of_mut(t);
        let result_id = if merges_into_new_record(t) {
            let id = types.next_id;
            types.next_id += 1;
            id
        } else {
            primary
        };
        target.id = result_id;
        if result_id != primary {
            target.set("hs_object_id", result_id.to_string(), now, ValueSource::Calculated);
        }
        // HubSpot maintains these itself; the result's stand.
        let maintained = [t.always_returned().as_slice(), &[MERGED_IDS]].concat();
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
        // The ids merged into the result: each record's own earlier merges, and the records now
        // merged (the primary too when the result is a new record).
        let retired: Vec<u64> = [primary, merged].into_iter().filter(|id| *id != result_id).collect();
        if types.properties.contains_key(MERGED_IDS) {
            let mut ids: Vec<String> = [&target, &secondary]
                .iter()
                .filter_map(|o| o.properties.get(MERGED_IDS))
                .flat_map(|v| v.split(';'))
                .filter(|id| !id.is_empty())
                .map(String::from)
                .chain(retired.iter().map(u64::to_string))
                .collect();
            ids.sort_by_key(|id| id.parse::<u64>().unwrap_or(u64::MAX));
            ids.dedup();
            target.set(MERGED_IDS, ids.join(";"), now, ValueSource::Calculated);
        }
        target.updated_at_ms = now;
        target.set(t.last_modified_property(), iso8601(now), now, ValueSource::Calculated);
        for id in &retired {
            types.objects.remove(id);
            for lives_in in types.merged.values_mut().filter(|p| *p == id) {
                *lives_in = result_id;
            }
            types.merged.insert(*id, result_id);
        }
        types.objects.insert(result_id, target.clone());
        // The primary's associations first, then the merged record's.
        for from in [primary, merged].into_iter().filter(|id| *id != result_id) {
            self.move_associations(t, from, result_id);
        }
        let event = WebhookEvent {
            occurred_at: now,
            object_id: result_id,
            primary_object_id: Some(primary),
            merged_object_ids: Some(vec![merged]),
            new_object_id: Some(result_id),
            ..Default::default()
        };
        self.emit_event(t, "merge", actor, event);
        Ok(target)
    }

    /// Moves every association of record `from` to record `to` of the same type.
    fn move_associations(&mut self, t: ObjectType, from: u64, to: u64) {
        let moved: Vec<Link> = self.associations.get(&(t, from)).into_iter().flatten().copied().collect();
        self.remove_associations_of((t, from));
        for link in moved {
            let inverse = self
                .association_types(t, link.to_type)
                .iter()
                .find(|a| a.type_id == link.type_id)
                .map_or(link.type_id, |a| a.inverse);
            self.associations_mut().entry((t, to)).or_default().insert(link);
            self.associations_mut().entry((link.to_type, link.to_id)).or_default().insert(Link {
                to_type: t,
                to_id: to,
                type_id: inverse,
            });
        }
    }
}
