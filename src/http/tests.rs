//! Every route, called in-process (the axum `Router` as a tower service,
//! no socket): what a booting machine, a person and a script get, and what
//! bad input gets: wrong, missing and other nodes' tokens, percent-encoded
//! and malformed MACs, traversal on `/assets/`, oversized names and
//! tokens, methods a route does not take.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use super::{AppState, Site, router};
use crate::boot::Registry;
use crate::files::Files;
use crate::inventory::{Inventory, SiteKey};
use crate::prepare::Prepared;

/// The spec `tests/serve.rs` serves over loopback: a1 and a2.
const SPEC: &str = include_str!("../../tests/fixtures/serve.toml");

/// The site of [`SPEC`] over an images directory with a kernel, an
/// initrd, and a symlink leading out of it.
struct Rig {
    app: Router,
    registry: Arc<Registry>,
    inventory: Inventory,
    _dir: tempfile::TempDir,
}

fn rig(check_source: bool) -> Rig {
    rig_of(SPEC, check_source)
}

/// [`rig`] over the spec `text`.
fn rig_of(text: &str, check_source: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    std::fs::create_dir_all(images.join("os")).unwrap();
    std::fs::write(images.join("os/vmlinuz"), vec![7u8; 4096]).unwrap();
    std::fs::write(images.join("os/initrd.img"), b"initrd").unwrap();
    std::fs::write(dir.path().join("secret"), b"not for you").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret"), images.join("escape")).unwrap();
    let spec = crate::spec::parse(Path::new("spec.toml"), text)
        .unwrap()
        .spec;
    let prepared = Prepared::with_key(spec, SiteKey::from_bytes([7; 32])).unwrap();
    let files = prepared.all_files().unwrap();
    let site = Site::rendered(
        &prepared.spec,
        prepared.inventory.clone(),
        &files,
        &images,
        check_source,
    );
    let images = site.images.clone();
    let registry =
        Arc::new(Registry::open(crate::boot::known(&prepared.inventory), 60_000, None).unwrap());
    let mut state = AppState::new(
        site,
        registry.clone(),
        Arc::default(),
        Arc::default(),
        Arc::new(Files::new(&images, 1 << 30).unwrap()),
    );
    state.api_key = Some(prepared.api_key().into());
    Rig {
        app: router(state),
        registry,
        inventory: prepared.inventory,
        _dir: dir,
    }
}

/// What a request got.
struct Got {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Rig {
    fn token(&self, node: &str) -> String {
        let n = self
            .inventory
            .nodes
            .iter()
            .find(|n| n.name == node)
            .unwrap();
        n.token.clone()
    }

    /// `method uri` from `from`, with `headers`.
    async fn call_from(
        &self,
        method: Method,
        uri: &str,
        from: &str,
        headers: &[(header::HeaderName, &str)],
    ) -> Got {
        self.send(method, uri, from, headers, Body::empty()).await
    }

    /// `method uri` from `from`, with `headers` and `body`.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        from: &str,
        headers: &[(header::HeaderName, &str)],
        body: Body,
    ) -> Got {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(k, *v);
        }
        let mut req = req.body(body).unwrap();
        let from: SocketAddr = format!("{from}:40000").parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(from));
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        Got {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str) -> Got {
        self.call_from(Method::GET, uri, "127.0.0.1", &[]).await
    }
}

