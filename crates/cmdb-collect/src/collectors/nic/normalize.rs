//! The one place where both `ip` output forms become [`Interface`] values.
//!
//! The JSON and text parsers only find the raw pieces (a name, a flag list, a `link/TYPE ADDRESS`
//! pair, an `inet` token); every rule about what those pieces mean in the report lives here, so
//! the two paths cannot drift apart: stripping `@parent`, deciding which link types carry a
//! hardware address, reading UP and LOWER_UP, writing addresses as `address/prefix`, merging an
//! interface listed twice, and applying the configured exclusions.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use cmdb_model::report::Interface;

/// Link types whose "address" is not a hardware address.
///
/// iproute2's `ll_addr_n2a` prints the address of IPv4 tunnels (`ipip`, `sit`, `gre`) as a dotted
/// quad and of IPv6 tunnels (`tunnel6`, `gre6`) as an IPv6 address; neither identifies a piece of
/// hardware. `loopback`, `none` and `void` devices have no hardware either (loopback prints all
/// zeroes). Every other link type (`ether`, `infiniband`, `ieee802.11`, ...) prints colon-separated
/// hex octets, which are reported as they are.
const NO_HARDWARE_ADDRESS: &[&str] = &["loopback", "none", "void", "ipip", "sit", "gre", "gre6", "tunnel6"];

/// Address family of an `inet`/`inet6` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// `inet`.
    V4,
    /// `inet6`.
    V6,
}

impl Family {
    /// The family for iproute2's spelling (`inet`, `inet6`), or `None` for any other family.
    pub(crate) fn from_ip_name(name: &str) -> Option<Self> {
        match name {
            "inet" => Some(Family::V4),
            "inet6" => Some(Family::V6),
            _ => None,
        }
    }

    /// The longest prefix: what an address printed without a prefix covers.
    fn host_prefix(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

/// The interface name without iproute2's `@parent` suffix (`eth0.100@eth0` -> `eth0.100`,
/// `veth513c1a7@if165` -> `veth513c1a7`).
///
/// Linux allows `@` inside a name, so the text form is ambiguous when a name contains one; the
/// first `@` is taken as the separator because iproute2 prints the suffix only after the name.
/// A name that would become empty is kept whole rather than reported nameless.
pub(crate) fn strip_parent(name: &str) -> &str {
    match name.split_once('@') {
        Some((bare, _)) if !bare.is_empty() => bare,
        _ => name,
    }
}

/// The hardware address for a `link/TYPE ADDRESS` pair (JSON: `link_type`, `address`), lowercase.
///
/// `None` for link types without hardware (see [`NO_HARDWARE_ADDRESS`]), for anything that is not
/// at least two colon-separated hex octets (`link/slip` and `link/none` print no address at all,
/// garbage is refused rather than stored), and for the all-zero address some virtual devices carry
/// before they are configured.
pub(crate) fn hardware_address(link_type: &str, address: &str) -> Option<String> {
    if NO_HARDWARE_ADDRESS.contains(&link_type) {
        return None;
    }
    let octets: Vec<&str> = address.split(':').collect();
    let well_formed =
        octets.len() >= 2 && octets.iter().all(|o| o.len() == 2 && o.bytes().all(|b| b.is_ascii_hexdigit()));
    if !well_formed || octets.iter().all(|o| *o == "00") {
        return None;
    }
    Some(address.to_ascii_lowercase())
}

/// `(up, carrier)` from the interface flags: UP is the administrative state, LOWER_UP the link
/// (carrier) the driver reports. An UP port without cable has UP but not LOWER_UP (iproute2 then
/// adds NO-CARRIER), so it reads as up with no carrier.
pub(crate) fn link_state<'a>(flags: impl IntoIterator<Item = &'a str>) -> (bool, bool) {
    let mut up = false;
    let mut carrier = false;
    for flag in flags {
        match flag.trim() {
            "UP" => up = true,
            "LOWER_UP" => carrier = true,
            _ => {}
        }
    }
    (up, carrier)
}

/// `address/prefix`, or `None` when `address` is not an address of `family` or the prefix is out
/// of range. A missing prefix means a host address (/32 or /128).
///
/// The address keeps the spelling `ip` printed (inet_ntop's canonical form), lowercased, so the
/// JSON and text paths agree and nothing is rewritten behind the operator's back.
pub(crate) fn address_with_prefix(family: Family, address: &str, prefix: Option<u64>) -> Option<String> {
    let valid = match family {
        Family::V4 => address.parse::<Ipv4Addr>().is_ok(),
        Family::V6 => address.parse::<Ipv6Addr>().is_ok(),
    };
    if !valid {
        return None;
    }
    let prefix = match prefix {
        Some(p) if p <= u64::from(family.host_prefix()) => p,
        Some(_) => return None,
        None => u64::from(family.host_prefix()),
    };
    Some(format!("{}/{prefix}", address.to_ascii_lowercase()))
}

/// Interfaces in the order the kernel listed them, merged by name.
///
/// `nic.out` may hold an `ip link show` pass followed by an `ip addr show` pass, and a JSON
/// capture may hold `ip -j link` followed by `ip -j addr`; both list every interface twice. The
/// first sighting fixes the position, later sightings update the link facts they carry (the later
/// pass is the newer observation) and add addresses not yet listed.
#[derive(Debug, Default)]
pub(crate) struct InterfaceList {
    interfaces: Vec<Interface>,
    by_name: HashMap<String, usize>,
}

impl InterfaceList {
    /// The position of interface `name`, adding an empty entry at the end when it is new.
    pub(crate) fn position(&mut self, name: &str) -> usize {
        if let Some(&index) = self.by_name.get(name) {
            return index;
        }
        let index = self.interfaces.len();
        self.interfaces.push(Interface { name: name.to_owned(), ..Interface::default() });
        self.by_name.insert(name.to_owned(), index);
        index
    }

