use super::*;
use ProtocolErrorKind as K;

fn key(byte: u8) -> PublicKey {
    PublicKey::from_bytes([byte; 32])
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn at(secs: u64, nanos: u32) -> SystemTime {
    UNIX_EPOCH + Duration::new(secs, nanos)
}

fn device() -> UapiDevice {
    let mut a = UapiPeer::new(key(0xaa));
    a.preshared_key = Some([7; 32]);
    a.endpoint = Some("192.0.2.1:51820".parse().unwrap());
    a.last_handshake = Some(at(1_700_000_000, 123));
    a.rx_bytes = 1_234_567;
    a.tx_bytes = 3_072;
    a.persistent_keepalive = Some(25);
    a.allowed_ips = vec![net("10.0.0.0/24"), net("fd00::/64")];
    let mut b = UapiPeer::new(key(0xbb));
    b.endpoint = Some("[2001:db8::1]:443".parse().unwrap());
    UapiDevice {
        private_key: Some(PrivateKey::from_bytes([1; 32])),
        listen_port: 51820,
        fwmark: Some(0x57),
        peers: vec![a, b],
    }
}

#[test]
fn a_device_formats_to_the_lines_wireguard_go_writes() {
    let text = format_get(&device());
    let expected = format!(
        "private_key={}\nlisten_port=51820\nfwmark=87\n\
         public_key={}\npreshared_key={}\nprotocol_version=1\nendpoint=192.0.2.1:51820\n\
         last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=123\n\
         tx_bytes=3072\nrx_bytes=1234567\npersistent_keepalive_interval=25\n\
         allowed_ip=10.0.0.0/24\nallowed_ip=fd00::/64\n\
         public_key={}\nprotocol_version=1\nendpoint=[2001:db8::1]:443\n\
         last_handshake_time_sec=0\nlast_handshake_time_nsec=0\n\
         tx_bytes=0\nrx_bytes=0\npersistent_keepalive_interval=0\n",
        "01".repeat(32),
        "aa".repeat(32),
        "07".repeat(32),
        "bb".repeat(32),
    );
    assert_eq!(text, expected);
}

#[test]
fn get_replies_round_trip_through_format_and_parse() {
    let empty = UapiDevice::default();
    let only_port = UapiDevice {
        listen_port: 1,
        ..Default::default()
    };
    for dev in [device(), empty, only_port] {
        let back = parse_get(&format_get(&dev)).unwrap();
        assert_eq!(back.peers, dev.peers);
        assert_eq!(back.listen_port, dev.listen_port);
        assert_eq!(back.fwmark, dev.fwmark);
        let hex = |d: &UapiDevice| d.private_key.as_ref().map(PrivateKey::to_hex);
        assert_eq!(hex(&back), hex(&dev));
    }
}

#[test]
fn a_handshake_time_past_what_the_clock_holds_is_a_bad_value_not_a_panic() {
    let text = format!(
        "public_key={}\nlast_handshake_time_sec=18446744073709551615\n\
         last_handshake_time_nsec=999999999\n",
        key(1).to_hex()
    );
    let e = parse_get(&text).unwrap_err();
    assert_eq!(e.line, 2);
    assert!(
        matches!(&e.kind, K::BadValue { key, .. } if key == "last_handshake_time_sec"),
        "{e}"
    );
}

#[test]
fn unknown_keys_in_a_get_reply_are_skipped() {
    let text = format!(
        "jc=4\nlisten_port=9\npublic_key={}\nfuture_key=x\nrx_bytes=5\n",
        "aa".repeat(32)
    );
    let dev = parse_get(&text).unwrap();
    assert_eq!(dev.listen_port, 9);
    assert_eq!(dev.peers[0].rx_bytes, 5);
}

#[test]
fn set_requests_round_trip_through_format_and_parse() {
    let mut full = UapiPeerSet::new(key(0xaa));
    full.update_only = true;
    full.preshared_key = Some([0; 32]);
    full.endpoint = Some("[::1]:5".parse().unwrap());
    full.persistent_keepalive = Some(0);
    full.replace_allowed_ips = true;
    full.allowed_ips = vec![net("0.0.0.0/0"), net("::/0")];
    let mut gone = UapiPeerSet::new(key(0xbb));
    gone.remove = true;
    let cases = [
        UapiSet::default(),
        UapiSet {
            private_key: Some(PrivateKey::from_bytes([3; 32])),
            listen_port: Some(0),
            fwmark: Some(u32::MAX),
            replace_peers: true,
            peers: vec![full, gone],
        },
    ];
    for set in cases {
        let Request::Set(back) = parse_request(&format_set(&set)).unwrap() else {
            panic!("not a set")
        };
        assert_eq!(back.peers, set.peers);
        assert_eq!(
            (back.listen_port, back.fwmark, back.replace_peers),
            (set.listen_port, set.fwmark, set.replace_peers)
        );
        let hex = |s: &UapiSet| s.private_key.as_ref().map(PrivateKey::to_hex);
        assert_eq!(hex(&back), hex(&set));
    }
}

#[test]
fn a_set_as_wg_writes_it_parses_to_the_expected_changes() {
    let text = format!(
        "set=1\npublic_key={}\nendpoint=1.2.3.4:5\nreplace_allowed_ips=true\nallowed_ip=10.0.0.7/24\n\n",
        "aa".repeat(32)
    );
    let Request::Set(set) = parse_request(&text).unwrap() else {
        panic!("not a set")
    };
    let mut want = UapiPeerSet::new(key(0xaa));
    want.endpoint = Some("1.2.3.4:5".parse().unwrap());
    want.replace_allowed_ips = true;
    want.allowed_ips = vec![net("10.0.0.0/24")];
    assert_eq!(set.peers, vec![want]);
    assert!(set.private_key.is_none() && !set.replace_peers);
}

#[test]
fn get_requests_are_recognised_and_garbage_is_not() {
    assert!(matches!(parse_request("get=1\n\n"), Ok(Request::Get)));
    assert!(matches!(parse_request("get=1"), Ok(Request::Get)));
    let e = parse_request("get=1\nx=1\n").unwrap_err();
    assert_eq!((e.line, e.errno()), (2, -libc::EINVAL));
    let e = parse_request("hello\n").unwrap_err();
    assert_eq!(e.kind, K::UnknownOperation("hello".into()));
}

#[test]
fn malformed_set_lines_are_refused_with_their_line_and_errno() {
    let pk = format!("public_key={}", "aa".repeat(32));
    let cases: Vec<(String, usize, ProtocolErrorKind, i32)> = vec![
        (
            "set=1\nlisten_port\n".into(),
            2,
            K::NoEquals("listen_port".into()),
            -libc::EPROTO,
        ),
        (
            "set=1\nlisten_port=65536\n".into(),
            2,
            bad(0, "listen_port", "65536").kind,
            -libc::EINVAL,
        ),
        (
            "set=1\nlisten_port=+5\n".into(),
            2,
            bad(0, "listen_port", "+5").kind,
            -libc::EINVAL,
        ),
        (
            "set=1\nfwmark=-1\n".into(),
            2,
            bad(0, "fwmark", "-1").kind,
            -libc::EINVAL,
        ),
        (
            "set=1\nreplace_peers=false\n".into(),
            2,
            bad(0, "replace_peers", "false").kind,
            -libc::EINVAL,
        ),
        (
            "set=1\nendpoint=1.2.3.4:5\n".into(),
            2,
            K::UnknownDeviceKey("endpoint".into()),
            -libc::EINVAL,
        ),
        (
            "set=1\nprivate_key=abc\n".into(),
            2,
            bad(0, "private_key", "").kind,
            -libc::EINVAL,
        ),
        (
            "set=1\npublic_key=zz\n".into(),
            2,
            bad(0, "public_key", "").kind,
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nendpoint=host:5\n"),
            3,
            bad(0, "endpoint", "host:5").kind,
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nallowed_ip=10.0.0.0\n"),
            3,
            bad(0, "allowed_ip", "10.0.0.0").kind,
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nallowed_ip=10.0.0.0/33\n"),
            3,
            bad(0, "allowed_ip", "10.0.0.0/33").kind,
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nprotocol_version=2\n"),
            3,
            bad(0, "protocol_version", "2").kind,
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nlisten_port=1\n"),
            3,
            K::UnknownPeerKey("listen_port".into()),
            -libc::EINVAL,
        ),
        (
            format!("set=1\n{pk}\nbogus=1\n"),
            3,
            K::UnknownPeerKey("bogus".into()),
            -libc::EINVAL,
        ),
    ];
    for (text, line, kind, errno) in cases {
        let e = parse_request(&text).unwrap_err();
        assert_eq!(
            (e.line, &e.kind, e.errno()),
            (line, &kind, errno),
            "{text:?}"
        );
    }
}

#[test]
fn a_bad_key_value_is_never_echoed_in_the_error() {
    let secret = "ab".repeat(31);
    let e = parse_request(&format!("set=1\nprivate_key={secret}\n")).unwrap_err();
    assert!(!e.to_string().contains(&secret), "{e}");
}

#[test]
fn errno_lines_parse_with_their_sign() {
    for (line, want) in [
        ("errno=0", Some(0)),
        ("errno=-22", Some(-22)),
        ("errno=", None),
        ("errno=+1", None),
        ("x=0", None),
    ] {
        assert_eq!(parse_errno(line), want, "{line}");
    }
}
