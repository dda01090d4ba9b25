//! Tests of correlation: lifecycle, grouping rules, confirmation, maintenance, awkward input.
use super::*;
use crate::config::ServiceInfo;
use crate::decode::Severity;

fn alert(fp: &str, service: &str, ts_s: i64, status: Status) -> Alert {
    Alert {
        fingerprint: fp.into(),
        source: "test".into(),
        service: Some(service.into()),
        host: None,
        severity: Severity::Warning,
        status,
        title: format!("{fp} on {service}"),
        ts: ts_s * 1000,
        labels: Vec::new(),
    }
}

fn open_on_any_alert() -> Correlation {
    Correlation {
        require_confirmation: false,
        ..Correlation::default()
    }
}

fn symptom(fp: &str, service: &str, ts_s: i64) -> Alert {
    let mut a = alert(fp, service, ts_s, Status::Firing);
    a.source = "anomaly".into();
    a.labels = vec![("role".into(), "symptom".into())];
    a
}

#[test]
fn candidates_open_only_when_confirmed() {
    let mut c = Correlator::new(Correlation::default(), catalog());
    // a warning alone, even repeated: a candidate, nothing published
    assert!(c
        .ingest(
            vec![
                alert("w", "db", 0, Status::Firing),
                alert("w", "db", 120, Status::Firing)
            ],
            vec![]
        )
        .is_empty());
    // a symptom on the same service: not yet (a short blip on one service is noise)
    assert!(c.ingest(vec![symptom("s1", "db", 130)], vec![]).is_empty());
    // ... but symptoms on a caller too: confirmed, opened now with everything so far
    let out = c.ingest(vec![symptom("s2", "api", 190)], vec![]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].json()["status"], "open");
    assert_eq!(out[0].json()["alert_count"], 3);
    assert_eq!(out[0].json()["opened_at"], "1970-01-01T00:03:10.000Z");
    assert!(out[0].json()["timeline"]
        .to_string()
        .contains("symptoms on two services"));

    // a critical alert confirms by itself
    let mut crit = alert("c", "mail", 1000, Status::Firing);
    crit.severity = Severity::Critical;
    assert_eq!(c.ingest(vec![crit], vec![]).len(), 1);

    // an alert with symptoms lasting the persistence time confirms
    let mut c = Correlator::new(Correlation::default(), catalog());
    assert!(c
        .ingest(
            vec![symptom("s", "mail", 0), alert("w", "mail", 30, Status::Firing)],
            vec![]
        )
        .is_empty());
    assert!(c
        .ingest(
            vec![symptom("s", "mail", 300), alert("w", "mail", 330, Status::Firing)],
            vec![]
        )
        .is_empty());
    let out = c.ingest(
        vec![symptom("s", "mail", 600), alert("w", "mail", 630, Status::Firing)],
        vec![],
    );
    assert_eq!(out.len(), 1);

    // N alerts confirm when configured so
    let cfg = Correlation {
        confirm_after_alerts: 2,
        ..Correlation::default()
    };
    let mut c2 = Correlator::new(cfg, catalog());
    assert!(c2.ingest(vec![alert("w1", "db", 0, Status::Firing)], vec![]).is_empty());
    let out = c2.ingest(vec![alert("w2", "db", 10, Status::Firing)], vec![]);
    assert!(out[0].json()["timeline"].to_string().contains("enough alerts"));

    // unconfirmed candidates go quietly
    let mut c = Correlator::new(Correlation::default(), catalog());
    c.ingest(vec![alert("w", "db", 0, Status::Firing)], vec![]);
    assert!(c.advance(4000 * 1000).is_empty());
    assert_eq!(c.stats.candidates_dropped, 1);
    assert!(c.incidents.is_empty());
}

#[test]
fn info_alerts_are_counted_not_grouped() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let mut info = alert("i", "db", 0, Status::Firing);
    info.severity = Severity::Info;
    assert!(c.ingest(vec![info], vec![]).is_empty());
    assert_eq!(c.stats.informational, 1);
}