    /// The interface at `index` (from [`InterfaceList::position`]).
    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut Interface> {
        self.interfaces.get_mut(index)
    }

    /// The merged interfaces, in first-seen order.
    pub(crate) fn into_vec(self) -> Vec<Interface> {
        self.interfaces
    }
}

/// Records one more address on `interface` unless it is already there (the second pass of a
/// doubled listing repeats them).
pub(crate) fn add_address(interface: &mut Interface, family: Family, address: String) {
    let list = match family {
        Family::V4 => &mut interface.ipv4,
        Family::V6 => &mut interface.ipv6,
    };
    if !list.contains(&address) {
        list.push(address);
    }
}

/// True when `name` matches one of `patterns`: an exact name, or a prefix ending in `*`
/// (`veth*` matches every name starting with `veth`; a lone `*` matches everything).
pub fn is_excluded(name: &str, patterns: &[String]) -> bool {
    patterns.iter().any(|pattern| match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    })
}

/// Drops the interfaces that `patterns` exclude (`CollectOptions::nic_exclude`), keeping order.
pub(crate) fn exclude(interfaces: Vec<Interface>, patterns: &[String]) -> Vec<Interface> {
    interfaces.into_iter().filter(|i| !is_excluded(&i.name, patterns)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parent_suffix_is_stripped() {
        assert_eq!(strip_parent("veth513c1a7@if165"), "veth513c1a7");
        assert_eq!(strip_parent("eth0.100@eth0"), "eth0.100");
        assert_eq!(strip_parent("macvlan0@NONE"), "macvlan0");
        assert_eq!(strip_parent("eth0"), "eth0");
        assert_eq!(strip_parent("@odd"), "@odd");
    }

    #[test]
    fn hardware_addresses_by_link_type() {
        assert_eq!(hardware_address("ether", "00:1C:42:A5:57:7A").as_deref(), Some("00:1c:42:a5:57:7a"));
        let ib = "a0:00:01:00:fe:80:00:00:00:00:00:00:00:02:c9:03:00:15:94:d1";
        assert_eq!(hardware_address("infiniband", ib).as_deref(), Some(ib));
        assert_eq!(hardware_address("loopback", "00:00:00:00:00:00"), None);
        assert_eq!(hardware_address("ether", "00:00:00:00:00:00"), None);
        assert_eq!(hardware_address("sit", "0.0.0.0"), None);
        assert_eq!(hardware_address("ipip", "10.192.4.203"), None);
        // An IPv6 tunnel endpoint can look like hex octets; the link type rules it out.
        assert_eq!(hardware_address("tunnel6", "20:01:0d:b8:00:00:00:01"), None);
        assert_eq!(hardware_address("none", ""), None);
        assert_eq!(hardware_address("slip", ""), None);
        assert_eq!(hardware_address("ether", "brd"), None);
        assert_eq!(hardware_address("ether", "aa:bb:cc:dd:ee:eff"), None);
        assert_eq!(hardware_address("ether", "aa"), None);
    }

    #[test]
    fn flags_give_admin_state_and_carrier() {
        assert_eq!(link_state(["BROADCAST", "MULTICAST", "UP", "LOWER_UP"]), (true, true));
        assert_eq!(link_state(["NO-CARRIER", "BROADCAST", "MULTICAST", "UP"]), (true, false));
        assert_eq!(link_state(["BROADCAST", "MULTICAST"]), (false, false));
        // LOWER_UP must not be mistaken for UP.
        assert_eq!(link_state(["LOWER_UP"]), (false, true));
        assert_eq!(link_state([]), (false, false));
    }

    #[test]
    fn addresses_get_a_prefix_and_are_validated() {
        assert_eq!(address_with_prefix(Family::V4, "10.0.0.1", Some(24)).as_deref(), Some("10.0.0.1/24"));
        assert_eq!(address_with_prefix(Family::V4, "10.0.0.1", None).as_deref(), Some("10.0.0.1/32"));
        assert_eq!(address_with_prefix(Family::V6, "FE80::1", None).as_deref(), Some("fe80::1/128"));
        assert_eq!(address_with_prefix(Family::V6, "2001:db8::1", Some(64)).as_deref(), Some("2001:db8::1/64"));
        assert_eq!(address_with_prefix(Family::V4, "10.0.0.1", Some(33)), None);
        assert_eq!(address_with_prefix(Family::V6, "::1", Some(129)), None);
        assert_eq!(address_with_prefix(Family::V4, "fe80::1", Some(64)), None);
        assert_eq!(address_with_prefix(Family::V6, "10.0.0.1", Some(24)), None);
        assert_eq!(address_with_prefix(Family::V4, "some", Some(24)), None);
    }

    #[test]
    fn merging_keeps_first_position_and_unique_addresses() {
        let mut list = InterfaceList::default();
        let lo = list.position("lo");
        let eth0 = list.position("eth0");
        assert_eq!(list.position("lo"), lo);
        let iface = list.get_mut(eth0).expect("eth0 exists");
        add_address(iface, Family::V4, "10.0.0.1/24".into());
        add_address(iface, Family::V4, "10.0.0.1/24".into());
        add_address(iface, Family::V6, "fe80::1/64".into());
        let names: Vec<String> =
            list.into_vec().into_iter().map(|i| format!("{}:{:?}{:?}", i.name, i.ipv4, i.ipv6)).collect();
        assert_eq!(names, ["lo:[][]", "eth0:[\"10.0.0.1/24\"][\"fe80::1/64\"]"]);
    }

    #[test]
    fn exclusions_match_exact_names_and_prefixes() {
        let patterns = strings(&["lo", "veth*"]);
        assert!(is_excluded("lo", &patterns));
        assert!(is_excluded("veth513c1a7", &patterns));
        assert!(is_excluded("veth", &patterns));
        assert!(!is_excluded("lo0", &patterns));
        assert!(!is_excluded("eth0", &patterns));
        assert!(!is_excluded("myveth0", &patterns));
        assert!(is_excluded("anything", &strings(&["*"])));
        assert!(!is_excluded("lo", &[]));
        let kept: Vec<String> = exclude(
            ["lo", "eth0", "veth1", "docker0"]
                .iter()
                .map(|n| Interface { name: (*n).into(), ..Default::default() })
                .collect(),
            &patterns,
        )
        .into_iter()
        .map(|i| i.name)
        .collect();
        assert_eq!(kept, ["eth0", "docker0"]);
    }
}
