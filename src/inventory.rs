//! The site's inventory: which address holds which KSC role, and the
//! site-specific flows the vendor table lacks (`[[allow]]`).
//!
//! Format (DESIGN.md "Contracts"): a TOML file of `[[host]]` entries, each
//! with a `name`, an `addr` (address or CIDR) and a `role` or `roles`.
//! Lookups are by longest prefix: a host declared inside a declared network
//! takes its own entry. Loading is the cold path and validates everything:
//! a bad address, an unknown role, an entry declared twice with different
//! roles is an error with file:line:column.

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;

use crate::error::{parse_toml, ConfigError};
use crate::rules::{Role, RoleSet, Transport};

/// One `[[host]]` entry.
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub net: IpNet,
    /// Declared roles, without implications.
    pub roles: RoleSet,
}

/// One `[[allow]]` entry: accepted although no rule covers it.
#[derive(Clone, Debug)]
pub struct Allow {
    pub name: String,
    pub client: Option<IpNet>,
    pub server: IpNet,
    pub transport: Transport,
    pub ports: Vec<u16>,
    pub reason: String,
}

/// A loaded inventory.
#[derive(Clone, Debug, Default)]
pub struct Inventory {
    pub origin: String,
    pub hosts: Vec<Host>,
    pub allows: Vec<Allow>,
    /// Single addresses (/32, /128) → host index: most entries, O(1).
    exact: hashbrown::HashMap<IpAddr, usize>,
    /// Networks, longest prefix first.
    nets: Vec<usize>,
}

