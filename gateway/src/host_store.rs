//! The host's database, served to the enclave's TLS API. The enclave serves keyward's API
//! itself but holds no database: it asks the gateway for the rows it needs and hands it the
//! rows it writes, one call at a time, over its own connection (vsock in production; the
//! gateway takes it only from the configured enclaves' CIDs). Everything it reads is checked
//! in the enclave as it is on the plain path (rows bound to their identity, policies tagged
//! under the keyring root), so this service gives the host nothing it did not have: it sees
//! which rows are read and written, as it does today.
//!
//! Frames are the link's (length-prefixed CBOR); a call is [`HostCall`], its answer
//! [`HostAnswer`].

use std::{sync::Arc, time::Duration};

use keyward_admission::Db;
use keyward_proto::{FRAME_STALL_LIMIT, FrameError, MAX_FRAME_LEN, decode, encode, read_frame_within, write_frame};
use keyward_store::{
    StoreError,
    remote::{RemoteStore, StoreAnswer, StoreCall, WireError},
};
use keyward_transport::{Address, BoxConnection, Listener, connect};
use serde::{Deserialize, Serialize};

/// How long the enclave waits for a call's answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the enclave waits to reach the host.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the enclave asks.
#[derive(Debug, Serialize, Deserialize)]
pub enum HostCall {
    /// A store method.
    Store(StoreCall),
    /// The deployment's settings the API needs.
    Settings,
}

/// The host's answer.
#[derive(Debug, Serialize, Deserialize)]
pub enum HostAnswer {
    Store(Result<StoreAnswer, WireError>),
    Settings(HostSettings),
}

/// Settings of the deployment that the gateway's configuration holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostSettings {
    /// `keyring.deletion_waiting_days`, in seconds.
    pub key_deletion_waiting_seconds: i64,
}

/// Serves `listener` for as long as the process runs; over vsock, only `cids` may connect.
pub async fn serve(listener: Listener, db: Db, settings: HostSettings, cids: Option<Vec<u32>>) {
    let settings = Arc::new(settings);
    loop {
        let (conn, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("host store: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let (Some(allowed), Some(cid)) = (&cids, peer.vsock_cid())
            && !allowed.contains(&cid)
        {
            tracing::warn!(%peer, "host store: a peer that is not a configured enclave connected; dropped");
            continue;
        }
        let (db, settings) = (db.clone(), settings.clone());
        tokio::spawn(async move {
            match answer_calls(conn, &db, &settings).await {
                Ok(()) => tracing::debug!(%peer, "host store: the enclave closed its connection"),
                Err(e) => tracing::info!(%peer, "host store: connection ended: {e}"),
            }
        });
    }
}

async fn answer_calls(mut conn: BoxConnection, db: &Db, settings: &HostSettings) -> Result<(), FrameError> {
    loop {
        let body = match read_frame_within(&mut conn, MAX_FRAME_LEN, FRAME_STALL_LIMIT).await {
            Ok(body) => body,
            Err(FrameError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let answer = match decode::<HostCall>(&body)? {
            HostCall::Store(call) => HostAnswer::Store(db.apply(call).await.map_err(|e| WireError::from(&e))),
            HostCall::Settings => HostAnswer::Settings(settings.clone()),
        };
        write_frame(&mut conn, &encode(&answer)?).await?;
    }
}

/// Store calls in flight at once from the enclave (each has its own connection, kept for the
/// next call).
pub const MAX_CALLS: usize = 32;

/// Why an exchange failed: the connection was closed before any answer came, or anything else.
#[derive(Debug)]
enum Exchange {
    Closed(String),
    Failed(String),
}

impl std::fmt::Display for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exchange::Closed(e) | Exchange::Failed(e) => write!(f, "the host's store: {e}"),
        }
    }
}

/// One call on `conn`, within [`CALL_TIMEOUT`].
async fn exchange(conn: &mut BoxConnection, frame: &[u8]) -> Result<HostAnswer, Exchange> {
    let work = async {
        write_frame(conn, frame).await.map_err(|e| Exchange::Closed(e.to_string()))?;
        let body = match read_frame_within(conn, MAX_FRAME_LEN, FRAME_STALL_LIMIT).await {
            Ok(body) => body,
            Err(FrameError::Closed) => return Err(Exchange::Closed("closed before answering".to_owned())),
            Err(e) => return Err(Exchange::Failed(e.to_string())),
        };
        decode::<HostAnswer>(&body).map_err(|e| Exchange::Failed(e.to_string()))
    };
    tokio::time::timeout(CALL_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| Err(Exchange::Failed(format!("no answer within {CALL_TIMEOUT:?}"))))
}

/// The enclave's end: a connection per call in flight, kept for later calls, another made
/// when none is free. A call whose connection broke is not repeated: the caller sees
/// `database_unavailable`, as when the database itself fails.
pub struct HostClient {
    address: Address,
    idle: std::sync::Mutex<Vec<BoxConnection>>,
}

impl std::fmt::Debug for HostClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostClient").field("address", &self.address).finish_non_exhaustive()
    }
}

