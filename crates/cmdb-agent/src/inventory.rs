//! SSH inventories: a plain host list, or an Ansible INI inventory.
//!
//! Plain list: one host per line as `host`, `host:port`, `user@host:port`, `[v6]:port` or a bare
//! IPv6 address; `#` starts a comment; blank lines are ignored.
//!
//! Ansible INI (chosen when the file has a `[group]` header or `key=value` host variables):
//! `[group]` host lines with inline variables, `[group:vars]`, `[group:children]`, host ranges
//! (`web[01:03]`, `db-[a:c]`, `node[0:10:2]`), `host:port` patterns. Of the variables, only
//! `ansible_host`, `ansible_port` and `ansible_user` matter here (and their old `ansible_ssh_*`
//! spellings). Variables resolve as Ansible does: `all` < groups by depth (a child over its
//! parent, then by name) < host variables.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv6Addr;
use std::path::Path;

/// One host to collect, as the inventory names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryHost {
    /// The inventory name: the state key and the report's fallback host name.
    pub name: String,
    /// Address or DNS name to connect to.
    pub address: String,
    /// SSH port, when the inventory names one.
    pub port: Option<u16>,
    /// Login user, when the inventory names one.
    pub user: Option<String>,
}

/// Why an inventory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InventoryError {
    /// The file cannot be read.
    #[error("cannot read inventory {path}: {message}")]
    Unreadable {
        /// The inventory path.
        path: String,
        /// Why.
        message: String,
    },
    /// A line is malformed.
    #[error("{path}:{line}: {message}")]
    Line {
        /// The inventory path (or "<inventory>").
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The inventory names no host.
    #[error("{0}: the inventory lists no hosts")]
    Empty(String),
}

/// Reads and parses an inventory file.
pub fn load(path: &Path) -> Result<Vec<InventoryHost>, InventoryError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InventoryError::Unreadable { path: path.display().to_string(), message: e.to_string() })?;
    parse(&text, &path.display().to_string())
}

/// Parses inventory text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<Vec<InventoryHost>, InventoryError> {
    let hosts = if looks_like_ini(text) { parse_ini(text, origin)? } else { parse_plain(text, origin)? };
    if hosts.is_empty() {
        return Err(InventoryError::Empty(origin.to_owned()));
    }
    Ok(hosts)
}

fn strip_comment(line: &str) -> &str {
    // A comment starts at `#` or `;` at the start of the line, or at ` #` later on.
    let trimmed = line.trim();
    if trimmed.starts_with('#') || trimmed.starts_with(';') {
        return "";
    }
    match trimmed.find(" #").or_else(|| trimmed.find("\t#")) {
        Some(at) => trimmed[..at].trim_end(),
        None => trimmed,
    }
}

fn is_group_header(line: &str) -> bool {
    line.starts_with('[') && line.ends_with(']') && line[1..line.len() - 1].parse::<Ipv6Addr>().is_err()
}

fn looks_like_ini(text: &str) -> bool {
    text.lines().map(strip_comment).any(|line| is_group_header(line) || line.contains('='))
}

/// A host word split into address and port. IPv6 addresses are either bracketed (`[::1]:22`,
/// `[::1]`) or bare without a port.
fn split_host_port(word: &str) -> Result<(String, Option<u16>), String> {
    let parse_port = |text: &str| -> Result<u16, String> {
        match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(format!("invalid port {text:?} in {word:?}")),
            Ok(port) => Ok(port),
        }
    };
    if let Some(rest) = word.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or_else(|| format!("unclosed '[' in {word:?}"))?;
        inside.parse::<Ipv6Addr>().map_err(|_| format!("{inside:?} in {word:?} is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(parse_port(after.strip_prefix(':').ok_or_else(|| format!("unexpected {after:?} in {word:?}"))?)?),
        };
        return Ok((inside.to_owned(), port));
    }
    match word.matches(':').count() {
        0 => Ok((word.to_owned(), None)),
        1 => {
            let (host, port) = word.split_once(':').unwrap_or((word, ""));
            Ok((host.to_owned(), Some(parse_port(port)?)))
        }
        _ => {
            word.parse::<Ipv6Addr>().map_err(|_| format!("{word:?} is neither host:port nor an IPv6 address"))?;
            Ok((word.to_owned(), None))
        }
    }
}

