//! In-tunnel control messages: `payload` finds one in an inner packet, `Message::parse` decodes
//! it. Neither may panic, and what parses must rebuild identically: `build` puts the message
//! back into a packet whose payload starts with the same bytes (a parser ignores the padding
//! after the body) and parses to the same message, over IPv4 and IPv6.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use wiremesh::core::packet;
use wiremesh::engine::control_message::{self as control, Message};

fn rebuilds_identically(msg: &Message, payload: &[u8]) {
    let v4: (IpAddr, IpAddr) = ([10, 244, 1, 1].into(), [10, 244, 2, 1].into());
    let v6: (IpAddr, IpAddr) = (
        "fd10:244:0:1::1".parse().unwrap(),
        "fd10:244:0:2::1".parse().unwrap(),
    );
    // the padding sizes probing uses: none, and the size of the packet it came in
    for pad in [0, payload.len().min(9000)] {
        for (src, dst) in [v4, v6] {
            let pkt = control::build(src, dst, msg, pad);
            assert!(pkt.len() >= pad, "a probe is padded to the size asked for");
            assert_eq!(packet::addresses(&pkt), Some((src, dst)));
            let rebuilt = control::payload(&pkt).expect("a built message is a control packet");
            assert_eq!(Message::parse(rebuilt).as_ref(), Some(msg));
            // padding is zeros after the body, so the body is the common prefix
            let body = rebuilt.len().min(payload.len());
            if pad == 0 {
                assert!(
                    rebuilt.len() <= payload.len(),
                    "unpadded is the shortest form"
                );
                assert_eq!(rebuilt, &payload[..rebuilt.len()]);
            } else {
                assert_eq!(
                    Message::parse(&rebuilt[..body]).as_ref(),
                    Some(msg),
                    "padding is not part of the message"
                );
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // as a payload on its own
    if let Some(msg) = Message::parse(data) {
        rebuilds_identically(&msg, data);
    }
    // as a whole inner packet, the way the engine meets it after decryption
    if let Some(payload) = control::payload(data) {
        if let Some(msg) = Message::parse(payload) {
            rebuilds_identically(&msg, payload);
        }
    }
});
