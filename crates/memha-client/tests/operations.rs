//! The semantics of every operation against a real memcached.

mod common;

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use memha_client::{DeleteOutcome, ErrorKind, StoreOutcome, TouchOutcome, Ttl};

use common::{client, one_node};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test]
async fn get_set_and_miss() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(client.get("absent").await.unwrap(), None);
    assert_eq!(client.set("k", "v1").await.unwrap(), StoreOutcome::Stored);
    let item = client.get("k").await.unwrap().expect("hit");
    assert_eq!(item.value, "v1");
    assert_eq!(item.flags, 0);
    assert_eq!(item.expires_in, None, "no TTL means never expires");
    assert_eq!(item.ttl(), Ttl::Never);
    assert_eq!(item.cas, None, "get does not ask for the CAS token");

    // Overwrite.
    client.set("k", "v2").await.unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap().value, "v2");
}

#[tokio::test]
async fn flags_and_ttl_read_back() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    client
        .set("k", "v")
        .flags(0xdead_beef)
        .ttl(Ttl::seconds(100))
        .await
        .unwrap();
    let item = client.get("k").await.unwrap().unwrap();
    assert_eq!(item.flags, 0xdead_beef);
    let left = item.expires_in.expect("has a TTL");
    assert!(
        left <= Duration::from_secs(100) && left >= Duration::from_secs(98),
        "{left:?}"
    );

    // A TTL beyond 30 days is sent as a Unix time and still means "from now".
    let sixty_days = Duration::from_secs(60 * 86_400);
    client.set("far", "v").ttl(sixty_days).await.unwrap();
    let left = client
        .get("far")
        .await
        .unwrap()
        .unwrap()
        .expires_in
        .unwrap();
    // memcached's clock ticks once a second, up to a second behind ours,
    // so an absolute time can read as a second further away.
    assert!(
        left <= sixty_days + SEC && left >= sixty_days - Duration::from_secs(5),
        "{left:?}"
    );

    // A point in time two hours away.
    let at = SystemTime::now() + Duration::from_secs(7200);
    client.set("at", "v").ttl(at).await.unwrap();
    let left = client.get("at").await.unwrap().unwrap().expires_in.unwrap();
    assert!(
        left <= Duration::from_secs(7200) + SEC && left >= Duration::from_secs(7195),
        "{left:?}"
    );
}

#[tokio::test]
async fn expired_ttls_expire_at_once() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    client
        .set("past", "v")
        .ttl(SystemTime::UNIX_EPOCH)
        .await
        .unwrap();
    assert_eq!(client.get("past").await.unwrap(), None);
    client.set("zero", "v").ttl(Ttl::seconds(0)).await.unwrap();
    assert_eq!(client.get("zero").await.unwrap(), None);
}

#[tokio::test]
async fn values_are_byte_exact() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    let every_byte: Bytes = (0..=255u8).cycle().take(4096).collect::<Vec<_>>().into();
    client.set("bin", every_byte.clone()).await.unwrap();
    assert_eq!(client.get("bin").await.unwrap().unwrap().value, every_byte);

    client.set("empty", Bytes::new()).await.unwrap();
    assert_eq!(client.get("empty").await.unwrap().unwrap().value, "");

    // Larger than a socket buffer: partial writes and reads.
    let large: Bytes = (0..512 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    client.set("large", large.clone()).await.unwrap();
    assert_eq!(client.get("large").await.unwrap().unwrap().value, large);
}

