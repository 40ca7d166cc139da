//! A small session store over a replicated memcached cluster: create, read,
//! update, refresh and delete sessions, each with a TTL.
//!
//! ```sh
//! # Your own nodes:
//! MEMHA_NODES=10.0.0.1:11211,10.0.0.2:11211 cargo run -p memha-client --example session_store
//! cargo run -p memha-client --example session_store -- 10.0.0.1:11211 10.0.0.2:11211
//! # Without addresses, it starts 3 local memcached nodes (memcached must be installed):
//! cargo run -p memha-client --example session_store
//! ```
//!
//! Every session is written to every healthy node (acknowledged once a
//! majority stored it) and survives the loss of all but one of the nodes
//! that stored it; reads repair the nodes that missed it, copying its
//! remaining TTL. Session ids come from `add`, which the key's primary
//! node decides, so two creations never share an id; updates are
//! compare-and-swap, so concurrent updates of one session never lose one.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use memha_client::{Client, DeleteOutcome, Error, StoreOutcome, Ttl};

/// A session: who it belongs to, and what the application keeps in it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Session {
    user: u64,
    data: String,
}

impl Session {
    /// `user=<id>;<data>`: plain bytes, readable by any memcached client.
    fn encode(&self) -> String {
        format!("user={};{}", self.user, self.data)
    }

    fn decode(bytes: &[u8]) -> Option<Session> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (user, data) = text.strip_prefix("user=")?.split_once(';')?;
        Some(Session {
            user: user.parse().ok()?,
            data: data.to_owned(),
        })
    }
}

/// Sessions in memcached under `session:<id>`.
#[derive(Clone)]
struct SessionStore {
    client: Client,
    /// How long a session lives without being refreshed.
    ttl: Ttl,
}

impl SessionStore {
    fn key(id: &str) -> String {
        format!("session:{id}")
    }

    /// Creates a session and returns its id.
    async fn create(&self, user: u64, data: &str) -> Result<String, Error> {
        let session = Session {
            user,
            data: data.to_owned(),
        };
        loop {
            let id = new_id();
            // `add` stores only if the key is free anywhere in the cluster.
            let outcome = self
                .client
                .add(Self::key(&id), session.encode())
                .ttl(self.ttl)
                .await?;
            if outcome == StoreOutcome::Stored {
                return Ok(id);
            }
        }
    }

    /// The session, if it exists and has not expired.
    async fn read(&self, id: &str) -> Result<Option<Session>, Error> {
        let item = self.client.get(Self::key(id)).await?;
        Ok(item.and_then(|item| Session::decode(&item.value)))
    }

    /// Reads the session and restarts its lifetime, in one round trip.
    async fn refresh(&self, id: &str) -> Result<Option<Session>, Error> {
        let item = self.client.get_and_touch(Self::key(id), self.ttl).await?;
        Ok(item.and_then(|item| Session::decode(&item.value)))
    }

    /// Changes the session's data with `update`, retrying when another
    /// writer changed it meanwhile. `false` if the session is gone.
    async fn update(&self, id: &str, update: impl Fn(&mut Session)) -> Result<bool, Error> {
        loop {
            let Some(item) = self.client.gets(Self::key(id)).await? else {
                return Ok(false);
            };
            let (Some(mut session), Some(cas)) = (Session::decode(&item.value), item.cas) else {
                return Ok(false);
            };
            update(&mut session);
            let outcome = self
                .client
                .cas(Self::key(id), session.encode(), cas)
                .ttl(self.ttl)
                .await?;
            match outcome {
                StoreOutcome::Stored => return Ok(true),
                StoreOutcome::NotFound => return Ok(false),
                // Changed since read: read again.
                _ => continue,
            }
        }
    }

    /// Deletes the session (logging out). `false` if there was none.
    async fn delete(&self, id: &str) -> Result<bool, Error> {
        Ok(self.client.delete(Self::key(id)).await? == DeleteOutcome::Deleted)
    }
}

/// A random 128-bit session id, in hex.
fn new_id() -> String {
    let half = || {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(0);
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(), half())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Without addresses, start local nodes; they stop with the program.
    let (nodes, local) = memha_tests::example_nodes(3)?;

    let client = Client::builder()
        .nodes(nodes)
        .timeout(Duration::from_millis(500))
        .build()
        .await?;
    let store = SessionStore {
        client: client.clone(),
        ttl: Ttl::seconds(1800),
    };

    let id = store.create(42, "cart=0").await?;
    println!("created session {id}: {:?}", store.read(&id).await?);

    store
        .update(&id, |session| session.data = "cart=3".into())
        .await?;
    let item = client
        .get(SessionStore::key(&id))
        .await?
        .expect("just updated");
    println!(
        "updated: {:?}, expires in {:?}",
        Session::decode(&item.value),
        item.expires_in
    );

    println!("refreshed: {:?}", store.refresh(&id).await?);

    // A short-lived session expires on every node.
    let brief = SessionStore {
        client: client.clone(),
        ttl: Ttl::seconds(1),
    };
    let short = brief.create(7, "one-time").await?;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    println!("a 1 s session after 2 s: {:?}", store.read(&short).await?);

    println!("deleted: {}", store.delete(&id).await?);
    println!("after delete: {:?}", store.read(&id).await?);

    // With local nodes: a session outlives two of the three.
    if let Some(local) = &local {
        let id = store.create(9, "survivor").await?;
        local.node(0).kill()?;
        local.node(1).kill()?;
        println!("two of three nodes killed: {:?}", store.read(&id).await?);
    }

    if let Some(cluster) = client.cluster() {
        println!("cluster: {:?}", cluster.metrics());
    }
    Ok(())
}
