//! The text form: `ip addr show` (and `ip link show; ip addr show`, as in the old `nic.out` files).
//!
//! iproute2 prints one block per interface; busybox `ip` prints the same grammar:
//!
//! ```text
//! 2: eth0.100@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master br0 state UP group default qlen 1000
//!     link/ether 00:1c:42:a5:57:7a brd ff:ff:ff:ff:ff:ff link-netnsid 0
//!     inet 10.0.0.5/24 brd 10.0.0.255 scope global secondary eth0.100:1
//!        valid_lft forever preferred_lft forever
//!     inet 192.168.41.6 peer 192.168.41.5/32 scope global tun0
//!     inet6 fe80::21c:42ff:fea5:577a/64 scope link
//! ```
//!
//! The header starts in column 0 with `INDEX: NAME[@PARENT]: <FLAGS>` followed by `key value`
//! attributes whose set and order vary by version (old iproute2 has no `state`; newer ones add
//! `mode`, `group`, `master`, `xdp...`). Indented lines follow: `link/TYPE [ADDRESS] [brd|peer X]
//! ...`, `inet`/`inet6` address lines whose last word is the address *label* (`eth0:0` is an
//! alias of `eth0`; the interface is always the header's), and lines this collector does not
//! need (`valid_lft`, `altname`, `alias`, `vf N ...`, `-s` counters, `-d` details), which are
//! skipped. `ip -o` (one line per interface, parts joined by `\`) and `ip -o addr` lines
//! (`2: eth0    inet 10.0.0.5/24 ...`) are read too.

use cmdb_model::report::Interface;

use super::normalize::{self, Family, InterfaceList};

/// Header attributes that take a value, so the value is never read as a key (a group may well be
/// called `mtu`).
const VALUED_ATTRIBUTES: &[&str] =
    &["mtu", "qdisc", "master", "state", "mode", "group", "qlen", "link-netnsid", "link-netns", "netns"];

/// Parses `ip addr show` / `ip link show` text into interfaces, in the order they appear, merging
/// an interface listed twice. Never fails: lines that fit no known form are skipped, so an
/// output with no interface header yields an empty list (the caller decides whether that is an
/// error).
pub fn parse_ip_text(text: &str) -> Vec<Interface> {
    let mut list = InterfaceList::default();
    let mut current: Option<usize> = None;
    for physical_line in text.lines() {
        // `ip -o` joins an interface's lines with a backslash; splitting there turns oneline
        // output back into the multi-line grammar. Kernel names cannot contain whitespace, and a
        // backslash never occurs in the other tokens read here.
        for line in physical_line.split('\\') {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() {
                continue;
            }
            if line.starts_with(|c: char| c.is_whitespace()) {
                if let Some(interface) = current.and_then(|index| list.get_mut(index)) {
                    read_detail(line.trim_start(), interface);
                }
                continue;
            }
            // An unindented line that is not a header (a warning, "Message truncated", another
            // command's output) ends the current block, so what follows it is never credited to
            // the wrong interface.
            current = None;
            let Some(header) = Header::parse(line) else { continue };
            let index = list.position(header.name);
            if let Some(interface) = list.get_mut(index) {
                match header.body {
                    HeaderBody::Link { flags, attributes } => read_link_header(flags, attributes, interface),
                    HeaderBody::Detail(detail) => read_detail(detail, interface),
                }
            }
            current = Some(index);
        }
    }
    list.into_vec()
}

/// A column-0 line that starts an interface block.
struct Header<'a> {
    /// The interface name, `@parent` removed.
    name: &'a str,
    body: HeaderBody<'a>,
}

enum HeaderBody<'a> {
    /// `INDEX: NAME: <FLAGS> attributes...`.
    Link { flags: &'a str, attributes: &'a str },
    /// `INDEX: NAME    inet ...` (`ip -o addr`): the rest is a detail line.
    Detail(&'a str),
}

