//! One classification of a command (`key`, `name`, `is_read`, `is_quiet`),
//! which tracing, retries and the connection all use.

use bytes::Bytes;
use memha_proto::{
    Arithmetic, Command, Key, MetaDelete, MetaGet, MetaSet, Retrieval, SetMode, StatsGroup, Storage,
};

fn key() -> Key {
    Key::new("k").unwrap()
}

#[test]
fn operations_are_named_after_the_client_methods() {
    let mut get = MetaGet::full(key());
    get.cas = false;
    assert_eq!(Command::MetaGet(get.clone()).name(), "get");
    get.cas = true;
    assert_eq!(Command::MetaGet(get.clone()).name(), "gets");
    get.touch = Some(5);
    assert_eq!(Command::MetaGet(get.clone()).name(), "get_and_touch");
    get.value = false;
    assert_eq!(Command::MetaGet(get).name(), "touch");
    let mut set = MetaSet::new(key(), "v");
    set.mode = SetMode::Add;
    assert_eq!(Command::MetaSet(set.clone()).name(), "add");
    set.compare_cas = Some(1);
    assert_eq!(Command::MetaSet(set).name(), "cas");
    assert_eq!(Command::Version.name(), "version");
}

/// The classic protocol's commands classify like their meta equivalents.
#[test]
fn both_protocols_classify_alike() {
    let classic_set = Command::Store {
        kind: Storage::Add,
        key: key(),
        flags: 0,
        exptime: 0,
        value: Bytes::from_static(b"v"),
        noreply: false,
    };
    let mut meta_set = MetaSet::new(key(), "v");
    meta_set.mode = SetMode::Add;
    let table: Vec<(Command, Command)> = vec![
        (
            Command::Retrieve {
                kind: Retrieval::Gets,
                keys: vec![key(), Key::new("other").unwrap()],
            },
            Command::MetaGet({
                let mut get = MetaGet::full(key());
                get.cas = true;
                get
            }),
        ),
        (classic_set, Command::MetaSet(meta_set)),
        (
            Command::Delete {
                key: key(),
                noreply: false,
            },
            Command::MetaDelete(MetaDelete::new(key())),
        ),
    ];
    for (classic, meta) in table {
        assert_eq!(classic.name(), meta.name(), "{classic:?}");
        assert_eq!(classic.key(), meta.key(), "{classic:?}");
        assert_eq!(classic.is_read(), meta.is_read(), "{classic:?}");
        assert!(!classic.is_quiet() && !meta.is_quiet(), "{classic:?}");
    }
}

#[test]
fn only_retrievals_and_queries_are_reads() {
    let reads = [
        Command::MetaGet(MetaGet::new(key())),
        Command::MetaNoop,
        Command::Version,
        Command::Stats(StatsGroup::General),
        Command::ConfigGetCluster,
    ];
    for command in &reads {
        assert!(command.is_read(), "{command:?}");
    }
    let writes = [
        Command::MetaSet(MetaSet::new(key(), "v")),
        Command::MetaDelete(MetaDelete::new(key())),
        Command::Touch {
            key: key(),
            exptime: 1,
            noreply: false,
        },
        Command::Arithmetic {
            kind: Arithmetic::Incr,
            key: key(),
            delta: 1,
            noreply: false,
        },
        Command::FlushAll {
            delay: None,
            noreply: false,
        },
    ];
    for command in &writes {
        assert!(!command.is_read(), "{command:?}");
    }
}

#[test]
fn quiet_and_noreply_commands_are_quiet_and_keyless_ones_have_no_key() {
    let mut get = MetaGet::new(key());
    get.quiet = true;
    assert!(Command::MetaGet(get).is_quiet());
    let flush = Command::FlushAll {
        delay: None,
        noreply: true,
    };
    assert!(flush.is_quiet());
    assert_eq!(flush.key(), None);
    assert!(!Command::MetaNoop.is_quiet());
    assert_eq!(Command::MetaNoop.key(), None);
}
