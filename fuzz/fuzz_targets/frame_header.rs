//! The frame header parser and the close-payload check on arbitrary bytes:
//! never a panic; a parsed header never claims more bytes than it read; the
//! direct parser answers exactly as the reference built on tungstenite.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wsrelay_proto::frame::{check_close_payload, parse_header, parse_header_reference};

fuzz_target!(|data: &[u8]| {
    assert_eq!(parse_header(data), parse_header_reference(data));
    if let Ok(Some(h)) = parse_header(data) {
        assert!(h.header_len >= 2 && h.header_len <= 14 && h.header_len <= data.len());
        assert!(h.opcode <= 0xF);
        if h.is_control() {
            assert!(h.fin && h.len <= 125, "control frames are checked whole and small");
        }
    }
    if let Ok(Some(code)) = check_close_payload(data) {
        assert!(data.len() >= 2 && u16::from_be_bytes([data[0], data[1]]) == code);
    }
});
