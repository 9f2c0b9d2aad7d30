//! Associations as stored: links between records, and the association types HubSpot defines
//! between the standard objects (contact→company 279 unlabelled and 1 "Primary", ...).

use serde::{Deserialize, Serialize};

use crate::schema::ObjectType;

/// A record: its type and id.
pub type ObjectRef = (ObjectType, u64);

/// One association from a record: to this record, of this association type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Link {
    pub to_type: ObjectType,
    pub to_id: u64,
    pub type_id: u32,
}

/// An association type between two object types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AssociationType {
    pub type_id: u32,
    pub label: Option<&'static str>,
    pub category: &'static str,
    /// The type of the same association seen from the other side.
    pub inverse: u32,
}

pub const HUBSPOT_DEFINED: &str = "HUBSPOT_DEFINED";
pub const USER_DEFINED: &str = "USER_DEFINED";

/// HubSpot's association types between the standard objects: (from, to, type id, label,
/// inverse type id). The first of each pair is its default (unlabelled) type.
pub const STANDARD_TYPES: &[(ObjectType, ObjectType, u32, Option<&str>, u32)] = {
    use ObjectType::{Companies, Contacts, Deals, Tickets};
    &[
        (Contacts, Companies, 279, None, 280),
        (Contacts, Companies, 1, Some("Primary"), 2),
        (Companies, Contacts, 280, None, 279),
        (Companies, Contacts, 2, Some("Primary"), 1),
        (Deals, Contacts, 3, None, 4),
        (Contacts, Deals, 4, None, 3),
        (Deals, Companies, 341, None, 342),
        (Deals, Companies, 5, Some("Primary"), 6),
        (Companies, Deals, 342, None, 341),
        (Companies, Deals, 6, Some("Primary"), 5),
        (Tickets, Contacts, 16, None, 15),
        (Contacts, Tickets, 15, None, 16),
        (Tickets, Companies, 339, None, 340),
        (Tickets, Companies, 26, Some("Primary"), 25),
        (Companies, Tickets, 340, None, 339),
        (Companies, Tickets, 25, Some("Primary"), 26),
        (Deals, Tickets, 27, None, 28),
        (Tickets, Deals, 28, None, 27),
    ]
};
