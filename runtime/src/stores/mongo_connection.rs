//! What the MongoDB adapters share: opening a client (lazily: a node starts while MongoDB is
//! down), the database handle, a deadline on every call, a transaction runner with bounded
//! retries, and the classification of driver errors.
//!
//! `MongoConnection::open` parses the URL and builds a `Client`, which connects in the
//! background: nothing fails at start when MongoDB is down. Every call then waits at most the
//! configured server selection timeout for a usable server and fails as unavailable after it;
//! the callers' actors back off and retry, and report the node degraded meanwhile.
//!
//! Transactions (`MongoConnection::transaction`) need a replica set (a single-node one will
//! do): a standalone `mongod` refuses them, and every adapter's writes are transactions. They
//! run with read concern `snapshot` and write concern `majority`, so an acknowledged write
//! survives a failover. A write conflict (another hub's transaction touched the same document)
//! retries the whole transaction after a short jittered pause, within the operation timeout; a
//! commit whose result is unknown is committed again (MongoDB makes that safe); a server that
//! cannot be reached is not retried here: the caller's backoff does that.
//!
//! TLS: `mongodb.tls` names the CA and a client certificate-and-key file; both are read and
//! checked at open (the driver would only read them at its first connection and report a bad
//! file as an unreachable server). The URL's own `tls=true&tlsCAFile=…` options work too.
//!
//! Deliberately not done here: mapping `mongodb::error::Error` to a port's error enum (each
//! adapter has its own `store_error`, using `classify`), and `mongodb+srv://` (the build leaves
//! out the DNS resolver).

use std::time::Duration;

use futures::future::BoxFuture;
use mongodb::bson::Document;
use mongodb::error::{
    Error, ErrorKind, TRANSIENT_TRANSACTION_ERROR, UNKNOWN_TRANSACTION_COMMIT_RESULT, WriteFailure,
};
use mongodb::options::{
    Acknowledgment, ClientOptions, ReadConcern, Tls, TlsOptions, TransactionOptions, WriteConcern,
};
use mongodb::{Client, ClientSession, Collection, Database};
use tokio::time::Instant;

use herald_actors::backoff::random_up_to;
use herald_actors::ports::BoxError;

use crate::config::MongoConfig;
use crate::tls::CredentialError;

/// MongoDB's code for a duplicate key (a unique index refused a write).
pub(super) const DUPLICATE_KEY: i32 = 11_000;
/// MongoDB's code for a collection that exists already.
const NAMESPACE_EXISTS: i32 = 48;