#[tokio::test]
async fn gets_and_cas() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(
        client.cas("k", "v", 1).await.unwrap(),
        StoreOutcome::NotFound
    );
    client.set("k", "v1").flags(5).await.unwrap();
    let item = client.gets("k").await.unwrap().unwrap();
    let token = item.cas.expect("gets returns a CAS token");
    assert_eq!((item.value.as_ref(), item.flags), (&b"v1"[..], 5));

    // Someone else writes: the token is stale.
    client.set("k", "v2").await.unwrap();
    assert_eq!(
        client.cas("k", "mine", token).await.unwrap(),
        StoreOutcome::Exists
    );
    assert_eq!(client.get("k").await.unwrap().unwrap().value, "v2");

    let fresh = client.gets("k").await.unwrap().unwrap().cas.unwrap();
    assert_ne!(fresh, token);
    assert_eq!(
        client
            .cas("k", "mine", fresh)
            .flags(9)
            .ttl(Ttl::seconds(50))
            .await
            .unwrap(),
        StoreOutcome::Stored
    );
    let item = client.get("k").await.unwrap().unwrap();
    assert_eq!((item.value.as_ref(), item.flags), (&b"mine"[..], 9));
    assert!(item.expires_in.unwrap() <= Duration::from_secs(50));
}

#[tokio::test]
async fn add_and_replace() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(
        client.replace("k", "r").await.unwrap(),
        StoreOutcome::NotStored
    );
    assert_eq!(client.get("k").await.unwrap(), None);
    assert_eq!(
        client.add("k", "a").flags(1).await.unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(client.add("k", "b").await.unwrap(), StoreOutcome::NotStored);
    assert_eq!(client.get("k").await.unwrap().unwrap().value, "a");
    assert_eq!(
        client.replace("k", "r").flags(2).await.unwrap(),
        StoreOutcome::Stored
    );
    let item = client.get("k").await.unwrap().unwrap();
    assert_eq!((item.value.as_ref(), item.flags), (&b"r"[..], 2));
}

#[tokio::test]
async fn append_and_prepend() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(
        client.append("k", "x").await.unwrap(),
        StoreOutcome::NotStored
    );
    assert_eq!(
        client.prepend("k", "x").await.unwrap(),
        StoreOutcome::NotStored
    );
    client
        .set("k", "middle")
        .flags(4)
        .ttl(Ttl::seconds(100))
        .await
        .unwrap();
    // Flags and TTL given to append/prepend do not change the item's.
    assert_eq!(
        client.append("k", ">").flags(99).await.unwrap(),
        StoreOutcome::Stored
    );
    assert_eq!(
        client.prepend("k", "<").ttl(Ttl::Never).await.unwrap(),
        StoreOutcome::Stored
    );
    let item = client.get("k").await.unwrap().unwrap();
    assert_eq!(item.value, "<middle>");
    assert_eq!(item.flags, 4);
    assert!(item.expires_in.is_some());
}

#[tokio::test]
async fn delete() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(client.delete("k").await.unwrap(), DeleteOutcome::NotFound);
    client.set("k", "v").await.unwrap();
    assert_eq!(client.delete("k").await.unwrap(), DeleteOutcome::Deleted);
    assert_eq!(client.get("k").await.unwrap(), None);
    assert_eq!(client.delete("k").await.unwrap(), DeleteOutcome::NotFound);
}

