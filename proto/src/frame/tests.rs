use super::*;

#[test]
fn parses_literal_headers() {
    // FIN text, unmasked, len 5
    let h = parse_header(&[0x81, 0x05, b'h']).unwrap().unwrap();
    assert_eq!(
        (h.fin, h.opcode, h.len, h.header_len, h.mask),
        (true, OP_TEXT, 5, 2, None)
    );
    // masked binary, 16-bit length 300
    let h = parse_header(&[0x82, 0xFE, 0x01, 0x2C, 1, 2, 3, 4])
        .unwrap()
        .unwrap();
    assert_eq!((h.len, h.header_len, h.mask), (300, 8, Some([1, 2, 3, 4])));
    // 64-bit length
    let h = parse_header(&[0x02, 0x7F, 0, 0, 0, 1, 0, 0, 0, 0])
        .unwrap()
        .unwrap();
    assert_eq!(
        (h.fin, h.opcode, h.len, h.header_len),
        (false, OP_BINARY, 1 << 32, 10)
    );
    // incomplete
    assert_eq!(parse_header(&[0x81]).unwrap(), None);
    assert_eq!(parse_header(&[0x82, 0xFE, 0x01]).unwrap(), None);
    assert_eq!(parse_header(&[0x82, 0xFE, 0x01, 0x2C, 1, 2]).unwrap(), None);
}

#[test]
fn rejects_bad_headers() {
    assert_eq!(parse_header(&[0xC1, 0x00]), Err(FrameError::ReservedBits));
    assert_eq!(parse_header(&[0x83, 0x00]), Err(FrameError::ReservedOpcode));
    assert_eq!(parse_header(&[0x8B, 0x00]), Err(FrameError::ReservedOpcode));
    assert_eq!(
        parse_header(&[0x09, 0x00]),
        Err(FrameError::BadControl),
        "fragmented ping"
    );
    assert_eq!(
        parse_header(&[0x89, 0x7E, 0, 126]),
        Err(FrameError::BadControl),
        "long ping"
    );
    assert_eq!(
        parse_header(&[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        Err(FrameError::BadLength)
    );
}

#[test]
fn mask_in_pieces_equals_mask_at_once() {
    let key = [0x12, 0x34, 0x56, 0x78];
    let orig: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
    let mut whole = orig.clone();
    apply_mask(&mut whole, key, 0);
    for (i, b) in whole.iter().enumerate() {
        assert_eq!(*b, orig[i] ^ key[i % 4]);
    }
    let mut pieces = orig.clone();
    let mut at = 0;
    for step in [1usize, 3, 8, 13, 100, 875] {
        apply_mask(&mut pieces[at..at + step], key, at);
        at += step;
    }
    assert_eq!(at, 1000);
    assert_eq!(pieces, whole);
}

#[test]
fn close_payload_rules() {
    assert_eq!(check_close_payload(&[]), Ok(None));
    assert_eq!(check_close_payload(&[3]), Err(CloseError::Protocol));
    assert_eq!(
        check_close_payload(&[0x03, 0xE8, b'o', b'k']),
        Ok(Some(1000))
    );
    for bad in [999u16, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
        let p = bad.to_be_bytes();
        assert_eq!(check_close_payload(&p), Err(CloseError::Protocol), "{bad}");
    }
    for good in [1000u16, 1001, 1003, 1007, 1011, 1012, 1014, 3000, 4999] {
        assert_eq!(check_close_payload(&good.to_be_bytes()), Ok(Some(good)));
    }
    assert_eq!(
        check_close_payload(&[0x03, 0xE8, 0xFF]),
        Err(CloseError::BadUtf8)
    );
}

#[test]
fn control_frames_on_the_wire() {
    let c = ControlFrame::close(1001, "going away", None);
    assert_eq!(&c.to_vec()[..4], &[0x88, 12, 0x03, 0xE9]);
    assert_eq!(&c.to_vec()[4..], b"going away");
    let m = ControlFrame::close(1009, "big", Some([1, 2, 3, 4]));
    let h = parse_header(&m.to_vec()).unwrap().unwrap();
    assert_eq!((h.opcode, h.len, h.mask), (OP_CLOSE, 5, Some([1, 2, 3, 4])));
    let mut p = m.to_vec()[6..].to_vec();
    apply_mask(&mut p, [1, 2, 3, 4], 0);
    assert_eq!(check_close_payload(&p), Ok(Some(1009)));
    // long reasons are cut on a char boundary to fit 125 bytes
    let long: &'static str = "é".repeat(100).leak();
    let c = ControlFrame::close(1000, long, None);
    assert!(c.to_vec().len() <= 127);
    assert!(check_close_payload(&c.to_vec()[2..]).is_ok());
}

#[test]
fn the_direct_parser_answers_as_tungstenites_on_every_header() {
    // Every first and second byte, followed by 0–12 more bytes of three
    // patterns (lengths with the top bit set or not, 16- and 64-bit lengths
    // complete or cut short, masks complete or cut short).
    let mut checked = 0u32;
    for first in 0..=255u8 {
        for second in 0..=255u8 {
            for fill in [0x00u8, 0x80, 0xFF] {
                for extra in 0..=12 {
                    let mut b = vec![first, second];
                    b.extend(std::iter::repeat_n(fill, extra));
                    assert_eq!(
                        parse_header(&b),
                        parse_header_reference(&b),
                        "bytes {b:02x?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 256 * 256 * 3 * 13);
    assert_eq!(parse_header(&[]), parse_header_reference(&[]));
    assert_eq!(parse_header(&[0x81]), parse_header_reference(&[0x81]));
}