/// Why a MongoDB store's `open` refused its configuration.
#[derive(Debug, thiserror::Error)]
pub enum MongoOpenError {
    #[error("invalid mongodb url")]
    InvalidUrl(#[source] BoxError),
    #[error("unusable mongodb.tls")]
    Tls(#[from] CredentialError),
}

/// A client, its database and the deadline of one call. Cheap to clone (the driver's client is
/// a handle on one connection pool).
#[derive(Clone)]
pub(super) struct MongoConnection {
    client: Client,
    database: Database,
    operation_timeout: Duration,
    /// `mongodb://host:port[,…]/database`, without credentials.
    description: String,
}

/// What a transaction's body decided.
pub(super) enum Step<R> {
    /// Commit what the body wrote, then answer `R`.
    Commit(R),
    /// Write nothing: abort, then answer `R` (a refusal such as `Behind`).
    Abort(R),
}

/// How a driver error should be taken.
pub(super) enum Failure {
    /// The server is unreachable, slow, refusing or in an election: retry later.
    Transient,
    /// The server answered with something this adapter did not write, or cannot read.
    Corrupt(String),
}

impl MongoConnection {
    /// Parses the URL and builds the client; does not connect (the first call does, and
    /// the driver keeps reconnecting in the background).
    pub(super) async fn open(config: &MongoConfig) -> Result<Self, MongoOpenError> {
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(|err| MongoOpenError::InvalidUrl(Box::new(err)))?;
        if let Some(tls) = &config.tls {
            tls.check()?;
            options.tls = Some(Tls::Enabled(
                TlsOptions::builder()
                    .ca_file_path(tls.ca_file.clone())
                    .cert_key_file_path(tls.cert_key_file.clone())
                    .build(),
            ));
        }
        options.connect_timeout = Some(config.connect_timeout);
        options.server_selection_timeout = Some(config.server_selection_timeout);
        if options.app_name.is_none() {
            options.app_name = Some("herald".to_owned());
        }
        let hosts: Vec<String> = options.hosts.iter().map(ToString::to_string).collect();
        let description = format!("mongodb://{}/{}", hosts.join(","), config.database);
        let client = Client::with_options(options)
            .map_err(|err| MongoOpenError::InvalidUrl(Box::new(err)))?;
        let database = client.database(&config.database);
        Ok(Self {
            client,
            database,
            operation_timeout: config.operation_timeout,
            description,
        })
    }

    pub(super) fn database(&self) -> &Database {
        &self.database
    }

    pub(super) fn collection(&self, name: &str) -> Collection<Document> {
        self.database.collection(name)
    }

    pub(super) fn describe(&self) -> &str {
        &self.description
    }

    /// Creates the collection unless it exists: transactions of servers before 4.4 cannot
    /// create one, so the adapters make theirs before their first transaction.
    pub(super) async fn ensure_collection(&self, name: &str) -> Result<(), Error> {
        match self.database.create_collection(name).await {
            Err(err) if error_code(&err) != Some(NAMESPACE_EXISTS) => Err(err),
            _ => Ok(()),
        }
    }

    /// Runs one store call under the operation timeout; `None` when it ran out.
    pub(super) async fn timed<T>(
        &self,
        call: impl IntoFuture<Output = Result<T, Error>>,
    ) -> Result<T, Timed> {
        match tokio::time::timeout(self.operation_timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Timed::Driver(err)),
            Err(_) => Err(Timed::Out(self.operation_timeout)),
        }
    }

    /// Runs `body` in a transaction and commits or aborts as it decides. A write conflict or
    /// another transient transaction error runs `body` again (from a fresh transaction) after
    /// a short jittered pause, until the operation timeout; an unknown commit result commits
    /// again. `body` must return every driver error it meets (the transaction is aborted then).
    pub(super) async fn transaction<C, R, F>(&self, context: &C, mut body: F) -> Result<R, Timed>
    where
        C: Sync,
        R: Send,
        F: for<'s> FnMut(&'s mut ClientSession, &'s C) -> BoxFuture<'s, Result<Step<R>, Error>>
            + Send,
    {
        let deadline = Instant::now() + self.operation_timeout;
        let run = async {
            let mut session = self.client.start_session().await?;
            let options = TransactionOptions::builder()
                .read_concern(ReadConcern::snapshot())
                .write_concern(WriteConcern::builder().w(Acknowledgment::Majority).build())
                .build();
            let mut conflicts: u32 = 0;
            loop {
                session
                    .start_transaction()
                    .with_options(options.clone())
                    .await?;
                let outcome = match body(&mut session, context).await {
                    Ok(Step::Abort(answer)) => {
                        session.abort_transaction().await?;
                        return Ok(answer);
                    }
                    Ok(Step::Commit(answer)) => commit(&mut session).await.map(|()| answer),
                    Err(err) => {
                        // The server may have aborted it already; either way it is over.
                        let _ = session.abort_transaction().await;
                        Err(err)
                    }
                };
                match outcome {
                    Ok(answer) => return Ok(answer),
                    Err(err) if worth_retrying(&err) && Instant::now() < deadline => {
                        conflicts += 1;
                        tokio::time::sleep(conflict_pause(conflicts)).await;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        self.timed(run).await
    }
}

/// A store call that failed: the driver's error, or the operation timeout ran out.
#[derive(Debug)]
pub(super) enum Timed {
    Driver(Error),
    Out(Duration),
}

impl Timed {
    /// How the failure should be taken.
    pub(super) fn classify(&self) -> Failure {
        match self {
            Timed::Driver(err) => classify(err),
            Timed::Out(_) => Failure::Transient,
        }
    }

    /// The failure as a boxed error, for the ports' `Unavailable`.
    pub(super) fn into_box(self) -> BoxError {
        match self {
            Timed::Driver(err) => Box::new(err),
            Timed::Out(timeout) => format!("no answer from mongodb within {timeout:?}").into(),
        }
    }

    /// The server's error code, when the server refused the call.
    pub(super) fn code(&self) -> Option<i32> {
        match self {
            Timed::Driver(err) => error_code(err),
            Timed::Out(_) => None,
        }
    }
}

impl From<Error> for Timed {
    fn from(err: Error) -> Self {
        Timed::Driver(err)
    }
}

/// Commits, committing again while the result is unknown (a network error on the way back):
/// MongoDB applies a transaction's commit once however often it is asked.
async fn commit(session: &mut ClientSession) -> Result<(), Error> {
    const COMMIT_ATTEMPTS: u32 = 3;
    let mut attempt = 1;
    loop {
        match session.commit_transaction().await {
            Err(err)
                if err.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && attempt < COMMIT_ATTEMPTS =>
            {
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// A transient transaction error from a server that answered (a write conflict, above all) is
/// worth running the transaction again at once; an unreachable server is not (the caller's
/// backoff retries it).
fn worth_retrying(err: &Error) -> bool {
    let unreachable = matches!(
        err.kind.as_ref(),
        ErrorKind::ServerSelection { .. }
            | ErrorKind::Io(_)
            | ErrorKind::ConnectionPoolCleared { .. }
    );
    let conflict = matches!(error_code(err), Some(WRITE_CONFLICT | NO_SUCH_TRANSACTION));
    (err.contains_label(TRANSIENT_TRANSACTION_ERROR) || conflict) && !unreachable
}

/// MongoDB's code for a write conflict between two transactions (labelled transient by MongoDB;
/// not every MongoDB-wire server labels it).
const WRITE_CONFLICT: i32 = 112;
/// MongoDB's code for a transaction the server already aborted (e.g. after a conflict).
const NO_SUCH_TRANSACTION: i32 = 251;

/// A pause between two attempts of a conflicting transaction: up to 2 ms doubling to 64 ms.
fn conflict_pause(conflicts: u32) -> Duration {
    let cap = Duration::from_millis(2 << conflicts.clamp(1, 6).saturating_sub(1));
    Duration::from_micros(200) + random_up_to(cap)
}

/// How a driver error should be taken: documents the adapter cannot read are corruption;
/// everything else (network, timeouts, elections, refusals, conflicts) is transient.
pub(super) fn classify(err: &Error) -> Failure {
    match err.kind.as_ref() {
        ErrorKind::BsonDeserialization(_) | ErrorKind::Bson(_) => Failure::Corrupt(format!(
            "mongodb returned a document this adapter cannot read: {err}"
        )),
        _ => Failure::Transient,
    }
}

/// The server's error code, when the server refused the call.
pub(super) fn error_code(err: &Error) -> Option<i32> {
    match err.kind.as_ref() {
        ErrorKind::Command(command) => Some(command.code),
        ErrorKind::Write(WriteFailure::WriteError(write)) => Some(write.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(concern)) => Some(concern.code),
        ErrorKind::InsertMany(insert) => insert
            .write_errors
            .as_ref()
            .and_then(|errors| errors.first())
            .map(|error| error.code),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_pauses_grow_and_stay_short() {
        for conflicts in 1..100 {
            let pause = conflict_pause(conflicts);
            assert!(pause >= Duration::from_micros(200), "{pause:?}");
            assert!(pause <= Duration::from_millis(65), "{pause:?}");
        }
    }
}