#[tokio::test]
async fn touch_and_get_and_touch() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(
        client.touch("k", Ttl::seconds(10)).await.unwrap(),
        TouchOutcome::NotFound
    );
    assert_eq!(
        client.get_and_touch("k", Ttl::seconds(10)).await.unwrap(),
        None
    );
    client.set("k", "v").flags(3).await.unwrap();
    assert_eq!(
        client.touch("k", Ttl::seconds(500)).await.unwrap(),
        TouchOutcome::Touched
    );
    let left = client.get("k").await.unwrap().unwrap().expires_in.unwrap();
    assert!(
        left <= Duration::from_secs(500) && left >= Duration::from_secs(498),
        "{left:?}"
    );

    let item = client
        .get_and_touch("k", Ttl::seconds(1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((item.value.as_ref(), item.flags), (&b"v"[..], 3));
    let left = client.get("k").await.unwrap().unwrap().expires_in.unwrap();
    assert!(
        left <= Duration::from_secs(1000) && left >= Duration::from_secs(998),
        "{left:?}"
    );

    // Touching to "never" removes the TTL.
    client.touch("k", Ttl::Never).await.unwrap();
    assert_eq!(client.get("k").await.unwrap().unwrap().expires_in, None);
}

#[tokio::test]
async fn counters() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    assert_eq!(client.increment("n", 1).await.unwrap(), None);
    assert_eq!(client.decrement("n", 1).await.unwrap(), None);
    assert_eq!(client.get("n").await.unwrap(), None, "nothing created");

    assert_eq!(
        client.increment("n", 5).initial(10).await.unwrap(),
        Some(10),
        "a created counter starts at the initial value"
    );
    assert_eq!(client.increment("n", 5).initial(0).await.unwrap(), Some(15));
    assert_eq!(client.decrement("n", 3).await.unwrap(), Some(12));
    assert_eq!(
        client.decrement("n", 100).await.unwrap(),
        Some(0),
        "stops at 0"
    );
    // memcached keeps the length of a decremented value, padding with spaces.
    let value = client.get("n").await.unwrap().unwrap().value;
    assert_eq!(value.trim_ascii_end(), b"0");

    // Wraps at 2^64.
    client.set("big", u64::MAX.to_string()).await.unwrap();
    assert_eq!(client.increment("big", 2).await.unwrap(), Some(1));

    // A created counter gets the TTL asked for.
    client
        .decrement("ttl", 1)
        .initial(7)
        .ttl(Ttl::seconds(300))
        .await
        .unwrap();
    let item = client.get("ttl").await.unwrap().unwrap();
    assert_eq!(item.value, "7");
    assert!(item.expires_in.unwrap() <= Duration::from_secs(300));

    // Not a number: the server's error, typed.
    client.set("text", "abc").await.unwrap();
    let err = client.increment("text", 1).await.unwrap_err();
    assert!(
        err.kind() == ErrorKind::Server
            && err
                .server_message()
                .is_some_and(|m| m.starts_with("CLIENT_ERROR")),
        "{err:?}"
    );
    // The connection is still in step.
    assert_eq!(client.get("text").await.unwrap().unwrap().value, "abc");
}

#[tokio::test]
async fn get_many_in_order() {
    let cluster = one_node();
    let (client, node) = client(cluster.node(0).addr());

    for i in (0..500).step_by(2) {
        client
            .set(format!("m{i}"), format!("value {i}"))
            .flags(i)
            .await
            .unwrap();
    }
    let before = node.connection_metrics().unwrap();
    let keys: Vec<String> = (0..500).map(|i| format!("m{i}")).collect();
    let items = client.get_many(&keys).await.unwrap();
    assert_eq!(items.len(), 500);
    for (i, item) in items.iter().enumerate() {
        if i % 2 == 0 {
            let item = item.as_ref().expect("even keys were stored");
            assert_eq!(item.value, format!("value {i}"));
            assert_eq!(item.flags, i as u32);
        } else {
            assert_eq!(item, &None, "odd keys were not stored");
        }
    }
    let after = node.connection_metrics().unwrap();
    assert_eq!(after.requests - before.requests, 500);
    assert!(
        after.writes - before.writes < 100,
        "500 pipelined gets should share writes: {before:?} -> {after:?}"
    );

    assert_eq!(client.get_many(Vec::<String>::new()).await.unwrap(), vec![]);
    let err = client.get_many(["ok", "not ok"]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidKey);
}

#[tokio::test]
async fn flush_all_version_and_stats() {
    let cluster = one_node();
    let (client, _) = client(cluster.node(0).addr());

    client.set("a", "1").await.unwrap();
    client.set("b", "2").await.unwrap();
    client.flush_all().await.unwrap();
    assert_eq!(client.get("a").await.unwrap(), None);
    assert_eq!(client.get("b").await.unwrap(), None);

    let version = client.version().await.unwrap();
    assert!(version.starts_with("1."), "{version}");

    let stats = client.stats().await.unwrap();
    let pid = cluster.node(0).pid().unwrap().to_string();
    assert_eq!(stats.get("pid"), Some(&pid));
    assert!(stats.contains_key("uptime"));
    assert!(stats.contains_key("curr_connections"));
}
