//! Test entities (`createEntities`): clients that record their command events, databases,
//! collections, and values saved with `saveResultAsEntity`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anymongo_core::bson::{Bson, Document};
use anymongo_core::event::{CommandEvent, Event, EventHandler};
use anymongo_core::options::{
    Acknowledgment, ReadConcern, ReadConcernLevel, ReadPreference, ReadPreferenceMode, WriteConcern,
};
use anymongo_core::rt::Runtime;
use anymongo_core::{Client, ClientOptions, Collection, Database};

use super::matching::EntityLookup;
use super::Flow;

/// Commands whose events are hidden unless a client sets `observeSensitiveCommands`.
const SENSITIVE: &[&str] = &[
    "authenticate",
    "saslstart",
    "saslcontinue",
    "getnonce",
    "createuser",
    "updateuser",
    "copydbgetnonce",
    "copydbsaslstart",
    "copydb",
];

/// A client entity and the command events it observed.
#[derive(Debug, Clone)]
pub struct TestClient {
    /// The client.
    pub client: Client,
    events: Arc<Mutex<Vec<CommandEvent>>>,
    observe: Vec<String>,
    ignore: Vec<String>,
    observe_sensitive: bool,
}

impl TestClient {
    /// Every command this client sent (unfiltered), for failure reports.
    pub fn started_commands(&self) -> Vec<Document> {
        self.events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter_map(|e| match e {
                CommandEvent::Started(s) => Some(s.command.clone()),
                _ => None,
            })
            .collect()
    }

    /// The command events this client observes, in order, after `observeEvents`,
    /// `ignoreCommandMonitoringEvents`, sensitive-command and `configureFailPoint` filtering.
    pub fn observed_events(&self) -> Vec<CommandEvent> {
        let events = self
            .events
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        events
            .into_iter()
            .filter(|e| {
                let (kind, name, blank) = match e {
                    CommandEvent::Started(s) => {
                        ("commandStartedEvent", &s.command_name, s.command.is_empty())
                    }
                    CommandEvent::Succeeded(s) => {
                        ("commandSucceededEvent", &s.command_name, s.reply.is_empty())
                    }
                    CommandEvent::Failed(f) => ("commandFailedEvent", &f.command_name, false),
                };
                let lower = name.to_ascii_lowercase();
                let sensitive = SENSITIVE.contains(&lower.as_str())
                    || (blank && (lower == "hello" || lower == "ismaster"));
                self.observe.iter().any(|o| o == kind)
                    && !self.ignore.iter().any(|i| i == name)
                    && name != "configureFailPoint"
                    && (self.observe_sensitive || !sensitive)
            })
            .collect()
    }
}

/// One entity.
#[derive(Debug, Clone)]
pub enum Entity {
    /// A client.
    Client(TestClient),
    /// A database.
    Database(Database),
    /// A collection of documents.
    Collection(Collection<Document>),
    /// A saved result.
    Value(Bson),
}

/// The entity map of one test.
#[derive(Debug, Default)]
pub struct Entities {
    map: HashMap<String, Entity>,
}

impl EntityLookup for Entities {
    fn bson_entity(&self, id: &str) -> Option<Bson> {
        match self.map.get(id) {
            Some(Entity::Value(v)) => Some(v.clone()),
            _ => None,
        }
    }
}

impl Entities {
    /// Adds an entity; ids must be unique.
    pub fn insert(&mut self, id: &str, entity: Entity) -> Result<(), Flow> {
        if self.map.contains_key(id) {
            return Err(Flow::Fail(format!("entity {id:?} defined twice")));
        }
        self.map.insert(id.to_string(), entity);
        Ok(())
    }

    /// Entity `id`.
    pub fn get(&self, id: &str) -> Result<&Entity, Flow> {
        self.map
            .get(id)
            .ok_or_else(|| Flow::Fail(format!("no entity {id:?}")))
    }

    /// Client entity `id`.
    pub fn client(&self, id: &str) -> Result<&TestClient, Flow> {
        match self.get(id)? {
            Entity::Client(c) => Ok(c),
            _ => Err(Flow::Fail(format!("entity {id:?} is not a client"))),
        }
    }

    /// Database entity `id`.
    pub fn database(&self, id: &str) -> Result<&Database, Flow> {
        match self.get(id)? {
            Entity::Database(d) => Ok(d),
            _ => Err(Flow::Fail(format!("entity {id:?} is not a database"))),
        }
    }

