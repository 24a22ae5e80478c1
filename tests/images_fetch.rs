//! `bootfleet images fetch flatcar` against a release laid out like
//! Flatcar's (version.txt, files, `.DIGESTS`, `.DIGESTS.asc`) on a real
//! HTTP server (python3's http.server) on loopback, signed by GnuPG with
//! keys the test makes: a clear-signed digests file for the kernel, a
//! detached signature for the initrd's, by a signing subkey as Flatcar's
//! are. The internet is out of reach here, so the real release server and
//! key are not used.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

fn ready() -> bool {
    let ok = have("gpg") && have("python3") && have("sha512sum");
    if !ok {
        cannot_run("needs gnupg, python3 and coreutils");
    }
    ok
}

/// gpg with its own home and no prompts.
fn gpg(home: &Path, args: &[&str]) -> String {
    let o = Command::new("gpg")
        .arg("--homedir")
        .arg(home)
        .args([
            "--batch",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

/// A key: an RSA certification-only primary key with an RSA signing
/// subkey (the shape of Flatcar's), or a plain Ed25519 one. Returns its
/// armored public key.
fn make_key(home: &Path, uid: &str, flatcar_like: bool) -> String {
    std::fs::create_dir_all(home).unwrap();
    std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    if flatcar_like {
        gpg(home, &["--quick-gen-key", uid, "rsa2048", "cert", "never"]);
        let listing = gpg(home, &["--with-colons", "--list-keys", uid]);
        let fpr = listing
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .map(|l| l.trim_matches(':').to_owned())
            .unwrap();
        gpg(home, &["--quick-add-key", &fpr, "rsa2048", "sign", "never"]);
    } else {
        gpg(home, &["--quick-gen-key", uid, "ed25519", "sign", "never"]);
    }
    gpg(home, &["--armor", "--export", uid])
}

const VERSION: &str = "9999.1.0";
const KERNEL: &str = "flatcar_production_pxe.vmlinuz";
const INITRD: &str = "flatcar_production_pxe_image.cpio.gz";

/// Writes a release under `root/amd64-usr/`, signed by the key in `home`.
fn make_release(root: &Path, home: &Path) {
    let dir = root.join("amd64-usr").join(VERSION);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(root.join("amd64-usr/current")).unwrap();
    std::fs::write(
        root.join("amd64-usr/current/version.txt"),
        format!("FLATCAR_BUILD=9999\nFLATCAR_VERSION={VERSION}\n"),
    )
    .unwrap();
    let mut seed = 7u64;
    for (name, size) in [(KERNEL, 3 << 20), (INITRD, 5 << 20)] {
        let bytes: Vec<u8> = (0..size)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        std::fs::write(dir.join(name), bytes).unwrap();
        // Flatcar's layout: one section per hash, sha*sum lines.
        let mut digests = String::new();
        for (title, tool) in [
            ("MD5", "md5sum"),
            ("SHA1", "sha1sum"),
            ("SHA512", "sha512sum"),
        ] {
            let o = Command::new(tool)
                .arg(name)
                .current_dir(&dir)
                .output()
                .unwrap();
            digests.push_str(&format!("# {title} HASH\n{}", stdout(&o)));
        }
        std::fs::write(dir.join(format!("{name}.DIGESTS")), digests).unwrap();
    }
    let path = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    let k = path(&format!("{KERNEL}.DIGESTS"));
    gpg(home, &["--clearsign", "-o", &format!("{k}.asc"), &k]);
    let i = path(&format!("{INITRD}.DIGESTS"));
    gpg(
        home,
        &["--armor", "--detach-sign", "-o", &format!("{i}.asc"), &i],
    );
}

/// python3's http.server over `root` on a free loopback port.
fn http_server(root: &Path) -> (Running, String) {
    let mut cmd = Command::new("python3");
    cmd.args(["-u", "-m", "http.server", "--bind", "127.0.0.1", "0"])
        .current_dir(root)
        .stderr(std::process::Stdio::null());
    let (server, line) = spawn_until_line(&mut cmd);
    // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
    let port = line
        .split(" port ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("{line}"))
        .to_owned();
    (server, format!("http://127.0.0.1:{port}"))
}

fn fetch(images: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bootfleet"))
        .args(["images", "fetch", "flatcar", "--images"])
        .arg(images)
        .args(args)
        .output()
        .unwrap()
}

/// Every file under `dir`, hidden ones too.
fn kept(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn fetch_keeps_a_release_only_when_its_signed_digests_verify() {
    if !ready() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let key = make_key(
        &t.join("gpg"),
        "Release Signing <release@example.test>",
        true,
    );
    let other = make_key(
        &t.join("gpg-other"),
        "Someone Else <else@example.test>",
        false,
    );
    std::fs::write(t.join("key.asc"), &key).unwrap();
    std::fs::write(t.join("other.asc"), &other).unwrap();
    let www = t.join("www");
    make_release(&www, &t.join("gpg"));
    std::fs::copy(t.join("key.asc"), www.join("key.asc")).unwrap();
    let (_server, url) = http_server(&www);
    let mirror = format!("{url}/amd64-usr");
    let key_arg = t.join("key.asc");
    let key_arg = key_arg.to_str().unwrap();

    // The channel's current version, verified and kept.
    let images = t.join("images");
    let o = fetch(&images, &["--mirror", &mirror, "--key", key_arg]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains(&format!("flatcar = \"{VERSION}\"")), "{out}");
    let dir = images.join("flatcar").join(VERSION);
    for f in [KERNEL, INITRD] {
        let served = std::fs::read(www.join("amd64-usr").join(VERSION).join(f)).unwrap();
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), served, "{f}");
    }
    assert_eq!(kept(&dir).len(), 2, "{:?}", kept(&dir));

    // A key that did not sign the release: refused, nothing kept.
    let images2 = t.join("images2");
    let refused = |args: &[&str], code: Option<i32>, says: &[&str]| {
        let o = fetch(&images2, args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?}: {err}");
        if code.is_some() {
            assert_eq!(o.status.code(), code, "{err}");
        }
        for s in says {
            assert!(err.contains(s), "{s:?} in {err}");
        }
        assert!(kept(&images2.join("flatcar").join(VERSION)).is_empty());
    };
    let other_arg = t.join("other.asc");
    let other_arg = other_arg.to_str().unwrap();
    let m = mirror.as_str();
    refused(
        &["--mirror", m, "--version", VERSION, "--key", other_arg],
        Some(2),
        &["do not verify"],
    );

    // Without --key the key comes from --key-url and must carry the
    // pinned fingerprint of Flatcar's key; the test's key does not.
    let key_url = format!("{url}/key.asc");
    refused(
        &["--mirror", m, "--key-url", &key_url],
        Some(2),
        &["not the pinned"],
    );

    // A file changed after signing: refused by its SHA512, nothing kept
    // (not even the kernel, which did match).
    let initrd = www.join("amd64-usr").join(VERSION).join(INITRD);
    let mut bytes = std::fs::read(&initrd).unwrap();
    bytes[4096] ^= 1;
    std::fs::write(&initrd, bytes).unwrap();
    refused(
        &["--mirror", m, "--key", key_arg],
        Some(2),
        &["does not match its signed SHA512"],
    );

    // A missing version names the URL.
    refused(
        &["--mirror", m, "--version", "1.2.3", "--key", key_arg],
        None,
        &["1.2.3", "404"],
    );
}
