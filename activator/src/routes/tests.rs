use super::*;

fn table() -> RouteTable {
    let table = RouteTable::new("example.com");
    let mut iris = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("iris-predictor-2"),
        Some(RevisionSettings::new("iris-predictor-1")),
        Some(20),
    );
    iris.tag_routing = true;
    table.upsert(iris).unwrap();
    let chain = ServiceRoute::new("team", "chain")
        .with_canary(
            Component::Predictor,
            RevisionSettings::new("chain-predictor-1"),
            None,
            None,
        )
        .with_canary(
            Component::Transformer,
            RevisionSettings::new("chain-transformer-1"),
            None,
            None,
        )
        .with_canary(
            Component::Explainer,
            RevisionSettings::new("chain-explainer-1"),
            None,
            None,
        );
    table.upsert(chain).unwrap();
    table
}

fn target<'a>(host: &'a str, path: &'a str) -> RequestTarget<'a> {
    RequestTarget {
        host: Some(host),
        path_and_query: path,
        tag_header: None,
        roll: 0,
    }
}

fn revision(table: &RouteTable, request: RequestTarget<'_>) -> String {
    table
        .resolve(request)
        .map(|r| r.revision.name.clone())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn hosts_select_the_service_and_its_entry_component() {
    let table = table();
    assert_eq!(
        revision(
            &table,
            target("iris.default.example.com", "/v1/models/iris:predict")
        ),
        "iris-predictor-2"
    );
    assert_eq!(
        revision(&table, target("IRIS.default.example.com:8080", "/")),
        "iris-predictor-2"
    );
    assert_eq!(
        revision(&table, target("iris.default.svc.cluster.local", "/")),
        "iris-predictor-2"
    );
    // The transformer is the entry; the predictor and the explainer have their own hosts.
    assert_eq!(
        revision(&table, target("chain.team.example.com", "/")),
        "chain-transformer-1"
    );
    assert_eq!(
        revision(&table, target("chain-predictor.team.example.com", "/")),
        "chain-predictor-1"
    );
    assert_eq!(
        revision(
            &table,
            target("chain.team.example.com", "/v1/models/m:explain")
        ),
        "chain-explainer-1"
    );
}

#[test]
fn unknown_hosts_and_names_are_404() {
    let table = table();
    for host in [
        "nope.default.example.com",
        "iris.other.example.com",
        "example.com",
        "",
        "a.b.c.d.org",
    ] {
        let error = table.resolve(target(host, "/")).unwrap_err();
        assert_eq!(error.status(), http::StatusCode::NOT_FOUND, "{host}");
    }
}

#[test]
fn path_prefix_selects_the_service_and_is_stripped() {
    let table = table();
    let resolved = table
        .resolve(target(
            "10.0.0.1",
            "/serving/default/iris/v1/models/iris:predict?x=1",
        ))
        .unwrap();
    assert_eq!(resolved.revision.name, "iris-predictor-2");
    assert_eq!(
        resolved.path.as_deref(),
        Some("/v1/models/iris:predict?x=1")
    );
    let bare = table
        .resolve(target("", "/serving/default/iris?x=1"))
        .unwrap();
    assert_eq!(bare.path.as_deref(), Some("/?x=1"));
    assert!(table.resolve(target("", "/serving/default/")).is_err());
}

#[test]
fn tags_select_a_revision_by_host_or_header_when_enabled() {
    let table = table();
    assert_eq!(
        revision(&table, target("prev-iris.default.example.com", "/")),
        "iris-predictor-1"
    );
    assert_eq!(
        revision(&table, target("latest-iris.default.example.com", "/")),
        "iris-predictor-2"
    );
    let mut by_header = target("iris.default.example.com", "/");
    by_header.tag_header = Some("prev");
    by_header.roll = 0; // would be the canary without the header
    assert_eq!(revision(&table, by_header), "iris-predictor-1");
    by_header.tag_header = Some("nope");
    assert_eq!(
        table.resolve(by_header).unwrap_err().status(),
        http::StatusCode::NOT_FOUND
    );
    // Without tag routing, neither the header nor a tag host applies.
    let mut header_off = target("chain.team.example.com", "/");
    header_off.tag_header = Some("prev");
    assert_eq!(revision(&table, header_off), "chain-transformer-1");
    assert!(table
        .resolve(target("latest-chain.team.example.com", "/"))
        .is_err());
}

#[test]
fn the_split_follows_the_roll() {
    let table = table();
    let hits = (0..100)
        .filter(|&roll| {
            let mut t = target("iris.default.example.com", "/");
            t.roll = roll;
            revision(&table, t) == "iris-predictor-2"
        })
        .count();
    assert_eq!(hits, 20);
}

#[test]
fn bad_traffic_is_rejected_and_limiters_survive_updates() {
    let table = table();
    let mut bad = ServiceRoute::new("default", "bad");
    bad.components.insert(
        Component::Predictor,
        vec![TrafficTarget::new(RevisionSettings::new("a"), 30)],
    );
    assert!(matches!(table.upsert(bad), Err(RouteError::Traffic { .. })));

    let mut limited = table
        .routes()
        .into_iter()
        .find(|r| r.name == "iris")
        .unwrap();
    limited.rate_limit = Some(RateLimit::new(5.0, None));
    table.upsert(limited.clone()).unwrap();
    let before = table
        .get("default", "iris")
        .unwrap()
        .limiter
        .clone()
        .unwrap();
    table.upsert(limited).unwrap();
    let after = table
        .get("default", "iris")
        .unwrap()
        .limiter
        .clone()
        .unwrap();
    assert!(Arc::ptr_eq(&before, &after));
    table.remove("default", "iris");
    assert!(table
        .resolve(target("iris.default.example.com", "/"))
        .is_err());
    assert_eq!(RateLimit::new(2.5, None).burst, 3);
}

#[test]
fn a_request_follows_its_traffic_only_when_its_revision_loses_it() {
    let table = table();
    // Roll 90: past the 20% canary, so the previous revision.
    let held = table
        .resolve(RequestTarget {
            roll: 90,
            ..target("iris.default.example.com", "/")
        })
        .unwrap();
    assert_eq!(held.revision.name, "iris-predictor-1");
    let tagged = table
        .resolve(target("prev-iris.default.example.com", "/"))
        .unwrap();

    // The split moves, but the previous revision still takes traffic: nothing moves.
    let mut iris = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("iris-predictor-2"),
        Some(RevisionSettings::new("iris-predictor-1")),
        Some(50),
    );
    iris.tag_routing = true;
    table.upsert(iris).unwrap();
    assert!(table.reroute(&held).is_none());
    assert!(table.reroute(&tagged).is_none());

    // Promoted: the previous revision takes nothing and the held request goes to the new
    // one; the `prev` tag now names nothing, so the tagged request stays where it is.
    let mut iris = ServiceRoute::new("default", "iris").with_canary(
        Component::Predictor,
        RevisionSettings::new("iris-predictor-2"),
        None,
        None,
    );
    iris.tag_routing = true;
    table.upsert(iris).unwrap();
    let moved = table.reroute(&held).expect("the held request moves");
    assert_eq!(moved.revision.name, "iris-predictor-2");
    assert_eq!(moved.path, held.path);
    assert!(table.reroute(&tagged).is_none());

    // A service that is gone moves nothing.
    table.remove("default", "iris");
    assert!(table.reroute(&held).is_none());
}
