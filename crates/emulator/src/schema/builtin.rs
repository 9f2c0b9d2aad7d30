//! The properties and property groups HubSpot ships in a new portal, with their options.

use std::collections::BTreeMap;

use super::{ObjectType, PropertyDef, PropertyGroup, PropertyOption};

/// The property group a custom type's properties land in when they name none.
pub const CUSTOM_OBJECT_GROUP: &str = "custom_object_information";

/// The properties and groups a new portal has for one object type.
pub fn builtin_schema(object_type: ObjectType, now_ms: i64) -> (BTreeMap<String, PropertyDef>, Vec<PropertyGroup>) {
    let group_name = match object_type {
        ObjectType::Contacts => "contactinformation",
        ObjectType::Companies => "companyinformation",
        ObjectType::Deals => "dealinformation",
        ObjectType::Tickets => "ticketinformation",
        ObjectType::Custom(_) => CUSTOM_OBJECT_GROUP,
    };
    let group_label = match object_type {
        ObjectType::Contacts => "Contact information",
        ObjectType::Companies => "Company information",
        ObjectType::Deals => "Deal information",
        ObjectType::Tickets => "Ticket information",
        ObjectType::Custom(_) => "Custom object information",
    };
    let groups = vec![
        PropertyGroup { name: group_name.into(), label: group_label.into(), display_order: 0, archived: false },
        PropertyGroup {
            name: "analyticsinformation".into(),
            label: "Analytics information".into(),
            display_order: 1,
            archived: false,
        },
    ];
    // (name, label, type, fieldType, options, read-only value, unique)
    type Spec = (&'static str, &'static str, &'static str, &'static str, &'static [&'static str], bool, bool);
    let common_tail: [Spec; 2] = [
        ("hs_object_id", "Record ID", "number", "number", &[], true, true),
        (object_type.create_date_property(), "Create Date", "datetime", "date", &[], true, false),
    ];
    let specific: Vec<Spec> = match object_type {
        ObjectType::Contacts => vec![
            ("email", "Email", "string", "text", &[], false, true),
            ("firstname", "First Name", "string", "text", &[], false, false),
            ("lastname", "Last Name", "string", "text", &[], false, false),
            ("phone", "Phone Number", "string", "phonenumber", &[], false, false),
            ("company", "Company Name", "string", "text", &[], false, false),
            ("website", "Website URL", "string", "text", &[], false, false),
            ("city", "City", "string", "text", &[], false, false),
            ("lifecyclestage", "Lifecycle Stage", "enumeration", "radio", LIFECYCLE_STAGES, false, false),
            ("lastmodifieddate", "Last Modified Date", "datetime", "date", &[], true, false),
        ],
        ObjectType::Companies => vec![
            ("name", "Company name", "string", "text", &[], false, false),
            ("domain", "Company Domain Name", "string", "text", &[], false, false),
            ("industry", "Industry", "enumeration", "select", INDUSTRIES, false, false),
            ("city", "City", "string", "text", &[], false, false),
            ("phone", "Phone Number", "string", "phonenumber", &[], false, false),
            ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", &[], true, false),
        ],
        ObjectType::Deals => vec![
            ("dealname", "Deal Name", "string", "text", &[], false, false),
            ("amount", "Amount", "number", "number", &[], false, false),
            ("dealstage", "Deal Stage", "enumeration", "radio", DEAL_STAGES, false, false),
            ("pipeline", "Pipeline", "enumeration", "select", &["default"], false, false),
            ("closedate", "Close Date", "datetime", "date", &[], false, false),
            ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", &[], true, false),
        ],
        ObjectType::Tickets => vec![
            ("subject", "Ticket name", "string", "text", &[], false, false),
            ("content", "Ticket description", "string", "textarea", &[], false, false),
            ("hs_pipeline", "Pipeline", "enumeration", "select", TICKET_PIPELINES, false, false),
            ("hs_pipeline_stage", "Ticket status", "enumeration", "select", TICKET_STAGES, false, false),
            ("hs_ticket_priority", "Priority", "enumeration", "select", TICKET_PRIORITIES, false, false),
            ("hs_ticket_category", "Category", "enumeration", "checkbox", TICKET_CATEGORIES, false, false),
            ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", &[], true, false),
        ],
        ObjectType::Custom(_) => {
            vec![("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", &[], true, false)]
        }
    };
    let properties = specific
        .into_iter()
        .chain(common_tail)
        .enumerate()
        .map(|(i, (name, label, type_, field_type, options, read_only_value, unique))| {
            let group = if read_only_value { "analyticsinformation" } else { group_name };
            let def = PropertyDef {
                name: name.into(),
                label: label.into(),
                type_: type_.into(),
                field_type: field_type.into(),
                group_name: group.into(),
                description: String::new(),
                options: options
                    .iter()
                    .enumerate()
                    .map(|(j, v)| PropertyOption {
                        label: v.split_once('=').map_or_else(|| option_label(v), |(_, label)| label.into()),
                        value: v.split_once('=').map_or(*v, |(value, _)| value).into(),
                        description: None,
                        display_order: Some(j as i64),
                        hidden: false,
                    })
                    .collect(),
                display_order: i as i64,
                has_unique_value: unique,
                hidden: false,
                form_field: !read_only_value,
                hubspot_defined: true,
                read_only_value,
                used_by: vec![],
                created_at_ms: now_ms,
                updated_at_ms: now_ms,
                archived: false,
            };
            (def.name.clone(), def)
        })
        .collect();
    (properties, groups)
}

