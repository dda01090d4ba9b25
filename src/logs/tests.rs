//! The miner's rules, one test each, and its bounds.

use super::miner::{Miner, MinerConfig, TemplateChange};

fn mine_all(miner: &mut Miner, lines: &[&str]) -> Vec<String> {
    let mined: Vec<_> = lines.iter().map(|l| miner.mine(l)).collect();
    mined.iter().map(|&m| miner.current(m).expect("live").text()).collect()
}

fn template_of(line: &str) -> String {
    let mut m = Miner::new(MinerConfig::default());
    let mined = m.mine(line);
    m.template(mined).text()
}

#[test]
fn values_by_their_look_are_parameters_and_punctuation_stays() {
    let cases = [
        (
            "session opened for user root by (uid=0)",
            "session opened for user root by (uid=<*>)",
        ),
        (
            "Accepted connection from 10.0.0.1:22",
            "Accepted connection from <*>:<*>",
        ),
        ("jetty-6.1.26 started", "jetty-<*> started"),
        ("Connecting to msra-sa-41:8030", "Connecting to <*>:<*>"),
        ("started on port 4040.", "started on port <*>."),
        ("isScreenOn true", "isScreenOn <*>"),
        (
            "Accepted password for root from 1.2.3.4 port 22 ssh2",
            "Accepted password for root from <*> port <*> ssh2",
        ),
        (
            "Deleting block blk_-1608999687919862906 file /mnt/hadoop/dfs",
            "Deleting block <*> file <*>",
        ),
        ("chip FF:F2:9C:16:E0:4A ok", "chip <*> ok"),
        ("session 0x14f05578bf40000 expired", "session <*> expired"),
        ("took 12ms", "took <*>"),
        ("generating core.2275", "generating core.<*>"),
        ("icache prefetch depth.......0", "icache prefetch depth.......<*>"),
        ("File: hdfs://msra-sa-41:9000/tmp", "File: hdfs://<*>:<*>"),
        ("Thread-12 done", "Thread-<*> done"),
        (r"Loaded C:\Windows\winsxs\cbscore.dll", "Loaded C:<*>"),
        ("HttpServer2 ssh2 log4j started", "HttpServer2 ssh2 log4j started"),
    ];
    for (line, want) in cases {
        assert_eq!(template_of(line), want, "{line}");
    }
}

#[test]
fn masks_mark_values_without_rewriting_the_message() {
    let config = MinerConfig {
        masks: vec![regex::Regex::new(r"(\d+\.){3}\d+(:\d+)?").unwrap()],
        ..MinerConfig::default()
    };
    let mut m = Miner::new(config);
    let line = "served to 10.1.2.3:50010 ok";
    let mined = m.mine(line);
    assert_eq!(m.template(mined).text(), "served to <*>:<*> ok");
    assert_eq!(m.params(line, mined), vec!["10.1.2.3", "50010"]);
}

#[test]
fn words_become_a_parameter_at_the_threshold_and_the_oldest_id_stays() {
    let mut m = Miner::new(MinerConfig::default());
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let mut ids = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let mined = m.mine(&format!("Invalid user {u} from 10.0.0.{i}"));
        ids.push(m.template(mined).id);
        let expect = if i < 3 { i + 1 } else { 1 };
        assert_eq!(m.len(), expect, "after {u}");
    }
    assert_eq!(ids[3], ids[0], "the merged template keeps the first id");
    assert_eq!(ids[4], ids[0]);
    let t = m.templates().next().unwrap();
    assert_eq!(t.text(), "Invalid user <*> from <*>");
    assert_eq!(t.count, 5);
    let changes = m.take_changes();
    let merges: Vec<_> = changes
        .iter()
        .filter_map(|c| match c {
            TemplateChange::Generalised { into, merged } if !merged.is_empty() => Some((*into, merged.len())),
            _ => None,
        })
        .collect();
    assert_eq!(merges, vec![(ids[0], 3)]);
    let last = m.history().last().expect("changes are recorded");
    assert_eq!(last.template, "Invalid user <*> from <*>");
    assert!(
        matches!(&last.change, TemplateChange::Generalised { into, merged } if *into == ids[0] && merged.len() == 3)
    );
    assert_eq!(last.at, 4, "recorded at the fourth message");
    let line = "Invalid user mallory from 10.9.9.9";
    let mined = m.mine(line);
    assert_eq!(m.params(line, mined), vec!["mallory", "10.9.9.9"]);
}

#[test]
fn a_few_states_stay_separate_templates() {
    let mut m = Miner::new(MinerConfig::default());
    let texts = mine_all(
        &mut m,
        &[
            "peer state FOLLOWING",
            "peer state LEADING",
            "peer state LOOKING",
            "peer state FOLLOWING",
        ],
    );
    assert_eq!(m.len(), 3);
    assert_eq!(texts[0], "peer state FOLLOWING");
}

#[test]
fn words_with_digits_generalise_at_two() {
    let mut m = Miner::new(MinerConfig::default());
    let texts = mine_all(&mut m, &["slot J16 do not match", "slot J14 do not match"]);
    assert_eq!(m.len(), 1);
    assert_eq!(texts[0], "slot <*> do not match");
}