fn check_address(address: &str, word: &str) -> Result<(), String> {
    if address.is_empty() {
        return Err(format!("empty host name in {word:?}"));
    }
    let ok = address.parse::<Ipv6Addr>().is_ok()
        || address.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok { Ok(()) } else { Err(format!("invalid host name {address:?}")) }
}

fn parse_plain(text: &str, origin: &str) -> Result<Vec<InventoryHost>, InventoryError> {
    let mut hosts: Vec<InventoryHost> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        let err = |message: String| InventoryError::Line { path: origin.to_owned(), line: index + 1, message };
        let mut words = line.split_whitespace();
        let word = words.next().unwrap_or_default();
        if let Some(extra) = words.next() {
            return Err(err(format!("unexpected {extra:?} after the host (one host per line)")));
        }
        let (user, target) = match word.rsplit_once('@') {
            Some((user, target)) if !user.is_empty() => (Some(user.to_owned()), target),
            Some(_) => return Err(err(format!("empty user in {word:?}"))),
            None => (None, word),
        };
        let (address, port) = split_host_port(target).map_err(&err)?;
        check_address(&address, word).map_err(&err)?;
        if hosts.iter().any(|h| h.name == target) {
            tracing::warn!(
                inventory = origin,
                line = index + 1,
                host = target,
                "host listed twice; collecting it once"
            );
            continue;
        }
        hosts.push(InventoryHost { name: target.to_owned(), address, port, user });
    }
    Ok(hosts)
}

/// Expands Ansible host ranges: `web[01:03]` -> web01, web02, web03 (the width of the first bound
/// is kept), `db-[a:c]` -> db-a, db-b, db-c, `n[0:10:5]` -> n0, n5, n10. Several ranges multiply.
pub fn expand_ranges(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('[') else { return Ok(vec![pattern.to_owned()]) };
    let close = pattern[open..].find(']').map(|c| c + open).ok_or_else(|| format!("unclosed '[' in {pattern:?}"))?;
    let (head, inside, tail) = (&pattern[..open], &pattern[open + 1..close], &pattern[close + 1..]);
    let parts: Vec<&str> = inside.split(':').collect();
    let (start, end, step) = match parts.as_slice() {
        [start, end] => (*start, *end, 1usize),
        [start, end, step] => {
            let step: usize = step.parse().map_err(|_| format!("invalid range step {step:?} in {pattern:?}"))?;
            (*start, *end, step)
        }
        _ => return Err(format!("invalid range [{inside}] in {pattern:?} (write [01:10], [a:f] or [0:10:2])")),
    };
    if step == 0 {
        return Err(format!("range step 0 in {pattern:?}"));
    }
    let items: Vec<String> = if !start.is_empty() && start.bytes().all(|b| b.is_ascii_digit()) {
        let width = start.len();
        let (from, to): (u64, u64) = (
            start.parse().map_err(|_| format!("invalid range start {start:?}"))?,
            end.parse().map_err(|_| format!("invalid range end {end:?} in {pattern:?}"))?,
        );
        if from > to {
            return Err(format!("range [{inside}] in {pattern:?} runs backwards"));
        }
        if (to - from) / step as u64 > 100_000 {
            return Err(format!("range [{inside}] in {pattern:?} is too large"));
        }
        (from..=to).step_by(step).map(|n| format!("{n:0width$}")).collect()
    } else if start.len() == 1 && end.len() == 1 && start.bytes().all(|b| b.is_ascii_alphabetic()) {
        let (from, to) = (start.as_bytes()[0], end.as_bytes()[0]);
        if !end.as_bytes()[0].is_ascii_alphabetic() || from > to {
            return Err(format!("invalid letter range [{inside}] in {pattern:?}"));
        }
        (from..=to).step_by(step).map(|c| (c as char).to_string()).collect()
    } else {
        return Err(format!("invalid range [{inside}] in {pattern:?} (write [01:10], [a:f] or [0:10:2])"));
    };
    let mut out = Vec::new();
    for item in items {
        for rest in expand_ranges(tail)? {
            out.push(format!("{head}{item}{rest}"));
        }
    }
    Ok(out)
}