#[test]
fn a_rule_firing_again_after_silence_is_a_new_episode() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let first = c.ingest(vec![alert("r", "db", 0, Status::Firing)], vec![]);
    // the incident is still open (quiet period 30 min) but nothing happened for 16 min
    let again = c.ingest(vec![alert("r", "db", 1000, Status::Firing)], vec![]);
    assert_ne!(
        again[0].incident_id,
        first[0].incident_id,
        "{:?}",
        again[0].json()["timeline"]
    );
    // ... while a repeat within the window is only a repeat
    assert!(c
        .ingest(vec![alert("r", "db", 1060, Status::Firing)], vec![])
        .is_empty());
    // an alert with no service at all goes through the same path without trouble
    let mut bare = alert("bare", "db", 2000, Status::Firing);
    bare.service = None;
    bare.severity = Severity::Critical;
    c.ingest(vec![bare.clone()], vec![]);
    bare.ts = 4000 * 1000;
    let out = c.ingest(vec![bare], vec![]);
    assert!(
        out.iter().any(|u| u.json()["alerts"].to_string().contains("\"bare\"")),
        "{out:?}"
    );
}

#[test]
fn fresh_trouble_next_door_beats_an_old_same_service_match() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let mut old = alert("old", "api", 0, Status::Firing);
    old.severity = Severity::Critical;
    let old_id = c.ingest(vec![old.clone()], vec![])[0].incident_id.clone();
    old.ts = 500 * 1000; // still firing
    c.ingest(vec![old], vec![]);
    // new trouble on web (a caller of api) opens its own incident: api's trouble is old
    let mut web = alert("web", "web", 520, Status::Firing);
    web.severity = Severity::Critical;
    let web_id = c.ingest(vec![web], vec![])[0].incident_id.clone();
    assert_ne!(web_id, old_id);
    // an api alert now: api is stale in the old incident, fresh next door in web's
    let out = c.ingest(vec![alert("api2", "api", 560, Status::Firing)], vec![]);
    assert_eq!(out[0].incident_id, web_id);
    assert_eq!(out[0].json()["explanation"][1]["rule"], "topology");
}

#[test]
fn flapping_alerts_stop_churning_the_incident() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let mut statuses = Vec::new();
    for i in 0..10 {
        let st = if i % 2 == 0 { Status::Firing } else { Status::Resolved };
        for u in c.ingest(vec![alert("f", "db", i * 60, st)], vec![]) {
            statuses.push(u.json()["status"].as_str().unwrap().to_string());
        }
    }
    // open, resolved, reopened, resolved; the fourth flip marks it flapping (and reopens
    // the incident); after that its flips no longer publish anything
    assert_eq!(
        statuses,
        vec!["open", "resolved", "reopened", "resolved", "reopened"],
        "{statuses:?}"
    );
    let inc = c.incidents.values().next().unwrap();
    assert!(inc.members["f"].flapping && inc.phase == Phase::Open);
    assert!(inc.timeline.iter().any(|t| t.1 == "alert_flapping"));
}

