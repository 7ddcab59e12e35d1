//! `MongoGroundTruth`: the register role's registers in MongoDB, where operators may also read
//! and change them directly (a change made there is pushed at once: see `watch`).
//!
//! Layout (two collections of the configured database):
//! - `registers`: one document per register, in the fields of its JSON:
//!   `{_id: registerId, name, description?, advertise, latestVersion, latestDocketVersion,
//!   createdAt, updatedAt, revision}` (times as BSON dates; counts as 64-bit integers, or as
//!   decimal strings above 2^63 - 1), with an index on `advertise`;
//! - `ground_truth_meta`: `{_id: "revision", value}` (the store's revision, bumped by every
//!   change this adapter makes) and `{_id: "epoch", value}` (32 hex digits, drawn at random the
//!   first time the store is used, and again if that record is lost: the store was re-created).
//!
//! Every change (create, replace, delete) is one transaction (see `MongoConnection`) that bumps
//! the revision and writes the register, so the revision only grows and the changed register
//! carries it. `public_registers` reads the revision first, then the epoch, then the public
//! registers through the `advertise` index, with only the fields a push needs: the registers
//! are at least as recent as the revision they are sent with, never older.
//!
//! A document written by hand is read leniently where MongoDB's shell differs from this
//! adapter (counts written as doubles, missing times or revision); one that still does not
//! decode is reported as `Corrupt` naming it, never skipped. A change made directly in MongoDB
//! does not bump the revision: the full sync that carries it is ordered by its read time.
//!
//! `watch` is a change stream on `registers` (a replica set has one): every insert, update,
//! replace or delete yields the register's id; a dropped collection or database, or a broken
//! stream, ends it (the resync driver then pushes a full sync and watches again).
//!
//! Deliberately not done here: validating registers and assigning times (the resync driver
//! does), and ordering direct changes against this adapter's own (last write wins in MongoDB).

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::change_stream::event::{ChangeStreamEvent, OperationType};
use mongodb::options::{IndexOptions, ReturnDocument};
use mongodb::{ClientSession, Collection, IndexModel};
use tokio::sync::OnceCell;
use tracing::{debug, warn};

use herald_actors::ports::{GroundTruth, GroundTruthError, PublicRegisters};
use herald_messages::{AdInput, GroundTruthEpoch, Register, RegisterId, Timestamp};

use super::mongo_connection::{
    DUPLICATE_KEY, Failure, MongoConnection, MongoOpenError, Step, Timed, error_code,
};
use crate::config::MongoConfig;

/// Collection of the registers.
pub const REGISTERS_COLLECTION: &str = "registers";
/// Collection of the revision and the epoch.
pub const META_COLLECTION: &str = "ground_truth_meta";

/// The register role's registers in MongoDB.
pub struct MongoGroundTruth {
    connection: MongoConnection,
    /// Set once the `advertise` index exists (made on first use, retried until it is).
    indexed: OnceCell<()>,
}

impl MongoGroundTruth {
    /// Checks the URL and builds the client; does not connect (the first call does).
    pub async fn open(config: &MongoConfig) -> Result<Self, MongoOpenError> {
        Ok(Self {
            connection: MongoConnection::open(config).await?,
            indexed: OnceCell::new(),
        })
    }

    fn registers(&self) -> Collection<Document> {
        self.connection.collection(REGISTERS_COLLECTION)
    }

    fn meta(&self) -> Collection<Document> {
        self.connection.collection(META_COLLECTION)
    }

    /// Creates the `advertise` index (and with it the collections) before the first call.
    async fn ready(&self) -> Result<(), GroundTruthError> {
        self.indexed
            .get_or_try_init(|| async {
                let index = IndexModel::builder()
                    .keys(doc! { "advertise": 1 })
                    .options(IndexOptions::builder().name("advertise".to_owned()).build())
                    .build();
                let create = async {
                    self.registers().create_index(index).await?;
                    self.connection.ensure_collection(META_COLLECTION).await
                };
                self.connection.timed(create).await.map_err(store_error)
            })
            .await
            .map(|_| ())
    }