/// Splits a host line's variables, honouring single and double quotes.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unclosed quote".to_owned());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[derive(Default)]
struct Group {
    vars: BTreeMap<String, (String, usize)>,
    children: Vec<String>,
    hosts: Vec<String>,
}

enum Section {
    Hosts(String),
    Vars(String),
    Children(String),
}

fn parse_ini(text: &str, origin: &str) -> Result<Vec<InventoryHost>, InventoryError> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    groups.entry("all".to_owned()).or_default();
    // Host name -> (variables with their line numbers, line of first appearance), in order of appearance.
    let mut host_vars: HashMap<String, BTreeMap<String, (String, usize)>> = HashMap::new();
    let mut order: Vec<(String, usize)> = Vec::new();
    let mut section = Section::Hosts("ungrouped".to_owned());
    for (index, raw) in text.lines().enumerate() {
        let lineno = index + 1;
        let err = |message: String| InventoryError::Line { path: origin.to_owned(), line: lineno, message };
        let line = strip_comment(raw);
        if line.is_empty() {
            continue;
        }
        if is_group_header(line) {
            let inner = line[1..line.len() - 1].trim();
            section = match inner.split_once(':') {
                None => Section::Hosts(inner.to_owned()),
                Some((name, "vars")) => Section::Vars(name.to_owned()),
                Some((name, "children")) => Section::Children(name.to_owned()),
                Some((_, other)) => {
                    return Err(err(format!("unknown section type :{other} (expected :vars or :children)")));
                }
            };
            let name = match &section {
                Section::Hosts(n) | Section::Vars(n) | Section::Children(n) => n.clone(),
            };
            if name.is_empty() || name.contains(char::is_whitespace) {
                return Err(err(format!("invalid group name {name:?}")));
            }
            groups.entry(name).or_default();
            continue;
        }
        match &section {
            Section::Vars(group) => {
                let (key, value) =
                    line.split_once('=').ok_or_else(|| err(format!("expected key=value in [{group}:vars]")))?;
                let group = groups.entry(group.clone()).or_default();
                group.vars.insert(key.trim().to_owned(), (unquote(value).to_owned(), lineno));
            }
            Section::Children(group) => {
                let child = line.split_whitespace().next().unwrap_or_default().to_owned();
                groups.entry(child.clone()).or_default();
                groups.entry(group.clone()).or_default().children.push(child);
            }
            Section::Hosts(group) => {
                let words = split_words(line).map_err(&err)?;
                let Some((pattern, vars)) = words.split_first() else { continue };
                let mut line_vars = BTreeMap::new();
                for var in vars {
                    let (key, value) = var
                        .split_once('=')
                        .ok_or_else(|| err(format!("expected key=value after the host, found {var:?}")))?;
                    line_vars.insert(key.to_owned(), (value.to_owned(), lineno));
                }
                let names = if pattern.starts_with('[') {
                    vec![pattern.clone()]
                } else {
                    expand_ranges(pattern).map_err(&err)?
                };
                for name in names {
                    let entry = host_vars.entry(name.clone()).or_insert_with(|| {
                        order.push((name.clone(), lineno));
                        BTreeMap::new()
                    });
                    entry.extend(line_vars.clone());
                    let members = &mut groups.entry(group.clone()).or_default().hosts;
                    if !members.contains(&name) {
                        members.push(name);
                    }
                }
            }
        }
    }

    let depths =
        group_depths(&groups).map_err(|message| InventoryError::Line { path: origin.to_owned(), line: 0, message })?;
    let mut hosts = Vec::new();
    for (name, first_line) in order {
        let err = |line: usize, message: String| InventoryError::Line { path: origin.to_owned(), line, message };
        let mut member_of: Vec<&String> = Vec::new();
        for (group_name, group) in &groups {
            if group.hosts.contains(&name) {
                collect_ancestors(&groups, group_name, &mut member_of);
            }
        }
        member_of.sort_by_key(|g| (if g.as_str() == "all" { 0 } else { depths.get(*g).copied().unwrap_or(1) }, *g));
        member_of.dedup();
        let mut vars: BTreeMap<String, (String, usize)> = groups.get("all").map(|g| g.vars.clone()).unwrap_or_default();
        for group in member_of {
            if let Some(g) = groups.get(group) {
                vars.extend(g.vars.clone());
            }
        }
        let (pattern_host, pattern_port) = split_host_port(&name).map_err(|m| err(first_line, m))?;
        let own = host_vars.get(&name).cloned().unwrap_or_default();
        if let Some(port) = pattern_port {
            vars.insert("ansible_port".to_owned(), (port.to_string(), first_line));
            vars.remove("ansible_ssh_port");
        }
        vars.extend(own);
        let pick = |names: [&str; 2]| names.iter().find_map(|n| vars.get(*n).cloned());
        for key in
            ["ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user", "ansible_ssh_user"]
        {
            if let Some((value, line)) = vars.get(key)
                && value.contains("{{")
            {
                return Err(err(*line, format!("{key}={value:?} is a template; cmdb-agent cannot evaluate Jinja")));
            }
        }
        let address = match pick(["ansible_host", "ansible_ssh_host"]) {
            Some((host, _)) => host,
            None => pattern_host.clone(),
        };
        check_address(&address, &name).map_err(|m| err(first_line, m))?;
        let port = match pick(["ansible_port", "ansible_ssh_port"]) {
            Some((text, line)) => match text.parse::<u16>() {
                Ok(p) if p > 0 => Some(p),
                _ => return Err(err(line, format!("invalid ansible_port {text:?} for {name}"))),
            },
            None => None,
        };
        let user = pick(["ansible_user", "ansible_ssh_user"]).map(|(u, _)| u);
        hosts.push(InventoryHost { name: pattern_host_name(&name, &pattern_host, pattern_port), address, port, user });
    }
    Ok(hosts)
}

