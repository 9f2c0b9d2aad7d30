//! Realistic, deterministic contacts and owners to start with (`--seed N`). Seeding sends no
//! webhooks.

use std::collections::BTreeMap;

use crate::clock::now_ms;
use crate::schema::ObjectType;
use crate::store::Store;
use crate::store::owners::{OwnerInput, Team};

/// The sales team a seeded account has besides the account's creator: (first, last, email).
const OWNERS: &[(&str, &str, &str)] = &[
    ("Grace", "Hopper", "grace.hopper@example.com"),
    ("Alan", "Turing", "alan.turing@example.com"),
    ("Katherine", "Johnson", "katherine.johnson@example.com"),
];

/// Adds the seeded sales team as owners, all in one team.
pub fn seed_owners(store: &mut Store) {
    let now = now_ms();
    for (first, last, email) in OWNERS {
        let owner = OwnerInput {
            email: Some(email.to_string()),
            first_name: Some(first.to_string()),
            last_name: Some(last.to_string()),
            teams: Some(vec![Team { id: "1".into(), name: "Sales".into(), primary: true }]),
            ..OwnerInput::default()
        };
        store.add_owner(owner, now).expect("the seeded owners are distinct");
    }
}

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Margaret",
    "Dennis",
    "Frances",
    "Ken",
    "Radia",
    "John",
    "Katherine",
    "Linus",
    "Hedy",
    "Tim",
    "Sophie",
    "Niklaus",
    "Karen",
    "Leslie",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Hamilton",
    "Ritchie",
    "Allen",
    "Thompson",
    "Perlman",
    "McCarthy",
    "Johnson",
    "Torvalds",
    "Lamarr",
    "Berners-Lee",
    "Wilson",
    "Wirth",
    "Jones",
    "Lamport",
];
const COMPANIES: &[(&str, &str)] = &[
    ("Analytical Engines", "analytical-engines.example"),
    ("Cobol Works", "cobolworks.example"),
    ("Bletchley Labs", "bletchley.example"),
    ("Shortest Path BV", "shortestpath.example"),
    ("Typeset Press", "typeset.example"),
    ("Apollo Guidance", "apollo-guidance.example"),
    ("Unix Systems", "unixsystems.example"),
];
const CITIES: &[&str] = &["London", "New York", "Amsterdam", "Boston", "Zurich", "Helsinki", "Berlin", "Toronto"];
const LIFECYCLE: &[&str] = &["subscriber", "lead", "marketingqualifiedlead", "salesqualifiedlead", "customer"];

/// Stores `count` contacts; the i-th contact is always the same person.
pub fn seed_contacts(store: &mut Store, count: u32) {
    let now = now_ms();
    for i in 0..count as usize {
        let first = FIRST_NAMES[i % FIRST_NAMES.len()];
        // Stepping the last name by the first-name cycle makes each (first, last) pair distinct
        // for the first 400 contacts; the number in the email keeps every email unique.
        let last = LAST_NAMES[(i / FIRST_NAMES.len() + i) % LAST_NAMES.len()];
        let (company, domain) = COMPANIES[i % COMPANIES.len()];
        let email = format!("{}.{}{}@{domain}", first.to_lowercase(), last.to_lowercase().replace('-', ""), i + 1);
        let properties: BTreeMap<String, String> = [
            ("email", email),
            ("firstname", first.to_string()),
            ("lastname", last.to_string()),
            ("company", company.to_string()),
            ("website", format!("https://{domain}")),
            ("city", CITIES[i % CITIES.len()].to_string()),
            ("phone", format!("+1 555 01{:02} {:03}", i % 100, i % 1000)),
            ("lifecyclestage", LIFECYCLE[i % LIFECYCLE.len()].to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // Spread creation over the past days, oldest first, so lists look like a real portal's.
        let created = now - (count as i64 - i as i64) * 3_600_000;
        store.insert_quietly(ObjectType::Contacts, properties, created);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeding_is_deterministic_and_unique() {
        let mut a = Store::new(1, None);
        let mut b = Store::new(1, None);
        seed_contacts(&mut a, 450);
        seed_contacts(&mut b, 450);
        let emails = |s: &Store| -> Vec<String> {
            s.of(ObjectType::Contacts).objects.values().map(|o| o.properties["email"].clone()).collect()
        };
        assert_eq!(emails(&a), emails(&b));
        let unique: std::collections::BTreeSet<_> = emails(&a).into_iter().collect();
        assert_eq!(unique.len(), 450);
        let first = &a.of(ObjectType::Contacts).objects[&1];
        assert_eq!(first.properties["email"], "ada.lovelace1@analytical-engines.example");
        let defs = &a.of(ObjectType::Contacts).properties;
        for o in a.of(ObjectType::Contacts).objects.values() {
            for (k, v) in &o.properties {
                assert!(defs[k].check_value(v).is_ok(), "{k}={v}");
            }
        }
    }
}