    /// The store's epoch, created when the store has none (first use, or the record was lost
    /// with the store); concurrent creators agree on the first one written.
    async fn epoch(&self) -> Result<GroundTruthEpoch, GroundTruthError> {
        let read = async {
            let found = self.meta().find_one(doc! { "_id": EPOCH }).await?;
            if let Some(found) = found {
                return Ok(found);
            }
            let created = GroundTruthEpoch::from_bytes(rand::random());
            let insert = self
                .meta()
                .insert_one(doc! { "_id": EPOCH, "value": created.as_str() })
                .await;
            match insert {
                Ok(_) => {}
                Err(err) if error_code(&err) == Some(DUPLICATE_KEY) => {}
                Err(err) => return Err(err),
            }
            let stored = self.meta().find_one(doc! { "_id": EPOCH }).await?;
            Ok(stored.unwrap_or_else(|| doc! {}))
        };
        let record = self.connection.timed(read).await.map_err(store_error)?;
        let text = record
            .get_str("value")
            .map_err(|_| corrupt("the ground truth's epoch record has no value".to_owned()))?;
        GroundTruthEpoch::parse(text)
            .map_err(|err| corrupt(format!("the ground truth's epoch: {err}")))
    }
}

#[async_trait]
impl GroundTruth for MongoGroundTruth {
    async fn public_registers(&self) -> Result<PublicRegisters, GroundTruthError> {
        self.ready().await?;
        let revision_record = self
            .connection
            .timed(self.meta().find_one(doc! { "_id": REVISION }))
            .await
            .map_err(store_error)?;
        let revision = match &revision_record {
            Some(record) => read_count(record, "value")
                .map_err(|why| corrupt(format!("the ground truth's revision: {why}")))?,
            None => 0,
        };
        let epoch = self.epoch().await?;
        let find = async {
            self.registers()
                .find(doc! { "advertise": true })
                .projection(doc! {
                    "name": 1, "description": 1, "advertise": 1,
                    "latestVersion": 1, "latestDocketVersion": 1,
                })
                .sort(doc! { "_id": 1 })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let records = self.connection.timed(find).await.map_err(store_error)?;
        let registers = records
            .iter()
            .map(decode_ad_input)
            .collect::<Result<Vec<AdInput>, GroundTruthError>>()?;
        Ok(PublicRegisters {
            registers,
            revision,
            epoch,
        })
    }

    async fn get(&self, id: &RegisterId) -> Result<Option<Register>, GroundTruthError> {
        self.ready().await?;
        let found = self
            .connection
            .timed(self.registers().find_one(doc! { "_id": id.as_str() }))
            .await
            .map_err(store_error)?;
        found.as_ref().map(decode_register).transpose()
    }

    async fn list(&self) -> Result<Vec<Register>, GroundTruthError> {
        self.ready().await?;
        let find = async {
            self.registers()
                .find(doc! {})
                .sort(doc! { "_id": 1 })
                .await?
                .try_collect::<Vec<Document>>()
                .await
        };
        let records = self.connection.timed(find).await.map_err(store_error)?;
        records.iter().map(decode_register).collect()
    }

    async fn create(&self, register: Register) -> Result<Register, GroundTruthError> {
        self.ready().await?;
        let context = (self, register);
        let outcome = self
            .connection
            .transaction(&context, |session, (truth, register)| {
                async move {
                    let id = register.register_id.as_str();
                    if truth.exists(session, id).await? {
                        return Ok(Step::Abort(Err(GroundTruthError::AlreadyExists(
                            register.register_id.clone(),
                        ))));
                    }
                    let stored = Register {
                        revision: truth.bump_revision(session).await?,
                        ..register.clone()
                    };
                    truth
                        .registers()
                        .insert_one(encode_register(&stored))
                        .session(&mut *session)
                        .await?;
                    Ok(Step::Commit(Ok(stored)))
                }
                .boxed()
            })
            .await;
        match outcome {
            // Created by someone else between the check and the insert.
            Err(failure) if failure.code() == Some(DUPLICATE_KEY) => {
                Err(GroundTruthError::AlreadyExists(context.1.register_id))
            }
            other => other.map_err(store_error)?,
        }
    }

    async fn replace(&self, register: Register) -> Result<Register, GroundTruthError> {
        self.ready().await?;
        self.connection
            .transaction(&(self, register), |session, (truth, register)| {
                async move {
                    let id = register.register_id.as_str();
                    if !truth.exists(session, id).await? {
                        return Ok(Step::Abort(Err(GroundTruthError::NotFound(
                            register.register_id.clone(),
                        ))));
                    }
                    let stored = Register {
                        revision: truth.bump_revision(session).await?,
                        ..register.clone()
                    };
                    truth
                        .registers()
                        .replace_one(doc! { "_id": id }, encode_register(&stored))
                        .session(&mut *session)
                        .await?;
                    Ok(Step::Commit(Ok(stored)))
                }
                .boxed()
            })
            .await
            .map_err(store_error)?
    }

    async fn delete(&self, id: &RegisterId) -> Result<bool, GroundTruthError> {
        self.ready().await?;
        self.connection
            .transaction(&(self, id), |session, (truth, id)| {
                async move {
                    let deleted = truth
                        .registers()
                        .delete_one(doc! { "_id": id.as_str() })
                        .session(&mut *session)
                        .await?;
                    if deleted.deleted_count == 0 {
                        return Ok(Step::Abort(false));
                    }
                    truth.bump_revision(session).await?;
                    Ok(Step::Commit(true))
                }
                .boxed()
            })
            .await
            .map_err(store_error)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, RegisterId>>, GroundTruthError> {
        self.ready().await?;
        let events = self
            .connection
            .timed(self.registers().watch())
            .await
            .map_err(store_error)?;
        let description = self.connection.describe().to_owned();
        let ids = futures::stream::unfold(Some(events), move |events| {
            let description = description.clone();
            async move {
                let mut events = events?;
                loop {
                    match events.next().await {
                        Some(Ok(event)) => match changed_register(&event) {
                            Changed::Register(id) => return Some((id, Some(events))),
                            Changed::Nothing => {}
                            Changed::Ended(why) => {
                                debug!(truth = %description, %why, "register watch ended");
                                return None;
                            }
                        },
                        Some(Err(err)) => {
                            debug!(truth = %description, %err, "register watch broke");
                            return None;
                        }
                        None => return None,
                    }
                }
            }
        });
        Ok(Some(ids.boxed()))
    }

    fn describe(&self) -> String {
        format!("{} (registers)", self.connection.describe())
    }
}

const REVISION: &str = "revision";
const EPOCH: &str = "epoch";

impl MongoGroundTruth {
    /// Whether the register exists, read inside the transaction.
    async fn exists(
        &self,
        session: &mut ClientSession,
        id: &str,
    ) -> Result<bool, mongodb::error::Error> {
        let found = self
            .registers()
            .find_one(doc! { "_id": id })
            .projection(doc! { "_id": 1 })
            .session(session)
            .await?;
        Ok(found.is_some())
    }

    /// Increments the stored revision inside the transaction and returns the new one.
    async fn bump_revision(
        &self,
        session: &mut ClientSession,
    ) -> Result<u64, mongodb::error::Error> {
        let bumped = self
            .meta()
            .find_one_and_update(
                doc! { "_id": REVISION },
                doc! { "$inc": { "value": 1_i64 } },
            )
            .upsert(true)
            .return_document(ReturnDocument::After)
            .session(session)
            .await?;
        let revision = bumped
            .as_ref()
            .and_then(|record| read_count(record, "value").ok())
            .unwrap_or(1);
        Ok(revision)
    }
}

/// What a change stream event says.
enum Changed {
    Register(RegisterId),
    Nothing,
    Ended(String),
}

fn changed_register(event: &ChangeStreamEvent<Document>) -> Changed {
    match &event.operation_type {
        OperationType::Insert
        | OperationType::Update
        | OperationType::Replace
        | OperationType::Delete => {
            let id = event
                .document_key
                .as_ref()
                .and_then(|key| key.get_str("_id").ok());
            match id.map(RegisterId::parse) {
                Some(Ok(id)) => Changed::Register(id),
                _ => {
                    warn!(key = ?event.document_key, "a changed document in registers is not a register; ignored");
                    Changed::Nothing
                }
            }
        }
        OperationType::Drop
        | OperationType::Rename
        | OperationType::DropDatabase
        | OperationType::Invalidate => Changed::Ended(format!("{:?}", event.operation_type)),
        _ => Changed::Nothing,
    }
}

/// A register as its document: the fields of its JSON, `_id` for the id.
fn encode_register(register: &Register) -> Document {
    let mut record = doc! {
        "_id": register.register_id.as_str(),
        "name": register.name.as_str(),
        "advertise": register.advertise,
        "latestVersion": count(register.latest_version),
        "latestDocketVersion": count(register.latest_docket_version),
        "createdAt": DateTime::from_millis(register.created_at.as_unix_millis()),
        "updatedAt": DateTime::from_millis(register.updated_at.as_unix_millis()),
        "revision": count(register.revision),
    };
    if let Some(description) = &register.description {
        record.insert("description", description.as_str());
    }
    record
}

fn decode_register(record: &Document) -> Result<Register, GroundTruthError> {
    let input = decode_ad_input(record)?;
    let id = input.register_id.clone();
    let field = |field: &str, why: String| corrupt(format!("register {id}: {field}: {why}"));
    Ok(Register {
        register_id: input.register_id,
        name: input.name.as_deref().unwrap_or_default().to_owned(),
        description: input.description.as_deref().map(str::to_owned),
        advertise: input.is_public,
        latest_version: input.latest_version,
        latest_docket_version: input.latest_docket_version,
        created_at: read_time(record, "createdAt").map_err(|why| field("createdAt", why))?,
        updated_at: read_time(record, "updatedAt").map_err(|why| field("updatedAt", why))?,
        revision: read_optional_count(record, "revision").map_err(|why| field("revision", why))?,
    })
}

/// What a push needs of a register document (all that `public_registers` reads of it).
fn decode_ad_input(record: &Document) -> Result<AdInput, GroundTruthError> {
    let id = match record.get("_id") {
        Some(Bson::String(id)) => RegisterId::parse(id)
            .map_err(|err| corrupt(format!("a document in registers has _id {id:?}: {err}")))?,
        other => {
            return Err(corrupt(format!(
                "a document in registers has _id {other:?}, not a register id"
            )));
        }
    };
    let field = |field: &str, why: String| corrupt(format!("register {id}: {field}: {why}"));
    let name = match record.get("name") {
        Some(Bson::String(name)) => name.as_str(),
        other => return Err(field("name", format!("{other:?} is not a string"))),
    };
    let description = match record.get("description") {
        None | Some(Bson::Null) => None,
        Some(Bson::String(description)) => Some(description.as_str().into()),
        Some(other) => return Err(field("description", format!("{other:?} is not a string"))),
    };
    let advertise = match record.get("advertise") {
        Some(Bson::Boolean(advertise)) => *advertise,
        other => return Err(field("advertise", format!("{other:?} is not a boolean"))),
    };
    Ok(AdInput {
        name: Some(name.into()),
        description,
        is_public: advertise,
        latest_version: read_optional_count(record, "latestVersion")
            .map_err(|why| field("latestVersion", why))?,
        latest_docket_version: read_optional_count(record, "latestDocketVersion")
            .map_err(|why| field("latestDocketVersion", why))?,
        register_id: id,
        sync_state: None,
    })
}

/// A count as BSON: a 64-bit integer, or its decimal string above `i64::MAX` (BSON has no
/// unsigned integer).
fn count(value: u64) -> Bson {
    match i64::try_from(value) {
        Ok(value) => Bson::Int64(value),
        Err(_) => Bson::String(value.to_string()),
    }
}

/// A count as written by this adapter or by hand: a non-negative integer (32 or 64 bits, or a
/// double without a fraction below 2^53, as MongoDB's shell writes numbers), or a decimal
/// string.
fn read_count(record: &Document, field: &str) -> Result<u64, String> {
    const EXACT_DOUBLES: f64 = 9_007_199_254_740_992.0;
    match record.get(field) {
        Some(Bson::Int32(value)) => {
            u64::try_from(*value).map_err(|_| format!("{value} is negative"))
        }
        Some(Bson::Int64(value)) => {
            u64::try_from(*value).map_err(|_| format!("{value} is negative"))
        }
        Some(Bson::Double(value))
            if value.fract() == 0.0 && (0.0..EXACT_DOUBLES).contains(value) =>
        {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked above
            Ok(*value as u64)
        }
        Some(Bson::String(text)) => text.parse().map_err(|_| format!("{text:?} is not a count")),
        None => Err("missing".to_owned()),
        Some(other) => Err(format!("{other:?} is not a count")),
    }
}

/// A count that a document written by hand may leave out (0 then).
fn read_optional_count(record: &Document, field: &str) -> Result<u64, String> {
    match record.get(field) {
        None | Some(Bson::Null) => Ok(0),
        Some(_) => read_count(record, field),
    }
}

/// A time: a BSON date, or milliseconds since 1970; left out, 1970.
fn read_time(record: &Document, field: &str) -> Result<Timestamp, String> {
    match record.get(field) {
        None | Some(Bson::Null) => Ok(Timestamp::EPOCH),
        Some(Bson::DateTime(time)) => Ok(Timestamp::from_unix_millis(time.timestamp_millis())),
        Some(Bson::Int64(millis)) => Ok(Timestamp::from_unix_millis(*millis)),
        Some(other) => Err(format!("{other:?} is not a date")),
    }
}

fn corrupt(what: String) -> GroundTruthError {
    GroundTruthError::Corrupt { what }
}

fn store_error(failure: Timed) -> GroundTruthError {
    match failure.classify() {
        Failure::Corrupt(what) => GroundTruthError::Corrupt { what },
        Failure::Transient => GroundTruthError::Unavailable(failure.into_box()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(advertise: bool) -> Register {
        Register {
            register_id: RegisterId::from_bytes([9; 16]),
            name: "ledger".to_owned(),
            description: Some("of things".to_owned()),
            advertise,
            latest_version: u64::MAX,
            latest_docket_version: 3,
            created_at: Timestamp::from_unix_millis(1_700_000_000_000),
            updated_at: Timestamp::from_unix_millis(1_700_000_000_001),
            revision: 42,
        }
    }

    #[test]
    fn a_register_round_trips_through_its_document() {
        for advertise in [true, false] {
            let original = register(advertise);
            let record = encode_register(&original);
            assert_eq!(decode_register(&record).unwrap(), original);
            assert_eq!(decode_ad_input(&record).unwrap(), original.to_ad_input());
        }
        let mut plain = register(true);
        plain.description = None;
        plain.latest_version = 7;
        let record = encode_register(&plain);
        assert!(!record.contains_key("description"));
        assert_eq!(record.get_i64("latestVersion").unwrap(), 7);
        assert_eq!(decode_register(&record).unwrap(), plain);
    }

    /// What an operator writes in MongoDB's shell: numbers as doubles, no times, no revision.
    #[test]
    fn a_document_written_by_hand_is_read_leniently() {
        let id = RegisterId::from_bytes([1; 16]);
        let record = doc! {
            "_id": id.as_str(), "name": "by hand", "advertise": true,
            "latestVersion": 12.0, "latestDocketVersion": 2_i32,
        };
        let register = decode_register(&record).unwrap();
        assert_eq!(register.latest_version, 12);
        assert_eq!(register.latest_docket_version, 2);
        assert_eq!(register.created_at, Timestamp::EPOCH);
        assert_eq!(register.revision, 0);
        assert_eq!(register.description, None);
    }

    #[test]
    fn a_document_that_does_not_decode_is_corrupt_naming_it() {
        let id = RegisterId::from_bytes([2; 16]);
        let broken = [
            doc! { "_id": "not-an-id", "name": "x", "advertise": true },
            doc! { "_id": id.as_str(), "advertise": true },
            doc! { "_id": id.as_str(), "name": "x", "advertise": "yes" },
            doc! { "_id": id.as_str(), "name": "x", "advertise": true, "latestVersion": 1.5 },
            doc! { "_id": id.as_str(), "name": "x", "advertise": true, "latestVersion": -1_i64 },
            doc! { "_id": id.as_str(), "name": "x", "advertise": true, "createdAt": "today" },
        ];
        for record in broken {
            let err = decode_register(&record).unwrap_err();
            assert!(
                matches!(err, GroundTruthError::Corrupt { .. }),
                "{record}: {err:?}"
            );
        }
    }
}