/// What the inventory says about one address.
#[derive(Clone, Copy, Debug)]
pub struct Lookup<'a> {
    pub host: &'a Host,
    /// The address is the broadcast address of a declared network.
    pub is_broadcast: bool,
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory, crate::Error> {
        let text =
            std::fs::read_to_string(path).map_err(|source| crate::Error::Read { path: path.to_path_buf(), source })?;
        Ok(Inventory::parse(path, &text)?)
    }

    /// Builds an inventory from hosts already validated (role inference).
    pub fn from_hosts(origin: &str, hosts: Vec<Host>) -> Inventory {
        let mut inv = Inventory { origin: origin.into(), hosts, ..Default::default() };
        inv.index();
        inv
    }

    fn index(&mut self) {
        self.exact.clear();
        self.nets.clear();
        for (i, h) in self.hosts.iter().enumerate() {
            if h.net.prefix_len() == h.net.max_prefix_len() {
                self.exact.insert(h.net.addr(), i);
            } else {
                self.nets.push(i);
            }
        }
        let hosts = &self.hosts;
        self.nets.sort_by_key(|&i| std::cmp::Reverse(hosts[i].net.prefix_len()));
    }

    /// The entry covering `addr`, longest prefix first.
    pub fn lookup(&self, addr: IpAddr) -> Option<Lookup<'_>> {
        if let Some(&i) = self.exact.get(&addr) {
            return Some(Lookup { host: &self.hosts[i], is_broadcast: false });
        }
        self.nets.iter().map(|&i| &self.hosts[i]).find(|h| h.net.contains(&addr)).map(|host| Lookup {
            host,
            // The last address of an IPv4 network shorter than /31 is its
            // directed broadcast (RFC 919 §7, RFC 3021 for /31).
            is_broadcast: matches!(host.net, IpNet::V4(n) if n.prefix_len() < 31 && IpAddr::V4(n.broadcast()) == addr),
        })
    }

    /// The first `[[allow]]` entry covering this conversation.
    pub fn allowed(&self, client: IpAddr, server: IpAddr, t: Transport, port: u16) -> Option<&Allow> {
        self.allows.iter().find(|a| {
            a.transport == t
                && a.ports.contains(&port)
                && a.server.contains(&server)
                && a.client.is_none_or(|c| c.contains(&client))
        })
    }

    pub fn parse(path: &Path, text: &str) -> Result<Inventory, ConfigError> {
        let raw: RawInventory = parse_toml(path, text)?;
        let err = |span: std::ops::Range<usize>, msg: String| ConfigError::at(path, text, Some(span), msg);
        let mut hosts: Vec<(Host, std::ops::Range<usize>)> = Vec::with_capacity(raw.host.len());
        // Network → index in `hosts`. Found by hand (fuzz/README.md): a
        // linear search for an earlier entry of the same network made
        // loading quadratic, 13 s for 200,000 hosts and minutes for a
        // million; a site may well list every device.
        let mut by_net: hashbrown::HashMap<IpNet, usize> = hashbrown::HashMap::with_capacity(raw.host.len());
        for h in raw.host {
            let name = h.name.get_ref().trim().to_string();
            if name.is_empty() {
                return Err(err(h.name.span(), "host `name` must not be empty".into()));
            }
            let net = parse_net(h.addr.get_ref())
                .map_err(|m| err(h.addr.span(), format!("host `{name}`, field `addr`: {m}")))?;
            let list: Vec<&Spanned<String>> = match (&h.role, &h.roles) {
                (Some(_), Some(r)) => {
                    return Err(err(r.span(), format!("host `{name}`: give either `role` or `roles`, not both")))
                }
                (None, None) => {
                    return Err(err(
                        h.name.span(),
                        format!("host `{name}` has no `role` or `roles`; valid roles: {}", declarable()),
                    ))
                }
                (Some(r), None) => vec![r],
                (None, Some(rs)) => rs.get_ref().iter().collect(),
            };
            if list.is_empty() {
                return Err(err(
                    h.name.span(),
                    format!("host `{name}`: `roles` is empty; valid roles: {}", declarable()),
                ));
            }
            let mut roles = RoleSet::EMPTY;
            for r in list {
                let role =
                    Role::parse_declarable(r.get_ref()).map_err(|m| err(r.span(), format!("host `{name}`: {m}")))?;
                roles = roles.with(role);
            }
            if let Some((prev, _)) = by_net.get(&net).map(|&i| &hosts[i]) {
                if prev.roles != roles || prev.name != name {
                    return Err(err(
                        h.addr.span(),
                        format!(
                            "host `{name}`: {net} is already declared as `{}` ({}); an address has one entry — merge the roles into it",
                            prev.name,
                            prev.roles.names()
                        ),
                    ));
                }
                continue; // an exact repetition is harmless
            }
            by_net.insert(net, hosts.len());
            hosts.push((Host { name, net, roles }, h.addr.span()));
        }

        let mut allows = Vec::new();
        for a in raw.allow {
            let name = a.name.get_ref().clone();
            let server = parse_net(a.server.get_ref())
                .map_err(|m| err(a.server.span(), format!("allow `{name}`, field `server`: {m}")))?;
            let client = match &a.client {
                Some(c) => Some(
                    parse_net(c.get_ref())
                        .map_err(|m| err(c.span(), format!("allow `{name}`, field `client`: {m}")))?,
                ),
                None => None,
            };
            if a.ports.is_empty() {
                return Err(err(a.name.span(), format!("allow `{name}`: `ports` must list at least one port")));
            }
            if a.reason.trim().is_empty() {
                return Err(err(a.name.span(), format!("allow `{name}`: give a `reason` (it is shown in the report)")));
            }
            allows.push(Allow { name, client, server, transport: a.transport, ports: a.ports, reason: a.reason });
        }

        let mut inv = Inventory {
            origin: path.display().to_string(),
            hosts: hosts.into_iter().map(|(h, _)| h).collect(),
            allows,
            ..Default::default()
        };
        inv.index();
        Ok(inv)
    }
}

fn declarable() -> String {
    Role::DECLARABLE.iter().map(|r| r.name()).collect::<Vec<_>>().join(", ")
}

