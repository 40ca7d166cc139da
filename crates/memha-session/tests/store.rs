//! The stores on their own, against real memcached nodes: ids and
//! collisions, expiry (relative and absolute), garbage, sizes, errors.
#![cfg(any(feature = "tower-sessions", feature = "actix-session"))]

use std::net::SocketAddr;
use std::time::Duration;

use memha_client::Client;
use memha_tests::MemcachedCluster;

/// A client of 2 fresh local nodes (kept alive by the returned cluster).
async fn setup() -> (MemcachedCluster, Client) {
    let cluster = MemcachedCluster::start(2).expect("memcached");
    let client = Client::builder()
        .nodes(cluster.addrs())
        .timeout(Duration::from_millis(500))
        .build()
        .await
        .expect("client");
    (cluster, client)
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

/// `expires_in` of `key`, within `slack` of `expected`.
async fn assert_expires_in(client: &Client, key: &str, expected: Duration, slack: Duration) {
    let item = client.get(key).await.expect("get").expect("stored");
    let left = item.expires_in.expect("a lifetime");
    assert!(
        left <= expected + slack && left + slack >= expected,
        "{key} expires in {left:?}, expected about {expected:?}"
    );
}

#[cfg(feature = "tower-sessions")]
mod tower {
    use std::collections::HashMap;
    use std::time::Duration;

    use memha_client::{Client, Ttl};
    use memha_session::{Error, TowerSessionStore};
    use tower_sessions::cookie::time::{self, OffsetDateTime};
    use tower_sessions::session::{Id, Record};
    use tower_sessions::session_store::{self, SessionStore};

    use super::{assert_expires_in, dead_addr, setup};

    fn record(expires_in: time::Duration) -> Record {
        let mut data = HashMap::new();
        data.insert("user".to_owned(), serde_json::json!("alice"));
        data.insert("visits".to_owned(), serde_json::json!(3));
        Record {
            id: Id::default(),
            data,
            expiry_date: OffsetDateTime::now_utc() + expires_in,
        }
    }

    #[tokio::test]
    async fn create_load_save_delete() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());
        let mut rec = record(time::Duration::hours(1));
        store.create(&mut rec).await.expect("create");
        assert!(store.key(&rec.id).starts_with("session:"));
        assert_eq!(store.load(&rec.id).await.expect("load"), Some(rec.clone()));

        rec.data.insert("visits".into(), serde_json::json!(4));
        store.save(&rec).await.expect("save");
        assert_eq!(store.load(&rec.id).await.expect("load"), Some(rec.clone()));

        store.delete(&rec.id).await.expect("delete");
        assert_eq!(store.load(&rec.id).await.expect("load"), None);
        store
            .delete(&rec.id)
            .await
            .expect("deleting again succeeds");
        assert_eq!(store.load(&Id::default()).await.expect("load"), None);

        let custom = TowerSessionStore::new(client.clone()).with_prefix("app1:s:");
        let mut rec = record(time::Duration::hours(1));
        custom.create(&mut rec).await.expect("create");
        assert!(client
            .get(format!("app1:s:{}", rec.id))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn create_draws_a_new_id_on_collision_and_gives_up_after_the_bound() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());
        let mut rec = record(time::Duration::hours(1));
        let taken = rec.id;
        client
            .set(store.key(&taken), "someone else's")
            .await
            .unwrap();
        store.create(&mut rec).await.expect("create");
        assert_ne!(rec.id, taken, "created over a taken id");
        assert_eq!(
            client.get(store.key(&taken)).await.unwrap().unwrap().value,
            "someone else's"
        );
        assert_eq!(store.load(&rec.id).await.unwrap(), Some(rec.clone()));

        let once = TowerSessionStore::new(client.clone()).with_create_attempts(1);
        let mut rec = record(time::Duration::hours(1));
        client.set(once.key(&rec.id), "taken").await.unwrap();
        let err = once.create_record(&mut rec).await.unwrap_err();
        assert!(matches!(err, Error::IdCollision { attempts: 1 }), "{err:?}");
        let err = once.create(&mut rec).await.unwrap_err();
        assert!(
            matches!(&err, session_store::Error::Backend(m) if m.contains("no free session id")),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn expiry_is_relative_up_to_thirty_days_and_absolute_beyond() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());
        let slack = Duration::from_secs(3);

        let mut hour = record(time::Duration::hours(1));
        store.create(&mut hour).await.unwrap();
        assert_expires_in(
            &client,
            &store.key(&hour.id),
            Duration::from_secs(3600),
            slack,
        )
        .await;

        // 60 days: sent as a Unix time (as seconds, memcached would read 1970).
        let mut long = record(time::Duration::days(60));
        store.create(&mut long).await.unwrap();
        assert_expires_in(
            &client,
            &store.key(&long.id),
            Duration::from_secs(60 * 86_400),
            slack,
        )
        .await;
        assert_eq!(store.load(&long.id).await.unwrap(), Some(long.clone()));
        long.expiry_date = OffsetDateTime::now_utc() + time::Duration::days(31);
        store.save(&long).await.unwrap();
        assert_expires_in(
            &client,
            &store.key(&long.id),
            Duration::from_secs(31 * 86_400),
            slack,
        )
        .await;
    }

    #[tokio::test]
    async fn an_expired_session_is_not_stored_and_loads_as_none() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());

        let mut past = record(-time::Duration::seconds(5));
        store.create(&mut past).await.expect("create");
        assert!(client.get(store.key(&past.id)).await.unwrap().is_none());

        // Saving a stored session with an expiry in the past deletes it.
        let mut rec = record(time::Duration::hours(1));
        store.create(&mut rec).await.unwrap();
        rec.expiry_date = OffsetDateTime::now_utc() - time::Duration::seconds(1);
        store.save(&rec).await.unwrap();
        assert!(client.get(store.key(&rec.id)).await.unwrap().is_none());

        // A record past its expiry that memcached still holds loads as none.
        let stale = record(-time::Duration::seconds(1));
        let bytes = memha_session::encode_record(&stale).unwrap();
        client
            .set(store.key(&stale.id), bytes)
            .ttl(Ttl::Never)
            .await
            .unwrap();
        assert_eq!(store.load(&stale.id).await.unwrap(), None);
    }

    #[tokio::test]
    async fn garbage_is_a_decode_error_never_a_panic() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());
        let id = Id::default();
        for garbage in [
            &b"not msgpack at all"[..],
            b"",
            b"\xdd\xff\xff\xff\xff", // an array claiming 4 billion items
            b"\xc1",
            b"{\"json\": true}",
        ] {
            client.set(store.key(&id), garbage.to_vec()).await.unwrap();
            let err = store.load(&id).await.unwrap_err();
            assert!(
                matches!(err, session_store::Error::Decode(_)),
                "{garbage:?}: {err:?}"
            );
        }
        // Pseudo-random bytes: any answer but a panic.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            client.set(store.key(&id), bytes).await.unwrap();
            let _ = store.load(&id).await;
        }
        // A valid record of another session under this id.
        let other = super::tower::record(time::Duration::hours(1));
        client
            .set(
                store.key(&id),
                memha_session::encode_record(&other).unwrap(),
            )
            .await
            .unwrap();
        let err = store.load_record(&id).await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
    }

    #[tokio::test]
    async fn too_large_and_backend_errors_are_clear() {
        let (_cluster, client) = setup().await;
        let store = TowerSessionStore::new(client.clone());
        let mut big = record(time::Duration::hours(1));
        let max = client.limits().max_value_len;
        big.data
            .insert("blob".into(), serde_json::json!("x".repeat(max)));
        let err = store.create_record(&mut big).await.unwrap_err();
        assert!(
            matches!(err, Error::TooLarge { max: m, .. } if m == max),
            "{err:?}"
        );
        let err = store.save(&big).await.unwrap_err();
        assert!(
            matches!(&err, session_store::Error::Encode(m) if m.contains("value limit")),
            "{err:?}"
        );

        let dead = TowerSessionStore::new(Client::new(dead_addr()));
        let err = dead.load_record(&Id::default()).await.unwrap_err();
        assert!(err.memha().is_some(), "{err:?}");
        let err = dead.load(&Id::default()).await.unwrap_err();
        assert!(
            matches!(&err, session_store::Error::Backend(m) if m.contains("could not connect")),
            "{err}"
        );
    }
}

