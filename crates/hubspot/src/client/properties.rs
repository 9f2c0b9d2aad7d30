//! The CRM properties API: properties and property groups of an object type.

use reqwest::Method;

use super::HubSpotClient;
use crate::error::Result;
use crate::models::{Property, PropertyCreate, PropertyGroup, PropertyUpdate};

impl HubSpotClient {
    /// `GET /crm/v3/properties/{t}`.
    pub async fn list_properties(&self, object_type: &str) -> Result<Vec<Property>> {
        #[derive(serde::Deserialize)]
        struct Properties {
            results: Vec<Property>,
        }
        let list: Properties =
            self.send::<(), _>("list_properties", Method::GET, self.properties_path(object_type), &[], None).await?;
        Ok(list.results)
    }

    /// `GET /crm/v3/properties/{t}`, keeping only the names: the listing of a type with many
    /// properties is large, and a presence check needs nothing else.
    pub async fn list_property_names(&self, object_type: &str) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Named {
            name: String,
        }
        #[derive(serde::Deserialize)]
        struct Properties {
            results: Vec<Named>,
        }
        let list: Properties =
            self.send::<(), _>("list_properties", Method::GET, self.properties_path(object_type), &[], None).await?;
        Ok(list.results.into_iter().map(|p| p.name).collect())
    }

    /// `POST /crm/v3/properties/{t}`.
    pub async fn create_property(&self, object_type: &str, property: &PropertyCreate) -> Result<Property> {
        self.send("create_property", Method::POST, self.properties_path(object_type), &[], Some(property)).await
    }

    /// `GET /crm/v3/properties/{t}/{name}`; `None` when HubSpot has no live property of that name.
    pub async fn get_property(&self, object_type: &str, name: &str) -> Result<Option<Property>> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        match self.send::<(), Property>("get_property", Method::GET, path, &[], None).await {
            Ok(property) => Ok(Some(property)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `PATCH /crm/v3/properties/{t}/{name}`: changes only the fields `update` sets; its
    /// `options` replace the whole list.
    pub async fn update_property(&self, object_type: &str, name: &str, update: &PropertyUpdate) -> Result<Property> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        self.send("update_property", Method::PATCH, path, &[], Some(update)).await
    }

    /// `DELETE /crm/v3/properties/{t}/{name}` (HubSpot archives the property).
    pub async fn archive_property(&self, object_type: &str, name: &str) -> Result<()> {
        let path = format!("{}/{name}", self.properties_path(object_type));
        self.send::<(), ()>("archive_property", Method::DELETE, path, &[], None).await
    }

    /// `GET /crm/v3/properties/{t}/groups`.
    pub async fn list_property_groups(&self, object_type: &str) -> Result<Vec<PropertyGroup>> {
        #[derive(serde::Deserialize)]
        struct Groups {
            results: Vec<PropertyGroup>,
        }
        let path = format!("{}/groups", self.properties_path(object_type));
        let list: Groups = self.send::<(), _>("list_property_groups", Method::GET, path, &[], None).await?;
        Ok(list.results)
    }

    /// `POST /crm/v3/properties/{t}/groups`.
    pub async fn create_property_group(&self, object_type: &str, group: &PropertyGroup) -> Result<PropertyGroup> {
        let path = format!("{}/groups", self.properties_path(object_type));
        self.send("create_property_group", Method::POST, path, &[], Some(group)).await
    }

    /// The path of the properties endpoints: `v3`, or the date version the client is configured
    /// with.
    fn properties_path(&self, object_type: &str) -> String {
        match &*self.api_version {
            "v3" => format!("/crm/v3/properties/{object_type}"),
            date => format!("/crm/properties/{date}/{object_type}"),
        }
    }
}