/// An address ("10.0.0.1", "fe80::1") or a CIDR ("10.1.0.0/16").
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if s.contains('/') {
        let net: IpNet =
            s.parse().map_err(|_| format!("`{s}` is not a CIDR network (like 10.1.0.0/16 or 2001:db8::/48)"))?;
        if net.trunc() != net {
            return Err(format!("`{s}` has host bits set; did you mean {}?", net.trunc()));
        }
        Ok(net)
    } else {
        let a: IpAddr =
            s.parse().map_err(|_| format!("`{s}` is not an IP address (like 10.0.0.1 or fe80::1) or a CIDR"))?;
        Ok(IpNet::from(a))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    #[serde(default)]
    host: Vec<RawHost>,
    #[serde(default)]
    allow: Vec<RawAllow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    addr: Spanned<String>,
    role: Option<Spanned<String>>,
    roles: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAllow {
    name: Spanned<String>,
    client: Option<Spanned<String>>,
    server: Spanned<String>,
    transport: Transport,
    ports: Vec<u16>,
    reason: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Inventory, ConfigError> {
        Inventory::parse(Path::new("inv.toml"), t)
    }

    const INV: &str = r#"
[[host]]
name = "ksc01"
addr = "10.0.0.10"
roles = ["administration-server", "web-console"]

[[host]]
name = "office"
addr = "10.1.0.0/16"
role = "managed-device"

[[host]]
name = "dp1"
addr = "10.1.0.5"
role = "distribution-point"

[[allow]]
name = "backup"
server = "10.0.0.10"
transport = "tcp"
ports = [445]
reason = "nightly backup"
"#;

    #[test]
    fn longest_prefix_wins() {
        let inv = parse(INV).unwrap();
        let l = |a: &str| inv.lookup(a.parse().unwrap()).map(|l| l.host.name.clone());
        assert_eq!(l("10.1.0.5").as_deref(), Some("dp1"));
        assert_eq!(l("10.1.2.3").as_deref(), Some("office"));
        assert_eq!(l("10.0.0.10").as_deref(), Some("ksc01"));
        assert_eq!(l("10.2.0.1"), None);
        assert!(inv.lookup("10.1.255.255".parse().unwrap()).unwrap().is_broadcast);
        assert!(!inv.lookup("10.1.255.254".parse().unwrap()).unwrap().is_broadcast);
    }

    #[test]
    fn allow_matches_any_client_when_unset() {
        let inv = parse(INV).unwrap();
        let a = inv.allowed("10.1.2.3".parse().unwrap(), "10.0.0.10".parse().unwrap(), Transport::Tcp, 445);
        assert_eq!(a.unwrap().name, "backup");
        assert!(inv.allowed("10.1.2.3".parse().unwrap(), "10.0.0.10".parse().unwrap(), Transport::Udp, 445).is_none());
    }

    #[test]
    fn bad_entries_are_located() {
        let e = parse("[[host]]\nname = \"a\"\naddr = \"10.0.0.300\"\nrole = \"dbms\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 8), "{e}");
        assert!(e.message.contains("not an IP address"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\naddr = \"10.0.0.1/8\"\nrole = \"dbms\"\n").unwrap_err();
        assert!(e.message.contains("did you mean 10.0.0.0/8"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\naddr = \"10.0.0.1\"\nrole = \"dbm\"\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("unknown role `dbm`; valid roles: administration-server"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\naddr = \"10.0.0.1\"\nrole = \"external\"\n").unwrap_err();
        assert!(e.message.contains("cannot be declared"), "{e}");

        let e = parse("[[host]]\nname = \"a\"\naddr = \"10.0.0.1\"\nrole = \"dbms\"\ncolour = 1\n").unwrap_err();
        assert!(e.message.contains("unknown field `colour`"), "{e}");
    }

    #[test]
    fn contradictory_entries_are_errors() {
        let t = "[[host]]\nname = \"a\"\naddr = \"10.0.0.1\"\nrole = \"dbms\"\n[[host]]\nname = \"b\"\naddr = \"10.0.0.1\"\nrole = \"managed-device\"\n";
        let e = parse(t).unwrap_err();
        assert_eq!(e.line, 7);
        assert!(e.message.contains("already declared as `a` (dbms)"), "{e}");
        let both = "[[host]]\nname = \"a\"\naddr = \"10.0.0.1\"\nrole = \"dbms\"\nroles = [\"dbms\"]\n";
        assert!(parse(both).unwrap_err().message.contains("either `role` or `roles`"));
    }
}