#[test]
fn maintenance_windows_suppress_or_mark() {
    use crate::config::{Maintenance, MaintenanceMode};
    let mut cfg = open_on_any_alert();
    cfg.maintenance = vec![Maintenance {
        services: vec!["db".into()],
        hosts: vec![],
        start: "1970-01-01T00:00:00Z".into(),
        end: "1970-01-01T01:00:00Z".into(),
        mode: MaintenanceMode::Suppress,
        reason: "db upgrade".into(),
    }];
    let mut c = Correlator::new(cfg, catalog());
    assert!(c.ingest(vec![alert("a", "db", 60, Status::Firing)], vec![]).is_empty());
    assert_eq!(c.stats.suppressed_maintenance, 1);
    assert_eq!(
        c.ingest(vec![alert("b", "mail", 60, Status::Firing)], vec![]).len(),
        1,
        "other services page"
    );

    // announced on the events stream, in mark mode: kept, marked, not paging alone
    let mut c = Correlator::new(Correlation::default(), catalog());
    let announce = |what: &str, ts: i64| Change {
        ts,
        kind: EventKind::Other,
        source: "ops".into(),
        service: Some("api".into()),
        title: "api failover drill".into(),
        fingerprint: None,
        labels: vec![("maintenance".into(), what.into()), ("mode".into(), "mark".into())],
    };
    c.ingest(vec![], vec![announce("start", 0)]);
    let mut crit = alert("x", "api", 60, Status::Firing);
    crit.severity = Severity::Critical;
    assert!(
        c.ingest(vec![crit], vec![]).is_empty(),
        "a marked critical alert does not page by itself"
    );
    c.ingest(vec![], vec![announce("end", 120)]);
    let mut after = alert("y", "api", 180, Status::Firing);
    after.severity = Severity::Critical;
    let out = c.ingest(vec![after], vec![]);
    assert_eq!(out[0].json()["status"], "open");
    assert_eq!(out[0].json()["alerts"][0]["maintenance"], true);
    assert_eq!(out[0].json()["alerts"][1]["maintenance"], false);
}

#[test]
fn awkward_alerts() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    // no service at all: still an incident of its own
    let mut bare = alert("bare", "x", 0, Status::Firing);
    bare.service = None;
    bare.host = Some("h-9".into());
    assert_eq!(c.ingest(vec![bare], vec![]).len(), 1);
    // a service the catalog does not know still groups by service and time
    let a = c.ingest(vec![alert("u1", "unknown-svc", 10, Status::Firing)], vec![]);
    let b = c.ingest(vec![alert("u2", "unknown-svc", 20, Status::Firing)], vec![]);
    assert_eq!(a[0].incident_id, b[0].incident_id);
    // clock skew: an alert from a source whose clock is behind still lands
    let late = c.ingest(vec![alert("u3", "unknown-svc", 5, Status::Firing)], vec![]);
    assert_eq!(late[0].incident_id, a[0].incident_id);
    // a fingerprint reused on another service is a different alert
    let reuse = c.ingest(vec![alert("u1", "mail", 30, Status::Firing)], vec![]);
    assert_ne!(reuse[0].incident_id, a[0].incident_id);
    assert_eq!(c.stats.fingerprint_clashes, 1);
    assert!(reuse[0].json()["alerts"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .starts_with("u1~"));
}

#[test]
fn alerts_the_catalog_cannot_place_group_by_attributes_and_similar_titles() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let mk = |fp: &str, title: &str, cluster: &str, ts: i64| {
        let mut a = alert(fp, "x", ts, Status::Firing);
        a.service = None;
        a.title = title.into();
        a.labels = vec![("cluster".into(), cluster.into())];
        a
    };
    let first = c.ingest(
        vec![mk("a", "Disk pressure on node ip-10-0-1-7: 91% used", "eu-1", 0)],
        vec![],
    );
    let same = c.ingest(
        vec![mk("b", "Disk pressure on node ip-10-0-3-9: 95% used", "eu-1", 60)],
        vec![],
    );
    assert_eq!(same[0].incident_id, first[0].incident_id);
    assert_eq!(same[0].json()["explanation"][1]["rule"], "similar_title");
    assert_eq!(same[0].json()["explanation"][1]["shared_keys"][0]["value"], "eu-1");
    // another cluster, or another kind of trouble: apart
    let other_cluster = c.ingest(
        vec![mk("c", "Disk pressure on node ip-10-0-3-9: 95% used", "us-2", 70)],
        vec![],
    );
    assert_ne!(other_cluster[0].incident_id, first[0].incident_id);
    let other_title = c.ingest(vec![mk("d", "Certificate expires in 3 days", "eu-1", 80)], vec![]);
    assert_ne!(other_title[0].incident_id, first[0].incident_id);
}

