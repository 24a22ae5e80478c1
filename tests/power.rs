//! `bootfleet power` and `bootfleet reprovision` against the BMC emulators
//! OpenStack Ironic tests with, in front of real libvirtd VMs that boot the
//! test OS: sushy-tools' Redfish emulator (TLS with a CA of the test's own,
//! HTTP basic auth) and virtualbmc (IPMI 2.0, lanplus), both installed from
//! PyPI into a virtual environment the test creates; `ipmitool` is
//! Debian's. A third node is reached through libvirt itself.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cluster_libvirtd::{Cluster, TURN, all_booted, ready};
use crate::support::*;

/// A Python virtual environment with sushy-tools and virtualbmc, made once
/// per target directory.
fn bmc_venv() -> Option<PathBuf> {
    for tool in ["ipmitool", "openssl", "python3"] {
        if !have(tool) {
            cannot_run(&format!("{tool} is not installed (dist/deps.sh test)"));
            return None;
        }
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bmc-venv");
    if dir.join("bin/vbmcd").exists() && dir.join("bin/sushy-emulator").exists() {
        return Some(dir);
    }
    let pip = dir.join("bin/pip");
    let steps: [&[&str]; 2] = [
        &["python3", "-m", "venv", dir.to_str().unwrap()],
        &[
            pip.to_str().unwrap(),
            "install",
            "--quiet",
            "sushy-tools",
            "virtualbmc",
        ],
    ];
    for step in steps {
        let o = Command::new(step[0]).args(&step[1..]).output().unwrap();
        if !o.status.success() {
            cannot_run(&format!(
                "{step:?} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
            return None;
        }
    }
    Some(dir)
}

/// Kills its process when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sh(args: &[&str]) {
    let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        o.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A CA, and leaf certificates it signed: one for IP 127.0.0.1, the name
/// the Redfish emulator is reached at.
fn tls(dir: &Path) {
    let p = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    sh(&[
        "openssl",
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=bootfleet test CA",
        "-keyout",
        &p("ca.key"),
        "-out",
        &p("ca.pem"),
    ]);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    sh(&[
        "openssl",
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &p("leaf.key"),
        "-out",
        &p("leaf.csr"),
    ]);
    sh(&[
        "openssl",
        "x509",
        "-req",
        "-in",
        &p("leaf.csr"),
        "-CA",
        &p("ca.pem"),
        "-CAkey",
        &p("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &p("leaf.ext"),
        "-out",
        &p("leaf.pem"),
    ]);
}

/// Waits until `port` on 127.0.0.1 takes TCP connections.
fn listening(port: u16, log: &Path) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "nothing listens on {port}: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn domain_uuid(domain: &str) -> String {
    let o = Command::new("virsh")
        .args(["-c", "qemu:///system", "domuuid", domain])
        .output()
        .unwrap();
    stdout(&o).trim().to_owned()
}

fn domain_state(domain: &str) -> String {
    let o = Command::new("virsh")
        .args(["-c", "qemu:///system", "domstate", domain])
        .output()
        .unwrap();
    stdout(&o).trim().to_owned()
}

/// Runs bootfleet with the cluster's state directory, the BMC password
/// in the environment.
fn bootfleet_power(c: &Cluster, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .arg("--state-dir")
        .arg(c.state.path())
        .args(args)
        .env("BMC_PASSWORD", "s3cret-ipmi")
        .env_remove("BOOTFLEET_STATE_DIR")
        .output()
        .unwrap()
}

#[test]
fn reprovision_brings_nodes_back_through_redfish_ipmi_and_libvirt_and_names_every_bad_bmc_needs_root_and_libvirtd()
 {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let Some(images) = ready() else { return };
    let Some(venv) = bmc_venv() else { return };
    let c = Cluster::new(&images, "pwr", 30, 3, "");
    let up = c.json(&["up", "--json"]);
    assert!(all_booted(&up), "{up:#}");
    let dir = c.state.path().to_owned();
    let id = std::process::id();
    let (redfish_port, ipmi_port, vbmcd_port) = (
        20000 + (id % 10000) as u16,
        40000 + (id % 10000) as u16,
        50000 + (id % 10000) as u16,
    );

    // Redfish: sushy-tools' emulator, TLS from the test's CA, basic auth,
    // and only pwr-n0 visible.
    tls(&dir);
    let hash = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import bcrypt; print(bcrypt.hashpw(b's3cret-redfish', bcrypt.gensalt()).decode())",
        ])
        .output()
        .unwrap();
    std::fs::write(
        dir.join("htpasswd"),
        format!("admin:{}", stdout(&hash).trim()),
    )
    .unwrap();
    std::fs::write(
        dir.join("sushy.conf"),
        format!(
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'\nSUSHY_EMULATOR_LISTEN_PORT = {redfish_port}\nSUSHY_EMULATOR_SSL_CERT = '{0}/leaf.pem'\nSUSHY_EMULATOR_SSL_KEY = '{0}/leaf.key'\nSUSHY_EMULATOR_AUTH_FILE = '{0}/htpasswd'\nSUSHY_EMULATOR_LIBVIRT_URI = 'qemu:///system'\nSUSHY_EMULATOR_ALLOWED_INSTANCES = ['{1}']\n",
            dir.display(),
            domain_uuid("pwr-n0")
        ),
    )
    .unwrap();
    let sushy_log = dir.join("sushy.log");
    let _sushy = Daemon(
        Command::new(venv.join("bin/sushy-emulator"))
            .arg("--config")
            .arg(dir.join("sushy.conf"))
            .stdout(std::fs::File::create(&sushy_log).unwrap())
            .stderr(std::fs::File::create(dir.join("sushy.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    listening(redfish_port, &dir.join("sushy.err"));

    // IPMI: virtualbmc for pwr-n1.
    let vconf = dir.join("virtualbmc.conf");
    std::fs::create_dir_all(dir.join("vbmc")).unwrap();
    std::fs::write(
        &vconf,
        format!(
            "[default]\nconfig_dir = {}/vbmc\nserver_port = {vbmcd_port}\npid_file = {}/vbmcd.pid\n",
            dir.display(),
            dir.display()
        ),
    )
    .unwrap();
    let vbmc = |args: &[&str]| {
        let o = Command::new(venv.join("bin/vbmc"))
            .args(args)
            .env("VIRTUALBMC_CONFIG", &vconf)
            .output()
            .unwrap();
        assert!(o.status.success(), "vbmc {args:?}: {}", stderr(&o));
    };
    let _vbmcd = Daemon(
        Command::new(venv.join("bin/vbmcd"))
            .arg("--foreground")
            .env("VIRTUALBMC_CONFIG", &vconf)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("vbmcd.err")).unwrap())
            .spawn()
            .unwrap(),
    );
    listening(vbmcd_port, &dir.join("vbmcd.err"));
    let port = ipmi_port.to_string();
    vbmc(&[
        "add",
        "pwr-n1",
        "--address",
        "127.0.0.1",
        "--port",
        &port,
        "--username",
        "admin",
        "--password",
        "s3cret-ipmi",
        "--libvirt-uri",
        "qemu:///system",
    ]);
    vbmc(&["start", "pwr-n1"]);

    // The site as the sysadmin writes it: the cluster's three nodes with
    // their BMCs, and four whose BMCs cannot be used.
    let secret = dir.join("redfish.pass");
    std::fs::write(&secret, "s3cret-redfish\n").unwrap();
    std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let wrong = dir.join("wrong.pass");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    std::fs::set_permissions(&wrong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let spec = std::fs::read_to_string(&c.spec).unwrap();
    let redfish = |host: &str| {
        format!(
            "{{ driver = \"redfish\", address = \"https://{host}:{redfish_port}\", username = \"admin\", password_file = \"{}\", ca_file = \"{}/ca.pem\" }}",
            secret.display(),
            dir.display()
        )
    };
    let mut site = spec
        .replace(
            "name = \"n0\"\n",
            &format!("name = \"n0\"\nbmc = {}\n", redfish("127.0.0.1")),
        )
        .replace(
            "name = \"n1\"\n",
            &format!("name = \"n1\"\nbmc = {{ driver = \"ipmi\", address = \"127.0.0.1:{ipmi_port}\", username = \"admin\", password_env = \"BMC_PASSWORD\" }}\n"),
        );
    let bad = [
        (
            "wrongpw",
            format!(
                "{{ driver = \"ipmi\", address = \"127.0.0.1:{ipmi_port}\", username = \"admin\", password_file = \"{}\" }}",
                wrong.display()
            ),
        ),
        ("othername", redfish("localhost")),
        (
            "wrongredfish",
            redfish("127.0.0.1").replace(secret.to_str().unwrap(), wrong.to_str().unwrap()),
        ),
        (
            "silent",
            format!(
                "{{ driver = \"ipmi\", address = \"127.0.0.1:9\", username = \"admin\", password_file = \"{}\" }}",
                secret.display()
            ),
        ),
    ];
    for (i, (name, bmc)) in bad.iter().enumerate() {
        site.push_str(&format!(
            "\n[[nodes]]\nname = \"{name}\"\nip = \"10.213.30.{}\"\nroles = [\"worker\"]\nbmc = {bmc}\n",
            60 + i
        ));
    }
    site.push_str("\n[[nodes]]\nname = \"nobmc\"\nip = \"10.213.30.70\"\nroles = [\"worker\"]\n");
    let site_path = dir.join("site.toml");
    std::fs::write(&site_path, &site).unwrap();
    let site_arg = site_path.to_str().unwrap();
    // The cluster's server serves the site from now on (SIGHUP): it asks
    // the BMCs the spec names, with what its own process has (not the
    // IPMI password, which only the commands' environment holds).
    std::fs::write(&c.spec, &site).unwrap();
    for pid in bootfleet::cluster::process::find("pwr") {
        unsafe { libc::kill(pid, libc::SIGHUP) };
    }

    // The test OS powered itself off after phoning home: the BMCs say so.
    let start = Instant::now();
    let status = loop {
        let o = bootfleet_power(
            &c,
            &["power", site_arg, "status", "n0", "n1", "n2", "--json"],
        );
        let text = stdout(&o);
        let v: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}{}", stderr(&o)));
        if v.as_array().unwrap().iter().all(|r| r["power"] == "off")
            || start.elapsed() > Duration::from_secs(90)
        {
            break v;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    for (row, driver) in status
        .as_array()
        .unwrap()
        .iter()
        .zip(["redfish", "ipmi", "libvirt"])
    {
        assert_eq!(row["driver"], driver, "{status:#}");
        assert_eq!(row["power"], "off", "{status:#}");
        assert!(row["error"].is_null(), "{status:#}");
    }

    // The server's view of the BMCs: n0 through Redfish, n2 as the
    // cluster's VM, off like the BMCs say; n1's password is not in the
    // server's environment and `silent` does not answer: unknown, with
    // why; `nobmc` is no VM of the cluster: not asked.
    let start = Instant::now();
    let nodes = loop {
        let nodes = api_nodes();
        let state = |n: &str| nodes[n]["power"]["state"].as_str().unwrap_or("").to_owned();
        if (state("n0") == "off"
            && state("n2") == "off"
            && state("n1") == "unknown"
            && state("silent") == "unknown")
            || start.elapsed() > Duration::from_secs(90)
        {
            break nodes;
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let power = |n: &str| nodes[n]["power"].clone();
    assert_eq!(power("n0")["state"], "off", "{:#}", power("n0"));
    assert_eq!(power("n0")["driver"], "redfish", "{:#}", power("n0"));
    assert_eq!(power("n2")["state"], "off", "{:#}", power("n2"));
    assert_eq!(power("n2")["driver"], "libvirt", "{:#}", power("n2"));
    for (n, needle) in [
        ("n1", "BMC_PASSWORD"),
        ("silent", "unreachable"),
        ("wrongpw", "refused the credentials"),
        ("othername", "TLS certificate is not trusted"),
    ] {
        assert_eq!(power(n)["state"], "unknown", "{n}: {:#}", power(n));
        let e = power(n)["error"].as_str().unwrap_or_default().to_owned();
        assert!(e.contains(needle), "{n}: {e}");
    }
    assert!(power("nobmc").is_null(), "{:#}", power("nobmc"));
    let table = stdout(&bootfleet_power(&c, &["nodes", site_arg]));
    assert!(table.contains("POWER"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("silent: power unknown: BMC 127.0.0.1:9 unreachable")),
        "{table}"
    );
    let api_dump = serde_json::to_string(&nodes).unwrap();
    for secret in ["s3cret-redfish", "s3cret-ipmi", "not-the-password"] {
        assert!(!api_dump.contains(secret), "{secret} in the API");
    }

    // Reprovision everything: the three come back, each bad BMC is named
    // with its fix, and none of those is power-cycled.
    let before: Vec<String> = ["pwr-n0", "pwr-n1", "pwr-n2"]
        .iter()
        .map(|d| domain_state(d))
        .collect();
    assert!(before.iter().all(|s| s == "shut off"), "{before:?}");
    let o = bootfleet_power(
        &c,
        &[
            "reprovision",
            site_arg,
            "--all",
            "--json",
            "--timeout",
            "6m",
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o))
        .unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&o), stderr(&o)));
    eprintln!("reprovision said:\n{v:#}\n{}", stderr(&o));
    let row = |name: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == name)
            .unwrap_or_else(|| panic!("no {name}: {v:#}"))
            .clone()
    };
    for n in ["n0", "n1", "n2"] {
        let r = row(n);
        assert_eq!(r["back"], true, "{n}: {v:#}\n{}", stderr(&o));
        assert!(r["error"].is_null(), "{n}: {v:#}");
    }
    for (name, needle) in [
        ("wrongpw", "refused the credentials"),
        ("othername", "TLS certificate is not trusted"),
        ("wrongredfish", "refused the credentials"),
        ("silent", "unreachable: it does not answer"),
        ("nobmc", "no BMC: the spec gives none"),
    ] {
        let r = row(name);
        let err = r["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: {v:#}"));
        assert!(err.contains(needle), "{name}: {err}");
        assert!(err.contains("help: "), "{name}: no fix: {err}");
        assert!(r["back"] == false, "{name}: {v:#}");
    }
    // No secret in anything said.
    let said = format!("{}{}", stdout(&o), stderr(&o));
    for secret in ["s3cret-redfish", "s3cret-ipmi", "not-the-password"] {
        assert!(!said.contains(secret), "{secret} shown: {said}");
    }
    // One new boot each, no more (the wrong password reached n1's BMC and
    // must not have cycled it), started by the power cycle: the server
    // was told of each action and attributes the boot to it.
    let nodes = api_nodes();
    for n in ["n0", "n1", "n2"] {
        let node = &nodes[n];
        assert_eq!(node["state"], "booted", "{node:#}");
        assert_eq!(node["boots"], 2, "{n}: {node:#}");
        let cause = &node["boot_cause"];
        assert_eq!(cause["by"], "reprovision", "{n}: {node:#}");
        assert_eq!(cause["action"], "cycle", "{n}: {node:#}");
        assert!(
            cause["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("power cycled by reprovision, network boot")),
            "{n}: {node:#}"
        );
        assert!(
            cause["at"].as_u64() <= node["boot_started_at"].as_u64(),
            "{node:#}"
        );
        assert_eq!(row(n)["boot_cause"], cause["message"], "{n}: {v:#}");
    }
    for n in ["wrongpw", "silent", "nobmc"] {
        assert!(
            nodes[n]["power_action"].is_null(),
            "{n} was not acted on: {:#}",
            nodes[n]
        );
    }
    let table = stdout(&bootfleet_power(&c, &["nodes", site_arg]));
    for n in ["n0", "n1", "n2"] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(&format!("{n} ")) && l.contains("2 by reprovision")),
            "{n}: {table}"
        );
    }
    let page = stdout(
        &Command::new("curl")
            .args(["-s", "--max-time", "10", "http://10.213.30.1:8080/"])
            .output()
            .unwrap(),
    );
    assert!(
        page.contains("power cycled by reprovision, network boot"),
        "{page}"
    );

    // `power off` is reported too, with no boot override.
    let o = bootfleet_power(&c, &["power", site_arg, "off", "n2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("note:"), "reported: {}", stderr(&o));
    let n2 = &api_nodes()["n2"];
    assert_eq!(n2["last_event"], "powered off by power", "{n2:#}");
}

/// The cluster's server's view of every node, by name.
fn api_nodes() -> serde_json::Value {
    let o = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "http://10.213.30.1:8080/api/v1/nodes",
        ])
        .output()
        .unwrap();
    let api = stdout(&o);
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&api).unwrap_or_else(|e| panic!("{e}: {api}"));
    serde_json::Value::Object(
        rows.into_iter()
            .filter(|r| r["name"].as_str().is_some_and(|n| !n.is_empty()))
            .map(|r| (r["name"].as_str().unwrap().to_owned(), r))
            .collect(),
    )
}
