//! The conflict decision: whether an external change of one field is written to HubSpot when
//! HubSpot's value may have changed too. Pure; the worker gathers the times.

use model::api::mapping::ConflictPolicy;

/// What is known about one field of one record when an external change for it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldChange {
    /// When the external system changed the field (epoch ms): the record's timestamp field,
    /// else the time the receiver accepted it.
    pub external_changed_at: i64,
    /// When HubSpot's current value was set (epoch ms, HubSpot's clock); `None` when the
    /// property has no value or the record does not exist yet.
    pub hubspot_changed_at: Option<i64>,
    /// When this receiver last wrote the field to this record (epoch ms, HubSpot's `updatedAt`
    /// of that write); `None` when it never did.
    pub last_synced_at: Option<i64>,
}

impl FieldChange {
    /// Whether HubSpot's value changed since the field last synced. A value HubSpot holds that
    /// this receiver never wrote counts as a change: nothing says the external side knew it.
    pub fn hubspot_changed_since_sync(&self) -> bool {
        match (self.hubspot_changed_at, self.last_synced_at) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some(hubspot), Some(synced)) => hubspot > synced,
        }
    }
}

/// The outcome for one field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Write the external value to HubSpot.
    WriteExternal,
    /// Keep HubSpot's value; the external change of this field is dropped.
    KeepHubSpot,
}

/// Decides one field. Without a conflict (HubSpot unchanged since the last sync) the external
/// change is always written; with one, `policy` decides. `newestWins` compares the two change
/// times, and a tie goes to the external change, which is the one arriving now.
pub fn resolve(policy: ConflictPolicy, change: FieldChange) -> Resolution {
    if !change.hubspot_changed_since_sync() {
        return Resolution::WriteExternal;
    }
    let external_wins = match policy {
        ConflictPolicy::ExternalWins => true,
        ConflictPolicy::HubspotWins => false,
        ConflictPolicy::NewestWins => change.hubspot_changed_at.is_none_or(|h| change.external_changed_at >= h),
    };
    if external_wins { Resolution::WriteExternal } else { Resolution::KeepHubSpot }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConflictPolicy::*;
    use Resolution::*;

    const ALL: [ConflictPolicy; 3] = [NewestWins, HubspotWins, ExternalWins];

    fn change(external: i64, hubspot: Option<i64>, synced: Option<i64>) -> FieldChange {
        FieldChange { external_changed_at: external, hubspot_changed_at: hubspot, last_synced_at: synced }
    }

    #[test]
    fn without_a_hubspot_change_every_policy_writes() {
        for policy in ALL {
            // HubSpot has no value.
            assert_eq!(resolve(policy, change(100, None, None)), WriteExternal, "{policy:?}");
            // HubSpot's value is the one this receiver wrote (same time, or older).
            assert_eq!(resolve(policy, change(100, Some(50), Some(50))), WriteExternal, "{policy:?}");
            assert_eq!(resolve(policy, change(100, Some(40), Some(50))), WriteExternal, "{policy:?}");
            // Even an external change older than the last sync: nothing in HubSpot competes.
            assert_eq!(resolve(policy, change(10, Some(50), Some(50))), WriteExternal, "{policy:?}");
        }
    }

    #[test]
    fn hubspot_wins_keeps_a_value_changed_in_hubspot_since_the_sync() {
        assert_eq!(resolve(HubspotWins, change(300, Some(200), Some(100))), KeepHubSpot);
        assert_eq!(resolve(HubspotWins, change(300, Some(200), None)), KeepHubSpot);
    }

    #[test]
    fn external_wins_always_writes() {
        assert_eq!(resolve(ExternalWins, change(100, Some(200), Some(50))), WriteExternal);
        assert_eq!(resolve(ExternalWins, change(100, Some(200), None)), WriteExternal);
    }

    #[test]
    fn newest_wins_compares_the_change_times() {
        assert_eq!(resolve(NewestWins, change(300, Some(200), Some(100))), WriteExternal);
        assert_eq!(resolve(NewestWins, change(150, Some(200), Some(100))), KeepHubSpot);
        assert_eq!(resolve(NewestWins, change(150, Some(200), None)), KeepHubSpot);
        // A tie goes to the external change.
        assert_eq!(resolve(NewestWins, change(200, Some(200), Some(100))), WriteExternal);
    }

    #[test]
    fn newest_wins_is_the_default() {
        assert_eq!(ConflictPolicy::default(), NewestWins);
    }
}
