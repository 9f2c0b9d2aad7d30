//! Associating records: each association has one or more association types; a custom object's
//! schema defines one type per associated object type. Every association is stored in both
//! directions, with the inverse type on the way back.

use std::collections::BTreeMap;

use super::Store;
use super::custom_schema::association_type_ids;
use super::links::{AssociationType, HUBSPOT_DEFINED, Link, ObjectRef, STANDARD_TYPES, USER_DEFINED};
use super::object::Actor;
use crate::clock::now_ms;
use crate::error::{ApiFailure, ApiResult};
use crate::schema::ObjectType;
use hubspot::WebhookEvent;

impl Store {
    /// The association types from `from` to `to`, the default one first.
    pub fn association_types(&self, from: ObjectType, to: ObjectType) -> Vec<AssociationType> {
        let standard: Vec<AssociationType> = STANDARD_TYPES
            .iter()
            .filter(|(f, t, ..)| *f == from && *t == to)
            .map(|&(_, _, type_id, label, inverse)| AssociationType {
                type_id,
                label,
                category: HUBSPOT_DEFINED,
                inverse,
            })
            .collect();
        if !standard.is_empty() {
            return standard;
        }
        // A custom type's schema names the types it associates with.
        let defined = |custom: ObjectType, other: ObjectType| match custom {
            ObjectType::Custom(n) => self
                .schemas
                .get(&n)
                .filter(|s| s.associated_objects.contains(&other.object_type_id()))
                .map(|_| association_type_ids(n, &other.object_type_id())),
            _ => None,
        };
        if let Some((forward, reverse)) = defined(from, to) {
            vec![AssociationType { type_id: forward, label: None, category: USER_DEFINED, inverse: reverse }]
        } else if let Some((forward, reverse)) = defined(to, from) {
            vec![AssociationType { type_id: reverse, label: None, category: USER_DEFINED, inverse: forward }]
        } else {
            vec![]
        }
    }

    /// The default (unlabelled) association type from `from` to `to`.
    pub fn default_association_type(&self, from: ObjectType, to: ObjectType) -> ApiResult<AssociationType> {
        self.association_types(from, to).first().copied().ok_or_else(|| {
            ApiFailure::validation(&format!(
                "There are no association types from {} to {}",
                from.object_type_id(),
                to.object_type_id()
            ))
        })
    }

    /// Associations from `from` to records of `to_type`, by record, ordered by id.
    pub fn associations_to(&self, from: ObjectRef, to_type: ObjectType) -> BTreeMap<u64, Vec<u32>> {
        let mut by_record: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        for link in self.associations.get(&from).into_iter().flatten().filter(|l| l.to_type == to_type) {
            by_record.entry(link.to_id).or_default().push(link.type_id);
        }
        by_record
    }

    /// Adds associations of the given types between two live records (and their inverses).
    /// A "Primary" type moves: the record's previous primary association of it is dropped.
    pub fn associate(&mut self, from: ObjectRef, to: ObjectRef, type_ids: &[u32], actor: Actor) -> ApiResult<()> {
        self.require_live(from)?;
        self.require_live(to)?;
        let known = self.association_types(from.0, to.0);
        let mut chosen = vec![];
        for id in type_ids {
            let t = known.iter().find(|t| t.type_id == *id).ok_or_else(|| {
                ApiFailure::validation(&format!(
                    "associationTypeId {id} is not a valid association type from {} to {}",
                    from.0.object_type_id(),
                    to.0.object_type_id()
                ))
            })?;
            chosen.push(*t);
        }
        for t in chosen {
            if t.label == Some("Primary") {
                let previous: Vec<Link> = self
                    .associations
                    .get(&from)
                    .into_iter()
                    .flatten()
                    .filter(|l| l.to_type == to.0 && l.type_id == t.type_id && l.to_id != to.1)
                    .copied()
                    .collect();
                for link in previous {
                    self.unlink(from, (link.to_type, link.to_id), link.type_id, t.inverse);
                }
            }
            let forward = Link { to_type: to.0, to_id: to.1, type_id: t.type_id };
            let inserted = self.associations_mut().entry(from).or_default().insert(forward);
            self.associations_mut().entry(to).or_default().insert(Link {
                to_type: from.0,
                to_id: from.1,
                type_id: t.inverse,
            });
            if inserted {
                self.emit_association_change(from, to, false, actor);
            }
        }
        Ok(())
    }

    /// Removes every association between two records; whether there was any.
    pub fn dissociate(&mut self, from: ObjectRef, to: ObjectRef, actor: Actor) -> bool {
        let had = |store: &mut Store, a: ObjectRef, b: ObjectRef| {
            let links = store.associations_mut().entry(a).or_default();
            let before = links.len();
            links.retain(|l| (l.to_type, l.to_id) != b);
            before != links.len()
        };
        let removed = had(self, from, to);
        had(self, to, from);
        if removed {
            self.emit_association_change(from, to, true, actor);
        }
        removed
    }

    /// Drops every association of a record that is gone.
    pub fn remove_associations_of(&mut self, record: ObjectRef) {
        for link in self.associations_mut().remove(&record).unwrap_or_default() {
            if let Some(back) = self.associations_mut().get_mut(&(link.to_type, link.to_id)) {
                back.retain(|l| (l.to_type, l.to_id) != record);
            }
        }
    }

    fn unlink(&mut self, from: ObjectRef, to: ObjectRef, type_id: u32, inverse: u32) {
        if let Some(links) = self.associations_mut().get_mut(&from) {
            links.remove(&Link { to_type: to.0, to_id: to.1, type_id });
        }
        if let Some(links) = self.associations_mut().get_mut(&to) {
            links.remove(&Link { to_type: from.0, to_id: from.1, type_id: inverse });
        }
    }

    pub fn require_live(&self, (t, id): ObjectRef) -> ApiResult<()> {
        if self.of(t).objects.get(&id).is_some_and(|o| !o.is_archived()) {
            Ok(())
        } else {
            Err(ApiFailure::not_found(&format!("resource not found: {} {id} does not exist", t.shouting())))
        }
    }

    /// `{type}.associationChange`, once from each side, as HubSpot sends them.
    fn emit_association_change(&mut self, a: ObjectRef, b: ObjectRef, removed: bool, actor: Actor) {
        let occurred_at = now_ms();
        for (from, to) in [(a, b), (b, a)] {
            let event = WebhookEvent {
                occurred_at,
                association_type: Some(format!("{}_TO_{}", from.0.shouting(), to.0.shouting())),
                from_object_id: Some(from.1),
                to_object_id: Some(to.1),
                association_removed: Some(removed),
                ..Default::default()
            };
            self.emit_event(from.0, "associationChange", actor, event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_standard_type_has_its_inverse() {
        for &(from, to, id, label, inverse) in STANDARD_TYPES {
            assert!(
                STANDARD_TYPES.iter().any(|&(f, t, i, l, inv)| f == to
                    && t == from
                    && i == inverse
                    && inv == id
                    && l == label),
                "{from:?}->{to:?} {id}"
            );
        }
        let store = Store::new(1, None);
        let types = store.association_types(ObjectType::Contacts, ObjectType::Companies);
        assert_eq!((types[0].type_id, types[0].label), (279, None));
        assert_eq!((types[1].type_id, types[1].label), (1, Some("Primary")));
    }
}
