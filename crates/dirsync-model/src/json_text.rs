//! A JSON value kept as its compact text, parsed when it is looked at.
//!
//! A full run holds every mapped user and every target user at once (issue #5: 100,000 of
//! each). As `serde_json::Value` a user costs about 4 KiB (one allocation per key, string and
//! array, plus map overhead); as text about 600 bytes. The planner parses one pair at a time,
//! so at most a handful of parsed resources exist at once. Cloning shares the text.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// JSON text made from a [`Value`] (so it always parses back to the same value).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct JsonText(Arc<str>);

impl JsonText {
    pub fn new(value: &Value) -> JsonText {
        JsonText(Arc::from(value.to_string()))
    }

    /// The value. Text made by [`JsonText::new`] always parses; text from elsewhere (a cache
    /// row) that does not reads as `null`, like an absent resource.
    pub fn value(&self) -> Value {
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// The shared text, for holders that keep the same resource (a cache row).
    pub fn shared(&self) -> Arc<str> {
        Arc::clone(&self.0)
    }

    /// Text taken as it is (a cache row written from a [`JsonText`]); invalid JSON reads as
    /// `null` in [`JsonText::value`].
    pub fn from_shared(text: Arc<str>) -> JsonText {
        JsonText(text)
    }
}

impl Default for JsonText {
    fn default() -> Self {
        JsonText(Arc::from("null"))
    }
}

impl From<Value> for JsonText {
    fn from(value: Value) -> Self {
        JsonText::new(&value)
    }
}

impl fmt::Debug for JsonText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serialised as the JSON value it holds (a plan's JSON output shows the resource).
impl Serialize for JsonText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(serializer)
    }
}

/// Read from the JSON value it holds (a saved plan read back).
impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Value::deserialize(deserializer).map(|v| JsonText::new(&v))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn a_value_round_trips_and_serialises_as_itself() {
        let v = json!({"userName": "a", "emails": [{"value": "a@x", "primary": true}], "n": 1.5});
        let t = JsonText::new(&v);
        assert_eq!(t.value(), v);
        assert_eq!(serde_json::to_value(&t).unwrap(), v);
        let back: JsonText = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, t);
        assert_eq!(t.clone(), t);
        assert_eq!(JsonText::default().value(), Value::Null);
        assert_eq!(
            JsonText::from_shared(Arc::from("{bad")).value(),
            Value::Null
        );
    }
}
