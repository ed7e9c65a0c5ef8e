//! An asset's state: what the server stores and what replaying its history rebuilds.
//!
//! The state is a map of sections. Each section has plain fields (a JSON object, diffed by JSON
//! pointer) and, for memory, disk and nic, components keyed by slot or name. Three pseudo-sections
//! belong to the server: `host` (the reported host name and machine id), `business` (the fields
//! people maintain) and `identity` (deletion and merges). Keeping them in the same shape means one
//! diff, one replay and one history.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::report::component_list;

/// The pseudo-section holding the identity the host reports about itself.
pub const HOST_SECTION: &str = "host";

/// The pseudo-section holding the fields people maintain.
pub const BUSINESS_SECTION: &str = "business";

/// The pseudo-section holding what people decided about the record itself: `deleted_at` (RFC
/// 3339) while it is deleted, `merged_into` (an asset id) once merged into another, and on a
/// survivor one `alias:<id>` component per asset merged into it (that asset's identity keys).
pub const IDENTITY_SECTION: &str = "identity";

/// One section's state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SectionState {
    /// Plain fields (for external sections: the whole object).
    pub fields: Map<String, Value>,
    /// Components by key (memory slot, disk slot, interface name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Map<String, Value>>,
}

impl SectionState {
    /// A section with only plain fields.
    pub fn from_fields(fields: Map<String, Value>) -> Self {
        SectionState { fields, components: BTreeMap::new() }
    }

    /// The section as report data again: the fields plus, for component sections, the list of
    /// components in key order.
    pub fn to_data(&self, section: &str) -> Value {
        let mut data = self.fields.clone();
        if let Some((list, _)) = component_list(section) {
            let items = self.components.values().cloned().map(Value::Object).collect();
            data.insert(list.to_owned(), Value::Array(items));
        }
        Value::Object(data)
    }
}

/// An asset's whole state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AssetState {
    /// Section name -> state.
    pub sections: BTreeMap<String, SectionState>,
}

impl AssetState {
    /// A plain field of a section, if present.
    pub fn field(&self, section: &str, field: &str) -> Option<&Value> {
        self.sections.get(section)?.fields.get(field)
    }

    /// A plain string field of a section, if present and a string.
    pub fn str_field(&self, section: &str, field: &str) -> Option<&str> {
        self.field(section, field)?.as_str()
    }
}

/// Why a change could not be applied: the history and the state disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// The change refers to a section that does not exist yet.
    #[error("section {0:?} does not exist")]
    NoSection(String),
    /// The change refers to a component that does not exist.
    #[error("component {1:?} of section {0:?} does not exist")]
    NoComponent(String, String),
    /// An added thing already exists.
    #[error("{0} already exists")]
    Exists(String),
    /// A path does not lead anywhere.
    #[error("path {0:?} does not exist")]
    NoPath(String),
    /// The change carries no value where it needs one.
    #[error("change without a value: {0}")]
    Malformed(String),
}

/// Splits an RFC 6901 pointer into unescaped tokens; "" is the whole document.
pub fn pointer_tokens(pointer: &str) -> Result<Vec<String>, ApplyError> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| ApplyError::NoPath(pointer.to_owned()))?;
    Ok(rest.split('/').map(|t| t.replace("~1", "/").replace("~0", "~")).collect())
}

/// Sets `value` at `pointer` inside `object`; the parent must exist and be an object.
pub fn set_at(object: &mut Map<String, Value>, pointer: &str, value: Value) -> Result<(), ApplyError> {
    let tokens = pointer_tokens(pointer)?;
    let Some((last, parents)) = tokens.split_last() else {
        return match value {
            Value::Object(map) => {
                *object = map;
                Ok(())
            }
            _ => Err(ApplyError::Malformed(format!("non-object at the root of {pointer:?}"))),
        };
    };
    let mut current = object;
    for token in parents {
        current = match current.get_mut(token) {
            Some(Value::Object(map)) => map,
            _ => return Err(ApplyError::NoPath(pointer.to_owned())),
        };
    }
    current.insert(last.clone(), value);
    Ok(())
}

/// Removes the value at `pointer` inside `object`.
pub fn remove_at(object: &mut Map<String, Value>, pointer: &str) -> Result<Value, ApplyError> {
    let tokens = pointer_tokens(pointer)?;
    let Some((last, parents)) = tokens.split_last() else {
        return Err(ApplyError::NoPath("cannot remove the root".to_owned()));
    };
    let mut current = object;
    for token in parents {
        current = match current.get_mut(token) {
            Some(Value::Object(map)) => map,
            _ => return Err(ApplyError::NoPath(pointer.to_owned())),
        };
    }
    current.remove(last).ok_or_else(|| ApplyError::NoPath(pointer.to_owned()))
}
