//! The UAPI text format, without I/O: a request or reply is `key=value` lines ended by a blank
//! line. Field names, order and encodings follow wireguard-go's `device/uapi.go` and
//! wireguard-tools' `ipc-uapi.h`, the two ends `wg` is tested against.
//!
//! Requests are parsed strictly (an unknown key is an error, as in wireguard-go) so a typo never
//! half-applies; replies are parsed leniently (unknown keys skipped, as `wg` does) so a newer
//! daemon still talks to an older CLI.

use super::{UapiDevice, UapiPeer, UapiPeerSet, UapiSet};
use crate::core::key::{PrivateKey, PublicKey};
use ipnet::IpNet;
use std::fmt::Write as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A parsed request line block.
#[derive(Debug, Clone)]
pub enum Request {
    Get,
    Set(UapiSet),
}

/// A malformed request or reply, with the 1-based line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}")]
pub struct ProtocolError {
    pub line: usize,
    pub kind: ProtocolErrorKind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolErrorKind {
    #[error("expected key=value, got {0:?}")]
    NoEquals(String),
    #[error("unknown operation {0:?} (expected get=1 or set=1)")]
    UnknownOperation(String),
    #[error("unexpected {0:?} after get=1")]
    TrailingGet(String),
    #[error("unknown device key {0:?}")]
    UnknownDeviceKey(String),
    #[error("unknown peer key {0:?}")]
    UnknownPeerKey(String),
    /// Secret values are never echoed: `value` is `<redacted>` for key fields.
    #[error("bad value for {key}: {value:?}")]
    BadValue { key: String, value: String },
    #[error("line longer than the protocol allows")]
    TooLong,
    #[error("input ended before the terminating blank line")]
    Truncated,
}

impl ProtocolError {
    /// wireguard-go answers EPROTO for a line it cannot split and EINVAL for everything else.
    pub fn errno(&self) -> i32 {
        match self.kind {
            ProtocolErrorKind::NoEquals(_) | ProtocolErrorKind::Truncated => -libc::EPROTO,
            _ => -libc::EINVAL,
        }
    }
}

fn err(line: usize, kind: ProtocolErrorKind) -> ProtocolError {
    ProtocolError { line, kind }
}

fn bad(line: usize, key: &str, value: &str) -> ProtocolError {
    let value = if key.ends_with("_key") {
        "<redacted>"
    } else {
        value
    };
    err(
        line,
        ProtocolErrorKind::BadValue {
            key: key.into(),
            value: value.into(),
        },
    )
}

/// Splits the text into numbered `(key, value)` pairs, stopping at the first blank line.
fn pairs(text: &str) -> impl Iterator<Item = Result<(usize, &str, &str), ProtocolError>> {
    text.lines()
        .take_while(|l| !l.is_empty())
        .enumerate()
        .map(|(i, l)| match l.split_once('=') {
            Some((k, v)) => Ok((i + 1, k, v)),
            None => Err(err(i + 1, ProtocolErrorKind::NoEquals(l.into()))),
        })
}

/// Decimal digits only: Rust's integer parsers also take a leading `+`, the protocol does not.
fn num<T: FromStr>(value: &str) -> Option<T> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

fn hex32(value: &str) -> Option<[u8; 32]> {
    if value.len() != 64 {
        return None;
    }
    hex::decode(value).ok()?.try_into().ok()
}

fn flag(value: &str) -> Option<bool> {
    (value == "true").then_some(true)
}

fn allowed_ip(value: &str) -> Option<IpNet> {
    value.parse::<IpNet>().ok().map(|n| n.trunc())
}

/// Parses a whole request (its lines up to the blank line) into a typed [`Request`].
pub fn parse_request(text: &str) -> Result<Request, ProtocolError> {
    let mut lines = text.lines();
    match lines.next().unwrap_or("") {
        "get=1" => match lines.next() {
            None | Some("") => Ok(Request::Get),
            Some(extra) => Err(err(2, ProtocolErrorKind::TrailingGet(extra.into()))),
        },
        "set=1" => {
            let body = text.split_once('\n').map_or("", |(_, rest)| rest);
            parse_set(body)
                .map(Request::Set)
                .map_err(|e| err(e.line + 1, e.kind))
        }
        op => Err(err(1, ProtocolErrorKind::UnknownOperation(op.into()))),
    }
}

/// Parses the lines after `set=1`, with line numbers counted from the first of them.
pub fn parse_set(body: &str) -> Result<UapiSet, ProtocolError> {
    let mut set = UapiSet::default();
    for pair in pairs(body) {
        let (n, key, value) = pair?;
        if key == "public_key" {
            let pk = PublicKey::from_hex(value).map_err(|_| bad(n, key, value))?;
            set.peers.push(UapiPeerSet::new(pk));
            continue;
        }
        let Some(peer) = set.peers.last_mut() else {
            match key {
                "private_key" => {
                    let k = hex32(value).ok_or_else(|| bad(n, key, value))?;
                    set.private_key = Some(PrivateKey::from_bytes(k));
                }
                "listen_port" => {
                    set.listen_port = Some(num(value).ok_or_else(|| bad(n, key, value))?)
                }
                "fwmark" => set.fwmark = Some(num(value).ok_or_else(|| bad(n, key, value))?),
                "replace_peers" => {
                    set.replace_peers = flag(value).ok_or_else(|| bad(n, key, value))?
                }
                _ => return Err(err(n, ProtocolErrorKind::UnknownDeviceKey(key.into()))),
            }
            continue;
        };
        match key {
            "update_only" => peer.update_only = flag(value).ok_or_else(|| bad(n, key, value))?,
            "remove" => peer.remove = flag(value).ok_or_else(|| bad(n, key, value))?,
            "preshared_key" => {
                peer.preshared_key = Some(hex32(value).ok_or_else(|| bad(n, key, value))?)
            }
            "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad(n, key, value))?),
            "persistent_keepalive_interval" => {
                peer.persistent_keepalive = Some(num(value).ok_or_else(|| bad(n, key, value))?)
            }
            "replace_allowed_ips" => {
                peer.replace_allowed_ips = flag(value).ok_or_else(|| bad(n, key, value))?
            }
            "allowed_ip" => peer
                .allowed_ips
                .push(allowed_ip(value).ok_or_else(|| bad(n, key, value))?),
            "protocol_version" if value == "1" => {}
            "protocol_version" => return Err(bad(n, key, value)),
            _ => return Err(err(n, ProtocolErrorKind::UnknownPeerKey(key.into()))),
        }
    }
    Ok(set)
}

/// The full request text for `set`, `set=1` through the terminating blank line.
pub fn format_set(set: &UapiSet) -> String {
    let mut out = String::from("set=1\n");
    if let Some(k) = &set.private_key {
        let _ = writeln!(out, "private_key={}", k.to_hex());
    }
    if let Some(p) = set.listen_port {
        let _ = writeln!(out, "listen_port={p}");
    }
    if let Some(m) = set.fwmark {
        let _ = writeln!(out, "fwmark={m}");
    }
    if set.replace_peers {
        out.push_str("replace_peers=true\n");
    }
    for p in &set.peers {
        let _ = writeln!(out, "public_key={}", p.public_key.to_hex());
        if p.update_only {
            out.push_str("update_only=true\n");
        }
        if p.remove {
            out.push_str("remove=true\n");
        }
        if let Some(psk) = &p.preshared_key {
            let _ = writeln!(out, "preshared_key={}", hex::encode(psk));
        }
        if let Some(e) = p.endpoint {
            let _ = writeln!(out, "endpoint={e}");
        }
        if let Some(k) = p.persistent_keepalive {
            let _ = writeln!(out, "persistent_keepalive_interval={k}");
        }
        if p.replace_allowed_ips {
            out.push_str("replace_allowed_ips=true\n");
        }
        for ip in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
    }
    out.push('\n');
    out
}

/// The body of a `get` reply, every line newline-terminated; the caller appends `errno=0` and
/// the blank line. Absent values are written the way wireguard-go writes them (zeros).
pub fn format_get(dev: &UapiDevice) -> String {
    let mut out = String::new();
    if let Some(k) = &dev.private_key {
        let _ = writeln!(out, "private_key={}", k.to_hex());
    }
    if dev.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", dev.listen_port);
    }
    if let Some(m) = dev.fwmark.filter(|&m| m != 0) {
        let _ = writeln!(out, "fwmark={m}");
    }
    for p in &dev.peers {
        let _ = writeln!(out, "public_key={}", p.public_key.to_hex());
        if let Some(psk) = &p.preshared_key {
            let _ = writeln!(out, "preshared_key={}", hex::encode(psk));
        }
        out.push_str("protocol_version=1\n");
        if let Some(e) = p.endpoint {
            let _ = writeln!(out, "endpoint={e}");
        }
        let since = p
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", since.subsec_nanos());
        let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive.unwrap_or(0)
        );
        for ip in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={ip}");
        }
    }
    out
}