#[cfg(feature = "actix-session")]
mod actix {
    use std::collections::HashMap;
    use std::error::Error as _;
    use std::time::Duration;

    use actix_session::storage::{LoadError, SaveError, SessionKey, SessionStore};
    use actix_web::cookie::time;
    use memha_client::Client;
    use memha_session::ActixSessionStore;

    use super::{assert_expires_in, dead_addr, setup};

    fn state(visits: u32) -> HashMap<String, String> {
        HashMap::from([
            ("user".to_owned(), "\"alice\"".to_owned()),
            ("visits".to_owned(), visits.to_string()),
        ])
    }

    fn key(text: &str) -> SessionKey {
        SessionKey::try_from(text.to_owned()).unwrap()
    }

    #[tokio::test]
    async fn save_load_update_and_delete() {
        let (_cluster, client) = setup().await;
        let store = ActixSessionStore::new(client.clone());
        let hour = time::Duration::hours(1);
        let k = store.save(state(1), &hour).await.expect("save");
        assert_eq!(k.as_ref().len(), 64);
        assert!(k.as_ref().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(store.load(&k).await.unwrap(), Some(state(1)));

        let same = store
            .update(key(k.as_ref()), state(2), &hour)
            .await
            .unwrap();
        assert_eq!(same, k, "an update of a live session keeps its key");
        assert_eq!(store.load(&k).await.unwrap(), Some(state(2)));

        store.delete(&k).await.unwrap();
        store.delete(&k).await.expect("deleting again succeeds");
        assert_eq!(store.load(&k).await.unwrap(), None);

        // Updating a session gone meanwhile saves it under a new key.
        let fresh = store
            .update(key(k.as_ref()), state(3), &hour)
            .await
            .unwrap();
        assert_ne!(fresh, k);
        assert_eq!(store.load(&fresh).await.unwrap(), Some(state(3)));
        assert_eq!(store.load(&k).await.unwrap(), None, "the old key came back");

        // Keys that cannot be memcached keys are sessions that do not exist.
        assert_eq!(store.load(&key("has space")).await.unwrap(), None);
        let moved = store
            .update(key(&"x".repeat(300)), state(4), &hour)
            .await
            .unwrap();
        assert_eq!(store.load(&moved).await.unwrap(), Some(state(4)));

        let custom = ActixSessionStore::new(client.clone()).with_prefix("a:");
        let k = custom.save(state(1), &hour).await.unwrap();
        assert!(client
            .get(format!("a:{}", k.as_ref()))
            .await
            .unwrap()
            .is_some());
    }

    #[tokio::test]
    async fn ttls() {
        let (_cluster, client) = setup().await;
        let store = ActixSessionStore::new(client.clone());
        let slack = Duration::from_secs(3);
        let k = store
            .save(state(1), &time::Duration::hours(1))
            .await
            .unwrap();
        assert_expires_in(&client, &store.key(&k), Duration::from_secs(3600), slack).await;

        store
            .update_ttl(&k, &time::Duration::days(45))
            .await
            .unwrap();
        assert_expires_in(
            &client,
            &store.key(&k),
            Duration::from_secs(45 * 86_400),
            slack,
        )
        .await;
        store
            .update(key(k.as_ref()), state(2), &time::Duration::days(2))
            .await
            .unwrap();
        assert_expires_in(
            &client,
            &store.key(&k),
            Duration::from_secs(2 * 86_400),
            slack,
        )
        .await;

        // Non-positive TTLs: nothing stored, a stored session deleted.
        store.update_ttl(&k, &time::Duration::ZERO).await.unwrap();
        assert_eq!(store.load(&k).await.unwrap(), None);
        let gone = store
            .save(state(1), &time::Duration::seconds(-5))
            .await
            .unwrap();
        assert_eq!(store.load(&gone).await.unwrap(), None);
        store
            .update_ttl(&gone, &time::Duration::hours(1))
            .await
            .expect("touching a missing session");
    }

    #[tokio::test]
    async fn errors_keep_their_kind_and_the_memha_source() {
        let (_cluster, client) = setup().await;
        let store = ActixSessionStore::new(client.clone());
        let k = store
            .save(state(1), &time::Duration::hours(1))
            .await
            .unwrap();
        client.set(store.key(&k), "garbage").await.unwrap();
        let err = store.load(&k).await.unwrap_err();
        assert!(matches!(err, LoadError::Deserialization(_)), "{err:?}");

        let mut big = state(1);
        big.insert("blob".into(), "x".repeat(client.limits().max_value_len));
        let err = store
            .save(big, &time::Duration::hours(1))
            .await
            .unwrap_err();
        assert!(matches!(err, SaveError::Serialization(_)), "{err:?}");

        let dead = ActixSessionStore::new(Client::new(dead_addr()));
        let err = dead.load(&k).await.unwrap_err();
        assert!(matches!(err, LoadError::Other(_)), "{err:?}");
        let source = err.source().expect("a source");
        assert!(
            source.downcast_ref::<memha_client::Error>().is_some(),
            "the source is not the memha error: {source:?}"
        );
        let err = dead.delete(&k).await.unwrap_err();
        assert!(
            err.downcast_ref::<memha_client::Error>().is_some(),
            "{err:?}"
        );
    }
}