#[tokio::test]
async fn every_route_answers_what_it_is_for_and_names_bootfleet() {
    let r = rig(false);
    let t1 = r.token("a1");
    let cases = [
        ("/", StatusCode::OK, "servetest"),
        ("/healthz", StatusCode::OK, "\"status\":\"ok\""),
        ("/metrics", StatusCode::OK, ""),
        ("/api/v1/nodes", StatusCode::OK, "\"name\":\"a2\""),
        ("/api/v1/nodes/a1", StatusCode::OK, "\"name\":\"a1\""),
        (
            "/api/v1/nodes/52:54:00:5e:00:02",
            StatusCode::OK,
            "\"name\":\"a2\"",
        ),
        ("/boot.ipxe", StatusCode::OK, "#!ipxe"),
        ("/ipxe/boot?mac=52-54-00-5e-00-01", StatusCode::OK, "#!ipxe"),
        ("/ipxe/a1.ipxe", StatusCode::OK, "#!ipxe"),
        ("/assets/os/initrd.img", StatusCode::OK, "initrd"),
    ];
    for (uri, status, needle) in cases {
        let got = r.get(uri).await;
        assert_eq!(got.status, status, "{uri}: {}", got.body);
        assert!(got.body.contains(needle), "{uri}: {}", got.body);
        assert!(
            got.headers[header::SERVER]
                .to_str()
                .unwrap()
                .starts_with("bootfleet/"),
            "{uri}"
        );
    }
    let config = r.get(&format!("/cloud-config/a1?token={t1}")).await;
    assert_eq!(config.status, StatusCode::OK);
    assert!(config.body.starts_with("#cloud-config"), "{}", config.body);
    for method in [Method::POST, Method::GET] {
        let home = r
            .call_from(
                method,
                &format!("/phone-home/a1?token={t1}"),
                "127.0.0.1",
                &[],
            )
            .await;
        assert_eq!(home.status, StatusCode::NO_CONTENT);
    }
    let node = r.get("/api/v1/nodes/a1").await;
    assert!(node.body.contains("\"state\":\"booted\""), "{}", node.body);
    // Without a store, no leases to list.
    assert_eq!(r.get("/api/v1/leases").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_cloud_config_opens_only_with_its_own_nodes_token() {
    let r = rig(false);
    let (t1, t2) = (r.token("a1"), r.token("a2"));
    let cases = [
        ("/cloud-config/a1".to_owned(), StatusCode::FORBIDDEN),
        ("/cloud-config/a1?token=".to_owned(), StatusCode::FORBIDDEN),
        (
            format!("/cloud-config/a1?token={t2}"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/cloud-config/a1?token={}", &t1[..t1.len() - 1]),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/cloud-config/a1?token={t1}0"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/cloud-config/a1?token={}", t1.to_uppercase()),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/cloud-config/a2?token={t1}"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/cloud-config/zz?token={t1}"),
            StatusCode::NOT_FOUND,
        ),
        (format!("/phone-home/a2?token={t1}"), StatusCode::FORBIDDEN),
        (format!("/cloud-config/a2?token={t2}"), StatusCode::OK),
        (
            format!("/cloud-config/a1?token={}", "f".repeat(60_000)),
            StatusCode::FORBIDDEN,
        ),
    ];
    for (uri, want) in cases {
        let got = r.get(&uri).await;
        assert_eq!(
            got.status,
            want,
            "{}: {}",
            &uri[..uri.len().min(80)],
            got.body
        );
        if want != StatusCode::OK {
            assert!(!got.body.contains("#cloud-config"), "{uri}");
        }
    }
}

#[tokio::test]
async fn with_source_checks_a_token_opens_its_config_only_from_the_nodes_address() {
    let r = rig(true);
    let t1 = r.token("a1");
    let uri = format!("/cloud-config/a1?token={t1}");
    let mine = r.call_from(Method::GET, &uri, "127.0.0.1", &[]).await;
    assert_eq!(mine.status, StatusCode::OK);
    let other = r.call_from(Method::GET, &uri, "127.0.0.2", &[]).await;
    assert_eq!(other.status, StatusCode::FORBIDDEN, "{}", other.body);
}

#[tokio::test]
async fn macs_are_read_in_any_spelling_and_a_malformed_one_is_a_clear_400() {
    let r = rig(false);
    for mac in [
        "52-54-00-5e-00-01",
        "52:54:00:5e:00:01",
        "52%3A54%3A00%3A5e%3A00%3A01",
        "52-54-00-5E-00-01",
    ] {
        let got = r.get(&format!("/ipxe/boot?mac={mac}")).await;
        assert_eq!(got.status, StatusCode::OK, "{mac}: {}", got.body);
        assert!(got.body.contains("a1"), "{mac}: {}", got.body);
    }
    for bad in [
        "",
        "zz",
        "52-54-00-5e-00",
        "52-54-00-5e-00-01-02",
        "%ff%fe",
        "52-54-00-5e-00-0g",
    ] {
        let got = r.get(&format!("/ipxe/boot?mac={bad}")).await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}: {}", got.body);
        assert!(got.body.contains("not a MAC address"), "{bad}");
    }
    assert_eq!(r.get("/ipxe/boot").await.status, StatusCode::BAD_REQUEST);
    // An unknown machine without [enrolment] gets a script that says so.
    let stranger = r.get("/ipxe/boot?mac=02-00-00-00-00-99").await;
    assert!(stranger.body.contains("#!ipxe"), "{}", stranger.body);
    assert!(
        stranger.body.contains("02:00:00:00:00:99"),
        "{}",
        stranger.body
    );
    for missing in [
        "/ipxe/zz.ipxe",
        "/ipxe/a1",
        "/ipxe/..%2Fa1.ipxe",
        "/api/v1/nodes/zz",
    ] {
        assert_eq!(
            r.get(missing).await.status,
            StatusCode::NOT_FOUND,
            "{missing}"
        );
    }
    let long = format!("/api/v1/nodes/{}", "a".repeat(50_000));
    assert_eq!(r.get(&long).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn assets_never_leave_the_images_directory() {
    let r = rig(false);
    for uri in [
        "/assets/../secret",
        "/assets/%2e%2e/secret",
        "/assets/os/%2e%2e/%2e%2e/secret",
        "/assets/escape",
        "/assets/os",
        "/assets/",
        "/assets/nope",
    ] {
        let got = r.get(uri).await;
        assert_eq!(got.status, StatusCode::NOT_FOUND, "{uri}: {}", got.body);
        assert!(!got.body.contains("not for you"), "{uri}");
    }
    // Range and ETag on a real one.
    let part = r
        .call_from(
            Method::GET,
            "/assets/os/vmlinuz",
            "127.0.0.1",
            &[(header::RANGE, "bytes=0-9")],
        )
        .await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.body.len(), 10);
    let tag = part.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = r
        .call_from(
            Method::GET,
            "/assets/os/vmlinuz",
            "127.0.0.1",
            &[(header::IF_NONE_MATCH, &tag)],
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_405() {
    let r = rig(false);
    let t1 = r.token("a1");
    let config = format!("/cloud-config/a1?token={t1}");
    for (method, uri) in [
        (Method::POST, "/"),
        (Method::DELETE, config.as_str()),
        (Method::PUT, "/assets/os/vmlinuz"),
        (Method::POST, "/boot.ipxe"),
        (Method::PATCH, "/api/v1/nodes"),
        (Method::DELETE, "/phone-home/a1"),
        (Method::POST, "/metrics"),
    ] {
        let got = r.call_from(method.clone(), uri, "127.0.0.1", &[]).await;
        assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
    }
    let unknown = r.get("/nothing-here").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

/// [`SPEC`] as Ignition, merging `merge` (written to a file of its own).
fn ignition_rig(merge: &str) -> (Rig, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("extra.ign");
    std::fs::write(&file, merge).unwrap();
    let text = SPEC.replacen("[boot]\n", "[boot]\nconfig = \"ignition\"\n", 1)
        + &format!("\n[ignition]\nmerge = [\"{}\"]\n", file.display());
    (rig_of(&text, false), dir)
}

#[tokio::test]
async fn an_ignition_config_and_its_merges_open_only_with_the_nodes_own_token() {
    let merge = r#"{"ignition":{"version":"3.3.0"}}"#;
    let (r, _dir) = ignition_rig(merge);
    let (t1, t2) = (r.token("a1"), r.token("a2"));
    let got = r.get(&format!("/ignition/a1?token={t1}")).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(
        got.headers[header::CONTENT_TYPE],
        crate::ignition::MEDIA_TYPE
    );
    let config: crate::ignition::Config = serde_json::from_str(&got.body).unwrap();
    let merges = config.ignition.config.unwrap().merge.unwrap();
    let url = merges[0].source.as_deref().unwrap();
    assert!(
        url.ends_with(&format!("/ignition/a1/merge/0?token={t1}")),
        "{url}"
    );
    let got = r.get(&format!("/ignition/a1/merge/0?token={t1}")).await;
    assert_eq!((got.status, got.body.as_str()), (StatusCode::OK, merge));
    for (uri, want) in [
        ("/ignition/a1".to_owned(), StatusCode::FORBIDDEN),
        (format!("/ignition/a1?token={t2}"), StatusCode::FORBIDDEN),
        (
            format!("/ignition/a1/merge/0?token={t2}"),
            StatusCode::FORBIDDEN,
        ),
        (
            format!("/ignition/a1/merge/1?token={t1}"),
            StatusCode::NOT_FOUND,
        ),
        (
            format!("/ignition/a1/merge/x?token={t1}"),
            StatusCode::BAD_REQUEST,
        ),
        (format!("/ignition/zz?token={t1}"), StatusCode::NOT_FOUND),
        (
            format!("/cloud-config/a1?token={t1}"),
            StatusCode::NOT_FOUND,
        ),
    ] {
        let got = r.get(&uri).await;
        assert_eq!(got.status, want, "{uri}: {}", got.body);
        assert!(!got.body.contains("\"ignition\""), "{uri}: {}", got.body);
    }
}

#[tokio::test]
async fn an_ignition_fetch_from_a_spec_of_cloud_configs_is_refused_with_the_fix() {
    let r = rig(false);
    let t1 = r.token("a1");
    let got = r.get(&format!("/ignition/a1?token={t1}")).await;
    assert_eq!(got.status, StatusCode::NOT_FOUND);
    assert!(got.body.contains("renders cloud-configs"), "{}", got.body);
}

#[tokio::test]
async fn a_power_report_needs_the_api_key_names_a_node_of_the_spec_and_shows_in_its_timeline() {
    let r = rig(false);
    let key = SiteKey::from_bytes([7; 32]).api_key();
    let bearer = format!("Bearer {key}");
    let wrong = format!("Bearer {}", SiteKey::from_bytes([8; 32]).api_key());
    let now = crate::clock::now_ms();
    let body = |at: u64| {
        Body::from(format!(
            r#"{{"at":{at},"action":"cycle","by":"reprovision","boot":"pxe once"}}"#
        ))
    };
    let post = |auth: Option<String>, uri: &'static str, b: Body| {
        let r = &r;
        async move {
            let headers: Vec<(header::HeaderName, String)> = auth
                .into_iter()
                .map(|a| (header::AUTHORIZATION, a))
                .collect();
            let headers: Vec<(header::HeaderName, &str)> = headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str()))
                .collect();
            r.send(Method::POST, uri, "127.0.0.1", &headers, b).await
        }
    };
    for auth in [
        None,
        Some(wrong.clone()),
        Some(key.clone()),
        Some(format!("{bearer}0")),
    ] {
        let got = post(auth.clone(), "/api/v1/nodes/a1/power", body(now)).await;
        assert_eq!(
            got.status,
            StatusCode::UNAUTHORIZED,
            "{auth:?}: {}",
            got.body
        );
        assert!(got.body.contains("API key"), "{}", got.body);
    }
    for bad in [
        "{}".to_owned(),
        "not json".to_owned(),
        r#"{"at":1,"action":"explode","by":"x"}"#.to_owned(),
        format!(r#"{{"at":1,"action":"on","by":"{}"}}"#, "x".repeat(40)),
        format!(r#"{{"at":{},"action":"on","by":"power"}}"#, now + 3_600_000),
    ] {
        let got = post(
            Some(bearer.clone()),
            "/api/v1/nodes/a1/power",
            Body::from(bad.clone()),
        )
        .await;
        assert_eq!(got.status, StatusCode::BAD_REQUEST, "{bad}: {}", got.body);
    }
    let got = post(
        Some(bearer.clone()),
        "/api/v1/nodes/nobody/power",
        body(now),
    )
    .await;
    assert_eq!(got.status, StatusCode::NOT_FOUND, "{}", got.body);
    let got = r.get("/api/v1/nodes/a1").await;
    assert!(
        !got.body.contains("reprovision"),
        "nothing recorded yet: {}",
        got.body
    );

    let got = post(Some(bearer.clone()), "/api/v1/nodes/a1/power", body(now)).await;
    assert_eq!(got.status, StatusCode::NO_CONTENT, "{}", got.body);
    let node: serde_json::Value =
        serde_json::from_str(&r.get("/api/v1/nodes/a1").await.body).unwrap();
    assert_eq!(
        node["last_event"], "power cycled by reprovision, network boot once",
        "{node:#}"
    );
    assert_eq!(node["power_action"]["action"], "cycle", "{node:#}");
    assert_eq!(node["power_action"]["at"], now, "{node:#}");
    assert_eq!(node["state"], "waiting", "{node:#}");
    assert!(node["boot_cause"].is_null(), "no boot yet: {node:#}");
    let page = r.get("/").await.body;
    assert!(
        page.contains("power cycled by reprovision, network boot once"),
        "{page}"
    );
    // What the BMCs said shows on the page, an error's first line in the
    // row and all of it in the title.
    let seen = |state: &str, error: Option<&str>| crate::boot::PowerSeen {
        state: state.into(),
        boot: None,
        driver: "ipmi".into(),
        error: error.map(str::to_owned),
        checked_at: now,
    };
    r.registry.set_power("a1", Some(seen("off", None)));
    r.registry.set_power(
        "a2",
        Some(seen(
            "unknown",
            Some("BMC 10.0.0.9 unreachable: no answer\n  help: check it"),
        )),
    );
    let page = r.get("/").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("<td class=\"power\">off"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("(BMC 10.0.0.9 unreachable: no answer)"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("help: check it\">unknown"),
        "{}",
        page.body
    );
    let api = r.get("/api/v1/nodes/a2").await.body;
    assert!(api.contains("\"state\":\"unknown\""), "{api}");
    // A GET does nothing there.
    let got = r
        .call_from(Method::GET, "/api/v1/nodes/a1/power", "127.0.0.1", &[])
        .await;
    assert_eq!(got.status, StatusCode::METHOD_NOT_ALLOWED);
}