    /// Collection entity `id`.
    pub fn collection(&self, id: &str) -> Result<&Collection<Document>, Flow> {
        match self.get(id)? {
            Entity::Collection(c) => Ok(c),
            _ => Err(Flow::Fail(format!("entity {id:?} is not a collection"))),
        }
    }

    /// Every client entity.
    pub fn clients(&self) -> impl Iterator<Item = &TestClient> {
        self.map.values().filter_map(|e| match e {
            Entity::Client(c) => Some(c),
            _ => None,
        })
    }

    /// Creates the entities of a `createEntities` list, in order.
    pub fn create(
        &mut self,
        list: &[Bson],
        uri: &str,
        runtime: &Arc<dyn Runtime>,
    ) -> Result<(), Flow> {
        for item in list {
            let Some(spec) = item.as_document() else {
                return Err(Flow::Fail("createEntities item is not a document".into()));
            };
            let Some((kind, def)) = spec.iter().next() else {
                return Err(Flow::Fail("empty createEntities item".into()));
            };
            let def = def
                .as_document()
                .ok_or_else(|| Flow::Fail(format!("{kind} entity is not a document")))?;
            let id = str_field(def, "id")?;
            let entity = match kind.as_str() {
                "client" => Entity::Client(create_client(def, uri, runtime)?),
                "database" => {
                    let client = self.client(str_field(def, "client")?)?;
                    let name = str_field(def, "databaseName")?;
                    let options = handle_options(def.get_document("databaseOptions").ok())?;
                    Entity::Database(client.client.database_with_options(name, options))
                }
                "collection" => {
                    let db = self.database(str_field(def, "database")?)?;
                    let name = str_field(def, "collectionName")?;
                    let options = handle_options(def.get_document("collectionOptions").ok())?;
                    Entity::Collection(db.collection_with_options(name, options))
                }
                other => {
                    return Err(Flow::Skip(format!(
                        "{other} entities are not supported by the driver"
                    )))
                }
            };
            self.insert(id, entity)?;
        }
        Ok(())
    }

    /// Shuts every client entity down.
    pub async fn close(self) {
        for entity in self.map.into_values() {
            if let Entity::Client(c) = entity {
                c.client.shutdown().await;
            }
        }
    }
}

fn create_client(
    def: &Document,
    uri: &str,
    runtime: &Arc<dyn Runtime>,
) -> Result<TestClient, Flow> {
    for key in def.keys() {
        match key.as_str() {
            "id"
            | "uriOptions"
            | "observeEvents"
            | "ignoreCommandMonitoringEvents"
            | "observeSensitiveCommands"
            | "useMultipleMongoses" => {}
            other => {
                return Err(Flow::Skip(format!(
                    "client entity option {other} is not supported by the runner"
                )))
            }
        }
    }
    let mut uri = uri.to_string();
    if let Ok(options) = def.get_document("uriOptions") {
        for (k, v) in options {
            let value = match v {
                Bson::String(s) => s.clone(),
                Bson::Boolean(b) => b.to_string(),
                Bson::Int32(i) => i.to_string(),
                Bson::Int64(i) => i.to_string(),
                Bson::Double(d) => d.to_string(),
                other => {
                    return Err(Flow::Skip(format!(
                        "uriOptions value {k}: {other} is not supported by the runner"
                    )))
                }
            };
            uri = with_query_param(&uri, k, &value);
        }
    }
    let options = ClientOptions::parse_without_srv_resolution(&uri)
        .map_err(|e| Flow::Fail(format!("client URI {uri}: {e}")))?;
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let handler = EventHandler::new(move |event| {
        if let Event::Command(c) = event {
            sink.lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .push(c.clone());
        }
    });
    let client = Client::builder(options, runtime.clone())
        .event_handler(handler)
        .build()
        .map_err(|e| Flow::Fail(format!("creating a client: {e}")))?;
    let strings = |key: &str| -> Vec<String> {
        def.get_array(key)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(TestClient {
        client,
        events,
        observe: strings("observeEvents"),
        ignore: strings("ignoreCommandMonitoringEvents"),
        observe_sensitive: def.get_bool("observeSensitiveCommands").unwrap_or(false),
    })
}

/// `uri` with `key=value` added to its query string.
pub fn with_query_param(uri: &str, key: &str, value: &str) -> String {
    let after_scheme = uri.find("://").map(|i| i + 3).unwrap_or(0);
    let rest = &uri[after_scheme..];
    if rest.contains('?') {
        let sep = if uri.ends_with('?') || uri.ends_with('&') {
            ""
        } else {
            "&"
        };
        format!("{uri}{sep}{key}={value}")
    } else if rest.contains('/') {
        format!("{uri}?{key}={value}")
    } else {
        format!("{uri}/?{key}={value}")
    }
}

fn str_field<'a>(d: &'a Document, key: &str) -> Result<&'a str, Flow> {
    d.get_str(key)
        .map_err(|_| Flow::Fail(format!("missing string field {key:?} in {d}")))
}