impl<'a> Header<'a> {
    fn parse(line: &'a str) -> Option<Self> {
        let (index, rest) = line.split_once(':')?;
        if index.is_empty() || !index.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let rest = rest.trim_start();
        let token_end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        let after = after.trim_start();
        match token.strip_suffix(':') {
            Some(name) => {
                let name = normalize::strip_parent(name);
                // iproute2 and busybox always print the flag list, even empty (`<>`); requiring
                // it keeps a stray "12: error: ..." line from becoming an interface.
                let (flags, attributes) = after.strip_prefix('<')?.split_once('>')?;
                if name.is_empty() {
                    return None;
                }
                Some(Header { name, body: HeaderBody::Link { flags, attributes } })
            }
            // `ip -o addr`: only an address or link line may follow the name.
            None if !token.is_empty() && is_oneline_detail(after) => {
                Some(Header { name: normalize::strip_parent(token), body: HeaderBody::Detail(after) })
            }
            None => None,
        }
    }
}

/// True when `rest` (what follows the name in a header without `:`) is an `ip -o addr` entry.
fn is_oneline_detail(rest: &str) -> bool {
    let first = rest.split_whitespace().next().unwrap_or("");
    first == "inet" || first == "inet6" || first.starts_with("link/")
}

/// Reads the flags and `mtu`/`master` from a link header. Later sightings of the same interface
/// overwrite earlier ones: they are the newer observation.
fn read_link_header(flags: &str, attributes: &str, interface: &mut Interface) {
    let (up, carrier) = normalize::link_state(flags.split(','));
    interface.up = Some(up);
    interface.carrier = Some(carrier);
    let tokens: Vec<&str> = attributes.split_whitespace().collect();
    let mut i = 0;
    while i < tokens.len() {
        let key = tokens[i];
        if !VALUED_ATTRIBUTES.contains(&key) {
            i += 1;
            continue;
        }
        let value = tokens.get(i + 1).copied();
        match (key, value) {
            ("mtu", Some(v)) => {
                if let Ok(mtu) = v.parse::<u32>() {
                    interface.mtu = Some(mtu);
                }
            }
            ("master", Some(v)) => interface.master = Some(v.to_owned()),
            _ => {}
        }
        i += 2;
    }
}