/// Reads the `errno=N` status line that ends every reply.
pub fn parse_errno(line: &str) -> Option<i32> {
    let v = line.strip_prefix("errno=")?;
    let digits = v.strip_prefix('-').unwrap_or(v);
    num::<i32>(digits)?;
    v.parse().ok()
}

/// Parses the body of a `get` reply (without its `errno` line) back into a snapshot.
pub fn parse_get(text: &str) -> Result<UapiDevice, ProtocolError> {
    let mut dev = UapiDevice::default();
    let mut handshake = (0u64, 0u32);
    let finish = |dev: &mut UapiDevice, hs: &mut (u64, u32)| {
        if let Some(p) = dev.peers.last_mut() {
            let at = UNIX_EPOCH + Duration::new(hs.0, hs.1);
            p.last_handshake = (*hs != (0, 0)).then_some(at);
        }
        *hs = (0, 0);
    };
    for pair in pairs(text) {
        let (n, key, value) = pair?;
        if key == "public_key" {
            finish(&mut dev, &mut handshake);
            let pk = PublicKey::from_hex(value).map_err(|_| bad(n, key, value))?;
            dev.peers.push(UapiPeer::new(pk));
            continue;
        }
        let Some(peer) = dev.peers.last_mut() else {
            match key {
                "private_key" => {
                    let k = hex32(value).ok_or_else(|| bad(n, key, value))?;
                    dev.private_key = Some(PrivateKey::from_bytes(k));
                }
                "listen_port" => dev.listen_port = num(value).ok_or_else(|| bad(n, key, value))?,
                "fwmark" => dev.fwmark = Some(num(value).ok_or_else(|| bad(n, key, value))?),
                _ => {}
            }
            continue;
        };
        match key {
            "preshared_key" => {
                let psk = hex32(value).ok_or_else(|| bad(n, key, value))?;
                peer.preshared_key = (psk != [0; 32]).then_some(psk);
            }
            "endpoint" => peer.endpoint = Some(value.parse().map_err(|_| bad(n, key, value))?),
            "last_handshake_time_sec" => {
                // `finish` adds it to the epoch: a time the system clock cannot hold would
                // panic there (found while writing the fuzz/uapi target)
                handshake.0 = num(value)
                    .filter(|&s| {
                        UNIX_EPOCH
                            .checked_add(Duration::new(s, 999_999_999))
                            .is_some()
                    })
                    .ok_or_else(|| bad(n, key, value))?
            }
            "last_handshake_time_nsec" => {
                handshake.1 = num(value)
                    .filter(|&ns| ns < 1_000_000_000)
                    .ok_or_else(|| bad(n, key, value))?
            }
            "tx_bytes" => peer.tx_bytes = num(value).ok_or_else(|| bad(n, key, value))?,
            "rx_bytes" => peer.rx_bytes = num(value).ok_or_else(|| bad(n, key, value))?,
            "persistent_keepalive_interval" => {
                let k: u16 = num(value).ok_or_else(|| bad(n, key, value))?;
                peer.persistent_keepalive = (k != 0).then_some(k);
            }
            "allowed_ip" => peer
                .allowed_ips
                .push(allowed_ip(value).ok_or_else(|| bad(n, key, value))?),
            _ => {}
        }
    }
    finish(&mut dev, &mut handshake);
    Ok(dev)
}

/// The time of a handshake as `wg` shows it, for building snapshots from a monotonic clock.
pub fn wall_clock(now: SystemTime, ago: Duration) -> SystemTime {
    now.checked_sub(ago).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
