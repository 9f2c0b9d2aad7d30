use super::builtin::builtin_schema;
use super::*;
use crate::store::Store;

fn create(json: Value) -> ApiResult<PropertyDef> {
    validate_create(serde_json::from_value(json).unwrap(), 0)
}

#[test]
fn create_requires_fields_and_valid_pairs() {
    let err = create(json!({"name": "x"})).unwrap_err();
    assert_eq!(err.category(), "VALIDATION_ERROR");
    assert_eq!(err.body["errors"].as_array().unwrap().len(), 4);
    let ok = json!({"name": "tier", "label": "Tier", "type": "enumeration", "fieldType": "select", "groupName": "contactinformation"});
    assert!(create(ok).is_ok());
    let bad_pair = json!({"name": "n", "label": "N", "type": "number", "fieldType": "text", "groupName": "g"});
    assert_eq!(create(bad_pair).unwrap_err().body["errors"][0]["code"], "INVALID_FIELD_TYPE");
    let bad_type = json!({"name": "n", "label": "N", "type": "integer", "fieldType": "number", "groupName": "g"});
    assert_eq!(create(bad_type).unwrap_err().body["errors"][0]["code"], "INVALID_TYPE");
    let bad_name = json!({"name": "My Prop", "label": "N", "type": "string", "fieldType": "text", "groupName": "g"});
    assert_eq!(create(bad_name).unwrap_err().body["errors"][0]["code"], "INVALID_PROPERTY_NAME");
}

#[test]
fn values_are_checked_by_type() {
    // Deal stages are the options of `dealstage` once the store knows the pipelines.
    let store = Store::new(1, None);
    let props = &store.of(ObjectType::Deals).properties;
    assert!(props["amount"].check_value("1200.50").is_ok());
    assert_eq!(props["amount"].check_value("lots").unwrap_err()["error"], "INVALID_FLOAT");
    assert!(props["dealstage"].check_value("closedwon").is_ok());
    assert_eq!(props["dealstage"].check_value("won").unwrap_err()["error"], "INVALID_OPTION");
    assert!(props["closedate"].check_value("2024-05-01").is_ok());
    assert!(props["closedate"].check_value("1714521600000").is_ok());
    assert!(props["closedate"].check_value("May 1st").is_err());
    assert!(props["dealname"].check_value("anything").is_ok());
    let (contact_props, _) = builtin_schema(ObjectType::Contacts, 0);
    assert!(contact_props["email"].check_value("a.b@example.co.uk").is_ok());
    for bad in ["nobody", "a@b", "a@@b.io", "a b@c.io", "@c.io", "a@.io"] {
        assert_eq!(contact_props["email"].check_value(bad).unwrap_err()["error"], "INVALID_EMAIL", "{bad}");
    }
}