impl HostClient {
    pub fn new(address: Address) -> Arc<HostClient> {
        Arc::new(HostClient { address, idle: std::sync::Mutex::new(Vec::new()) })
    }

    pub async fn call(&self, call: &HostCall) -> Result<HostAnswer, String> {
        let frame = encode(call).map_err(|e| e.to_string())?;
        let kept = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let (conn, answer) = match kept {
            // A kept connection the gateway closed meanwhile (a restart) fails before any
            // answer: the call goes once more, on a fresh one. Rows are written INSERT-only or
            // by compare-and-swap, so a call that did reach the store cannot apply twice.
            Some(mut conn) => match exchange(&mut conn, &frame).await {
                Err(Exchange::Closed(_)) => {
                    let mut fresh = self.connect().await?;
                    let answer = exchange(&mut fresh, &frame).await;
                    (fresh, answer)
                }
                answer => (conn, answer),
            },
            None => {
                let mut fresh = self.connect().await?;
                let answer = exchange(&mut fresh, &frame).await;
                (fresh, answer)
            }
        };
        // A connection that failed or timed out is dropped, so no late answer is read as the
        // next call's.
        let answer = answer.map_err(|e| e.to_string())?;
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_CALLS {
            idle.push(conn);
        }
        Ok(answer)
    }

    async fn connect(&self) -> Result<BoxConnection, String> {
        tokio::time::timeout(CONNECT_TIMEOUT, connect(&self.address))
            .await
            .map_err(|_| format!("the host's store at {} did not answer within {CONNECT_TIMEOUT:?}", self.address))?
            .map_err(|e| format!("cannot reach the host's store at {}: {e}", self.address))
    }

    /// The deployment's settings.
    pub async fn settings(&self) -> Result<HostSettings, String> {
        match self.call(&HostCall::Settings).await? {
            HostAnswer::Settings(settings) => Ok(settings),
            HostAnswer::Store(_) => Err("the host answered Settings with a store answer".to_owned()),
        }
    }

    /// The store, as the API's [`Db`] uses it. Its calls run on the blocking pool (the
    /// [`Db`] puts them there) and wait for the host on `runtime`.
    pub fn db(self: &Arc<Self>, runtime: tokio::runtime::Handle) -> Db {
        let client = self.clone();
        Db::shared(
            move || {
                let (client, runtime) = (client.clone(), runtime.clone());
                Box::new(RemoteStore::new(move |call: StoreCall| {
                    match runtime.block_on(client.call(&HostCall::Store(call))) {
                        Ok(HostAnswer::Store(result)) => result.map_err(StoreError::from),
                        Ok(HostAnswer::Settings(_)) => Err(StoreError::Remote {
                            code: "database_unavailable",
                            message: "the host answered a store call with its settings".to_owned(),
                        }),
                        Err(message) => {
                            tracing::warn!("{message}");
                            Err(StoreError::Remote {
                                code: "database_unavailable",
                                message: "the host's store could not be reached".to_owned(),
                            })
                        }
                    }
                }))
            },
            MAX_CALLS,
        )
    }
}
