use std::io::Read;

use proptest::prelude::*;

use super::*;

fn inflate(stream: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(stream)
        .read_to_end(&mut out)
        .expect("a valid zlib stream with a matching checksum");
    out
}

/// A step input's shape: a long shared start (an instance ref) and a short rest.
fn step_input(start_tag: u8, rest_tag: u8) -> (Vec<u8>, usize) {
    let mut data = br#"{"__class__": "ExecuteStepArgs", "instance_ref": {"#.to_vec();
    for i in 0..120 {
        data.extend_from_slice(format!("\"key_{i}\": \"value {i} {start_tag}\", ").as_bytes());
    }
    data.extend_from_slice(b"\"end\": null}");
    let shared = data.len();
    for i in 0..40 {
        data.extend_from_slice(format!(", \"step_{i}\": \"{rest_tag}\"").as_bytes());
    }
    data.push(b'}');
    (data, shared)
}

#[test]
fn a_step_input_inflates_whole_the_first_time_and_from_the_kept_start_after() {
    let (data, shared) = step_input(1, 1);
    let first = zlib_compress(&data, shared).unwrap();
    let again = zlib_compress(&data, shared).unwrap();
    assert_eq!(inflate(&first), data);
    assert_eq!(
        first, again,
        "the kept start gives the stream it gave first"
    );
    assert_eq!(first[..2], ZLIB_HEADER);
    // The rest follows the start's blocks as it is, in the last (stored) block.
    let rest = &data[shared..];
    let tail = &first[first.len() - 4 - rest.len()..first.len() - 4];
    assert_eq!(tail, rest);
    assert!(first.len() < data.len(), "the start is compressed");
}

#[test]
fn a_kept_start_serves_only_inputs_starting_with_the_same_bytes() {
    let (a, shared_a) = step_input(1, 2);
    let (b, shared_b) = step_input(3, 2);
    let (c, shared_c) = step_input(1, 4);
    for _ in 0..2 {
        assert_eq!(inflate(&zlib_compress(&a, shared_a).unwrap()), a);
        assert_eq!(inflate(&zlib_compress(&b, shared_b).unwrap()), b);
        assert_eq!(inflate(&zlib_compress(&c, shared_c).unwrap()), c);
    }
    // The same bytes with the boundary one byte earlier: a different start.
    assert_eq!(inflate(&zlib_compress(&a, shared_a - 1).unwrap()), a);
}

#[test]
fn more_starts_than_are_kept_still_inflate() {
    let inputs: Vec<_> = (0..(KEPT_STARTS as u8 + 3))
        .map(|t| step_input(t, t))
        .collect();
    for _ in 0..2 {
        for (data, shared) in &inputs {
            assert_eq!(inflate(&zlib_compress(data, *shared).unwrap()), *data);
        }
    }
}

#[test]
fn inputs_without_a_start_worth_keeping_are_compressed_whole() {
    let (data, shared) = step_input(5, 5);
    let long_rest: Vec<u8> = data
        .iter()
        .copied()
        .chain(std::iter::repeat_n(b'x', STORED_REST_MAX + 1))
        .collect();
    let big: Vec<u8> = (0..FAST_LEVEL_MAX * 2).map(|i| (i % 251) as u8).collect();
    let cases: [(&[u8], usize); 5] = [
        (&data, 0),                  // nothing shared
        (&data, KEPT_START_MIN - 1), // too short a start
        (&long_rest, shared),        // too long a rest to store
        (&big, FAST_LEVEL_MAX + 1),  // too long a start to keep
        (b"", 0),
    ];
    for (input, shared) in cases {
        let stream = zlib_compress(input, shared).unwrap();
        assert_eq!(
            inflate(&stream),
            input,
            "shared {shared} of {}",
            input.len()
        );
    }
    // A boundary past the end shares the whole input: the rest is empty, a
    // final stored block of nothing.
    let stream = zlib_compress(&data, data.len() + 10).unwrap();
    assert_eq!(inflate(&stream), data);
    assert_eq!(
        stream[stream.len() - 9..stream.len() - 4],
        [1, 0, 0, 0xff, 0xff]
    );
}

proptest! {
    #[test]
    fn any_input_and_boundary_round_trips(
        data in proptest::collection::vec(any::<u8>(), 0..6000),
        at in 0usize..7000,
    ) {
        let stream = zlib_compress(&data, at).unwrap();
        prop_assert_eq!(inflate(&stream), data.clone());
        let again = zlib_compress(&data, at).unwrap();
        prop_assert_eq!(stream, again);
    }
}
