//! The PROXY protocol header parser on arbitrary bytes: never a panic; a
//! header never claims more bytes than it read or than the bounds allow; a
//! prefix of a valid header is incomplete, never invalid (the shard waits
//! for the rest instead of refusing a slow balancer).
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsrelay_proto::proxy::{parse, Parsed, V1_MAX, V2_MAX};

fuzz_target!(|data: &[u8]| {
    if let Parsed::Header { len, .. } = parse(data) {
        assert!(len <= data.len() && len <= V1_MAX.max(V2_MAX));
        for cut in 0..len {
            assert_eq!(parse(&data[..cut]), Parsed::Incomplete, "prefix of {cut}");
        }
        // What follows the header does not change it.
        assert_eq!(parse(&data[..len]), parse(data));
    }
});