fn catalog() -> Catalog {
    let s = |n: &str, d: &[&str]| ServiceInfo {
        name: n.into(),
        owner: Some(format!("team-{n}")),
        tier: 1,
        depends_on: d.iter().map(|x| x.to_string()).collect(),
        hosts: vec![],
        kind: None,
    };
    Catalog::from_services(vec![
        s("web", &["api"]),
        s("api", &["db"]),
        s("db", &[]),
        s("mail", &[]),
    ])
    .unwrap()
}

#[test]
fn dedup_group_and_resolve() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let out = c.ingest(vec![alert("a", "db", 0, Status::Firing)], vec![]);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].json()["status"], "open");
    // the same fingerprint again: deduplicated, nothing published
    assert!(c.ingest(vec![alert("a", "db", 60, Status::Firing)], vec![]).is_empty());
    // a caller of db alerts: joins by topology
    let out = c.ingest(vec![alert("b", "api", 90, Status::Firing)], vec![]);
    assert_eq!(out[0].json()["alert_count"], 2);
    assert_eq!(out[0].json()["explanation"][1]["rule"], "topology");
    assert_eq!(out[0].json()["root_cause"][0]["service"], "db");
    // an unrelated service opens its own incident
    let out = c.ingest(vec![alert("m", "mail", 100, Status::Firing)], vec![]);
    assert_ne!(out[0].incident_id, c.by_fingerprint["a"]);
    // every alert resolves: incident resolves, seq keeps counting
    let out = c.ingest(
        vec![
            alert("a", "db", 200, Status::Resolved),
            alert("b", "api", 210, Status::Resolved),
        ],
        vec![],
    );
    // one message per state change: one alert resolved, then all of them
    let states: Vec<(String, u64)> = out
        .iter()
        .map(|u| (u.json()["status"].as_str().unwrap().to_string(), u.seq))
        .collect();
    assert_eq!(states, vec![("updated".into(), 3), ("resolved".into(), 4)]);
    // fires again within the reopen window: reopened, same id
    let out = c.ingest(vec![alert("a", "db", 300, Status::Firing)], vec![]);
    assert_eq!(out[0].json()["status"], "reopened");
    assert_eq!(out[0].json()["incident_id"], c.by_fingerprint["a"].as_str());
}

#[test]
fn quiet_incidents_resolve_and_are_forgotten() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    c.ingest(vec![alert("a", "db", 0, Status::Firing)], vec![]);
    let out = c.advance(1801 * 1000);
    assert_eq!(out[0].json()["status"], "resolved");
    assert_eq!(out[0].json()["resolved_at"], "1970-01-01T00:30:00.000Z");
    c.advance(1801 * 1000 + 901 * 1000);
    assert!(c.incidents.is_empty() && c.by_fingerprint.is_empty());
}

#[test]
fn resolve_without_firing_is_counted_not_published() {
    let mut c = Correlator::new(open_on_any_alert(), Catalog::default());
    assert!(c.ingest(vec![alert("z", "db", 0, Status::Resolved)], vec![]).is_empty());
    assert_eq!(c.stats.resolves_without_firing, 1);
}

#[test]
fn changes_before_the_first_symptom_are_suspects() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let deploy = Change {
        ts: 0,
        kind: EventKind::Deploy,
        source: "argocd".into(),
        service: Some("db".into()),
        title: "deploy db 1.2".into(),
        fingerprint: Some("deploy-1".into()),
        labels: vec![("deploy_id".into(), "d-1".into())],
    };
    let out = c.ingest(vec![alert("b", "api", 120, Status::Firing)], vec![deploy]);
    let sc = &out[0].json()["suspected_changes"];
    assert_eq!(sc[0]["fingerprint"], "deploy-1");
    assert!(sc[0]["reason"].as_str().unwrap().contains("dependency of affected api"));
}