const LIFECYCLE_STAGES: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

// Options written `value=Label` have a label that is not derived from the value.
const TICKET_PIPELINES: &[&str] = &["0=Support Pipeline"];
/// The default ticket pipeline's stages, by their internal ids.
const TICKET_STAGES: &[&str] = &["1=New", "2=Waiting on contact", "3=Waiting on us", "4=Closed"];
const TICKET_PRIORITIES: &[&str] = &["LOW", "MEDIUM", "HIGH", "URGENT"];
const TICKET_CATEGORIES: &[&str] = &["PRODUCT_ISSUE", "BILLING_ISSUE", "FEATURE_REQUEST", "GENERAL_INQUIRY"];

const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

const INDUSTRIES: &[&str] = &[
    "ACCOUNTING",
    "AIRLINES_AVIATION",
    "APPAREL_FASHION",
    "AUTOMOTIVE",
    "BANKING",
    "BIOTECHNOLOGY",
    "COMPUTER_SOFTWARE",
    "CONSTRUCTION",
    "CONSUMER_GOODS",
    "EDUCATION_MANAGEMENT",
    "FINANCIAL_SERVICES",
    "FOOD_BEVERAGES",
    "HOSPITAL_HEALTH_CARE",
    "HOSPITALITY",
    "INFORMATION_TECHNOLOGY_AND_SERVICES",
    "INSURANCE",
    "INTERNET",
    "LOGISTICS_AND_SUPPLY_CHAIN",
    "MARKETING_AND_ADVERTISING",
    "MEDIA_PRODUCTION",
    "NONPROFIT_ORGANIZATION_MANAGEMENT",
    "REAL_ESTATE",
    "RETAIL",
    "TELECOMMUNICATIONS",
];

/// `closedwon` → `Closedwon`, `COMPUTER_SOFTWARE` → `Computer Software`.
fn option_label(value: &str) -> String {
    value
        .split('_')
        .map(|w| {
            let lower = w.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::field_type_allowed;

    #[test]
    fn builtin_properties_are_hubspot_defined() {
        for t in ObjectType::ALL {
            let (props, groups) = builtin_schema(t, 0);
            assert!(props.values().all(|p| p.hubspot_defined));
            assert!(props.values().all(|p| field_type_allowed(&p.type_, &p.field_type) == Some(true)));
            assert!(props.values().all(|p| groups.iter().any(|g| g.name == p.group_name)));
            for name in t.always_returned() {
                assert!(props.contains_key(name), "{t:?} lacks {name}");
            }
        }
        assert_eq!(option_label("COMPUTER_SOFTWARE"), "Computer Software");
    }
}
