//! The service catalog: services, owners, business tiers, dependencies and hosts
//! (`lookout.catalog.v1`, the format of each scenario's `catalog.json`).
//!
//! Correlation reads it for topology (who calls whom), ownership and priority. Services
//! the catalog does not know still correlate, by attributes and time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    schema: Option<String>,
    services: Vec<ServiceInfo>,
}

/// One service of the catalog.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ServiceInfo {
    pub name: String,
    #[serde(default)]
    pub owner: Option<String>,
    /// 1 is most critical, 3 least.
    #[serde(default = "default_tier")]
    pub tier: u8,
    /// The services this one calls (or, for workers, consumes from).
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub kind: Option<String>,
}

fn default_tier() -> u8 {
    3
}

/// A loaded catalog with its indexes.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    services: BTreeMap<String, ServiceInfo>,
    host_service: HashMap<String, String>,
    callers: BTreeMap<String, BTreeSet<String>>,
}

impl Catalog {
    pub fn load(path: &Path) -> Result<Catalog, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::io(path, e))?;
        Catalog::parse(&text, &path.display().to_string())
    }

    /// Parses catalog JSON; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Catalog, ConfigError> {
        let raw: RawCatalog = serde_json::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            line: e.line(),
            message: e.to_string(),
        })?;
        if let Some(s) = raw.schema.as_deref().filter(|s| *s != "lookout.catalog.v1") {
            return Err(ConfigError::Invalid {
                file: file.to_string(),
                message: format!("unknown catalog schema {s:?}"),
            });
        }
        Catalog::from_services(raw.services).map_err(|message| ConfigError::Invalid {
            file: file.to_string(),
            message,
        })
    }

    pub fn from_services(list: Vec<ServiceInfo>) -> Result<Catalog, String> {
        let mut c = Catalog::default();
        for s in list {
            if !(1..=5).contains(&s.tier) {
                return Err(format!("service {}: tier must be 1..5, got {}", s.name, s.tier));
            }
            for h in &s.hosts {
                if let Some(other) = c.host_service.insert(h.clone(), s.name.clone()) {
                    return Err(format!("host {h} belongs to both {other} and {}", s.name));
                }
            }
            for d in &s.depends_on {
                c.callers.entry(d.clone()).or_default().insert(s.name.clone());
            }
            if c.services.insert(s.name.clone(), s.clone()).is_some() {
                return Err(format!("service {} is listed twice", s.name));
            }
        }
        Ok(c)
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    pub fn service(&self, name: &str) -> Option<&ServiceInfo> {
        self.services.get(name)
    }

    pub fn services(&self) -> impl Iterator<Item = &ServiceInfo> {
        self.services.values()
    }

    pub fn service_of_host(&self, host: &str) -> Option<&str> {
        self.host_service.get(host).map(String::as_str)
    }

    /// Services that call `name`.
    pub fn callers(&self, name: &str) -> impl Iterator<Item = &str> {
        self.callers.get(name).into_iter().flatten().map(String::as_str)
    }

    /// Services that `name` calls.
    pub fn dependencies(&self, name: &str) -> impl Iterator<Item = &str> {
        self.services
            .get(name)
            .into_iter()
            .flat_map(|s| s.depends_on.iter().map(String::as_str))
    }

    /// Services at most `max_hops` dependency edges away (either direction).
    pub fn neighbours(&self, name: &str, max_hops: usize) -> Vec<String> {
        let mut seen: BTreeSet<String> = BTreeSet::from([name.to_string()]);
        let mut frontier = vec![name.to_string()];
        for _ in 0..max_hops {
            let mut next = Vec::new();
            for s in &frontier {
                for n in self.dependencies(s).chain(self.callers(s)) {
                    if seen.insert(n.to_string()) {
                        next.push(n.to_string());
                    }
                }
            }
            frontier = next;
        }
        seen.remove(name);
        seen.into_iter().collect()
    }

    /// The shortest path between two services over dependency edges in either direction,
    /// at most `max_hops` long; cycles in the catalog are harmless here.
    pub fn path(&self, from: &str, to: &str, max_hops: usize) -> Option<Vec<String>> {
        if from == to {
            return Some(vec![from.to_string()]);
        }
        let mut prev: HashMap<String, String> = HashMap::new();
        let mut frontier = vec![from.to_string()];
        for _ in 0..max_hops {
            let mut next = Vec::new();
            for s in &frontier {
                for n in self.dependencies(s).chain(self.callers(s)) {
                    if n == from || prev.contains_key(n) {
                        continue;
                    }
                    prev.insert(n.to_string(), s.clone());
                    if n == to {
                        let mut path = vec![to.to_string()];
                        let mut cur = to.to_string();
                        while let Some(p) = prev.get(&cur) {
                            path.push(p.clone());
                            cur = p.clone();
                        }
                        path.reverse();
                        return Some(path);
                    }
                    next.push(n.to_string());
                }
            }
            frontier = next;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, deps: &[&str]) -> ServiceInfo {
        ServiceInfo {
            name: name.into(),
            owner: None,
            tier: 2,
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            hosts: vec![format!("{name}-1")],
            kind: None,
        }
    }

    #[test]
    fn paths_follow_edges_both_ways_and_survive_cycles() {
        let c = Catalog::from_services(vec![svc("gw", &["cart"]), svc("cart", &["db"]), svc("db", &["gw"])]).unwrap();
        assert_eq!(
            c.path("gw", "db", 2).unwrap().len(),
            2,
            "the cycle makes gw and db direct neighbours"
        );
        assert_eq!(c.path("cart", "cart", 1).unwrap(), vec!["cart"]);
        assert_eq!(c.service_of_host("db-1"), Some("db"));
        assert!(c.path("gw", "nowhere", 3).is_none());
    }

    #[test]
    fn duplicate_hosts_are_refused() {
        let mut b = svc("b", &[]);
        b.hosts = vec!["a-1".into()];
        assert!(Catalog::from_services(vec![svc("a", &[]), b]).is_err());
    }
}