#[test]
fn same_input_same_ids() {
    let run = || {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        c.ingest(
            vec![
                alert("b", "api", 5, Status::Firing),
                alert("a", "db", 5, Status::Firing),
            ],
            vec![],
        )
        .into_iter()
        .map(|u| String::from_utf8(u.text.clone()).unwrap())
        .collect::<Vec<_>>()
    };
    assert_eq!(run(), run());
}

#[test]
fn evidence_joins_only_incidents_that_already_involve_its_service() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let evidence = |fp: &str, service: &str, ts_s: i64| {
        let mut a = symptom(fp, service, ts_s);
        a.labels = vec![("role".into(), "evidence".into())];
        a
    };
    // Alone, evidence opens nothing.
    assert!(c.ingest(vec![evidence("e0", "api", 10)], vec![]).is_empty());
    let id = c.ingest(vec![symptom("s1", "api", 20)], vec![])[0].incident_id.clone();
    // api's own evidence joins api's incident.
    let out = c.ingest(vec![evidence("e1", "api", 30)], vec![]);
    assert_eq!(out[0].incident_id, id);
    // db's evidence does not bring db in, though db is api's dependency.
    assert!(c.ingest(vec![evidence("e2", "db", 40)], vec![]).is_empty());
    assert_eq!(c.stats.evidence_unattached, 2);
}

/// However the same alerts are cut into batches (a restart, a consumer that falls
/// behind), the same incident states are published: quiet incidents resolve before the
/// first alert past their quiet period, resolved candidates go once time moves on.
#[test]
fn the_incident_stream_does_not_depend_on_batch_boundaries() {
    let cfg = Correlation::default();
    let quiet = cfg.quiet_period_s as i64;
    let mut alerts = Vec::new();
    for (i, svc) in ["db", "web", "cache"].iter().enumerate() {
        let t = i as i64 * (2 * quiet + 600);
        alerts.push(symptom(&format!("s{i}"), svc, t));
        alerts.push(symptom(&format!("t{i}"), "api", t + 40));
        alerts.push(alert(&format!("w{i}"), svc, t + 60, Status::Firing));
        alerts.push(alert(&format!("w{i}"), svc, t + 90, Status::Resolved));
        // something elsewhere moves event time past the quiet period, then the first
        // symptom repeats: resolved, then reopened, wherever the batches are cut
        alerts.push(alert(&format!("x{i}"), "elsewhere", t + 90 + quiet + 5, Status::Firing));
        alerts.push(symptom(&format!("s{i}"), svc, t + 90 + quiet + 6));
    }
    alerts.sort_by_key(|a| a.ts);
    let changes = vec![Change {
        ts: 30_000,
        kind: EventKind::Deploy,
        source: "ci".into(),
        service: Some("db".into()),
        title: "deploy db".into(),
        fingerprint: None,
        labels: Vec::new(),
    }];
    let run = |cuts: &[usize]| {
        let mut c = Correlator::new(cfg.clone(), catalog());
        let mut out = BTreeSet::new();
        let mut from = 0;
        for &to in cuts.iter().chain([alerts.len()].iter()) {
            let batch = alerts[from..to].to_vec();
            // the deploy is read first, whatever it is cut with
            let ch = if from == 0 { changes.clone() } else { Vec::new() };
            for u in c.ingest(batch, ch) {
                // the ledger's typed summary says what the published text says
                assert_eq!(Summary::from_json(&u.json()).as_ref(), Some(&u.summary));
                out.insert((u.incident_id, u.seq, String::from_utf8(u.text.clone()).unwrap()));
            }
            from = to;
        }
        out
    };
    let whole = run(&[]);
    assert!(whole.len() >= 6, "{whole:?}");
    assert!(whole.iter().any(|(_, _, j)| j.contains("\"resolved\"")));
    let differ = |got: &BTreeSet<(String, u64, String)>| -> Vec<(String, u64)> {
        got.symmetric_difference(&whole)
            .map(|(id, seq, _)| (id.clone(), *seq))
            .collect()
    };
    for cut in 1..alerts.len() {
        assert_eq!(differ(&run(&[cut])), vec![], "cut after alert {cut}");
    }
    let every: Vec<usize> = (1..alerts.len()).collect();
    assert_eq!(differ(&run(&every)), vec![], "one alert per batch");
}