/// `databaseOptions` / `collectionOptions` as handle overrides.
pub fn handle_options(d: Option<&Document>) -> Result<anymongo_core::client::HandleOptions, Flow> {
    let mut options = anymongo_core::client::HandleOptions::default();
    let Some(d) = d else {
        return Ok(options);
    };
    for (k, v) in d {
        match (k.as_str(), v) {
            ("readConcern", Bson::Document(rc)) => options.read_concern = Some(read_concern(rc)),
            ("writeConcern", Bson::Document(wc)) => {
                options.write_concern = Some(write_concern(wc)?)
            }
            ("readPreference", Bson::Document(rp)) => {
                options.read_preference = Some(read_preference(rp)?)
            }
            (other, _) => {
                return Err(Flow::Skip(format!(
                    "handle option {other} is not supported by the runner"
                )))
            }
        }
    }
    Ok(options)
}

/// A read concern document.
pub fn read_concern(d: &Document) -> ReadConcern {
    ReadConcern {
        level: d.get_str("level").ok().map(ReadConcernLevel::parse),
    }
}

/// A write concern document.
pub fn write_concern(d: &Document) -> Result<WriteConcern, Flow> {
    let mut wc = WriteConcern::default();
    match d.get("w") {
        Some(Bson::String(s)) if s == "majority" => wc.w = Some(Acknowledgment::Majority),
        Some(Bson::String(s)) => wc.w = Some(Acknowledgment::Custom(s.clone())),
        Some(n @ (Bson::Int32(_) | Bson::Int64(_) | Bson::Double(_))) => {
            let n = n
                .as_i64()
                .or_else(|| n.as_i32().map(i64::from))
                .or_else(|| n.as_f64().map(|f| f as i64))
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| Flow::Fail(format!("bad w {n}")))?;
            wc.w = Some(Acknowledgment::Nodes(n));
        }
        None => {}
        Some(other) => return Err(Flow::Fail(format!("bad w {other}"))),
    }
    if let Ok(j) = d.get_bool("journal").or_else(|_| d.get_bool("j")) {
        wc.journal = Some(j);
    }
    if let Some(ms) = d
        .get("wtimeoutMS")
        .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
    {
        wc.w_timeout = Some(std::time::Duration::from_millis(ms.max(0) as u64));
    }
    Ok(wc)
}

/// A read preference document (`mode`, `maxStalenessSeconds`).
pub fn read_preference(d: &Document) -> Result<ReadPreference, Flow> {
    let mode = d
        .get_str("mode")
        .ok()
        .and_then(ReadPreferenceMode::parse)
        .ok_or_else(|| Flow::Fail(format!("bad read preference {d}")))?;
    let mut rp = ReadPreference::with_mode(mode);
    if let Some(s) = d
        .get("maxStalenessSeconds")
        .and_then(|v| v.as_i64().or_else(|| v.as_i32().map(i64::from)))
    {
        if s > 0 {
            rp.max_staleness = Some(std::time::Duration::from_secs(s as u64));
        }
    }
    if d.contains_key("tagSets") || d.contains_key("hedge") {
        return Err(Flow::Skip(
            "read preference tagSets/hedge are not supported by the runner".into(),
        ));
    }
    Ok(rp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_appended() {
        assert_eq!(
            with_query_param("mongodb://h:1", "w", "1"),
            "mongodb://h:1/?w=1"
        );
        assert_eq!(
            with_query_param("mongodb://h:1/?directConnection=true", "w", "1"),
            "mongodb://h:1/?directConnection=true&w=1"
        );
        assert_eq!(
            with_query_param("mongodb://h:1/db", "w", "1"),
            "mongodb://h:1/db?w=1"
        );
    }

    #[test]
    fn write_concerns_parse() {
        let wc = write_concern(&bson::doc! {"w": 0}).ok();
        assert_eq!(wc.map(|w| w.is_acknowledged()), Some(false));
        let wc = write_concern(&bson::doc! {"w": "majority"}).ok();
        assert_eq!(wc.and_then(|w| w.w), Some(Acknowledgment::Majority));
    }
}
