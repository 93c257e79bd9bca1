//! The upgrade request parser on arbitrary bytes: never a panic; a request it
//! accepts is one the read loop would hand to it (its header block ends in
//! bytes `may_be_complete` recognises), and it consumed no more than it had.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsrelay_proto::handshake::{may_be_complete, parse_request};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(req)) = parse_request(data, 8192) {
        assert!(req.consumed <= data.len());
        assert!(
            may_be_complete(&data[..req.consumed], 0),
            "a complete request the read loop would never parse"
        );
    }
});
