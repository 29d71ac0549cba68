//! Machines for multi-machine tests: one Linux network namespace per node, each with its own
//! address on a private /24, joined by a bridge that lives in a namespace of its own. The test
//! process (the clients: ffmpeg, HTTP requests) stays in the root namespace, which gets an
//! address on the same bridge. Needs root (CI runs as root); a machine without it fails the
//! test with the reason rather than skipping it.
//!
//! Names carry the test process's pid, so tests running side by side do not collide; dropping
//! the [`Net`] deletes every namespace (and with them the links and the processes' sockets).

use std::process::Command;

/// The namespaces and addresses of one test.
pub struct Net {
    tag: String,
    subnet: String,
    namespaces: Vec<String>,
    root_link: String,
}

/// One machine: a namespace and its address.
#[derive(Clone, Debug)]
pub struct Host {
    /// `ip netns` name.
    pub ns: String,
    /// Its address on the test network.
    pub ip: String,
}

impl Host {
    /// The `nsenter` prefix that runs a command on this machine (it execs, so the spawned
    /// process is the command itself).
    pub fn nsenter(&self) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net=/var/run/netns/{}", self.ns)).arg("--");
        c
    }
}

/// Runs `ip ARGS`; fails the test with its error (and what the test needs) otherwise.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {}: {} (multi-machine tests need root and iproute2)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
}

impl Net {
    /// A network of the given machines (names become `…-{name}` namespaces, addresses .11,
    /// .12, … in order); the root namespace is .1.
    pub fn new(names: &[&str]) -> (Net, Vec<Host>) {
        let pid = std::process::id();
        let tag = format!("sf{pid}");
        // A /24 of its own per test process: 10.(100 + pid % 100).(pid / 100 % 256).0/24.
        let subnet = format!("10.{}.{}", 100 + pid % 100, (pid / 100) % 256);
        let bridge_ns = format!("{tag}-br");
        let mut net = Net {
            tag: tag.clone(),
            subnet: subnet.clone(),
            namespaces: Vec::new(),
            root_link: format!("{tag}r"),
        };
        ip(&["netns", "add", &bridge_ns]);
        net.namespaces.push(bridge_ns.clone());
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        ip(&["-n", &bridge_ns, "link", "set", "lo", "up"]);
        // The root namespace (the clients) on the bridge: its end of the pair stays here.
        net.attach(None, &net.root_link.clone(), &format!("{subnet}.1"));
        let hosts = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let ns = format!("{tag}-{name}");
                ip(&["netns", "add", &ns]);
                net.namespaces.push(ns.clone());
                ip(&["-n", &ns, "link", "set", "lo", "up"]);
                let addr = format!("{subnet}.{}", 11 + i);
                net.attach(Some(&ns), &format!("{tag}h{i}"), &addr);
                Host { ns, ip: addr }
            })
            .collect();
        (net, hosts)
    }

    /// A veth pair: `link` in `ns` (the root namespace for `None`) with `addr`, its peer on
    /// the bridge.
    fn attach(&self, ns: Option<&str>, link: &str, addr: &str) {
        let bridge_ns = format!("{}-br", self.tag);
        let peer = format!("{link}b");
        ip(&["link", "add", link, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "set", &peer, "master", "br0"]);
        ip(&["-n", &bridge_ns, "link", "set", &peer, "up"]);
        let cidr = format!("{addr}/24");
        match ns {
            Some(ns) => {
                ip(&["link", "set", link, "netns", ns]);
                ip(&["-n", ns, "addr", "add", &cidr, "dev", link]);
                ip(&["-n", ns, "link", "set", link, "up"]);
            }
            None => {
                ip(&["addr", "add", &cidr, "dev", link]);
                ip(&["link", "set", link, "up"]);
            }
        }
    }

    /// The root namespace's (the clients') address.
    pub fn client_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its links, and a veth's peer with it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.root_link])
            .output();
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}