#[test]
fn held_expiry_gives_partitions_read_unevenly_the_incidents_of_event_time_order() {
    // Partition A: alerts on db every minute for 20 minutes, silent for 40 (past the quiet
    // period), then 20 minutes more, and again. Partition B: an alert on mail, its
    // resolve after the quiet period (the incident resolved when it went quiet, not when
    // the resolve came), and the alert again hours later. In a backlog the consumer reads
    // all of B before most of A.
    let mut a_part = Vec::new();
    for episode in 0..3 {
        for m in 0..20 {
            a_part.push(alert("e", "db", episode * 3600 + m * 60, Status::Firing));
        }
    }
    let b_part = vec![
        alert("m", "mail", 0, Status::Firing),
        alert("m", "mail", 2000, Status::Resolved),
        alert("m", "mail", 9000, Status::Firing),
    ];
    let seen = |updates: Vec<IncidentUpdate>, out: &mut BTreeSet<(String, u64, String)>| {
        for u in updates {
            out.insert((u.incident_id, u.seq, String::from_utf8(u.text).unwrap()));
        }
    };
    let mut in_order = Correlator::new(open_on_any_alert(), catalog());
    let mut expected = BTreeSet::new();
    let all: Vec<Alert> = a_part.iter().chain(&b_part).cloned().collect();
    seen(in_order.ingest(all, vec![]), &mut expected);
    seen(in_order.advance(i64::MAX / 2), &mut expected);

    let unevenly = |hold: bool| {
        let mut c = Correlator::new(open_on_any_alert(), catalog());
        let mut out = BTreeSet::new();
        // what the processor does per batch: hold at the oldest newest event of the two
        // partitions (A has delivered nothing yet: it holds everything), then ingest
        let mut newest_a = i64::MIN;
        let newest_b = b_part.last().unwrap().ts;
        if hold {
            c.hold(newest_a);
        }
        seen(c.ingest(b_part.clone(), vec![]), &mut out);
        for batch in a_part.chunks(7) {
            newest_a = batch.last().unwrap().ts;
            if hold {
                c.hold(newest_a.min(newest_b));
            }
            seen(c.ingest(batch.to_vec(), vec![]), &mut out);
            seen(c.advance(newest_b), &mut out);
        }
        c.release();
        seen(c.advance(i64::MAX / 2), &mut out);
        out
    };
    let held = unevenly(true);
    let differ: Vec<_> = held
        .symmetric_difference(&expected)
        .map(|(id, seq, _)| (id.clone(), *seq))
        .collect();
    assert_eq!(differ, vec![], "held: {held:#?}\nin event-time order: {expected:#?}");
    // the case is one where expiring on the newest event goes wrong: each of A's episodes
    // would resolve as soon as it opened
    let newest = unevenly(false);
    assert!(newest.len() > expected.len(), "{} {}", newest.len(), expected.len());
}