#[test]
fn one_word_messages_and_bare_commands_never_merge() {
    let mut m = Miner::new(MinerConfig::default());
    mine_all(&mut m, &["start", "stop", "pause", "resume", "reset"]);
    assert_eq!(m.len(), 5);
    let mut m = Miner::new(MinerConfig::default());
    mine_all(
        &mut m,
        &[
            "KILLING attempt_1445_0001",
            "Launching attempt_1445_0002",
            "JOB_CREATE job_1445_0003",
            "ATTEMPT_START attempt_1445_0004",
        ],
    );
    assert_eq!(m.len(), 4, "no template may be only parameters");
}

#[test]
fn replaying_the_same_lines_creates_nothing_and_keeps_ids() {
    let lines: Vec<String> = (0..200)
        .map(|i| match i % 4 {
            0 => format!(
                "Received block blk_{} of size {} from /10.0.0.{}",
                i * 7919,
                i * 13,
                i % 9
            ),
            1 => format!(
                "Invalid user {} from 10.0.{}.1",
                ["ann", "ben", "cid", "dan", "eve"][i % 5],
                i
            ),
            2 => format!("peer state {}", ["FOLLOWING", "LEADING"][i % 2]),
            _ => format!("Verification succeeded for blk_{}", i * 31),
        })
        .collect();
    let ids = |m: &mut Miner| -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                let x = m.mine(l);
                m.template(x).id
            })
            .collect()
    };
    let mut m = Miner::new(MinerConfig::default());
    let first = ids(&mut m);
    let settled = ids(&mut m);
    let n = m.len();
    for _ in 0..100 {
        for l in &lines {
            m.mine(l);
        }
    }
    assert_eq!(m.len(), n, "no new templates on replay");
    assert_eq!(ids(&mut m), settled);
    // A fresh miner over the same input gives the same ids.
    assert_eq!(ids(&mut Miner::new(MinerConfig::default())), first);
}

#[test]
fn saved_state_restores_the_same_templates() {
    let dir = std::env::temp_dir().join(format!("lookout-miner-{}", std::process::id()));
    let path = dir.join("templates.json");
    let lines = [
        "Invalid user a from 1.1.1.1",
        "Invalid user b from 1.1.1.2",
        "Invalid user c from 1.1.1.3",
        "Invalid user d from 1.1.1.4",
        "disk full on /dev/sda1",
    ];
    let mut m = Miner::new(MinerConfig::default());
    mine_all(&mut m, &lines);
    m.save(&path).unwrap();
    let mut back = Miner::load(MinerConfig::default(), &path).unwrap();
    let mut a: Vec<_> = m.templates().map(|t| (t.id, t.text(), t.count)).collect();
    let mut b: Vec<_> = back.templates().map(|t| (t.id, t.text(), t.count)).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    assert_eq!(
        back.history().count(),
        m.history().count(),
        "the change history is saved"
    );
    mine_all(&mut back, &lines);
    mine_all(&mut back, &["Invalid user zed from 9.9.9.9"]);
    assert_eq!(back.len(), m.len(), "a restored miner knows the templates");
    std::fs::write(&path, b"{not json").unwrap();
    let err = Miner::load(MinerConfig::default(), &path).err().unwrap();
    assert!(
        err.contains("templates.json") && err.contains("not a template state"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn templates_are_bounded_and_evictions_counted() {
    let mut m = Miner::new(MinerConfig {
        max_templates: 10,
        ..MinerConfig::default()
    });
    for i in 0..30 {
        m.mine(&format!("event{}", char::from(b'a' + i as u8)));
    }
    assert_eq!(m.len(), 10);
    assert_eq!(m.stats.evicted, 20);
    let evicted = m
        .take_changes()
        .iter()
        .filter(|c| matches!(c, TemplateChange::Evicted { .. }))
        .count();
    assert_eq!(evicted, 20);
    // A flood of junk: memory stays put, freed slots are reused.
    for i in 0..10_000 {
        m.mine(&format!("junk{}", "x".repeat(i % 50 + 1)));
        m.mine(&format!("{} {}", "q".repeat(i % 97 + 1), "z".repeat(i % 89 + 1)));
    }
    assert_eq!(m.len(), 10);
    assert!(m.slots_allocated() <= 11, "{} slots", m.slots_allocated());
}

#[test]
fn huge_empty_and_garbage_messages_are_bounded() {
    let mut m = Miner::new(MinerConfig::default());
    let huge = "word ".repeat(400_000);
    let mined = m.mine(&huge);
    assert!(m.template(mined).tokens.len() <= MinerConfig::default().max_tokens);
    assert_eq!(m.stats.truncated, 1);
    let mined = m.mine("");
    assert_eq!(m.template(mined).text(), "");
    let garbage = String::from_utf8_lossy(&(0..=255u8).cycle().take(5000).collect::<Vec<u8>>()).into_owned();
    let mined = m.mine(&garbage);
    assert!(!m.template(mined).tokens.is_empty());
}

#[test]
fn lookup_does_not_learn() {
    let mut m = Miner::new(MinerConfig::default());
    mine_all(
        &mut m,
        &[
            "Invalid user a from 1.1.1.1",
            "Invalid user b from 1.1.1.2",
            "Invalid user c from 1.1.1.3",
            "Invalid user d from 1.1.1.4",
        ],
    );
    let before: u64 = m.templates().map(|t| t.count).sum();
    assert_eq!(
        m.lookup("Invalid user q from 2.2.2.2").unwrap().text(),
        "Invalid user <*> from <*>"
    );
    assert!(m.lookup("never seen before").is_none());
    assert_eq!(m.templates().map(|t| t.count).sum::<u64>(), before);
}