/// The inventory name of a host: as written, with a pattern port kept so two hosts behind one
/// address stay apart.
fn pattern_host_name(written: &str, host: &str, port: Option<u16>) -> String {
    match port {
        Some(_) => written.to_owned(),
        None => host.to_owned(),
    }
}

fn collect_ancestors<'a>(groups: &'a BTreeMap<String, Group>, group: &'a String, out: &mut Vec<&'a String>) {
    if out.contains(&group) {
        return;
    }
    out.push(group);
    for (name, candidate) in groups {
        if candidate.children.contains(group) {
            collect_ancestors(groups, name, out);
        }
    }
}

/// Each group's depth below `all`: 1 for top-level groups, parent + 1 for children (the deepest path).
fn group_depths(groups: &BTreeMap<String, Group>) -> Result<HashMap<String, usize>, String> {
    fn depth(
        groups: &BTreeMap<String, Group>,
        name: &str,
        stack: &mut Vec<String>,
        memo: &mut HashMap<String, usize>,
    ) -> Result<usize, String> {
        if let Some(d) = memo.get(name) {
            return Ok(*d);
        }
        if stack.iter().any(|s| s == name) {
            return Err(format!("group {name:?} is its own ancestor ([...:children] cycle)"));
        }
        stack.push(name.to_owned());
        let mut best = 1;
        for (parent, group) in groups {
            if parent != "all" && group.children.iter().any(|c| c == name) {
                best = best.max(depth(groups, parent, stack, memo)? + 1);
            }
        }
        stack.pop();
        memo.insert(name.to_owned(), best);
        Ok(best)
    }
    let mut memo = HashMap::new();
    for name in groups.keys() {
        depth(groups, name, &mut Vec::new(), &mut memo)?;
    }
    Ok(memo)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, address: &str, port: Option<u16>, user: Option<&str>) -> InventoryHost {
        InventoryHost { name: name.into(), address: address.into(), port, user: user.map(str::to_owned) }
    }

    #[test]
    fn plain_list_with_ports_comments_and_ipv6() {
        let text = "# data centre 1\nweb-01\n\n  web-02:2222   # behind NAT\nops@db-01.example.com:22\n\
                    [2001:db8::1]:2200\n2001:db8::2\n[2001:db8::3]\nweb-01\n";
        let hosts = parse(text, "hosts.txt").expect("parses");
        assert_eq!(
            hosts,
            vec![
                host("web-01", "web-01", None, None),
                host("web-02:2222", "web-02", Some(2222), None),
                host("db-01.example.com:22", "db-01.example.com", Some(22), Some("ops")),
                host("[2001:db8::1]:2200", "2001:db8::1", Some(2200), None),
                host("2001:db8::2", "2001:db8::2", None, None),
                host("[2001:db8::3]", "2001:db8::3", None, None),
            ]
        );
    }

    #[test]
    fn plain_list_errors_name_file_and_line() {
        let err = parse("web-01\nweb-02:99999\n", "hosts.txt").expect_err("bad port");
        assert_eq!(err.to_string(), "hosts.txt:2: invalid port \"99999\" in \"web-02:99999\"");
        let err = parse("web 01\n", "hosts.txt").expect_err("two words");
        assert!(err.to_string().starts_with("hosts.txt:1:"), "{err}");
        assert!(matches!(parse("# nothing\n\n", "hosts.txt"), Err(InventoryError::Empty(_))));
    }

    #[test]
    fn ansible_ini_groups_vars_children_ranges() {
        let text = r#"
mail.example.com

[webservers]
web[01:03].example.com
foo.example.com:5309 ansible_user=deploy

[dbservers]
db-[a:b].example.com ansible_host=10.0.0.9   # comment
one.example.com ansible_host="10.0.0.7" ansible_port=2201

[dc1:children]
webservers
dbservers

[dc1:vars]
ansible_user=dc1-admin
ansible_port = 2022

[webservers:vars]
ansible_port=2200

[all:vars]
ansible_user=everyone
"#;
        let hosts = parse(text, "inventory.ini").expect("parses");
        let by_name: HashMap<&str, &InventoryHost> = hosts.iter().map(|h| (h.name.as_str(), h)).collect();
        assert_eq!(hosts.len(), 8, "{hosts:#?}");
        assert_eq!(hosts[0], host("mail.example.com", "mail.example.com", None, Some("everyone")));
        // webservers:vars (depth 2) beats dc1:vars (depth 1) for the port; dc1 gives the user.
        assert_eq!(
            *by_name["web02.example.com"],
            host("web02.example.com", "web02.example.com", Some(2200), Some("dc1-admin"))
        );
        assert!(by_name.contains_key("web01.example.com") && by_name.contains_key("web03.example.com"));
        // The port in the pattern and an inline user are host variables: they beat every group.
        assert_eq!(
            *by_name["foo.example.com:5309"],
            host("foo.example.com:5309", "foo.example.com", Some(5309), Some("deploy"))
        );
        assert_eq!(*by_name["db-a.example.com"], host("db-a.example.com", "10.0.0.9", Some(2022), Some("dc1-admin")));
        assert_eq!(*by_name["one.example.com"], host("one.example.com", "10.0.0.7", Some(2201), Some("dc1-admin")));
    }

    #[test]
    fn ranges() {
        assert_eq!(expand_ranges("web[01:03]").expect("ok"), vec!["web01", "web02", "web03"]);
        assert_eq!(expand_ranges("n[0:10:5].x").expect("ok"), vec!["n0.x", "n5.x", "n10.x"]);
        assert_eq!(expand_ranges("r[a:b]-[1:2]").expect("ok"), vec!["ra-1", "ra-2", "rb-1", "rb-2"]);
        assert!(expand_ranges("web[03:01]").is_err());
        assert!(expand_ranges("web[1:").is_err());
    }

    #[test]
    fn ini_errors_name_the_line() {
        let err = parse("[web]\nweb-01 ansible_port=abc\n", "inv.ini").expect_err("bad port");
        assert_eq!(err.to_string(), "inv.ini:2: invalid ansible_port \"abc\" for web-01");
        let err = parse("[web]\nweb-01 ansible_host=\"{{ lookup('x') }}\"\n", "inv.ini").expect_err("template");
        assert!(err.to_string().starts_with("inv.ini:2:"), "{err}");
        let err = parse("[a:children]\nb\n[b:children]\na\n[a]\nh1\n", "inv.ini").expect_err("cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
        let err = parse("[web:hosts]\nh\n", "inv.ini").expect_err("section type");
        assert!(err.to_string().starts_with("inv.ini:1:"), "{err}");
    }
}