/// Reads one indented line (leading whitespace already removed): the `link/` line or an address.
fn read_detail(line: &str, interface: &mut Interface) {
    let mut tokens = line.split_whitespace();
    let Some(first) = tokens.next() else { return };
    if let Some(link_type) = first.strip_prefix("link/") {
        let address = tokens.next().unwrap_or("");
        interface.hwaddr = normalize::hardware_address(link_type, address);
        return;
    }
    let Some(family) = Family::from_ip_name(first) else { return };
    let Some(local) = tokens.next() else { return };
    let (address, prefix) = match local.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        // `inet A peer B/32`: the prefix is printed after the peer but is the local address's.
        None => match (tokens.next(), tokens.next()) {
            (Some("peer"), Some(peer)) => (local, peer.split_once('/').map(|(_, p)| p)),
            _ => (local, None),
        },
    };
    let prefix = match prefix.map(str::parse::<u64>) {
        Some(Ok(p)) => Some(p),
        // A prefix that is not a number makes the whole entry suspect; leave it out.
        Some(Err(_)) => return,
        None => None,
    };
    if let Some(entry) = normalize::address_with_prefix(family, address, prefix) {
        normalize::add_address(interface, family, entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn find<'a>(interfaces: &'a [Interface], name: &str) -> &'a Interface {
        interfaces.iter().find(|i| i.name == name).unwrap_or_else(|| panic!("no interface {name}"))
    }

    fn names(interfaces: &[Interface]) -> Vec<&str> {
        interfaces.iter().map(|i| i.name.as_str()).collect()
    }

    #[test]
    fn full_block_is_read() {
        let text = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UP qlen 1000\n    link/ether 00:1C:42:A5:57:7A brd ff:ff:ff:ff:ff:ff\n    inet 10.211.55.4/24 brd 10.211.55.255 scope global eth0\n    inet6 fe80::21c:42ff:fea5:577a/64 scope link\n       valid_lft forever preferred_lft forever\n";
        let parsed = parse_ip_text(text);
        assert_eq!(
            parsed,
            vec![Interface {
                name: "eth0".into(),
                hwaddr: Some("00:1c:42:a5:57:7a".into()),
                up: Some(true),
                carrier: Some(true),
                mtu: Some(1500),
                master: None,
                ipv4: vec!["10.211.55.4/24".into()],
                ipv6: vec!["fe80::21c:42ff:fea5:577a/64".into()],
            }]
        );
    }

    #[test]
    fn parent_suffix_is_not_part_of_the_name() {
        let text = "166: veth513c1a7@if165: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue master docker0 state UP\n    link/ether 12:e7:34:62:55:60 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n5: eth0.100@eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\n    link/ether 00:11:3f:e2:f5:9e brd ff:ff:ff:ff:ff:ff\n";
        let parsed = parse_ip_text(text);
        assert_eq!(names(&parsed), ["veth513c1a7", "eth0.100"]);
        assert_eq!(find(&parsed, "veth513c1a7").master.as_deref(), Some("docker0"));
        assert_eq!(find(&parsed, "veth513c1a7").hwaddr.as_deref(), Some("12:e7:34:62:55:60"));
    }

    #[test]
    fn address_labels_belong_to_the_header_interface() {
        let text = "3: wlan0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc mq state UP\n    link/ether 00:1a:6b:0d:78:03 brd ff:ff:ff:ff:ff:ff\n    inet 128.93.189.62/22 brd 128.93.191.255 scope global dynamic wlan0\n    inet 192.168.1.11/24 brd 192.168.1.255 scope global wlan0:0\n    inet 10.142.30.4/27 scope global secondary mgmt-vrrp\n";
        let parsed = parse_ip_text(text);
        assert_eq!(names(&parsed), ["wlan0"]);
        assert_eq!(find(&parsed, "wlan0").ipv4, ["128.93.189.62/22", "192.168.1.11/24", "10.142.30.4/27"]);
    }

    #[test]
    fn no_carrier_with_up_is_up_without_carrier() {
        let text = "23: wlan0: <NO-CARRIER,BROADCAST,MULTICAST,UP> mtu 1500 qdisc mq state DOWN qlen 1000\n    link/ether e8:39:df:3f:7d:ef brd ff:ff:ff:ff:ff:ff\n4: virbr0-nic: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN qlen 500\n";
        let parsed = parse_ip_text(text);
        let wlan0 = find(&parsed, "wlan0");
        assert_eq!((wlan0.up, wlan0.carrier), (Some(true), Some(false)));
        let nic = find(&parsed, "virbr0-nic");
        assert_eq!((nic.up, nic.carrier, nic.mtu), (Some(false), Some(false), Some(1500)));
    }

    #[test]
    fn old_iproute2_without_state_field() {
        let text = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast qlen 1000\n    link/ether 00:50:56:8b:70:b7 brd ff:ff:ff:ff:ff:ff\n    inet 10.40.1.16/24 brd 10.40.1.255 scope global eth0\n3: sit0: <NOARP> mtu 1480 qdisc noop \n    link/sit 0.0.0.0 brd 0.0.0.0\n";
        let parsed = parse_ip_text(text);
        let eth0 = find(&parsed, "eth0");
        assert_eq!((eth0.up, eth0.carrier, eth0.mtu), (Some(true), Some(true), Some(1500)));
        assert_eq!(eth0.hwaddr.as_deref(), Some("00:50:56:8b:70:b7"));
        let sit0 = find(&parsed, "sit0");
        assert_eq!((sit0.up, sit0.hwaddr.as_deref(), sit0.mtu), (Some(false), None, Some(1480)));
    }

    #[test]
    fn links_without_hardware_address() {
        let text = "4: tun0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN qlen 100\n    link/none \n3: eql: <MASTER> mtu 576 qdisc noop state DOWN qlen 5\n    link/slip \n1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n4: tunl1: <NOARP> mtu 1480 qdisc noop state DOWN\n    link/[65534]\n6: ip.tun2: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 80 qdisc noqueue state UNKNOWN\n    link/ipip 10.192.4.203 peer 10.188.61.108\n7: ppp0: <POINTOPOINT,MULTICAST,NOARP,UP,LOWER_UP> mtu 1492 qdisc fq_codel state UNKNOWN\n    link/ppp\n";
        let parsed = parse_ip_text(text);
        assert_eq!(names(&parsed), ["tun0", "eql", "lo", "tunl1", "ip.tun2", "ppp0"]);
        assert!(parsed.iter().all(|i| i.hwaddr.is_none()), "{parsed:?}");
        assert_eq!(find(&parsed, "ip.tun2").mtu, Some(80));
    }

    #[test]
    fn infiniband_address_is_reported_whole() {
        let text = "14: ib0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 2044 qdisc mq state UP qlen 1024\n    link/infiniband a0:00:01:00:fe:80:00:00:00:00:00:00:00:02:c9:03:00:15:94:d1 brd 00:ff:ff:ff:ff:12:40:1b:ff:ff:00:00:00:00:00:00:ff:ff:ff:ff\n    inet 10.89.96.11/20 scope global ib0\n";
        let ib0 = parse_ip_text(text).remove(0);
        assert_eq!(ib0.hwaddr.as_deref(), Some("a0:00:01:00:fe:80:00:00:00:00:00:00:00:02:c9:03:00:15:94:d1"));
        assert_eq!(ib0.ipv4, ["10.89.96.11/20"]);
    }

    #[test]
    fn peer_bare_and_several_inet_lines() {
        let text = "4: tun0: <POINTOPOINT,UP,LOWER_UP> mtu 1500 qdisc pfifo_fast state UNKNOWN\n    link/none \n    inet 192.168.41.6 peer 192.168.41.5/32 scope global tun0\n    inet 10.8.0.1 scope global tun0\n    inet 10.9.0.1/16 scope global tun0\n    inet6 2001:db8::1 peer 2001:db8::2/128 scope global\n    inet6 2001:db8::5 scope global\n";
        let tun0 = parse_ip_text(text).remove(0);
        assert_eq!(tun0.ipv4, ["192.168.41.6/32", "10.8.0.1/32", "10.9.0.1/16"]);
        assert_eq!(tun0.ipv6, ["2001:db8::1/128", "2001:db8::5/128"]);
    }

    #[test]
    fn unrelated_indented_lines_are_skipped() {
        let text = "2: eno1: <BROADCAST,MULTICAST,SLAVE,UP,LOWER_UP> mtu 9000 qdisc mq master bond-pfx state UP group default qlen 1000\n    link/ether d2:ee:35:94:c2:79 brd ff:ff:ff:ff:ff:ff permaddr e4:43:4b:ec:b4:48\n    altname enp24s0f0\n    alias uplink to switch 3 inet 1.2.3.4/8\n    vf 0     link/ether 00:00:00:00:00:00 brd ff:ff:ff:ff:ff:ff, spoof checking on, link-state auto, trust off\n    RX: bytes  packets  errors  dropped overrun mcast\n    1113685    2244     0       0       0       0\n    prog/xdp id 23 tag 3b185187f1855c4c jited\n";
        let eno1 = parse_ip_text(text).remove(0);
        assert_eq!(eno1.hwaddr.as_deref(), Some("d2:ee:35:94:c2:79"));
        assert_eq!(eno1.master.as_deref(), Some("bond-pfx"));
        assert_eq!(eno1.mtu, Some(9000));
        assert!(eno1.ipv4.is_empty() && eno1.ipv6.is_empty(), "{eno1:?}");
    }

    #[test]
    fn doubled_listing_merges_without_duplicates() {
        let pass = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc pfifo_fast state UP\n    link/ether 02:fc:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n";
        let addr_pass = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n    inet 127.0.0.1/8 scope host lo\n2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1400 qdisc pfifo_fast state UP\n    link/ether 02:fc:00:00:00:01 brd ff:ff:ff:ff:ff:ff\n    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n";
        let parsed = parse_ip_text(&format!("{pass}{addr_pass}{addr_pass}"));
        assert_eq!(names(&parsed), ["lo", "eth0"]);
        assert_eq!(find(&parsed, "eth0").ipv4, ["192.0.2.2/24"]);
        assert_eq!(find(&parsed, "lo").ipv4, ["127.0.0.1/8"]);
    }

    #[test]
    fn oneline_output_is_read() {
        let link = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff\n";
        let addr = "2: eth0    inet 192.168.1.100/24 brd 192.168.1.255 scope global dynamic eth0\\       valid_lft 86000sec preferred_lft 86000sec\n2: eth0    inet6 fe80::5054:ff:fe12:3456/64 scope link \\       valid_lft forever preferred_lft forever\n";
        let parsed = parse_ip_text(&format!("{link}{addr}"));
        assert_eq!(names(&parsed), ["eth0"]);
        let eth0 = &parsed[0];
        assert_eq!(eth0.hwaddr.as_deref(), Some("52:54:00:12:34:56"));
        assert_eq!((eth0.up, eth0.mtu), (Some(true), Some(1500)));
        assert_eq!(eth0.ipv4, ["192.168.1.100/24"]);
        assert_eq!(eth0.ipv6, ["fe80::5054:ff:fe12:3456/64"]);
    }

    #[test]
    fn garbage_between_blocks_is_not_credited_to_an_interface() {
        let text = "Message truncated\n    inet 10.0.0.1/8 scope global x\n1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\n    inet 127.0.0.1/8 scope host lo\nRTNETLINK answers: Invalid argument\n    inet 10.9.9.9/8 scope global lo\n";
        let parsed = parse_ip_text(text);
        assert_eq!(names(&parsed), ["lo"]);
        assert_eq!(parsed[0].ipv4, ["127.0.0.1/8"]);
    }

    #[test]
    fn header_attributes_are_read_by_key_not_position() {
        // A group named "mtu" must not be taken for the MTU; "master" may come before or after state.
        let text = "9: br0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9000 qdisc noqueue state UP group mtu qlen 1000\n10: p1: <BROADCAST,UP> mtu 1500 master br0 qdisc mq\n11: p2: <BROADCAST> mtu bogus\n";
        let parsed = parse_ip_text(text);
        assert_eq!(find(&parsed, "br0").mtu, Some(9000));
        assert_eq!(find(&parsed, "p1").master.as_deref(), Some("br0"));
        assert_eq!(find(&parsed, "p2").mtu, None);
    }

    #[test]
    fn malformed_addresses_are_left_out() {
        let text = "2: eth0: <UP> mtu 1500\n    inet 10.0.0.1/abc scope global eth0\n    inet 10.0.0.999/24 scope global eth0\n    inet 10.0.0.2/33 scope global eth0\n    inet6 zz::1/64 scope link\n    inet\n    inet 10.0.0.3/24 scope global eth0\n";
        let eth0 = parse_ip_text(text).remove(0);
        assert_eq!(eth0.ipv4, ["10.0.0.3/24"]);
        assert!(eth0.ipv6.is_empty());
    }

    #[test]
    fn crlf_and_missing_trailing_newline() {
        let text = "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\r\n    link/ether 00:1c:42:a5:57:7a brd ff:ff:ff:ff:ff:ff\r\n    inet 10.0.0.1/24 scope global eth0";
        let eth0 = parse_ip_text(text).remove(0);
        assert_eq!((eth0.mtu, eth0.hwaddr.as_deref()), (Some(1500), Some("00:1c:42:a5:57:7a")));
        assert_eq!(eth0.ipv4, ["10.0.0.1/24"]);
    }

    #[test]
    fn nothing_recognisable_gives_nothing() {
        assert!(parse_ip_text("").is_empty());
        assert!(parse_ip_text("Object \"addr\" is unknown, try \"ip help\".\n").is_empty());
        assert!(parse_ip_text("12: \n: eth0: <UP>\nx: eth0: <UP>\n").is_empty());
        // Digits and a colon are not enough to make a header.
        assert!(parse_ip_text("12: error: no such device\n2024: something happened\n3: eth0: no flags\n").is_empty());
        // An empty flag list is still a header.
        let bare = parse_ip_text("3: sit0: <> mtu 1480\n").remove(0);
        assert_eq!(
            (bare.name.as_str(), bare.up, bare.carrier, bare.mtu),
            ("sit0", Some(false), Some(false), Some(1480))
        );
    }

    fn iface(
        name: &str,
        hwaddr: Option<&str>,
        (up, carrier): (bool, bool),
        mtu: u32,
        master: Option<&str>,
        ipv4: &[&str],
        ipv6: &[&str],
    ) -> Interface {
        Interface {
            name: name.into(),
            hwaddr: hwaddr.map(str::to_owned),
            up: Some(up),
            carrier: Some(carrier),
            mtu: Some(mtu),
            master: master.map(str::to_owned),
            ipv4: ipv4.iter().map(|s| (*s).to_owned()).collect(),
            ipv6: ipv6.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Expected values from glpi-agent's t/agent/tools/linux.t (see testdata/SOURCES.md).
    #[test]
    fn glpi_el8_sample() {
        let parsed = parse_ip_text(include_str!("testdata/glpi-ip_addr-el8.out"));
        assert_eq!(
            parsed,
            [
                iface("lo", None, (true, true), 65536, None, &["127.0.0.1/8"], &["::1/128"]),
                iface("eth0", Some("e4:11:5b:ed:36:0c"), (true, true), 1500, None, &["10.10.220.100/32"], &[]),
                iface("eth2", Some("e4:11:5b:ed:36:0e"), (false, false), 1500, None, &[], &[]),
                iface("eth1", Some("e4:11:5b:ed:36:38"), (false, false), 1500, None, &[], &[]),
                iface("eth3", Some("e4:11:5b:ed:36:3a"), (false, false), 1500, None, &[], &[]),
                iface(
                    "macvlan0",
                    Some("4e:05:62:03:69:e7"),
                    (true, true),
                    1500,
                    None,
                    &["10.10.220.101/24"],
                    &["fe80::260f:e9bb:60de:58f4/64"]
                ),
                iface("docker0", Some("02:42:0c:d5:0f:d7"), (true, false), 1500, None, &["172.17.0.1/16"], &[]),
            ]
        );
    }

    /// Expected values from glpi-agent's t/agent/tools/linux.t (`ip_addr-4`, `ip_addr-5`).
    #[test]
    fn fusioninventory_infiniband_and_label_samples() {
        let ib = parse_ip_text(include_str!("testdata/fusioninventory-ip_addr-4.out"));
        let ib_mac = "a0:00:01:00:fe:80:00:00:00:00:00:00:00:02:c9:03:00:15:94:d1";
        assert_eq!(ib, [iface("ib0", Some(ib_mac), (true, true), 2044, None, &["10.89.96.11/20"], &[])]);

        let parsed = parse_ip_text(include_str!("testdata/fusioninventory-ip_addr-5.out"));
        assert_eq!(names(&parsed), ["lo", "wlan0", "eth0", "bond0", "br0"]);
        assert_eq!(
            find(&parsed, "wlan0"),
            &iface(
                "wlan0",
                Some("00:1a:6b:0d:78:03"),
                (true, true),
                1500,
                None,
                &["128.93.189.62/22", "192.168.1.11/24"],
                &["fe80::21a:6bff:fe0d:7803/64"]
            )
        );
        assert_eq!(
            find(&parsed, "eth0"),
            &iface("eth0", Some("f0:1f:af:0f:a4:0c"), (true, false), 1500, None, &["192.168.1.11/24"], &[])
        );
        assert_eq!(find(&parsed, "bond0").hwaddr.as_deref(), Some("8e:b2:64:1a:0b:00"));
        assert_eq!((find(&parsed, "bond0").up, find(&parsed, "bond0").carrier), (Some(true), Some(false)));
        assert_eq!(find(&parsed, "br0").hwaddr.as_deref(), Some("aa:4b:c2:02:31:15"));
    }

    #[test]
    fn insights_core_samples() {
        let parsed = parse_ip_text(include_str!("testdata/insights-core-ip-addr.out"));
        assert_eq!(names(&parsed), ["lo", "eth7", "tunl0", "tunl1", "bond1.57", "ip.tun2"]);
        assert_eq!(
            find(&parsed, "eth7"),
            &iface("eth7", Some("00:11:3f:e2:f5:9f"), (true, false), 1500, Some("bond1"), &[], &[])
        );
        assert_eq!(find(&parsed, "tunl0").hwaddr, None);
        // The peer form reports the local address; insights-core keeps the remote one instead.
        assert_eq!(find(&parsed, "tunl1").ipv4, ["172.30.0.1/32"]);
        let bond = find(&parsed, "bond1.57");
        assert_eq!(bond.ipv4, ["10.192.4.171/27"]);
        assert_eq!(bond.ipv6, ["fe80::211:3fff:fee2:f59e/64", "2001::211:3fff:fee2:f59e/64"]);
        let tun2 = find(&parsed, "ip.tun2");
        assert_eq!((tun2.mtu, tun2.hwaddr.as_deref()), (Some(80), None));
        assert_eq!(tun2.ipv4, ["192.168.112.5/32"]);

        let links = parse_ip_text(include_str!("testdata/insights-core-ip-s-link.out"));
        assert_eq!(names(&links), ["lo", "enp0s25", "wlp3s0", "virbr0", "virbr0-nic", "vnet0", "ppp0", "tun0"]);
        assert!(links.iter().all(|i| i.ipv4.is_empty() && i.ipv6.is_empty()), "counters read as addresses");
        assert_eq!(find(&links, "enp0s25").hwaddr.as_deref(), Some("1c:75:08:a5:7e:25"));
        let nic = find(&links, "virbr0-nic");
        assert_eq!((nic.up, nic.master.as_deref()), (Some(false), Some("virbr0")));
        assert_eq!((find(&links, "ppp0").hwaddr.as_deref(), find(&links, "tun0").hwaddr.as_deref()), (None, None));
        assert_eq!(find(&links, "tun0").mtu, Some(1360));
    }

    #[test]
    fn cloud_init_samples_with_backslash_continuations() {
        for sample in [
            include_str!("testdata/cloud-init-ipaddrshow.out"),
            include_str!("testdata/cloud-init-ipaddrshow-metric.out"),
        ] {
            let parsed = parse_ip_text(sample);
            assert_eq!(
                parsed,
                [
                    iface("lo", None, (true, true), 65536, None, &["127.0.0.1/8"], &["::1/128"]),
                    iface(
                        "enp0s25",
                        Some("50:7b:9d:2c:af:91"),
                        (true, true),
                        1500,
                        None,
                        &["192.168.2.18/24"],
                        &["fe80::7777:2222:1111:eeee/64", "fe80::8107:2b92:867e:f8a6/64"]
                    ),
                ]
            );
        }
    }

    #[test]
    fn docker_host_sample() {
        let parsed = parse_ip_text(include_str!("testdata/docker-host-aws.out"));
        assert_eq!(
            names(&parsed),
            [
                "lo",
                "eth0",
                "docker0",
                "docker_gwbridge",
                "vetha4c00c0",
                "veth70920fc",
                "vethdcc24b4",
                "veth17552ac",
                "veth84ae5d6"
            ]
        );
        assert_eq!(find(&parsed, "eth0").mtu, Some(9001));
        assert_eq!(find(&parsed, "vetha4c00c0").master.as_deref(), Some("docker_gwbridge"));
        assert_eq!(find(&parsed, "veth84ae5d6").master.as_deref(), Some("docker0"));
        assert_eq!(find(&parsed, "docker0").ipv4, ["172.17.0.1/16"]);
    }

    /// Every interface the parser reports obeys the report's rules, whatever the input.
    fn assert_well_formed(interfaces: &[Interface]) {
        let mut seen = std::collections::HashSet::new();
        for i in interfaces {
            assert!(!i.name.is_empty(), "empty name in {interfaces:?}");
            assert!(!i.name.chars().any(char::is_whitespace), "whitespace in name {:?}", i.name);
            assert!(seen.insert(i.name.clone()), "{} listed twice", i.name);
            for v4 in &i.ipv4 {
                let (a, p) = v4.split_once('/').unwrap_or_else(|| panic!("no prefix in {v4}"));
                assert!(a.parse::<std::net::Ipv4Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 32), "{v4}");
            }
            for v6 in &i.ipv6 {
                let (a, p) = v6.split_once('/').unwrap_or_else(|| panic!("no prefix in {v6}"));
                assert!(a.parse::<std::net::Ipv6Addr>().is_ok() && p.parse::<u8>().is_ok_and(|p| p <= 128), "{v6}");
            }
            if let Some(mac) = &i.hwaddr {
                assert_eq!(mac, &mac.to_ascii_lowercase());
            }
        }
    }

    const REAL_SAMPLES: &[&str] = &[
        include_str!("testdata/course-canonical.out"),
        include_str!("testdata/lenovo-rd650.out"),
        include_str!("testdata/this-vm.out"),
        include_str!("testdata/dell-r630.out"),
        include_str!("testdata/hp-dl180-g6.out"),
        include_str!("testdata/oracle-x5-2-oda.out"),
        include_str!("testdata/glpi-ip_addr-el8.out"),
        include_str!("testdata/fusioninventory-ip_addr-4.out"),
        include_str!("testdata/fusioninventory-ip_addr-5.out"),
        include_str!("testdata/cloud-init-ipaddrshow.out"),
        include_str!("testdata/cloud-init-ipaddrshow-metric.out"),
        include_str!("testdata/insights-core-ip-addr.out"),
        include_str!("testdata/insights-core-ip-s-link.out"),
        include_str!("testdata/docker-host-aws.out"),
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            assert_well_formed(&parse_ip_text(&text));
        }

        #[test]
        fn ip_shaped_text_never_panics(lines in prop::collection::vec(
            "[0-9]{0,3}:? ?[a-z@0-9.:]{0,8}:? ?<?[A-Z_,-]{0,20}>? ?(mtu|master|state|inet6?|link/[a-z]{0,6}|peer| |[0-9a-f:./]{0,20}){0,8}",
            0..20,
        ), indents in prop::collection::vec(any::<bool>(), 20)) {
            let text: String = lines
                .iter()
                .zip(indents.iter())
                .map(|(l, indent)| if *indent { format!("    {l}\n") } else { format!("{l}\n") })
                .collect();
            assert_well_formed(&parse_ip_text(&text));
        }

        #[test]
        fn mutated_real_samples_never_panic(
            sample in 0..REAL_SAMPLES.len(),
            edits in prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<char>()), 1..12),
        ) {
            let mut text: Vec<char> = REAL_SAMPLES[sample].chars().collect();
            for (at, kind, ch) in edits {
                if text.is_empty() {
                    break;
                }
                let i = at.index(text.len());
                match kind {
                    0 => { text.remove(i); }
                    1 => text.insert(i, ch),
                    2 => text[i] = ch,
                    _ => text.truncate(i),
                }
            }
            let text: String = text.into_iter().collect();
            assert_well_formed(&parse_ip_text(&text));
        }
    }

    #[test]
    fn real_samples_are_well_formed_and_non_empty() {
        for sample in REAL_SAMPLES {
            let parsed = parse_ip_text(sample);
            assert!(!parsed.is_empty(), "no interface in {sample}");
            assert_well_formed(&parsed);
        }
    }
}