#[test]
fn a_long_incident_lists_its_first_and_latest_alerts_and_counts_them_all() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    // 500 alerts on one service, a few seconds apart: one incident
    let alerts: Vec<Alert> = (0..500)
        .map(|i| {
            let mut a = alert(&format!("a{i:03}"), "db", i * 5, Status::Firing);
            a.severity = Severity::Critical;
            a
        })
        .collect();
    let out = c.ingest(alerts, vec![]);
    let last = &out.last().expect("published").json();
    assert_eq!(Summary::from_json(last).as_ref(), Some(&out.last().unwrap().summary));
    assert_eq!(last["alert_count"], 500);
    assert_eq!(last["alerts_omitted"], 300);
    let listed: Vec<&str> = last["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["fingerprint"].as_str().unwrap())
        .collect();
    assert_eq!(listed.len(), incident::LISTED_MEMBERS);
    assert_eq!((listed[0], listed[99]), ("a000", "a099"));
    assert_eq!((listed[100], listed[199]), ("a400", "a499"));
    assert_eq!(last["explanation"].as_array().unwrap().len(), 200);
    // a small incident lists everything
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let out = c.ingest(vec![alert("x", "db", 0, Status::Firing)], vec![]);
    assert_eq!(out[0].json()["alerts_omitted"], 0);
    assert_eq!(out[0].json()["alerts"].as_array().unwrap().len(), 1);
}

#[test]
fn an_incident_takes_new_alerts_for_max_grouping_s_and_repeats_after_that() {
    let cfg = Correlation {
        max_grouping_s: 3600,
        ..open_on_any_alert()
    };
    let mut c = Correlator::new(cfg, catalog());
    let crit = |fp: &str, ts_s: i64| {
        let mut a = alert(fp, "db", ts_s, Status::Firing);
        a.severity = Severity::Critical;
        a
    };
    // new trouble every five minutes for two hours, and the first alert repeating
    let mut ids = BTreeSet::new();
    for i in 0..24 {
        for u in c.ingest(
            vec![crit(&format!("n{i}"), i * 300), crit("first", i * 300 + 1)],
            vec![],
        ) {
            ids.insert(u.json()["incident_id"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(ids.len(), 2, "{ids:?}");
    let first = c.incidents.values().find(|i| i.members.contains_key("first")).unwrap();
    // n0..n12 joined it (up to 3600 s after it opened), its own alert kept updating it
    assert_eq!(first.members.len(), 14, "{:?}", first.members.keys());
    assert_eq!(first.members["first"].count, 24);
}

/// An update writes the entries of members that did not change from what it wrote
/// before. Whatever changed in between (repeats, resolves, new titles and severities,
/// members leaving the listing of a long incident), the text is what writing every
/// entry afresh gives.
#[test]
fn updates_from_entries_written_before_are_what_writing_afresh_gives() {
    let mut c = Correlator::new(open_on_any_alert(), catalog());
    let mut checked = 0;
    for step in 0..600i64 {
        let fp = format!("a{:03}", step % 260);
        let status = if step % 7 == 0 {
            Status::Resolved
        } else {
            Status::Firing
        };
        let mut a = alert(&fp, "db", step * 5, status);
        a.severity = if step % 11 == 0 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        a.title = format!("{fp} on db, round {}", step / 260);
        if step % 3 == 0 {
            a.source = "anomaly".into();
            a.labels = vec![("role".into(), "symptom".into()), ("value".into(), step.to_string())];
        }
        let out = c.ingest(vec![a], vec![]);
        let Some(u) = out.last() else { continue };
        let Some(inc) = c.incidents.get(&u.incident_id).filter(|i| i.seq == u.seq) else {
            continue;
        };
        let fresh: Incident = serde_json::from_value(serde_json::to_value(inc).unwrap()).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&u.text),
            String::from_utf8_lossy(&fresh.published(&c.catalog).0),
            "step {step}"
        );
        checked += 1;
    }
    assert!(checked > 300, "{checked}");
    // only listed members keep their entries
    let inc = c.incidents.values().max_by_key(|i| i.members.len()).unwrap();
    assert!(inc.members.len() > incident::LISTED_MEMBERS);
    let kept = inc.members.values().filter(|m| m.has_entries()).count();
    assert!(kept <= incident::LISTED_MEMBERS, "{kept}");
    assert!(kept > 0);
    // a checkpoint's copy does not carry them
    assert!(inc.clone().members.values().all(|m| !m.has_entries()));
}
