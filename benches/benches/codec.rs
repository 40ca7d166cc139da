//! Codec throughput: encoding meta commands and decoding meta replies.
#![allow(missing_docs)]

use bytes::BytesMut;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use memha_proto::{Command, Key, Limits, MetaGet, MetaSet, Reply, ReplyDecoder, ReplyKind};

const VALUE_SIZES: [usize; 3] = [32, 1024, 64 * 1024];

fn key() -> Key {
    Key::new("session:4f2a9c1e-7d3b-4e8a-9f60-2b1c5d7e8a90").expect("valid key")
}

fn key_validation(c: &mut Criterion) {
    let raw = key().to_bytes();
    c.bench_function("key/new", |b| {
        b.iter(|| Key::new(black_box(raw.clone())).expect("valid key"));
    });
}

fn encode(c: &mut Criterion) {
    let limits = Limits::default();
    let mut group = c.benchmark_group("encode");
    for size in VALUE_SIZES {
        let mut set = MetaSet::new(key(), vec![b'x'; size]);
        set.ttl = Some(900);
        set.client_flags = Some(7);
        let command = Command::from(set);
        let mut out = BytesMut::with_capacity(size + 128);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("ms/{size}"), |b| {
            b.iter(|| {
                out.clear();
                black_box(&command)
                    .encode(&mut out, &limits)
                    .expect("encodes");
            });
        });
    }
    let get = Command::from(MetaGet::full(key()));
    let mut out = BytesMut::with_capacity(128);
    group.throughput(Throughput::Elements(1));
    group.bench_function("mg", |b| {
        b.iter(|| {
            out.clear();
            black_box(&get).encode(&mut out, &limits).expect("encodes");
        });
    });
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for size in VALUE_SIZES {
        let mut reply = format!("VA {size} f7 t900 c42\r\n").into_bytes();
        reply.extend(std::iter::repeat(b'x').take(size));
        reply.extend_from_slice(b"\r\n");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(format!("va/{size}"), |b| {
            let mut decoder = ReplyDecoder::new(Limits::default());
            b.iter_batched_ref(
                || BytesMut::from(&reply[..]),
                |input| {
                    let decoded = decoder.decode(input, ReplyKind::Meta).expect("decodes");
                    assert!(matches!(decoded, Some(Reply::Meta(_))));
                },
                BatchSize::SmallInput,
            );
        });
    }
    // A pipelined batch of 64 write acknowledgements in one read.
    let batch = b"HD\r\n".repeat(64);
    group.throughput(Throughput::Elements(64));
    group.bench_function("hd/pipelined-64", |b| {
        let mut decoder = ReplyDecoder::new(Limits::default());
        b.iter_batched_ref(
            || BytesMut::from(&batch[..]),
            |input| {
                while let Some(reply) = decoder.decode(input, ReplyKind::Meta).expect("decodes") {
                    black_box(reply);
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, key_validation, encode, decode);
criterion_main!(benches);
